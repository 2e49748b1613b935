"""The interleaved A/B engine: the stopping rule's error rates on simulated streams, interval coverage on
synthetic data with known ratios, the per-process estimate, the engine with an injected runner, the real
paired worker, noise readings and `mnbench ab` end to end. No timing thresholds: the statistics tests run
on simulated numbers with fixed seeds."""

import json
import math

import numpy as np
import pytest

from device_bench import noise, sequential
from device_bench.host import HostParams, run_pair_worker
from device_bench.interleave import GateSettings, PairMeasurement, hodges_lehmann, process_log_ratio, run_gate
from mnbench.report.markdown import gate_markdown

from .test_compare import run

ALARMS = ("regression", "improvement")


def simulate(stream, threshold, alpha=0.05, max_processes=57, honest=True):
    """Feeds one stream to the stopping rule; returns (verdict or None, final interval)."""
    test = sequential.SequentialTest(threshold, alpha)
    for value in stream[:max_processes]:
        if honest:
            test.add(value)
        else:  # the naive rule: the same looks, each at the full 1 - alpha
            test.values.append(float(value))
            if sequential.look_index(len(test.values)) is not None:
                interval = sequential.look_interval(test.values, 1, alpha * 2)  # alpha_1 = alpha / 2
                test.interval = interval
                test.verdict = sequential.decide(interval.low, interval.high, threshold)
        if test.verdict is not None:
            return test.verdict, test.interval
    return None, test.finish() if honest else test.interval


def test_alpha_spending_sums_to_alpha_and_looks_are_geometric():
    assert sum(sequential.spent_alpha(k, 0.05) for k in range(1, 10_000)) == pytest.approx(0.05, rel=1e-3)
    assert sequential.LOOKS[:6] == (5, 8, 11, 17, 25, 38)
    assert sequential.look_index(8) == 2 and sequential.look_index(9) is None
    assert sequential.decide(1.03, 1.2, 0.02) == "regression"
    assert sequential.decide(0.9, 0.97, 0.02) == "improvement"
    assert sequential.decide(0.99, 1.01, 0.02) == "unchanged" and sequential.decide(0.99, 1.03, 0.02) is None


@pytest.mark.parametrize("shape", ["normal", "heavy-tailed"])
def test_a_a_false_alarm_rate_of_the_stopping_rule_is_at_most_alpha(shape):
    """A/A streams (true log ratio 0), looked at again and again: alarms stay <= 5 %; the naive rule's do not.

    The band is made tiny (0.1 %), so an alarm is any look whose interval excludes 1: the hardest case.
    """
    rng = np.random.default_rng(14)
    draws = 1000
    if shape == "normal":
        streams = rng.normal(0.0, 0.03, size=(draws, 57))
    else:
        streams = 0.02 * rng.standard_t(3, size=(draws, 57))
    honest = [simulate(row, 0.001)[0] for row in streams]
    naive = [simulate(row, 0.001, honest=False)[0] for row in streams]
    honest_rate = sum(v in ALARMS for v in honest) / draws
    naive_rate = sum(v in ALARMS for v in naive) / draws
    assert honest_rate <= 0.05, honest_rate
    assert naive_rate > 0.07 and naive_rate > 2 * honest_rate, (naive_rate, honest_rate)
    at_gate_threshold = [simulate(row, 0.02)[0] for row in streams[:300]]
    assert sum(v in ALARMS for v in at_gate_threshold) / 300 <= 0.05


@pytest.mark.parametrize("ratio", [1.0, 1.02, 1.05, 1.10])
def test_final_intervals_cover_the_known_ratio(ratio):
    """Synthetic per-process log ratios around a known ratio: the interval reported at the stop covers it."""
    rng = np.random.default_rng(int(ratio * 1000))
    draws, covered, decided = 600, 0, 0
    for _ in range(draws):
        stream = rng.normal(math.log(ratio), 0.03, size=40)
        verdict, interval = simulate(stream, 0.02, max_processes=int(rng.integers(5, 41)))
        covered += interval.low <= ratio <= interval.high
        decided += verdict is not None
    assert covered / draws >= 0.95, covered / draws
    if ratio >= 1.05:
        assert decided / draws > 0.5  # the coverage is not bought by never stopping


def synthetic_pairs(ratio, pairs=400, order_penalty=0.08, jitter=0.05, process_effect=0.0, seed=0,
                    a_first_share=0.5):
    """One process's pairs: B = ratio * A, the second model of each pair slower by ``order_penalty``."""
    rng = np.random.default_rng(seed)
    a_first = rng.random(pairs) < a_first_share
    base = 500.0 * np.exp(rng.normal(0, 0.2, size=pairs))  # load moves both members of a pair alike
    a = base * np.exp(rng.normal(0, jitter, size=pairs)) * np.where(a_first, 1.0, 1 + order_penalty)
    b = ratio * math.exp(process_effect) * base * np.exp(rng.normal(0, jitter, size=pairs)) * np.where(
        a_first, 1 + order_penalty, 1.0)
    return PairMeasurement(tuple(a), tuple(b), tuple(a_first.tolist()))


