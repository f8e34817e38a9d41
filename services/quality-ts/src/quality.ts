// The data-quality checks of a sales dataset (a sales.extract output): pure
// functions, no I/O.
//
// * missing_months: a month of the period with no rows at all (error), and a
//   month missing inside one series (warning) — a series being the rows that
//   share every dimension but the month;
// * outliers: a month whose revenue departs from its series' median by more
//   than `outlier_threshold` robust z-scores (0.6745·|x − median| / MAD);
// * negative_margin: a row whose cost exceeds its revenue (warning);
// * negative_values: revenue, cost or units below zero (error);
// * duplicate_rows: two rows with the same dimension values (error).
import { Json } from "./struct";

export type Severity = "error" | "warning";

export interface Issue {
  check: string;
  severity: Severity;
  where: { [dimension: string]: string };
  message: string;
  value?: number;
  expected?: number;
}

export interface Report {
  rows_checked: number;
  series: number;
  checks: { id: string; issues: number }[];
  issues: Issue[];
  issues_not_listed: number;
  errors: number;
  warnings: number;
  passed: boolean;
  summary: string;
}

export const CHECKS = ["missing_months", "outliers", "negative_margin", "negative_values", "duplicate_rows"];
/** Most issues listed; the rest are counted in `issues_not_listed`. */
export const MAX_LISTED = 100;
const MEASURES = new Set(["revenue", "cost", "units", "orders", "lines"]);
const MIN_SERIES_FOR_OUTLIERS = 6;

export interface Row {
  [field: string]: Json;
}

export interface Options {
  outlierThreshold: number;
  /** First and last month of the period (YYYY-MM), when the dataset says. */
  period?: { first: string; last: string };
}

const num = (v: Json | undefined): number => (typeof v === "number" ? v : 0);

function monthIndex(m: string): number {
  const [y, mo] = m.split("-").map(Number);
  return y! * 12 + mo! - 1;
}

