"""``mnbench adapt`` end to end on a tiny model and tiny data, and its bad-input errors.

The run is real: probe models exported and timed with ``mnbench profile``'s slices on this host, proposals
fine-tuned, the chosen one measured whole, a long fine-tune, then export and info of the result.
"""

import csv
import json
import re
from pathlib import Path

import pytest

from tests.loopback_adb.fixtures import FAKE_BENCHMARK

from .test_accuracy import make_shapes
from tests.helpers import run_cli as run


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("adapt") / "train", 12, seed=3)


@pytest.mark.parametrize("extra, message", [
    ([], "one of --budget-ms and --budget-ratio"),
    (["--budget-ms", "1", "--budget-ratio", "0.5"], "one of --budget-ms and --budget-ratio"),
    (["--budget-ratio", "0.5", "--step", "0"], "--step"),
    (["--budget-ratio", "1.5"], "--budget-ratio"),
])
def test_bad_options_are_one_line_and_exit_2(shapes, tmp_path, extra, message):
    code, _, stderr = run("adapt", "--version", "v3-small", "--data", str(shapes),
                          "--out", str(tmp_path / "o"), *extra)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_an_out_folder_with_files_is_refused(shapes, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, stderr = run("adapt", "--version", "v3-small", "--data", str(shapes), "--budget-ratio", "0.9",
                          "--out", str(tmp_path))
    assert code == 2 and "--force" in stderr and (tmp_path / "keep.txt").read_text() == "mine"


@pytest.mark.slow
def test_adapt_meets_a_host_budget_and_its_output_exports(shapes, tmp_path, adb_home, loopback_device):
    out = tmp_path / "adapted"
    code, stdout, stderr = run("adapt", "--version", "v3-small", "--alpha", "0.35", "--resolution", "32",
                               "--data", str(shapes), "--budget-ratio", "0.85", "--quant", "fp32",
                               "--step", "0.2",
                               "--short-steps", "1", "--max-proposals", "2", "--long-epochs", "1",
                               "--batch-size", "16", "--confirm-secs", "5", "--lut-cache",
                               str(tmp_path / "lut"), "--out", str(out), "--quiet")
    assert code == 0, stderr
    result = json.loads((out / "adapt.json").read_text())
    confirmation = result["confirmation"]      # adapted against start, interleaved, against the budget
    assert confirmation["processes"] >= 3
    assert confirmation["low"] <= confirmation["ratio"] <= confirmation["high"]
    confirmed = confirmation["verdict"] == "under"
    assert result["verdict"].startswith("within the budget, confirmed") == confirmed
    assert (confirmation["verdict"] == "under") == (confirmation["high"] <= confirmation["budget_ratio"])
    assert stdout.startswith(result["verdict"])
    for name in ("adapted.weights.h5", "adapted.weights.json", "trace.csv", "report.md", "adapt.png"):
        assert (out / name).is_file(), name
    assert not (out / ".work").exists()
    with open(out / "trace.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    chosen = [row for row in rows[1:] if row["chosen"] == "1"]
    assert len(chosen) == result["iterations"] >= 1
    assert all(row["latency_measured_ms"] and float(row["latency_s"]) > 0 and float(row["iteration_s"]) > 0
               for row in chosen)
    assert all(float(row["finetune_s"]) > 0 for row in rows[1:])
    for iteration in {row["iteration"] for row in rows[1:]}:    # all proposals meet the target, or none can
        meets = {float(row["latency_estimated_ms"]) <= float(row["latency_target_ms"]) + 1e-9
                 for row in rows[1:] if row["iteration"] == iteration}
        assert len(meets) == 1
    widths = result["config"]["widths"]
    assert widths and json.loads(chosen[-1]["widths"]) == widths
    assert result["macs"]["adapted"] < result["macs"]["start"]
    assert list(json.loads((tmp_path / "lut" / "host_v3-small_fp32_t1.json").read_text())["entries"])
    # the weights carry their per-layer widths: info and export take them like a finetune output
    code, stdout, _ = run("info", "--weights", str(out / "adapted.weights.h5"), "--json")
    assert code == 0 and json.loads(stdout)["widths_set"] == widths
    assert json.loads(stdout)["macs"] == result["macs"]["adapted"]
    code, stdout, stderr = run("export", "--weights", str(out / "adapted.weights.h5"), "--quant", "fp32",
                               "--quant", "int8", "--out", str(tmp_path / "models"), "--json")
    assert code == 0, stderr
    records = json.loads(stdout)
    assert [r["quant"] for r in records] == ["fp32", "int8"]
    assert all(r["config"]["widths"] == widths and r["verification"] for r in records)
    # ... and the exported adapted models run on the loopback phone over the real ADB protocol
    models = [str(tmp_path / "models" / r["file"]) for r in records]
    code, stdout, stderr = run("device", "--serial", loopback_device.serial, *models, "--threads", "1",
                               "--benchmark-binary", str(FAKE_BENCHMARK), "--results", str(tmp_path / "runs"),
                               "--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0", "--json")
    assert code == 0, stderr
    assert [row["status"] for row in json.loads(stdout)] == ["ok", "ok"]


@pytest.mark.slow
def test_ctrl_c_keeps_the_model_chosen_so_far_and_the_trace(shapes, tmp_path):
    """Ctrl-C in the middle of the search: exit 130, and OUT holds the last chosen model (weights and
    configuration) and the trace of every proposal decided before it."""
    import signal

    from .test_faults import start, wait_for

    out, log = tmp_path / "adapted", tmp_path / "stderr.txt"
    process = start(["adapt", "--version", "v3-small", "--alpha", "0.35", "--resolution", "32",
                     "--data", shapes, "--budget-ratio", "0.3", "--quant", "fp32", "--step", "0.05",
                     "--short-steps", "1", "--max-proposals", "2", "--long-epochs", "1", "--batch-size", "16",
                     "--lut-cache", tmp_path / "lut", "--out", out], tmp_path, log)

    def chosen() -> list[dict]:
        if not (out / "trace.csv").is_file():
            return []
        with open(out / "trace.csv", newline="") as file:
            return [row for row in csv.DictReader(file) if row["iteration"] != "0" and row["chosen"] == "1"]

    try:
        wait_for(lambda: chosen() or process.poll() is not None, 900, "a first chosen proposal")
        assert process.poll() is None, log.read_text()
        process.send_signal(signal.SIGINT)
        assert process.wait(120) == 130, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    stderr = log.read_text()
    assert "Traceback" not in stderr and stderr.rstrip().endswith("mnbench: interrupted")
    sidecar = json.loads((out / "adapted.weights.json").read_text())
    note = re.fullmatch(r"interrupted after (\d+) iterations: .*", sidecar["training"]["adapt"])
    assert note, sidecar["training"]["adapt"]
    kept = int(note.group(1))    # the trace may hold one more chosen row: the signal can land in between
    assert kept in (len(chosen()), len(chosen()) - 1)
    expected = json.loads(chosen()[kept - 1]["widths"]) if kept else {}
    code, stdout, _ = run("info", "--weights", str(out / "adapted.weights.h5"), "--json")
    assert code == 0 and json.loads(stdout)["widths_set"] == expected
    assert not (out / "adapt.json").exists()  # no result claims a finished run
    assert not (out / ".work").exists()


class MacsTarget:
    """A stand-in target whose latency is the model's multiply-adds (1 ms per million); from its
    ``fail_at``-th whole-model timing on, ``failure`` is raised (the connection lost, as with a phone
    unplugged mid-search, or a Ctrl-C). Its pair runner (the confirmation's) reports B/A as the Mult-Adds
    ratio times ``bias`` (a target slower on the adapted model than its table says), +-0.5 % between
    processes."""

    name, quant, threads = "macs", "fp32", 1

    def __init__(self, fail_at: int | None = None, failure=None, bias: float = 1.0):
        self.whole_timings, self.fail_at, self.failure, self.bias = 0, fail_at, failure, bias

    def blocks_us(self, config):
        rows = config.cost().rows
        return {layer.name: sum(row.macs for row in rows
                                if row.name == layer.name or row.name.startswith(f"{layer.name}_")) / 1000
                for layer in config.plan().layers}

    def whole_ms(self, configs):
        from device_bench.errors import ConnectionLost

        self.whole_timings += 1
        if self.fail_at is not None and self.whole_timings >= self.fail_at:
            raise (self.failure or ConnectionLost("connection lost: the phone went away"))
        return {name: config.cost().macs / 1e6 for name, config in configs.items()}

    def files(self, configs):
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="macs-"))
        for name, config in configs.items():
            (folder / f"{name}.json").write_text(json.dumps(config.as_dict()))
        return {name: folder / f"{name}.json" for name in configs}

    def pair_runner(self):
        from device_bench.interleave import PairMeasurement
        from mobilenets_tf.config import ModelConfig

        processes = iter(range(10 ** 6))

        def run(a, b, threads, seed):
            macs = [ModelConfig.from_dict(json.loads(Path(path).read_text())).cost().macs for path in (a, b)]
            jitter = 1.005 if next(processes) % 2 else 0.995
            return PairMeasurement((macs[0],) * 2, (macs[1] * self.bias * jitter,) * 2, (True, False))

        return run