def test_process_estimate_cancels_the_second_run_penalty_and_the_load():
    for ratio in (1.0, 1.05):
        estimates = [process_log_ratio(synthetic_pairs(ratio, pairs=200, seed=seed)) for seed in range(100)]
        error = np.mean(estimates) - math.log(ratio)
        assert abs(error) < 4 * np.std(estimates) / math.sqrt(len(estimates)) and abs(error) < 0.003
    # with most pairs in one order the plain median of the paired log ratios carries the penalty; ours not
    lopsided = synthetic_pairs(1.0, pairs=400, a_first_share=0.85, seed=3)
    plain = float(np.median(np.log(np.array(lopsided.b_us) / np.array(lopsided.a_us))))
    assert plain > 0.04 and abs(process_log_ratio(lopsided)) < 0.02
    assert hodges_lehmann(np.array([1.0, 2.0, 3.0, 100.0])) == pytest.approx(2.75)
    with pytest.raises(Exception, match="paired samples"):
        process_log_ratio(PairMeasurement((), (), ()))


def synthetic_runner(ratio, process_spread=0.01, seed=0):
    rng = np.random.default_rng(seed)
    calls = []

    def measure(model_a, model_b, threads, process_seed):
        calls.append(process_seed)
        effect = rng.normal(0, process_spread)
        return synthetic_pairs(ratio, pairs=100, process_effect=effect, seed=process_seed)

    return measure, calls


class FakeClock:
    def __init__(self, step):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def test_engine_with_an_injected_runner(small_and_big):
    model = small_and_big[0]
    runner, calls = synthetic_runner(1.3)
    result = run_gate(model, model, GateSettings(threshold=0.05, seed=1), runner=runner)
    assert result.verdict == "regression" and len(result.processes) == sequential.FIRST_LOOK == len(calls)
    assert result.ci_low > 1.05 and result.look == 1 and result.why is None
    assert result.within_process["pairs"] == 500
    assert result.within_process["ratio"] == pytest.approx(1.3, rel=0.05)
    runner, _ = synthetic_runner(1.0, process_spread=0.001)
    assert run_gate(model, model, GateSettings(threshold=0.05, seed=1), runner=runner).verdict == "unchanged"
    # a budget that runs out: "noisy", the interval reached, and one line saying why
    runner, calls = synthetic_runner(1.05, process_spread=0.05)
    result = run_gate(model, model, GateSettings(threshold=0.05, max_secs=10, seed=2), runner=runner,
                      clock=FakeClock(1.0))
    assert result.verdict == "noisy" and len(calls) >= 3 and result.seconds <= 12
    assert "straddles" in result.why and "processes differ by" in result.why and "\n" not in result.why
    text = gate_markdown(result)
    assert "sequential interval" in text and "Why noisy" in text and text.count("\n| ") == len(calls) + 2
    data = result.as_dict()
    assert data["verdict"] == "noisy" and data["engine"] == "interleaved"
    assert len(data["processes"]) == len(calls)


def test_paired_worker_runs_both_models_in_random_order(small_and_big):
    small, big = small_and_big
    params = HostParams(runs=40, min_secs=0.05, warmup=2, warmup_min_secs=0.01)
    result = run_pair_worker(small, big, 1, params, seed=7, block=2)
    assert result["ok"], result.get("error")
    assert len(result["a_us"]) == len(result["b_us"]) == len(result["a_first"]) >= 40
    assert 0 < sum(result["a_first"]) < len(result["a_first"])
    assert min(result["a_us"] + result["b_us"]) > 0
    bad = run_pair_worker(small, small.parent / "missing.tflite", 1, params, seed=7)
    assert not bad["ok"] and "missing" in bad["error"]


def test_noise_readings_and_heavy_load_words():
    before = noise.snapshot()
    sum(i * i for i in range(200_000))
    reading = noise.between(before, noise.snapshot())
    for value in (reading.busy, reading.other_cpu, reading.steal):
        assert value is None or 0 <= value <= 1
    quiet = noise.Noise(1.0, 0.5, 2, 0.3, 0.1, 0.0, None)
    assert noise.heavy(quiet) is None
    busy = noise.Noise(1.0, 5.0, 2, 1.0, 0.8, 0.1, None)
    assert noise.heavy(busy) == ("other processes used 80% of the CPU, the hypervisor stole 10%, "
                                 "load 5.0 on 2 cores")


