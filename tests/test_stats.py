"""Tests for device_bench.stats: hand-computed summaries, interval coverage, ratio intervals, verdicts."""

import math

import numpy as np
import pytest

from device_bench import stats
from device_bench.stats import StatsError, median_ci_ranks, ratio_ci, summarize, verdict
from device_bench.errors import BenchError


def test_summarize_one_to_ten_by_hand():
    result = summarize(range(1, 11))
    std = math.sqrt(82.5 / 9)  # sum((x - 5.5)^2) = 82.5, ddof=1
    assert result == {
        "count": 10, "mean_us": 5.5, "avg_us": 5.5, "std_us": pytest.approx(std),
        "min_us": 1.0, "max_us": 10.0, "median_us": 5.5,
        "p90_us": pytest.approx(9.1),  # linear: rank 0.9 * 9 = 8.1 -> 9 + 0.1 * (10 - 9)
        "p99_us": pytest.approx(9.91),  # rank 8.91 -> 9 + 0.91
        "median_ci_low_us": 2.0, "median_ci_high_us": 9.0,  # ranks 2 and 9 (Conover's table, n=10)
        "cv": pytest.approx(std / 5.5),
    }
    assert all(type(value) in (int, float) for value in result.values())


def test_percentiles_match_numpy_linear_method():
    values = np.random.default_rng(7).lognormal(8.0, 0.3, size=137)
    result = summarize(list(values))
    expected = np.percentile(values, [50, 90, 99], method="linear")
    assert [result["median_us"], result["p90_us"], result["p99_us"]] == pytest.approx(list(expected))


def test_single_sample_has_no_spread_or_interval():
    result = summarize([250.0])
    assert result["count"] == 1 and result["median_us"] == 250.0 == result["p99_us"]
    assert result["std_us"] is None and result["cv"] is None
    assert result["median_ci_low_us"] is None and result["median_ci_high_us"] is None


def test_all_zero_samples_have_no_cv():
    assert summarize([0.0] * 8)["cv"] is None


@pytest.mark.parametrize("count, ranks", [
    (1, None), (5, None), (6, (1, 6)), (10, (2, 9)), (20, (6, 15)), (50, (18, 33)), (100, (40, 61)),
])
def test_median_ci_ranks_match_published_table(count, ranks):
    assert median_ci_ranks(count) == ranks


def test_interval_bounds_are_order_statistics():
    values = [9.0, 1.0, 8.0, 2.0, 7.0, 3.0]  # n = 6: the only 95 % interval is [min, max]
    result = summarize(values)
    assert (result["median_ci_low_us"], result["median_ci_high_us"]) == (1.0, 9.0)


@pytest.mark.parametrize("count", [1001, 1500, 2000, 5000])
def test_normal_approximation_agrees_with_exact_ranks(count):
    exact = stats._exact_lower_rank(count, 0.95)
    assert abs(stats._normal_lower_rank(count, 0.95) - exact) <= 1


@pytest.mark.parametrize("count", [30, 1500])  # exact ranks, then the normal approximation
def test_median_interval_coverage_by_simulation(count):
    rng = np.random.default_rng(20240601)
    mu, sigma, trials = 8.0, 0.5, 400
    true_median = math.exp(mu)  # median of a lognormal
    hits = 0
    for _ in range(trials):
        result = summarize(rng.lognormal(mu, sigma, size=count))
        hits += result["median_ci_low_us"] <= true_median <= result["median_ci_high_us"]
    assert 0.92 <= hits / trials <= 0.98


@pytest.mark.parametrize("bad, message", [
    ([], "empty"),
    ([1.0, float("nan")], r"samples_us\[1\]=nan"),
    ([1.0, 2.0, float("inf")], r"samples_us\[2\]=inf"),
    ([3.0, -1.0], r"samples_us\[1\]=-1.0"),
    ([[1.0, 2.0]], "one-dimensional"),
    (["fast"], "sequence of numbers"),
])
def test_summarize_rejects_bad_samples(bad, message):
    with pytest.raises(StatsError, match=message):
        summarize(bad)


def test_stats_error_is_a_bench_error_and_value_error():
    assert issubclass(StatsError, BenchError) and issubclass(StatsError, ValueError)


@pytest.mark.parametrize("count, confidence", [(0, 0.95), (True, 0.95), (10, 1.0), (10, 0.0)])
def test_median_ci_ranks_rejects_bad_arguments(count, confidence):
    with pytest.raises(StatsError):
        median_ci_ranks(count, confidence)


def _latencies(seed=3, size=500):
    return np.random.default_rng(seed).lognormal(8.0, 0.2, size=size)


def test_ratio_ci_of_identical_samples_contains_one():
    samples = _latencies()
    ratio, low, high = ratio_ci(samples, samples)
    assert ratio == 1.0 and low < 1.0 < high