def _in_process_config(shapes):
    from mnbench.accuracy import datasets
    from mobilenets_tf import configure

    images = datasets.load(shapes)
    return images, configure("v3-small", 0.35, 32, len(images.class_names))


@pytest.fixture(scope="module")
def start_weights(shapes, tmp_path_factory):
    """The in-process runs' starting model, trained once (1 epoch) for all of them: each run would otherwise
    train the same start first (its Keras fit costs most of a run)."""
    from mnbench.accuracy.finetune import FinetuneOptions, finetune

    images, config = _in_process_config(shapes)
    weights = tmp_path_factory.mktemp("adapt-start") / "start.weights.h5"
    finetune(config, images, weights, options=FinetuneOptions(epochs=1, batch_size=16), force=True)
    return weights


def adapt_in_process(shapes, out: Path, target: MacsTarget, max_iterations: int, pool=None, resume=None,
                     budget_ratio: float = 0.3, *, weights: Path, **options) -> list[str]:
    """``mnbench.adapt.loop.adapt`` of V3-Small 0.35 at 32 px, starting from ``weights``, into ``out``; what
    it logged, in ``logged`` of the exception it raised (as ``error.logged``) or returned."""
    from mnbench.adapt.latency import LatencyTable
    from mnbench.adapt.loop import AdaptOptions, adapt

    images, config = _in_process_config(shapes)
    options = AdaptOptions(**{"step": 0.05, "short_steps": 1, "max_proposals": 1, "long_epochs": 1,
                              "max_iterations": max_iterations, "batch_size": 16, "confirm_secs": 0,
                              **options})
    table = LatencyTable(out.parent / "lut", target.name, "v3-small", "fp32", 1, {})
    logged: list[str] = []
    try:
        adapt(config, images, out, target, table, weights=None if resume else weights,
              budget_ratio=budget_ratio, options=options, progress=False, log=logged.append, pool=pool,
              resume=resume)
    except BaseException as error:
        error.logged = logged
        raise
    return logged


