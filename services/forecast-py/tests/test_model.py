"""The forecast model on histories whose answer is known."""

import math

import pytest

from agentmesh_forecast.model import Month, ModelError, fit, t_quantile

SEASON = [0.9, 0.85, 1.0, 1.0, 1.05, 1.1, 0.95, 0.9, 1.0, 1.05, 1.15, 1.3]


def history(months: int, noise: float = 0.0, start: int = 2023 * 12):
    out = {}
    for i in range(months):
        m = Month.of_index(start + i)
        wobble = noise * math.sin(i * 2.3)  # deterministic, mean about zero
        out[m] = 100_000 + 2_000 * i + 20_000 * (SEASON[m.month - 1] - 1) + wobble
    return out


def test_an_exact_trend_and_season_is_forecast_exactly():
    f = fit(history(36), horizon=3, level=0.95)
    assert f.seasonal
    assert [p.month for p in f.points] == ["2026-01", "2026-02", "2026-03"]
    for i, p in enumerate(f.points):
        m = Month.parse(p.month)
        want = 100_000 + 2_000 * (36 + i) + 20_000 * (SEASON[m.month - 1] - 1)
        assert p.revenue == pytest.approx(want, rel=1e-9)
        assert p.upper - p.lower == pytest.approx(0, abs=1e-3)


def test_the_interval_widens_with_noise_and_level_and_holds_the_point():
    f80 = fit(history(30, noise=3_000), horizon=6, level=0.8)
    f95 = fit(history(30, noise=3_000), horizon=6, level=0.95)
    for a, b in zip(f80.points, f95.points):
        assert a.lower < a.revenue < a.upper
        assert b.upper - b.lower > a.upper - a.lower
    assert f95.total.revenue == pytest.approx(sum(p.revenue for p in f95.points))
    # The total's interval is narrower than the sum of the months' widths
    # (errors of separate months partly cancel) but wider than any one.
    width = f95.total.upper - f95.total.lower
    assert max(p.upper - p.lower for p in f95.points) < width < sum(p.upper - p.lower for p in f95.points)


def test_under_two_years_the_model_is_trend_only():
    f = fit(history(18), horizon=2, level=0.9)
    assert not f.seasonal
    assert "trend" in f.method


def test_too_short_a_history_is_refused_with_what_would_work():
    with pytest.raises(ModelError, match="at least 12"):
        fit(history(8), horizon=3, level=0.95)


def test_a_gap_in_the_months_is_refused_naming_it():
    h = history(30)
    del h[Month(2024, 2)]
    with pytest.raises(ModelError, match="2024-02"):
        fit(h, horizon=3, level=0.95)


@pytest.mark.parametrize(
    "p, df, want",
    [(0.975, 10, 2.228), (0.975, 20, 2.086), (0.95, 15, 1.753), (0.995, 30, 2.750)],
)
def test_t_quantiles_match_the_tables(p, df, want):
    assert t_quantile(p, df) == pytest.approx(want, abs=0.005)


def test_months_cross_years():
    assert str(Month.of_index(Month(2024, 12).index() + 1)) == "2025-01"
