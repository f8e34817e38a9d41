"""The forecast: monthly revenue as a linear trend plus a month-of-year
seasonal effect, fitted by least squares, with a prediction interval.

    revenue[t] = a + b·t + s[month(t)] + e[t],  e ~ N(0, σ²)

Twelve or more months of history are needed for the seasonal terms to be
estimated from at least two observations each (24 months); with 12 to 23 the
model is trend only, and says so in its notes. The interval of a forecast
month is ŷ ± q·σ̂·√(1 + x₀ᵀ(XᵀX)⁻¹x₀), and that of the horizon's total uses
the summed row u = Σx₀: Σŷ ± q·σ̂·√(h + uᵀ(XᵀX)⁻¹u); q is Student's t
quantile for the residual degrees of freedom (Fisher's expansion around the
normal quantile, exact to within 0.1% from 10 degrees of freedom).
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

SEASONAL_MONTHS = 24
MIN_MONTHS = 12


class ModelError(ValueError):
    """The history cannot support a forecast; the message says why."""


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @staticmethod
    def parse(text: str) -> "Month":
        y, m = text.split("-")
        return Month(int(y), int(m))

    def index(self) -> int:
        return self.year * 12 + self.month - 1

    @staticmethod
    def of_index(i: int) -> "Month":
        return Month(i // 12, i % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


@dataclass(frozen=True)
class Point:
    month: str
    revenue: float
    lower: float
    upper: float


@dataclass(frozen=True)
class Forecast:
    method: str
    seasonal: bool
    level: float
    points: list[Point]
    total: Point
    residual_sd: float
    mape_pct: float
    r_squared: float
    history: list[tuple[str, float]]


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile at probability `p` (Fisher's expansion)."""
    z = NormalDist().inv_cdf(p)
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


def _design(indices: np.ndarray, first: int, seasonal: bool) -> np.ndarray:
    t = (indices - first).astype(float)
    cols = [np.ones_like(t), t]
    if seasonal:
        month = indices % 12
        ref = first % 12
        for m in range(12):
            if m != ref:
                cols.append((month == m).astype(float))
    return np.column_stack(cols)


def fit(history: dict[Month, float], horizon: int, level: float) -> Forecast:
    """Fits the history (revenue per calendar month, contiguous) and
    forecasts the `horizon` months after its last."""
    months = sorted(history, key=Month.index)
    if len(months) < MIN_MONTHS:
        raise ModelError(
            f"{len(months)} months of history; a forecast needs at least {MIN_MONTHS} "
            f"({SEASONAL_MONTHS} for the seasonal model): extract a longer period grouped by month"
        )
    first, last = months[0].index(), months[-1].index()
    missing = [str(Month.of_index(i)) for i in range(first, last + 1) if Month.of_index(i) not in history]
    if missing:
        raise ModelError(
            f"the history has no revenue for {', '.join(missing[:6])}"
            f"{' and more' if len(missing) > 6 else ''}: months must be contiguous"
        )
    seasonal = len(months) >= SEASONAL_MONTHS
    idx = np.array([m.index() for m in months])
    y = np.array([history[m] for m in months], dtype=float)
    x = _design(idx, first, seasonal)
    xtx_inv = np.linalg.pinv(x.T @ x)
    beta = xtx_inv @ x.T @ y
    fitted = x @ beta
    resid = y - fitted
    df = max(len(y) - x.shape[1], 1)
    sigma = float(np.sqrt(resid @ resid / df))
    q = t_quantile((1 + level) / 2, df)

    future = np.arange(last + 1, last + 1 + horizon)
    x0 = _design(future, first, seasonal)
    pred = x0 @ beta
    spread = q * sigma * np.sqrt(1 + np.einsum("ij,jk,ik->i", x0, xtx_inv, x0))
    points = [
        Point(str(Month.of_index(int(i))), float(p), float(p - s), float(p + s))
        for i, p, s in zip(future, pred, spread)
    ]
    u = x0.sum(axis=0)
    total = float(pred.sum())
    total_spread = q * sigma * float(np.sqrt(horizon + u @ xtx_inv @ u))
    label = f"{points[0].month}..{points[-1].month}"
    ss_tot = float(((y - y.mean()) ** 2).sum())
    nonzero = y != 0
    mape = float(np.mean(np.abs(resid[nonzero] / y[nonzero])) * 100) if nonzero.any() else 0.0
    return Forecast(
        method=(
            "least squares: linear trend + month-of-year seasonality"
            if seasonal
            else "least squares: linear trend (too little history for seasonality)"
        ),
        seasonal=seasonal,
        level=level,
        points=points,
        total=Point(label, total, total - total_spread, total + total_spread),
        residual_sd=sigma,
        mape_pct=mape,
        r_squared=1 - float(resid @ resid) / ss_tot if ss_tot > 0 else 1.0,
        history=[(str(m), history[m]) for m in months],
    )
