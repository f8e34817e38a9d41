import { test } from "node:test";
import * as assert from "node:assert/strict";
import { check, Row } from "../src/quality";

const opts = { outlierThreshold: 3.5 };

function year(region: string, revenue: (i: number) => number): Row[] {
  return Array.from({ length: 12 }, (_, i) => ({
    month: `2024-${String(i + 1).padStart(2, "0")}`,
    region,
    revenue: revenue(i),
    cost: revenue(i) * 0.6,
    units: 100,
  }));
}

test("a clean dataset passes with no issues", () => {
  const r = check([...year("Europe", (i) => 1000 + 10 * i), ...year("Asia", (i) => 2000 + 5 * i)], opts);
  assert.equal(r.passed, true);
  assert.equal(r.issues.length, 0);
  assert.equal(r.series, 2);
  assert.equal(r.summary, "24 rows checked: no issues");
});

test("an outlier month is named with its series, value and median", () => {
  const r = check(year("Europe", (i) => (i === 4 ? 9000 : 1000 + 10 * (i % 3))), opts);
  const [o] = r.issues.filter((i) => i.check === "outliers");
  assert.deepEqual(o!.where, { region: "Europe", month: "2024-05" });
  assert.equal(o!.value, 9000);
  assert.equal(o!.expected, 1010);
  assert.equal(r.passed, true, "outliers are warnings");
});

test("a month with no rows at all fails the check; a gap in one series warns", () => {
  const rows = [...year("Europe", () => 1000), ...year("Asia", () => 2000)].filter(
    (r) => r.month !== "2024-03" && !(r.region === "Asia" && r.month === "2024-07"),
  );
  const r = check(rows, opts);
  const missing = r.issues.filter((i) => i.check === "missing_months");
  assert.deepEqual(
    missing.map((i) => [i.severity, i.where.month, i.where.region]),
    [
      ["error", "2024-03", undefined],
      ["warning", "2024-07", "Asia"],
    ],
  );
  assert.equal(r.passed, false);
});

test("the period's months count even where the rows stop early", () => {
  const rows = year("Europe", () => 1000).slice(0, 10);
  const r = check(rows, { ...opts, period: { first: "2024-01", last: "2024-12" } });
  assert.deepEqual(
    r.issues.map((i) => i.where.month),
    ["2024-11", "2024-12"],
  );
});

test("negative margins warn and negative values and duplicates are errors", () => {
  const rows: Row[] = [
    { region: "Japan", revenue: 100, cost: 130, units: 1 },
    { region: "Chile", revenue: -5, cost: 0, units: 1 },
    { region: "Peru", revenue: 10, cost: 1, units: 1 },
    { region: "Peru", revenue: 11, cost: 1, units: 1 },
  ];
  const r = check(rows, opts);
  const byCheck = Object.fromEntries(r.checks.map((c) => [c.id, c.issues]));
  assert.deepEqual(byCheck, { missing_months: 0, outliers: 0, negative_margin: 1, negative_values: 1, duplicate_rows: 1 });
  assert.equal(r.errors, 2);
  assert.equal(r.warnings, 1);
  assert.equal(r.issues[0]!.severity, "error", "errors are listed first");
  assert.match(r.issues.find((i) => i.check === "negative_margin")!.message, /margin -30\.0%/);
});

test("at most 100 issues are listed and the rest counted", () => {
  const rows = Array.from({ length: 150 }, (_, i) => ({ product: `p${i}`, revenue: 1, cost: 2, units: 1 }));
  const r = check(rows, opts);
  assert.equal(r.issues.length, 100);
  assert.equal(r.issues_not_listed, 50);
  assert.equal(r.warnings, 150);
});