function monthOf(i: number): string {
  return `${Math.floor(i / 12)}-${String((i % 12) + 1).padStart(2, "0")}`;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function money(x: number): string {
  const a = Math.abs(x);
  const sign = x < 0 ? "-" : "";
  if (a >= 1e6) return `${sign}$${(a / 1e6).toFixed(2)}M`;
  if (a >= 1e3) return `${sign}$${(a / 1e3).toFixed(1)}K`;
  return `${sign}$${a.toFixed(0)}`;
}

/** The dimensions of a row: every field that is not a measure. */
function dimensions(row: Row): { [dimension: string]: string } {
  const out: { [dimension: string]: string } = {};
  for (const [k, v] of Object.entries(row)) if (!MEASURES.has(k)) out[k] = String(v);
  return out;
}

function label(where: { [d: string]: string }): string {
  return Object.entries(where)
    .map(([k, v]) => `${k} ${v}`)
    .join(", ");
}

export function check(rows: Row[], opts: Options): Report {
  const issues: Issue[] = [];
  const add = (i: Issue) => issues.push(i);

  // duplicate_rows
  const seen = new Map<string, number>();
  for (const row of rows) {
    const key = JSON.stringify(Object.entries(dimensions(row)).sort());
    seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  for (const [key, count] of seen) {
    if (count > 1) {
      const where = Object.fromEntries(JSON.parse(key) as [string, string][]);
      add({ check: "duplicate_rows", severity: "error", where, message: `${count} rows for ${label(where)}` });
    }
  }

  // negative_values, negative_margin
  for (const row of rows) {
    const where = dimensions(row);
    for (const m of ["revenue", "cost", "units"]) {
      if (num(row[m]) < 0) {
        add({ check: "negative_values", severity: "error", where, value: num(row[m]), message: `${m} is negative (${num(row[m])}) for ${label(where)}` });
      }
    }
    const revenue = num(row.revenue);
    const cost = num(row.cost);
    if (revenue >= 0 && cost > revenue) {
      const margin = revenue > 0 ? ((revenue - cost) / revenue) * 100 : -100;
      add({
        check: "negative_margin",
        severity: "warning",
        where,
        value: Math.round(margin * 10) / 10,
        message: `cost ${money(cost)} exceeds revenue ${money(revenue)} for ${label(where)} (margin ${margin.toFixed(1)}%)`,
      });
    }
  }

  // Series by month.
  const monthly = rows.filter((r) => typeof r.month === "string" && /^\d{4}-\d{2}$/.test(r.month as string));
  const series = new Map<string, { where: { [d: string]: string }; months: Map<number, number> }>();
  for (const row of monthly) {
    const where = dimensions(row);
    delete where.month;
    const key = JSON.stringify(Object.entries(where).sort());
    const s = series.get(key) ?? { where, months: new Map<number, number>() };
    const i = monthIndex(row.month as string);
    s.months.set(i, (s.months.get(i) ?? 0) + num(row.revenue));
    series.set(key, s);
  }

  if (monthly.length > 0) {
    // missing_months, dataset level: a month of the period without any row.
    const all = new Set(monthly.map((r) => monthIndex(r.month as string)));
    const first = opts.period ? monthIndex(opts.period.first) : Math.min(...all);
    const last = opts.period ? monthIndex(opts.period.last) : Math.max(...all);
    for (let i = first; i <= last; i++) {
      if (!all.has(i)) {
        add({ check: "missing_months", severity: "error", where: { month: monthOf(i) }, message: `no rows at all for ${monthOf(i)}` });
      }
    }
    // missing_months inside a series (between its first and last month).
    for (const s of series.values()) {
      const ms = [...s.months.keys()];
      const lo = Math.min(...ms);
      const hi = Math.max(...ms);
      for (let i = lo; i <= hi; i++) {
        if (!s.months.has(i) && all.has(i)) {
          const where = { ...s.where, month: monthOf(i) };
          add({ check: "missing_months", severity: "warning", where, message: `no rows for ${label(where)}, between months that have some` });
        }
      }
    }
    // outliers
    for (const s of series.values()) {
      if (s.months.size < MIN_SERIES_FOR_OUTLIERS) continue;
      const values = [...s.months.values()];
      const med = median(values);
      const mad = median(values.map((v) => Math.abs(v - med)));
      if (mad === 0) continue;
      for (const [i, v] of [...s.months.entries()].sort((a, b) => a[0] - b[0])) {
        const z = (0.6745 * (v - med)) / mad;
        if (Math.abs(z) > opts.outlierThreshold) {
          const where = { ...s.where, month: monthOf(i) };
          add({
            check: "outliers",
            severity: "warning",
            where,
            value: Math.round(v * 100) / 100,
            expected: Math.round(med * 100) / 100,
            message: `revenue ${money(v)} for ${label(where)} is ${z > 0 ? "far above" : "far below"} the series' median ${money(med)} (robust z ${z.toFixed(1)})`,
          });
        }
      }
    }
  }

  const errors = issues.filter((i) => i.severity === "error").length;
  const warnings = issues.length - errors;
  const counts = CHECKS.map((id) => ({ id, issues: issues.filter((i) => i.check === id).length }));
  const found = counts.filter((c) => c.issues > 0).map((c) => `${c.id.replace(/_/g, " ")} ${c.issues}`);
  issues.sort((a, b) => (a.severity === b.severity ? 0 : a.severity === "error" ? -1 : 1));
  return {
    rows_checked: rows.length,
    series: series.size,
    checks: counts,
    issues: issues.slice(0, MAX_LISTED),
    issues_not_listed: Math.max(0, issues.length - MAX_LISTED),
    errors,
    warnings,
    passed: errors === 0,
    summary:
      issues.length === 0
        ? `${rows.length} rows checked: no issues`
        : `${rows.length} rows checked: ${errors} errors, ${warnings} warnings (${found.join(", ")})`,
  };
}
