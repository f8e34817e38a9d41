"""The `forecast.revenue` skill: its card entry, its input and output
schemas, and the work itself."""

from __future__ import annotations

import json
from typing import Any

from . import chart
from .errors import MeshError
from .model import Month, ModelError, fit
from .tasks import Artifact, Task

SKILL_ID = "forecast.revenue"
NAME = "forecast"
MAX_ROWS = 8000

INPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["dataset"],
    "properties": {
        "dataset": {
            "type": "object",
            "description": "a sales.dataset (sales.extract output) grouped by month",
            "required": ["rows"],
            "properties": {
                "rows": {
                    "type": "array",
                    "maxItems": MAX_ROWS,
                    "items": {
                        "type": "object",
                        "required": ["month", "revenue"],
                        "properties": {
                            "month": {"type": "string", "pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"},
                            "revenue": {"type": "number"},
                        },
                    },
                }
            },
        },
        "horizon": {
            "type": "integer",
            "minimum": 1,
            "maximum": 12,
            "description": "months to forecast after the last month of history (default 3)",
        },
        "level": {
            "type": "number",
            "minimum": 0.5,
            "maximum": 0.99,
            "description": "coverage of the prediction interval (default 0.95)",
        },
    },
}

_POINT = {
    "type": "object",
    "required": ["month", "revenue", "lower", "upper"],
    "properties": {
        "month": {"type": "string"},
        "revenue": {"type": "number"},
        "lower": {"type": "number"},
        "upper": {"type": "number"},
    },
}

OUTPUT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["method", "level", "horizon", "history", "forecast", "total", "fit", "notes"],
    "properties": {
        "method": {"type": "string"},
        "level": {"type": "number"},
        "horizon": {"type": "integer"},
        "history": {
            "type": "object",
            "required": ["first_month", "last_month", "months"],
            "properties": {
                "first_month": {"type": "string"},
                "last_month": {"type": "string"},
                "months": {"type": "integer"},
            },
        },
        "forecast": {"type": "array", "items": _POINT},
        "total": _POINT,
        "fit": {
            "type": "object",
            "required": ["residual_sd", "mape_pct", "r_squared"],
            "properties": {
                "residual_sd": {"type": "number"},
                "mape_pct": {"type": "number"},
                "r_squared": {"type": "number"},
            },
        },
        "notes": {"type": "array", "items": {"type": "string"}},
    },
}


def example_input() -> dict[str, Any]:
    """A valid input for people and for `meshctl conformance`: 24 months of
    a seasonal, growing revenue."""
    rows = []
    for i in range(24):
        m = Month.of_index(2023 * 12 + i)
        seasonal = [0.9, 0.85, 1.0, 1.0, 1.05, 1.1, 0.95, 0.9, 1.0, 1.05, 1.15, 1.3][m.month - 1]
        rows.append({"month": str(m), "revenue": round((1_000_000 + 15_000 * i) * seasonal, 2)})
    return {"dataset": {"rows": rows}, "horizon": 3}


# doc:begin card
def card_entry() -> dict[str, Any]:
    return {
        "id": SKILL_ID,
        "description": (
            "Forecasts monthly revenue for the next months (3 by default, up to 12) from a sales "
            "dataset grouped by month: linear trend plus month-of-year seasonality fitted by least "
            "squares, with a prediction interval, and a chart of history and forecast."
        ),
        "tags": ["forecast", "revenue", "prediction", "sales", "projection"],
        "examples": ["Forecast next quarter's revenue", json.dumps(example_input())],
        "consumes": ["sales.dataset"],
        "produces": ["sales.forecast"],
        # How goals reach it: these words; a future period ("next quarter")
        # becomes its horizon; it reads the whole history, by month.
        "planning": {
            "phrases": ["forecast", "revenue forecast", "projection", "prediction", "predict", "outlook"],
            "future_periods": True,
            "full_history": True,
            "upstream_input": {"group_by": ["month"]},
        },
    }
# doc:end card


def _history(dataset: dict[str, Any]) -> dict[Month, float]:
    """Revenue per month, summed over the other dimensions."""
    out: dict[Month, float] = {}
    for row in dataset["rows"]:
        month = Month.parse(row["month"])
        out[month] = out.get(month, 0.0) + float(row["revenue"])
    return out


# The question asked when the input names no horizon (and ask_horizon is on).
HORIZON_QUESTION = "How many months ahead should the forecast go?"
HORIZON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["horizon"],
    "additionalProperties": False,
    "properties": {
        "horizon": {
            "type": "integer",
            "minimum": 1,
            "maximum": 12,
            "description": "months after the last month of history (the interval widens with each)",
        }
    },
}


def execute(
    task: Task, given: dict[str, Any], ask_horizon: bool = False
) -> tuple[dict[str, Any], list[Artifact]]:
    """Runs the skill on a schema-valid input. Raises `MeshError`
    (INVALID_INPUT) for a history the model cannot use. With `ask_horizon`,
    an input without `horizon` makes the task ask a person for it."""
    if "horizon" not in given and ask_horizon:
        given = {**given, **task.ask("horizon", HORIZON_QUESTION, HORIZON_SCHEMA)}
    horizon = int(given.get("horizon", 3))
    level = float(given.get("level", 0.95))
    task.progress("reading the monthly history", 0.1)
    history = _history(given["dataset"])
    task.check()
    try:
        f = fit(history, horizon, level)
    except ModelError as e:
        raise MeshError("INVALID_INPUT", str(e), {"field": "dataset.rows"}) from e
    task.progress(f"fitted {len(history)} months; drawing the chart", 0.7)
    task.check()
    svg = chart.render(f)
    notes = []
    if not f.seasonal:
        notes.append(
            f"{len(history)} months of history: the seasonal terms need 24, so the forecast is "
            "trend only"
        )
    notes.append(
        f"{round(level * 100)}% prediction interval; it assumes the trend and seasonality of "
        f"{f.history[0][0]}..{f.history[-1][0]} continue"
    )

    def point(p: Any) -> dict[str, Any]:
        return {
            "month": p.month,
            "revenue": round(p.revenue, 2),
            "lower": round(p.lower, 2),
            "upper": round(p.upper, 2),
        }

    output = {
        "method": f.method,
        "level": level,
        "horizon": horizon,
        "history": {
            "first_month": f.history[0][0],
            "last_month": f.history[-1][0],
            "months": len(f.history),
        },
        "forecast": [point(p) for p in f.points],
        "total": point(f.total),
        "fit": {
            "residual_sd": round(f.residual_sd, 2),
            "mape_pct": round(f.mape_pct, 2),
            "r_squared": round(f.r_squared, 4),
        },
        "notes": notes,
    }
    artifact = Artifact(
        artifact_id="revenue_forecast",
        name="revenue_forecast",
        description=f"Revenue forecast for {f.total.month}",
        media_type="image/svg+xml",
        data=svg,
        metadata={"title": f"Revenue forecast, {f.total.month}", "alt_text": chart.alt_text(f)},
    )
    return output, [artifact]
