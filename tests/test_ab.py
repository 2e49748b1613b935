"""`mnbench ab`: round design, the Wilcoxon/Hodges-Lehmann interval, injected runners, the host runner."""

import json

import numpy as np
import pytest

from device_bench import stats
from device_bench.ab import (
    ABError,
    ABSettings,
    Measurement,
    paired_ratio_ci,
    round_orders,
    run_ab,
    signed_rank_lower_index,
)
from mnbench.report.markdown import ab_markdown

from .test_compare import run


def fake_runner(scale_b=1.0, jitter=0.0, seed=0):
    """Deterministic stand-in for fresh processes: records the call order."""
    rng = np.random.default_rng(seed)
    calls = []

    def measure(model, threads):
        calls.append(model.name)
        base = 1000.0 * (scale_b if model.name.startswith("b") else 1.0)
        return Measurement(base * float(np.exp(rng.normal(0, jitter))) if jitter else base)

    return measure, calls


def test_critical_values_match_the_published_wilcoxon_table():
    # two-sided 5 % critical values T for n = 6..15 (Hollander & Wolfe, Table A.4); C = T + 1
    table = {6: 0, 7: 2, 8: 3, 9: 5, 10: 8, 11: 10, 12: 13, 13: 17, 14: 21, 15: 25}
    assert {n: signed_rank_lower_index(n, 0.95) - 1 for n in table} == table
    assert signed_rank_lower_index(5, 0.95) is None
    assert signed_rank_lower_index(101, 0.95) == pytest.approx(signed_rank_lower_index(100, 0.95) + 40, abs=5)


def test_paired_interval_on_synthetic_medians():
    a = 1000 * np.random.default_rng(3).lognormal(0, 0.05, 12)
    assert paired_ratio_ci(a, a) == (1.0, 1.0, 1.0)
    ratio, low, high = paired_ratio_ci(a, 2 * a)
    assert ratio == pytest.approx(2.0) and low == pytest.approx(2.0) and high == pytest.approx(2.0)
    ratio, low, high = paired_ratio_ci(a, a * np.random.default_rng(4).lognormal(0, 0.03, 12))
    assert low < ratio < high and low < 1 < high
    with pytest.raises(stats.StatsError, match="at least 6"):
        paired_ratio_ci(a[:5], a[:5])
    with pytest.raises(stats.StatsError, match="one A and one B"):
        paired_ratio_ci(a, a[:-1])


def test_rounds_alternate_and_each_model_runs_once_per_round(small_and_big, tmp_path):
    a = tmp_path / "a.tflite"
    b = tmp_path / "b.tflite"
    a.write_bytes(small_and_big[0].read_bytes())
    b.write_bytes(small_and_big[0].read_bytes())
    runner, calls = fake_runner()
    seen = []
    result = run_ab(a, b, ABSettings(rounds=6), runner=runner, on_round=seen.append)
    assert round_orders(4) == ["AB", "BA", "AB", "BA"]
    assert calls == ["a.tflite", "b.tflite", "b.tflite", "a.tflite"] * 3
    assert [item.order for item in seen] == ["AB", "BA"] * 3
    assert result.verdict == "unchanged" and (result.ratio, result.ci_low, result.ci_high) == (1.0, 1.0, 1.0)


def test_injected_runner_verdicts(small_and_big, tmp_path):
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    for path in (a, b):
        path.write_bytes(small_and_big[0].read_bytes())
    verdicts = {}
    for name, scale in (("same", 1.0), ("slower", 2.0), ("faster", 0.5)):
        verdicts[name] = run_ab(a, b, ABSettings(rounds=8), runner=fake_runner(scale, jitter=0.01)[0]).verdict
    assert verdicts == {"same": "unchanged", "slower": "regression", "faster": "improvement"}
    noisy = run_ab(a, b, ABSettings(rounds=8), runner=fake_runner(1.0, jitter=0.3, seed=2)[0])
    assert noisy.verdict == "noisy" and noisy.ci_high - noisy.ci_low > 0.1


def test_phone_target_without_runner_and_bad_settings(small_and_big, tmp_path):
    with pytest.raises(ABError, match="not implemented yet"):
        run_ab(small_and_big[0], small_and_big[1], target="8A1X0")
    with pytest.raises(ABError, match="rounds must be an integer >= 6"):
        ABSettings(rounds=5)
    a, b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    for path in (a, b):
        path.write_bytes(small_and_big[0].read_bytes())
    result = run_ab(a, b, ABSettings(rounds=6), target="8A1X0",
                    runner=fake_runner(3.0)[0])  # a phone runner is injectable
    assert result.verdict == "regression" and result.target_desc == {"serial": "8A1X0"}


def test_ab_cli_four_times_the_work_is_a_regression(small_and_big):
    small, big = map(str, small_and_big)
    code, out, err = run("ab", small, big, "--engine", "rounds", "--rounds", "6", "--min-secs", "0.05",
                         "--runs", "10", "--json")
    data = json.loads(out)
    assert code == 1 and "latency gate failed" in err and err.count("\n") == 1
    assert data["verdict"] == "regression" and data["ci_low"] > 1.05
    assert data["ci_low"] <= data["ratio"] <= data["ci_high"]
    assert [r["order"] for r in data["rounds"]] == ["AB", "BA"] * 3 and data["sample_level"]["ratio"] > 1
    assert data["model_a"].startswith("v3-small_a0.35_r64") and data["target_desc"]["cores"] >= 1


def test_ab_cli_human_output_markdown_and_fail_on_never(small_and_big, tmp_path, monkeypatch):
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    small, big = map(str, small_and_big)
    code, out, err = run("ab", big, small, "--engine", "rounds", "--rounds", "6", "--min-secs", "0.05",
                         "--runs", "10", "--fail-on", "never", "--markdown", str(tmp_path / "ab.md"))
    assert code == 0 and err == "" and "B/A = " in out and "improvement" in out
    text = (tmp_path / "ab.md").read_text()
    assert text.startswith("### A/B latency") and "| 6 | BA |" in text and summary.read_text() == text


def test_ab_bad_input_is_one_line_exit_2(small_and_big, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(small_and_big[0].read_bytes()[:2000])
    cases = [([str(tmp_path / "missing.tflite"), str(small_and_big[0])], "does not exist"),
             ([str(truncated), str(small_and_big[0])], "LiteRT cannot load"),
             ([str(small_and_big[0])] * 2 + ["--engine", "rounds", "--target", "8A1X0"],
              "not implemented yet"),
             ([str(small_and_big[0])] * 2 + ["--rounds", "3"], "3 is not in the range")]
    for args, message in cases:
        code, out, err = run("ab", *args)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (args, err)


def test_markdown_of_a_result(small_and_big):
    result = run_ab(small_and_big[0], small_and_big[0], ABSettings(rounds=6), runner=fake_runner()[0])
    text = ab_markdown(result)
    assert "⚪ **unchanged**" in text and "| 6 | BA | 1.000 | 1.000 | 1.000 |" in text
    assert text.count("\n| ") == 8  # header, rule, 6 rounds
