// The quality.check skill: its card entry, input and output schemas, and
// the work itself.
import { MeshError } from "./errors";
import { check, CHECKS, MAX_LISTED, Row } from "./quality";
import { Json } from "./struct";
import { Artifact, Task } from "./tasks";

export const SKILL_ID = "quality.check";
export const NAME = "quality";
export const MAX_ROWS = 8000;

export const INPUT_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  additionalProperties: false,
  required: ["dataset"],
  properties: {
    dataset: {
      type: "object",
      description: "a sales.dataset (sales.extract output)",
      required: ["rows"],
      properties: {
        rows: {
          type: "array",
          maxItems: MAX_ROWS,
          items: {
            type: "object",
            required: ["revenue"],
            properties: {
              month: { type: "string" },
              revenue: { type: "number" },
              cost: { type: "number" },
              units: { type: "number" },
            },
          },
        },
        period: {
          type: "object",
          properties: { start: { type: "string" }, end: { type: "string" } },
        },
      },
    },
    outlier_threshold: {
      type: "number",
      minimum: 2,
      maximum: 10,
      description: "robust z-score above which a month is an outlier (default 3.5)",
    },
  },
} as const;

const ISSUE = {
  type: "object",
  required: ["check", "severity", "where", "message"],
  properties: {
    check: { type: "string", enum: CHECKS },
    severity: { type: "string", enum: ["error", "warning"] },
    where: { type: "object", additionalProperties: { type: "string" } },
    message: { type: "string" },
    value: { type: "number" },
    expected: { type: "number" },
  },
};

export const OUTPUT_SCHEMA = {
  $schema: "https://json-schema.org/draft/2020-12/schema",
  type: "object",
  required: ["rows_checked", "series", "checks", "issues", "issues_not_listed", "errors", "warnings", "passed", "summary"],
  properties: {
    rows_checked: { type: "integer" },
    series: { type: "integer" },
    checks: {
      type: "array",
      items: { type: "object", required: ["id", "issues"], properties: { id: { type: "string" }, issues: { type: "integer" } } },
    },
    issues: { type: "array", maxItems: MAX_LISTED, items: ISSUE },
    issues_not_listed: { type: "integer" },
    errors: { type: "integer" },
    warnings: { type: "integer" },
    passed: { type: "boolean" },
    summary: { type: "string" },
    outlier_threshold: { type: "number", description: "the robust z-score outliers were judged by" },
  },
};

/** A valid input for people and for `meshctl conformance`. */
export function exampleInput(): { [key: string]: Json } {
  const rows: Json[] = [];
  for (let i = 0; i < 12; i++) {
    const month = `2024-${String(i + 1).padStart(2, "0")}`;
    const revenue = i === 7 ? 900_000 : 100_000 + 1_000 * i;
    rows.push({ month, region: "Europe", revenue, cost: i === 3 ? 120_000 : 60_000, units: 1000 });
  }
  return { dataset: { rows, period: { start: "2024-01-01", end: "2024-12-31" } } };
}

// doc:begin card
export function cardEntry() {
  return {
    id: SKILL_ID,
    description:
      "Checks a sales dataset's quality before anyone reads it: months with no data, outlier months (robust z-score per series), rows with negative margins, negative values and duplicate rows; each issue with where it is and why.",
    tags: ["quality", "data quality", "validation", "outliers", "anomalies", "sales"],
    examples: ["Check the quality of the Q2 sales data", JSON.stringify(exampleInput())],
    consumes: ["sales.dataset"],
    produces: ["sales.quality"],
    // How goals reach it: these words, over the goal's own period.
    planning: {
      phrases: ["quality", "data quality", "quality check", "validate", "validation", "outliers"],
      future_periods: false,
      full_history: false,
    },
  };
}
// doc:end card

function month(date: Json | undefined): string | undefined {
  return typeof date === "string" && /^\d{4}-\d{2}/.test(date) ? date.slice(0, 7) : undefined;
}

/** Asked when the input names no outlier_threshold (and askThreshold is on). */
export const THRESHOLD_QUESTION = "How far from its usual level must a month be to count as an outlier?";
export const THRESHOLD_SCHEMA = {
  type: "object",
  required: ["outlier_threshold"],
  additionalProperties: false,
  properties: {
    outlier_threshold: {
      type: "number",
      minimum: 2,
      maximum: 10,
      description: "robust z-score: 3.5 is usual, lower flags more months, higher fewer",
    },
  },
};

export async function execute(
  task: Task,
  given: { [key: string]: Json },
  opts: { askThreshold?: boolean } = {},
): Promise<[{ [key: string]: Json }, Artifact[]]> {
  let input = given;
  if (opts.askThreshold && typeof input.outlier_threshold !== "number") {
    input = { ...input, ...(await task.ask("outlier_threshold", THRESHOLD_QUESTION, THRESHOLD_SCHEMA)) };
  }
  const dataset = input.dataset as { rows: Row[]; period?: { start?: Json; end?: Json } };
  task.progress(`checking ${dataset.rows.length} rows`, 0.2);
  const first = month(dataset.period?.start);
  const last = month(dataset.period?.end);
  if ((first === undefined) !== (last === undefined)) {
    throw new MeshError("INVALID_INPUT", "dataset.period needs both start and end (YYYY-MM-DD)", { field: "dataset.period" });
  }
  const threshold = typeof input.outlier_threshold === "number" ? input.outlier_threshold : 3.5;
  const report = check(dataset.rows, {
    outlierThreshold: threshold,
    period: first && last ? { first, last } : undefined,
  });
  task.check();
  return [{ ...(report as unknown as { [key: string]: Json }), outlier_threshold: threshold }, []];
}
