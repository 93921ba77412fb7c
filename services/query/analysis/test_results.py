"""The statistics of `test_results`, from the rows of services/query/sql/test_results.sql
(per variant: its test's control, users, conversions, and the buyers' count and revenue
moments).

Intervals are 95%, tests two-sided at 5%. The statistics:

- conversion_rate with its Wilson score interval;
- lift (rate minus the control's) with its unpooled normal (Wald) interval, and p_value,
  the pooled two-proportion z-test (not ClickHouse's proportionsZTest, which answers NaN
  when a group has no conversions);
- relative_lift (lift over the control's rate) with a delta-method interval, whose variance
  is p(1-p)/n / p_c^2 + p^2 p_c(1-p_c)/n_c / p_c^4;
- chance_to_beat_control: P(rate > control's rate) with Beta(1 + conversions, 1 + users -
  conversions) posteriors (Beta(1,1) priors), by numerical integration of
  f_variant(t) F_control(t) over [0, 1] (scipy's quad to 1e-13 relative): exact to
  double precision, no sampling;
- revenue_per_user and revenue_variance over every user, the non-buyers' revenue 0: the
  buyers' mean and population variance (Welford's, in the engine) joined with that many
  zeros by Chan, Golub and LeVeque's pairwise update, so the moments stay as stable as the
  buyers' own;
- revenue_lift with Welch's interval and p-value (t distribution from scipy, the
  Welch-Satterthwaite degrees of freedom), as scipy's ttest_ind(equal_var=False) would
  give over the users' revenues;
- the sample-ratio check per test: Pearson's chi-square of the users per variant against
  the `weights` split, its p-value with k - 1 degrees of freedom (scipy), `srm` below 0.001.

`sequential=true` replaces the p-values and the lift intervals by always-valid ones: the
mixture sequential probability ratio test (mSPRT) of Johari, Koomen, Pekelis and Walsh,
"Peeking at A/B Tests" (KDD 2017; Operations Research 2022), with a normal mixing
distribution, tuned as GrowthBook tunes its sequential testing
(https://docs.growthbook.io/statistics/sequential): the asymptotic confidence sequence of
Waudby-Smith et al. (2023) with tuning N* = 5000, rho^2 = (-2 ln a + ln(1 - 2 ln a)) / N*.
For an estimate d with standard error se over N = n + n_c users, the mixing variance is
tau^2 = rho^2 se^2 N, so with z = d / se and k = N rho^2:

    p = min(1, sqrt(1 + k) exp(-z^2 k / (2 (1 + k))))
    d -/+ se sqrt(2 (1 + k) / k ln(sqrt(1 + k) / a))

which is GrowthBook's interval; p <= a exactly when that interval leaves out 0 (the
p-value's se is pooled for conversion rates, as the z-test's). Under no effect, the chance
that p ever falls below a at any peek is at most a (Ville's inequality), so the answer may
be read daily and a test stopped at the first p < 0.05.

Edge cases take the value that claims nothing, never NaN (JSON has none):
- the control's own row compares it with itself: lifts 0 with intervals [0, 0], p-values
  1, chance 0.5;
- a standard error of 0 (nothing varies in either group: both rates 0 or 1; revenue all
  equal within each group; or a group of one user, whose variance is unknown): p-value 1
  and the interval collapsed on the observed difference;
- the control converting no one: relative_lift and its interval 0 (undefined);
- revenue_variance of a single user: 0;
- a single-variant test: chi-square 0, p-value 1 (nothing to compare).
A real sample-ratio mismatch changes nothing else: the statistics stand as computed, and
`srm` says they are suspect.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scipy import integrate, special, stats

from services.query.binder import InvalidParameter

ALPHA = 0.05
SRM_ALPHA = 0.001
# GrowthBook's default N*: the sample size around which the sequential interval is tightest.
SEQUENTIAL_TUNING = 5000
Z = float(stats.norm.ppf(1 - ALPHA / 2))
_MAX_WEIGHTS = 64


def check(params: Mapping[str, str]) -> None:
    """Refuses a `weights` that is not a list of positive numbers."""
    weights(params.get("weights", ""))


def weights(text: str) -> list[float] | None:
    """The expected split (None: equal shares). Raises InvalidParameter."""
    if not text.strip():
        return None
    items = text.split(",")
    if len(items) > _MAX_WEIGHTS:
        raise InvalidParameter(f"parameter 'weights' has more than {_MAX_WEIGHTS} numbers")
    parsed = []
    for item in items:
        try:
            value = float(item)
        except ValueError:
            raise InvalidParameter(
                f"parameter 'weights': {item.strip()!r} is not a number "
                "(give one positive number per variant, comma-separated)"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise InvalidParameter(f"parameter 'weights': {item.strip()!r} is not positive")
        parsed.append(value)
    return parsed


def apply(rows: Sequence[Mapping[str, Any]], params: Mapping[str, str]) -> list[dict[str, Any]]:
    """The answer's rows, in the SQL's order (test_id, variant)."""
    sequential = params.get("sequential", "false") == "true"
    split = weights(params.get("weights", ""))
    by_test: dict[str, list[Variant]] = defaultdict(list)
    controls = {}
    for row in rows:
        by_test[row["test_id"]].append(Variant.of(row))
        controls[row["test_id"]] = row["control"]
    answer = []
    for test, group in by_test.items():
        chi_square, srm_p = sample_ratio(test, group, split)
        control = next(v for v in group if v.name == controls[test])
        answer += [_result(test, v, control, sequential, chi_square, srm_p) for v in group]
    return answer


@dataclass(frozen=True)
class Variant:
    """A variant's users, conversions and the mean and sample variance of its users'
    revenue (every user's: the buyers' and the others' zeros)."""

    name: str
    users: int
    conversions: int
    revenue_mean: float
    revenue_variance: float

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Variant:
        """From a row of the SQL: the buyers' moments joined with the other users' zeros
        (Chan, Golub and LeVeque 1979: two groups' means and sums of squared deviations
        combine exactly, without the cancellation of a sum of squares)."""
        n, buyers = int(row["users"]), int(row["buyers"])
        buyer_mean = float(row["buyer_revenue_mean"]) if buyers else 0.0
        buyer_m2 = float(row["buyer_revenue_variance"]) * buyers if buyers else 0.0
        # The zeros' mean is 0 and their squared deviations 0: only the shift between the
        # two means adds to the sum of squared deviations.
        m2 = buyer_m2 + buyer_mean * buyer_mean * buyers * (n - buyers) / n
        return cls(
            name=row["variant"],
            users=n,
            conversions=int(row["conversions"]),
            revenue_mean=buyer_mean * buyers / n,
            # A single user's variance is unknown; 0 claims nothing (module docstring).
            revenue_variance=m2 / (n - 1) if n > 1 else 0.0,
        )


def _result(
    test: str,
    variant: Variant,
    control: Variant,
    sequential: bool,
    chi_square: float,
    srm_p: float,
) -> dict[str, Any]:
    n, x = variant.users, variant.conversions
    n_c, x_c = control.users, control.conversions
    rate, rate_c = x / n, x_c / n_c
    low, high = wilson(x, n)
    is_control = variant is control
    mean, mean_c = variant.revenue_mean, control.revenue_mean
    variance, variance_c = variant.revenue_variance, control.revenue_variance
    result = {
        "test_id": test,
        "variant": variant.name,
        "control": control.name,
        "users": n,
        "conversions": x,
        "conversion_rate": rate,
        "conversion_rate_low": low,
        "conversion_rate_high": high,
    }
    if is_control:
        comparison = {
            "lift": 0.0,
            "lift_low": 0.0,
            "lift_high": 0.0,
            "relative_lift": 0.0,
            "relative_lift_low": 0.0,
            "relative_lift_high": 0.0,
            "p_value": 1.0,
            "chance_to_beat_control": 0.5,
            "revenue_lift": 0.0,
            "revenue_lift_low": 0.0,
            "revenue_lift_high": 0.0,
            "revenue_p_value": 1.0,
        }
    else:
        comparison = _compare(sequential, rate, rate_c, n, n_c, x, x_c)
        comparison |= _revenue(sequential, mean - mean_c, n, n_c, variance, variance_c)
    revenue_lift = comparison.pop("revenue_lift")
    revenue = {
        "revenue_per_user": mean,
        "revenue_variance": variance,
        "revenue_lift": revenue_lift,
        "revenue_lift_low": comparison.pop("revenue_lift_low"),
        "revenue_lift_high": comparison.pop("revenue_lift_high"),
        "revenue_p_value": comparison.pop("revenue_p_value"),
    }
    chance = comparison.pop("chance_to_beat_control")
    p_value = comparison.pop("p_value")
    return {
        **result,
        **comparison,
        "p_value": p_value,
        "significant": p_value < ALPHA,
        "chance_to_beat_control": chance,
        **revenue,
        "srm_chi_square": chi_square,
        "srm_p_value": srm_p,
        "srm": srm_p < SRM_ALPHA,
        "sequential": sequential,
    }


def _compare(
    sequential: bool,
    rate: float,
    rate_c: float,
    n: int,
    n_c: int,
    x: int,
    x_c: int,
) -> dict[str, float]:
    lift = rate - rate_c
    unpooled = math.sqrt(rate * (1 - rate) / n + rate_c * (1 - rate_c) / n_c)
    pooled_rate = (x + x_c) / (n + n_c)
    pooled = math.sqrt(pooled_rate * (1 - pooled_rate) * (1 / n + 1 / n_c))
    if rate_c > 0:
        relative = lift / rate_c
        relative_se = math.sqrt(
            rate * (1 - rate) / n / rate_c**2 + rate**2 * rate_c * (1 - rate_c) / n_c / rate_c**4
        )
    else:
        relative, relative_se = 0.0, 0.0
    total = n + n_c
    if sequential:
        p_value = always_valid_p(lift, pooled, total)
        lift_low, lift_high = confidence_sequence(lift, unpooled, total)
        relative_low, relative_high = confidence_sequence(relative, relative_se, total)
    else:
        p_value = float(2 * stats.norm.sf(abs(lift) / pooled)) if pooled > 0 else 1.0
        lift_low, lift_high = lift - Z * unpooled, lift + Z * unpooled
        relative_low, relative_high = relative - Z * relative_se, relative + Z * relative_se
    return {
        "lift": lift,
        "lift_low": lift_low,
        "lift_high": lift_high,
        "relative_lift": relative,
        "relative_lift_low": relative_low,
        "relative_lift_high": relative_high,
        "p_value": p_value,
        "chance_to_beat_control": chance_to_beat(x, n, x_c, n_c),
    }


def _revenue(
    sequential: bool,
    lift: float,
    n: int,
    n_c: int,
    variance: float,
    variance_c: float,
) -> dict[str, float]:
    se = math.sqrt(variance / n + variance_c / n_c) if n > 1 and n_c > 1 else 0.0
    if se == 0:
        p_value, low, high = 1.0, lift, lift
    elif sequential:
        p_value = always_valid_p(lift, se, n + n_c)
        low, high = confidence_sequence(lift, se, n + n_c)
    else:
        p_value, low, high = welch(lift, variance / n, n, variance_c / n_c, n_c)
    return {
        "revenue_lift": lift,
        "revenue_lift_low": low,
        "revenue_lift_high": high,
        "revenue_p_value": p_value,
    }


def welch(
    difference: float, share: float, n: int, share_c: float, n_c: int
) -> tuple[float, float, float]:
    """Welch's two-sided p-value and 95% interval of a difference of two means, from each
    group's squared standard error (`share` = variance / n, nonzero in sum) and size; the
    degrees of freedom are Welch-Satterthwaite's."""
    se = math.sqrt(share + share_c)
    df = (share + share_c) ** 2 / (share**2 / (n - 1) + share_c**2 / (n_c - 1))
    p_value = float(2 * stats.t.sf(abs(difference) / se, df))
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    return p_value, difference - half, difference + half


def wilson(conversions: int, users: int) -> tuple[float, float]:
    """The 95% Wilson score interval of conversions / users (Wilson 1927, no continuity
    correction). Written out: scipy's binomtest gives it too, but only after an exact
    binomial test nobody asked for, most of this pipe's analysis time at 10^5 users."""
    rate = conversions / users
    z2 = Z * Z
    centre = (rate + z2 / (2 * users)) / (1 + z2 / users)
    half = Z * math.sqrt(rate * (1 - rate) / users + z2 / (4 * users * users)) / (1 + z2 / users)
    return max(0.0, centre - half), min(1.0, centre + half)


def chance_to_beat(x: int, n: int, x_c: int, n_c: int) -> float:
    """P(p > p_c) for p ~ Beta(1 + x, 1 + n - x), p_c ~ Beta(1 + x_c, 1 + n_c - x_c)."""
    a, b = 1 + x, 1 + n - x
    a_c, b_c = 1 + x_c, 1 + n_c - x_c
    log_norm = special.betaln(a, b)

    def integrand(t: float) -> float:
        if t <= 0.0 or t >= 1.0:
            return 0.0
        log_pdf = (a - 1) * math.log(t) + (b - 1) * math.log1p(-t) - log_norm
        return math.exp(log_pdf) * special.betainc(a_c, b_c, t)

    # Both posteriors may be narrow (thousands of users): breakpoints at their means and a
    # few standard deviations about them, so the integrator cannot step over the mass.
    points = set()
    for alpha, beta in ((a, b), (a_c, b_c)):
        mean = alpha / (alpha + beta)
        sd = math.sqrt(alpha * beta / ((alpha + beta) ** 2 * (alpha + beta + 1)))
        for k in (-8, -4, -2, -1, 0, 1, 2, 4, 8):
            point = mean + k * sd
            if 0 < point < 1:
                points.add(point)
    value, _ = integrate.quad(
        integrand, 0.0, 1.0, points=sorted(points), epsabs=0.0, epsrel=1e-13, limit=500
    )
    return min(1.0, max(0.0, value))


def sequential_rho_squared(alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING) -> float:
    """GrowthBook's rho^2 for a confidence sequence tightest near `tuning` units."""
    return (-2 * math.log(alpha) + math.log(1 - 2 * math.log(alpha))) / tuning


def always_valid_p(estimate: float, se: float, total: int) -> float:
    """mSPRT's always-valid p-value of `estimate` (standard error `se`, `total` units)."""
    if se == 0:
        return 1.0
    k = total * sequential_rho_squared()
    z2 = (estimate / se) ** 2
    # In logs: exp(-z^2 ...) underflows to 0 long before its logarithm does anything odd.
    log_p = 0.5 * math.log1p(k) - z2 * k / (2 * (1 + k))
    return math.exp(min(0.0, log_p))


def confidence_sequence(estimate: float, se: float, total: int) -> tuple[float, float]:
    """The always-valid 95% interval of `estimate` (standard error `se`, `total` units)."""
    if se == 0:
        return estimate, estimate
    k = total * sequential_rho_squared()
    half = se * math.sqrt(2 * (1 + k) / k * math.log(math.sqrt(1 + k) / ALPHA))
    return estimate - half, estimate + half


def sample_ratio(
    test_id: str, variants: Sequence[Variant], split: list[float] | None
) -> tuple[float, float]:
    """(chi-square, p-value) of the users per variant against the expected split."""
    observed = [variant.users for variant in variants]
    if split is not None and len(split) != len(observed):
        raise InvalidParameter(
            f"parameter 'weights' gives {len(split)} numbers but test '{test_id}' has "
            f"{len(observed)} variants"
        )
    if len(observed) < 2:
        return 0.0, 1.0
    shares = split or [1.0] * len(observed)
    total = sum(observed)
    expected = [total * share / sum(shares) for share in shares]
    result = stats.chisquare(observed, expected)
    return float(result.statistic), float(result.pvalue)