def test_ab_cli_interleaved_engine_end_to_end(small_and_big):
    small, big = map(str, small_and_big)
    code, out, err = run("ab", small, big, "--max-secs", "20", "--min-secs", "0.1", "--json")
    data = json.loads(out)
    assert data["engine"] == "interleaved" and data["verdict"] == "regression" and code == 1
    assert data["ci_low"] <= data["ratio"] <= data["ci_high"] and len(data["processes"]) >= 3
    assert "latency gate failed" in err and err.count("\n") == 1
    code, out, err = run("ab", small, small, "--max-secs", "1", "--min-secs", "0.05", "--fail-on", "never")
    assert code == 0 and "B/A = " in out and "sequential interval" in out and "process" in out
    assert ("why noisy: " in out) == ("): noisy" in out)


def test_ab_cli_bad_input_is_one_line_exit_2(small_and_big, tmp_path):
    cases = [([str(tmp_path / "missing.tflite"), str(small_and_big[0])], "does not exist"),
             ([str(small_and_big[0])] * 2 + ["--max-secs", "0"], "max-secs"),
             ([str(small_and_big[0])] * 2 + ["--engine", "magic"], "magic")]
    for args, message in cases:
        code, out, err = run("ab", *args)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (args, err)


def test_phone_target_alternates_the_two_models_on_the_loopback_device(small_and_big, loopback_device,
                                                                       adb_key, tmp_path):
    """`--target SERIAL`: benchmark_model runs of A and B in random order on the (loopback) phone."""
    from tests.loopback_adb.fixtures import FAKE_BENCHMARK
    import shutil

    from tests.test_device_run import FAST, direct_connect

    from device_bench.interleave import phone_pair_runner

    model_a, model_b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    shutil.copy(small_and_big[0], model_a)
    shutil.copy(small_and_big[1], model_b)
    runner = phone_pair_runner(loopback_device.serial, "cpu", FAST, FAKE_BENCHMARK, tmp_path / "runs",
                               connect=direct_connect(adb_key))
    result = run_gate(model_a, model_b, GateSettings(threshold=0.05, seed=3), loopback_device.serial, runner)
    calls = [json.loads(line)["argv"][0] for line in
             loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    firsts = [calls[i].endswith("/a.tflite") for i in range(0, len(calls), 2)]
    assert len(calls) == 2 * len(result.processes) >= 2 * sequential.FIRST_LOOK
    assert {calls[i].rsplit("/", 1)[1] for i in range(len(calls))} == {"a.tflite", "b.tflite"}
    assert any(firsts) and not all(firsts)  # both orders ran
    # the fake tool reports the same figures for every model: B/A is exactly 1
    assert result.ratio == 1.0 and result.verdict == "unchanged" and result.target == loopback_device.serial
    assert all(item.heavy is None for item in result.processes)  # the host's load is not the phone's
    with pytest.raises(Exception, match="different file names"):
        run_gate(model_a, model_a, GateSettings(), loopback_device.serial, runner)


def test_ab_command_on_the_loopback_phone(small_and_big, loopback_device, adb_home, tmp_path):
    """`mnbench ab --target SERIAL` from the command line: the default engine alternates A and B on the
    phone (benchmark_model over the real ADB protocol), stores the runs and gives a verdict."""
    import shutil

    from tests.loopback_adb.fixtures import FAKE_BENCHMARK

    model_a, model_b = tmp_path / "a.tflite", tmp_path / "b.tflite"
    shutil.copy(small_and_big[0], model_a)
    shutil.copy(small_and_big[1], model_b)
    phone = ["--target", loopback_device.serial, "--benchmark-binary", str(FAKE_BENCHMARK),
             "--results", str(tmp_path / "runs"), "--runs", "3", "--min-secs", "0"]
    code, out, err = run("ab", str(model_a), str(model_b), *phone, "--seed", "5", "--json")
    assert code == 0, err
    result = json.loads(out)
    calls = [json.loads(line)["argv"][0].rsplit("/", 1)[1] for line in
             loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()]
    assert result["engine"] == "interleaved" and result["target"] == loopback_device.serial
    assert len(calls) == 2 * len(result["processes"]) >= 2 * sequential.FIRST_LOOK
    assert sorted(calls[:2]) == ["a.tflite", "b.tflite"] and calls[0::2] != [calls[0]] * (len(calls) // 2)
    # the fake tool prints the same figures for every model, so B/A is exactly 1
    assert result["ratio"] == 1.0 and result["verdict"] == "unchanged"
    assert len(list((tmp_path / "runs").glob("*/rows.csv"))) == len(result["processes"])  # runs stored
    code, out, err = run("ab", str(model_a), str(model_a), *phone)
    assert code == 2 and out == "" and "different file names" in err and err.count("\n") == 1
