"""test_results' revenue per user from the buyers' moments alone: the engine gives the
buyers' count, mean and population variance, and the analysis joins them with the
non-buyers' zeros (services/query/analysis/test_results.py, `Variant.of`). The mean and
sample variance must equal those of the whole padded sample, computed here by the
standard library over every user's revenue (exact rational arithmetic inside `statistics`),
to 1e-12 relative — including samples where a sum of squares would cancel badly."""

from __future__ import annotations

import random
import statistics

import pytest

from services.query.analysis.test_results import Variant

REL = 1e-12


def _row(buyers: list[float], users: int) -> dict[str, object]:
    return {
        "variant": "B",
        "control": "A",
        "users": users,
        "conversions": len(buyers),
        "buyers": len(buyers),
        # What the engine's avg and varPopStable give (0 for no buyer: the join's default).
        "buyer_revenue_mean": statistics.fmean(buyers) if buyers else 0.0,
        "buyer_revenue_variance": statistics.pvariance(buyers) if buyers else 0.0,
    }


def _cases() -> list[tuple[str, list[float], int]]:
    rng = random.Random(19)
    return [
        ("a fifth buy", [round(rng.expovariate(1 / 40), 2) for _ in range(2_000)], 10_000),
        ("everyone buys", [round(rng.gauss(30, 5), 2) for _ in range(500)], 500),
        ("one buyer", [12.5], 300),
        ("one buyer of two", [12.5], 2),
        ("no buyer", [], 50),
        # Large equal-ish revenues: sum of squares minus squared sum loses every digit.
        ("large and alike", [1e9 + rng.random() for _ in range(1_000)], 1_001),
        ("buyers at 0", [0.0, 0.0, 7.25], 10),
    ]


@pytest.mark.parametrize(
    ("buyers", "users"), [c[1:] for c in _cases()], ids=[c[0] for c in _cases()]
)
def test_moments_equal_the_padded_samples(buyers: list[float], users: int) -> None:
    everyone = buyers + [0.0] * (users - len(buyers))
    variant = Variant.of(_row(buyers, users))
    assert variant.users == users
    assert variant.revenue_mean == pytest.approx(statistics.fmean(everyone), rel=REL, abs=0)
    assert variant.revenue_variance == pytest.approx(
        statistics.variance(everyone), rel=REL, abs=1e-300
    )


def test_a_single_user_has_no_variance() -> None:
    assert Variant.of(_row([12.5], 1)).revenue_variance == 0.0