def chosen_rows(out: Path) -> list[dict]:
    with open(out / "trace.csv", newline="") as file:
        return [row for row in csv.DictReader(file) if row["iteration"] != "0" and row["chosen"] == "1"]


def kept(out: Path) -> tuple[str, list, list[dict]]:
    """OUT after a run that did not finish: the model, its sidecar and the trace, nothing else (no .work, no
    adapt.json). Returns the model's note, its per-layer widths as ``mnbench info`` reads them back, and the
    trace's chosen rows after the start."""
    assert sorted(path.name for path in out.iterdir()) == ["adapted.weights.h5", "adapted.weights.json",
                                                            "trace.csv"]
    code, stdout, _ = run("info", "--weights", str(out / "adapted.weights.h5"), "--json")
    assert code == 0
    chosen = chosen_rows(out)
    note = json.loads((out / "adapted.weights.json").read_text())["training"]["adapt"]
    return note, json.loads(stdout)["widths_set"], chosen


@pytest.mark.slow
def test_ctrl_c_in_the_long_fine_tune_keeps_the_chosen_model(shapes, start_weights, tmp_path, monkeypatch):
    """Ctrl-C once the search is over: the chosen model is in OUT (not only in the working folder, which
    goes), described as not long-fine-tuned; no adapt.json claims a finished run."""
    from mnbench.accuracy import finetune as finetune_module

    real_finetune = finetune_module.finetune

    def finetune(config, data, out, weights=None, **kwargs):   # Ctrl-C in the long fine-tune only
        if weights is not None and Path(weights).name == "adapted-short.weights.h5":
            raise KeyboardInterrupt
        return real_finetune(config, data, out, weights=weights, **kwargs)

    monkeypatch.setattr(finetune_module, "finetune", finetune)
    out = tmp_path / "adapted"
    with pytest.raises(KeyboardInterrupt) as raised:
        adapt_in_process(shapes, out, MacsTarget(), max_iterations=1, weights=start_weights)
    note, widths, chosen = kept(out)
    assert note.startswith("after 1 iterations, without the long fine-tune")
    assert raised.value.logged[-1].startswith(f"interrupted: {out / 'adapted.weights.h5'} holds the model of "
                                              "iteration 1, without the long fine-tune")
    assert [row["iteration"] for row in chosen] == ["1"]
    assert widths == json.loads(chosen[0]["widths"]) != {}     # the chosen model, not the starting one


@pytest.mark.slow
def test_a_target_lost_mid_search_keeps_the_model_chosen_so_far(shapes, start_weights, tmp_path):
    """The target fails in the second iteration: the error goes up, OUT holds the first iteration's model."""
    from device_bench.errors import ConnectionLost

    out = tmp_path / "adapted"
    with pytest.raises(ConnectionLost) as raised:     # timings: 1 the start, 2 iteration 1, 3 iteration 2
        adapt_in_process(shapes, out, MacsTarget(fail_at=3), max_iterations=5, weights=start_weights)
    note, widths, chosen = kept(out)
    assert note.startswith("stopped by an error after 1 iterations: the model chosen in iteration 1")
    assert raised.value.logged[-1].startswith(f"stopped by an error: {out / 'adapted.weights.h5'} holds the "
                                              "model of iteration 1")
    assert [row["iteration"] for row in chosen] == ["1"]   # iteration 2 failed measuring its choice
    assert widths == json.loads(chosen[0]["widths"]) != {}