def test_ratio_ci_detects_one_and_a_half_times_slower():
    samples = _latencies()
    ratio, low, high = ratio_ci(samples, 1.5 * samples)
    assert ratio == pytest.approx(1.5)
    assert 1.0 < low < 1.5 < high < 1.6


def test_ratio_ci_is_deterministic_and_seed_dependent():
    a, b = _latencies(1), _latencies(2)
    assert ratio_ci(a, b) == ratio_ci(a, b)
    assert ratio_ci(a, b, seed=1)[1:] != ratio_ci(a, b, seed=0)[1:]


def test_ratio_ci_resamples_in_bounded_chunks(monkeypatch):
    """The bootstrap holds at most _MAX_BOOT_CELLS values at once; chunking does not change the result.

    (It was a wall-time threshold, which a loaded machine fails: timings belong in benchmarks/.)
    """
    import device_bench.stats as module

    a, b = _latencies(1), _latencies(2)
    whole = ratio_ci(a, b, n_boot=2000)
    sizes = []
    original = module._boot_medians

    class Recording:
        def __init__(self, rng):
            self.rng = rng

        def integers(self, low, high, size):
            sizes.append(int(np.prod(size)))
            return self.rng.integers(low, high, size=size)

    def spy(values, n_boot, rng):
        return original(values, n_boot, Recording(rng))

    monkeypatch.setattr(module, "_MAX_BOOT_CELLS", 50_000)
    monkeypatch.setattr(module, "_boot_medians", spy)
    chunked = ratio_ci(a, b, n_boot=2000)
    assert max(sizes) <= 50_000 and chunked[0] == whole[0]
    assert chunked[1] == pytest.approx(whole[1], rel=0.02) and chunked[2] == pytest.approx(whole[2], rel=0.02)


def test_ratio_ci_wider_confidence_gives_wider_interval():
    a, b = _latencies(1), _latencies(2)
    _, low_90, high_90 = ratio_ci(a, b, confidence=0.90)
    _, low_99, high_99 = ratio_ci(a, b, confidence=0.99)
    assert low_99 < low_90 and high_90 < high_99


@pytest.mark.parametrize("a, b, kwargs, message", [
    ([1.0] * 5, [1.0] * 10, {}, "a_us needs at least 6"),
    ([1.0] * 10, [1.0] * 5, {}, "b_us needs at least 6"),
    ([0.0] * 10, [1.0] * 10, {}, "median of a_us"),
    ([1.0] * 10, [1.0] * 10, {"n_boot": 10}, "n_boot"),
    ([1.0] * 10, [1.0] * 10, {"confidence": 95}, "confidence"),
])
def test_ratio_ci_rejects_bad_input(a, b, kwargs, message):
    with pytest.raises(StatsError, match=message):
        ratio_ci(a, b, **kwargs)


@pytest.mark.parametrize("ratio, low, high, kwargs, expected", [
    (1.20, 1.10, 1.30, {}, "regression"),
    (1.40, 1.20, 1.60, {}, "regression"),  # wide, but wholly above 1.05: conclusive
    (0.80, 0.75, 0.85, {}, "improvement"),
    (1.00, 0.98, 1.02, {}, "unchanged"),
    (1.04, 1.00, 1.08, {}, "unchanged"),  # straddles 1.05: not a conclusive regression
    (1.00, 0.90, 1.15, {}, "noisy"),  # width 0.25 > 2 * 0.05
    (1.00, 0.90, 1.15, {"max_width": 0.3}, "unchanged"),
    (1.08, 1.06, 1.10, {"threshold": 0.10}, "unchanged"),
    (1.00, 1.00, 1.00, {}, "unchanged"),
])
def test_verdict(ratio, low, high, kwargs, expected):
    assert verdict(ratio, low, high, **kwargs) == expected
    assert expected in stats.VERDICTS


def test_verdict_of_ratio_ci_end_to_end():
    samples = _latencies()
    assert verdict(*ratio_ci(samples, 1.5 * samples)) == "regression"
    assert verdict(*ratio_ci(samples, 0.5 * samples)) == "improvement"
    assert verdict(*ratio_ci(samples, samples)) == "unchanged"


@pytest.mark.parametrize("args, kwargs", [
    ((1.0, 1.1, 0.9), {}),  # low > high
    ((float("nan"), 0.9, 1.1), {}),
    ((1.0, 0.0, 1.1), {}),
    ((1.0, 0.9, 1.1), {"threshold": 0.0}),
    ((1.0, 0.9, 1.1), {"max_width": -1.0}),
])
def test_verdict_rejects_bad_input(args, kwargs):
    with pytest.raises(StatsError):
        verdict(*args, **kwargs)