# ---- issue 24: --resume, the confirmation's extra step, Ray ---------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (["--budget-ratio", "0.5"], "--resume continues with the options of the run it resumes"),
    ([], "no interrupted adapt run there"),
])
def test_resume_refuses_new_options_and_a_folder_without_a_run(tmp_path, extra, message):
    code, _, stderr = run("adapt", "--resume", str(tmp_path), *extra)
    assert code == 2 and message in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_a_resumed_run_chooses_what_an_uninterrupted_one_does(shapes, start_weights, tmp_path):
    """Interrupted (Ctrl-C) while measuring iteration 2's choice, then resumed: the same models are chosen,
    in the same order, as by a run never interrupted (every proposal's fine-tune has its own seed)."""
    from mnbench.adapt.loop import resume_state

    whole = tmp_path / "whole"
    adapt_in_process(shapes, whole, MacsTarget(), max_iterations=2, weights=start_weights)
    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):        # timings: 1 the start, 2 iteration 1, 3 iteration 2
        adapt_in_process(shapes, cut, MacsTarget(fail_at=3, failure=KeyboardInterrupt()), max_iterations=2,
                         weights=start_weights)
    assert [row["iteration"] for row in chosen_rows(cut)] == ["1"]
    state = resume_state(cut)
    assert state["state"]["iteration"] == 1
    logged = adapt_in_process(shapes, cut, MacsTarget(), max_iterations=2, resume=state,
                              weights=start_weights)
    assert logged[0].startswith("resuming after iteration 1")
    assert [(row["iteration"], row["widths"], row["short_top1"]) for row in chosen_rows(cut)] == \
        [(row["iteration"], row["widths"], row["short_top1"]) for row in chosen_rows(whole)]
    assert json.loads((cut / "adapt.json").read_text())["config"] == \
        json.loads((whole / "adapt.json").read_text())["config"]
    with pytest.raises(Exception, match="that run finished"):
        resume_state(cut)


@pytest.mark.slow
def test_an_interval_over_the_budget_takes_another_step(shapes, start_weights, tmp_path):
    """The target runs the adapted model 8 % slower than the table says: the search meets the budget by its
    own timings, the confirmation's interval lies over it, adapt steps below the budget until it is under."""
    out = tmp_path / "adapted"
    logged = adapt_in_process(shapes, out, MacsTarget(bias=1.08), max_iterations=10, budget_ratio=0.8,
                              weights=start_weights,
                              step=None, iterations=2, confirm_secs=30, confirm_steps=3)
    result = json.loads((out / "adapt.json").read_text())
    assert result["confirmation"]["verdict"] == "under", logged
    assert result["confirmation"]["high"] <= 0.8
    assert result["verdict"].startswith("within the budget, confirmed")
    over = [line for line in logged if line.startswith("confirmation:") and line.endswith("over")]
    assert over and any(line.startswith("another step") for line in logged)
    budget = result["budget_ms"]
    assert any(float(row["latency_target_ms"]) < budget for row in chosen_rows(out))   # past the budget


@pytest.mark.slow
def test_ray_chooses_the_same_model_as_a_serial_run(shapes, start_weights, tmp_path):
    """--ray auto on a local Ray of 2 CPUs: the proposals are tuned in Ray workers, and every proposal's
    figures and the chosen models are those of the serial run with the same seed."""
    pytest.importorskip("ray", reason="Ray is the 'ray' extra (pip install 'mnbench[ray]')")
    from mnbench.adapt.parallel import RayPool

    adapt_in_process(shapes, tmp_path / "serial", MacsTarget(), max_iterations=1, max_proposals=2,
                     weights=start_weights,
                     short_steps=2)
    pool = RayPool("auto", 2)
    try:
        assert pool.workers == 2
        adapt_in_process(shapes, tmp_path / "ray", MacsTarget(), max_iterations=1, max_proposals=2,
                         weights=start_weights,
                         short_steps=2, pool=pool)
    finally:
        pool.close()

    def figures(out):
        with open(out / "trace.csv", newline="") as file:
            return [(row["iteration"], row["proposal"], row["short_top1"], row["chosen"])
                    for row in csv.DictReader(file)]

    assert figures(tmp_path / "ray") == figures(tmp_path / "serial")
    assert json.loads((tmp_path / "ray" / "adapt.json").read_text())["workers"] == 2
