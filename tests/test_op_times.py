"""Which operators got slower: per-operator times stored with runs, and ``compare`` naming the operator.

The phone logs are real op-profile tables (the project's own era-C log, and a third-party log from
../shared read in place) with one operator type's times multiplied, and the run's latency raised by what
that adds: the case a pull request that slows one kind of operator produces. The host runs are real
``mnbench bench --op-profile`` runs of two real models, the second with a chain of extra MUL operators.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from device_bench import op_times
from device_bench.op_profile import parse_op_profile
from device_bench.parser import parse_log
from device_bench.store import ResultStore, SchemaError, StoreError, row_key
from tests.helpers import run_cli as run
from tests.loopback_adb.fixtures import FAKE_BENCHMARK
from tests.test_device_cli import FAST, OWN_LOG
from tests.test_device_run import tiny_model

REPO = Path(__file__).resolve().parents[1]
SHARED_LOGS = REPO.parent / "shared" / "fixtures" / "benchmark_logs"
OLD_RUNS = REPO / "results" / "baselines" / "host"   # written by mnbench before op times existed
_FIGURE_RE = re.compile(r"\b(first|curr|min|max|avg|median|p5|p95)=(\d+(?:\.\d+)?)")


def shared_log(number: str) -> str:
    if not SHARED_LOGS.is_dir():
        pytest.skip(f"third-party logs not found at {SHARED_LOGS}: the ../shared checkout is absent")
    (path,) = SHARED_LOGS.glob(f"{number}_*.txt")
    return path.read_text(encoding="utf-8", errors="replace")


def slowed(log: str, node_type: str, factor: float) -> str:
    """``log`` with every ``[avg ms]`` cell of ``node_type`` in the regular runs' tables times ``factor``, and
    the regular run's latency figures raised by what that adds per run (read from its summary row)."""
    out, column, regular, in_summary, added_us = [], None, False, False, 0.0
    for line in log.splitlines():
        cells = line.split("\t")
        labels = [cell.strip().lower() for cell in cells]
        regular = regular or "Operator-wise Profiling Info for Regular Benchmark Runs:" in line
        if "[node type]" in labels:
            column, in_summary = labels.index("[avg ms]"), "[count]" in labels
        elif regular and column is not None and len(cells) > column and labels[1] == node_type.lower():
            before = float(cells[column])
            cells[column] = f"{before * factor:.3f}".rjust(len(cells[column]))
            added_us += before * (factor - 1) * 1000 if in_summary else 0.0
            line = "\t".join(cells)
        out.append(line)
    assert added_us > 0, f"no {node_type} row in the log's summary table"
    text = "\n".join(out) + "\n"
    start = text.rindex("count=", 0, text.index("Inference timings in us"))
    end = text.index("\n", start)
    raised = _FIGURE_RE.sub(lambda m: f"{m[1]}={float(m[2]) + added_us:.2f}", text[start:end])
    text = text[:start] + raised + text[end:]
    return re.sub(r"Inference \(avg\): (\d+(?:\.\d+)?)",
                  lambda m: f"Inference (avg): {float(m[1]) + added_us:.2f}", text)


def without_profile(log: str) -> str:
    """What the tool prints for the same run without ``--enable_op_profiling``: no tables."""
    lines = log.splitlines()
    end = next(index for index, line in enumerate(lines) if "Profiling Info for" in line)
    return "\n".join(line for line in lines[:end] if "Enable op profiling" not in line) + "\n"


def tables(log: str) -> dict:
    row = parse_log(log)[-1]
    return op_times.from_benchmark_tables(row["op_profile"], row["op_profile_nodes"])


# ------------------------------------------------------------------------------------------ op times
def test_a_real_profile_with_one_slower_type_names_that_type_and_its_nodes():
    base = shared_log("12")                      # MobileNet V1 quant on an i.MX 8M Plus, 31 nodes
    found = op_times.changes([tables(base)], [tables(slowed(base, "DEPTHWISE_CONV_2D", 3.0))])
    first = found["by_type"][0]
    assert (first["name"], first["baseline_us"]) == ("DEPTHWISE_CONV_2D", pytest.approx(18910.0))
    assert first["change_us"] == pytest.approx(found["change_us"], rel=1e-3)  # ~all of the change
    assert first["share"] == pytest.approx(1.0, abs=1e-3) and first["ratio"] == pytest.approx(3.0, rel=1e-3)
    assert all(abs(entry["change_us"]) < 1 for entry in found["by_type"][1:])
    assert found["nodes_unmatched"] == 0
    assert {entry["type"] for entry in found["by_node"]} == {"DEPTHWISE_CONV_2D"}  # the 10 largest: all DW
    assert found["by_node"][0]["name"] == "[MobilenetV1/MobilenetV1/Conv2d_2_depthwise/Relu6]:3"
    assert "DEPTHWISE_CONV_2D +37.820 ms (x3.00, 100% of the change)" in op_times.summary(found)


def test_a_type_of_the_summary_is_the_sum_of_its_nodes():
    summary, nodes, _ = parse_op_profile(shared_log("12").splitlines())
    found = op_times.from_benchmark_tables(summary, nodes)
    for name, total in found["by_type"].items():
        parts = sum(entry["us"] for entry in found["by_node"].values() if entry["type"] == name)
        assert parts == pytest.approx(total, rel=1e-3), name  # CONV_2D: 143.822 ms over nodes, 143.812


def test_nodes_match_by_name_and_by_name_without_their_index():
    pairs = op_times.match_nodes(["[a]:0", "[b]:1", "[c]:2", "[d]:3", "[d]:4"],
                                 ["[x]:0", "[a]:0", "[b]:2", "[c]:3", "[d]:4", "[d]:5"])
    assert pairs == [("[a]:0", "[a]:0"), ("[b]:1", "[b]:2"), ("[c]:2", "[c]:3"), ("[d]:4", "[d]:4")]


def test_no_changes_without_op_times_on_a_side_or_across_profilers():
    phone = tables(OWN_LOG)
    host = {"source": "mnbench profile", "by_type": {"HARD_SWISH": 431.0}, "by_node": {}}
    assert op_times.changes([phone], []) is None and op_times.changes([], [phone]) is None
    assert op_times.changes([phone], [host]) is None
    with pytest.raises(op_times.OpTimesError, match="different sources"):
        op_times.mean([phone, host])
    with pytest.raises(op_times.OpTimesError, match="by_type"):
        op_times.check({"source": "benchmark_model", "by_type": {"MUL": float("nan")}, "by_node": {}})


# ------------------------------------------------------------------------------------------- store
def test_the_store_keeps_op_times_and_reads_runs_written_before_them(tmp_path):
    old = ResultStore(OLD_RUNS)
    rows = old.load(OLD_RUNS).to_dict("records")
    assert rows and all(old.load_op_times(row) is None for row in rows)

    store = ResultStore(tmp_path)
    row = {"model": "m.tflite", "target": "host", "target_kind": "host", "runtime": "ai-edge-litert 2.3.0",
           "threads": 1, "delegate": "xnnpack", "status": "ok", "count": 50, "median_us": 900.0}
    times = tables(OWN_LOG)
    store.write_run("r1", [row], {}, op_times={row_key(row): times})
    (loaded,) = store.load("r1").to_dict("records")
    assert store.load_op_times(loaded) == times
    with pytest.raises(SchemaError, match="match no row"):
        store.write_run("r2", [row], {}, op_times={"other": times})
    with pytest.raises(SchemaError, match="by_node"):
        store.write_run("r3", [row], {}, op_times={row_key(row): {**times, "by_node": {"n": 1.0}}})
    assert not (tmp_path / "r2").exists() and not (tmp_path / "r3").exists()
    (tmp_path / "r1" / "op_times.json").write_text("{not json")
    with pytest.raises(StoreError, match="cannot read op times"):
        store.load_op_times(loaded)


# ---------------------------------------------------------------------------------- phone, CLI level
PHONE_CASES = {"own": ("HARD_SWISH", 6.0, "xnnpack"), "12": ("DEPTHWISE_CONV_2D", 3.0, "cpu")}


def _phone_log(case: str) -> str:
    log = OWN_LOG if case == "own" else shared_log(case)
    # The fake tool ran our model: drop the lines that name the captured log's own model.
    return "\n".join(line for line in log.splitlines() if "Graph:" not in line and "Loaded model" not in line)


def _device_run(device, log: str, model: Path, results: Path, delegate: str, op_profile: bool = True) -> None:
    device.set_benchmark("custom", stdout=log)
    code, _, err = run("device", "--serial", device.serial, model, "--delegate", delegate,
                       *(["--op-profile"] if op_profile else []), "--benchmark-binary", FAKE_BENCHMARK,
                       "--results", results, *FAST)
    assert code == 0, err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", list(PHONE_CASES))
def test_compare_of_phone_runs_names_the_operator_that_got_slower(case, loopback_device, adb_home, tmp_path):
    node_type, factor, delegate = PHONE_CASES[case]
    base_log = _phone_log(case)
    model = tiny_model(tmp_path / "mnv3.tflite")
    _device_run(loopback_device, base_log, model, tmp_path / "base", delegate)
    _device_run(loopback_device, slowed(base_log, node_type, factor), model, tmp_path / "cur", delegate)
    (stored,) = tmp_path.glob("cur/*/op_times.json")
    (times,) = json.loads(stored.read_text()).values()
    assert times["source"] == "benchmark_model" and node_type in times["by_type"]

    code, out, err = run("compare", tmp_path / "base", tmp_path / "cur")
    assert code == 1 and "regression" in err
    (line,) = [line for line in out.splitlines() if line.startswith("operators that changed most")]
    assert line.split(": ", 1)[1].startswith(f"{node_type} +")
    code, out, _ = run("compare", tmp_path / "base", tmp_path / "cur", "--markdown", "-",
                       "--fail-on", "never")
    assert code == 0 and "**Operators that changed most**" in out
    first_row = next(line for line in out.splitlines() if line.startswith("| type |"))
    assert first_row.startswith(f"| type | `{node_type}` |")
    code, out, _ = run("compare", tmp_path / "base", tmp_path / "cur", "--json", "--fail-on", "never")
    (pair,) = json.loads(out)["pairs"]
    assert pair["verdict"] == "regression" and pair["operators"]["by_type"][0]["name"] == node_type
    assert pair["operators"]["by_type"][0]["share"] > 0.99

    # A baseline run without --op-profile: the verdict stands, and no operator is named.
    _device_run(loopback_device, without_profile(base_log), model, tmp_path / "plain", delegate,
                op_profile=False)
    assert not list(tmp_path.glob("plain/*/op_times.json"))
    code, out, _ = run("compare", tmp_path / "plain", tmp_path / "cur", "--fail-on", "never")
    assert code == 0 and "regression" in out and "operators that changed most" not in out
    assert "per-operator times only on the current side" in out
    code, out, _ = run("compare", tmp_path / "plain", tmp_path / "cur", "--markdown", "-",
                       "--fail-on", "never")
    assert "Operators that changed most" not in out
    (pair,) = json.loads(run("compare", tmp_path / "plain", tmp_path / "cur", "--json", "--fail-on",
                             "never")[1])["pairs"]
    assert pair["verdict"] == "regression" and pair["operators"] is None

    stored.write_text('{"' + next(iter(json.loads(stored.read_text()))) + '": {"source": 1}}')
    code, _, err = run("compare", tmp_path / "base", tmp_path / "cur")
    assert code == 2 and "cannot read op times" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------- host, CLI level
@pytest.fixture(scope="module")
def host_models(tmp_path_factory):
    """The same small network as ``base/m.tflite`` and, behind 12 extra MUL operators on its input
    (``relu6(x * 0.999)``, one fused MUL each), as ``slow/m.tflite``; each built in a fresh Keras session
    with fixed layer names, as two commits of one builder would."""
    import tensorflow as tf

    out = tmp_path_factory.mktemp("op_models")
    for chain, folder in ((0, "base"), (12, "slow")):
        tf.keras.backend.clear_session()
        tf.keras.utils.set_random_seed(0)
        inputs = tf.keras.Input((64, 64, 8), batch_size=1, name="image")
        x = inputs
        for index in range(chain):
            x = tf.keras.layers.ReLU(6.0, name=f"relu{index}")(tf.keras.layers.Rescaling(0.999,
                                                                                         name=f"mul{index}")(x))
        x = tf.keras.layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="conv")(x)
        x = tf.keras.layers.DepthwiseConv2D(3, padding="same", activation="relu", name="dw")(x)
        x = tf.keras.layers.Conv2D(16, 1, activation="relu", name="pw")(x)
        x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
        model = tf.keras.Model(inputs, tf.keras.layers.Dense(10, name="logits")(x))
        (out / folder).mkdir()
        (out / folder / "m.tflite").write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return out / "base" / "m.tflite", out / "slow" / "m.tflite"


@pytest.mark.timeout(300)
def test_compare_of_host_runs_names_the_operator_type_that_got_slower(host_models, tmp_path):
    quick = ["--runs", "20", "--min-secs", "0.2", "--warmup", "1"]
    for model, folder in zip(host_models, ("base", "cur")):
        code, out, err = run("bench", model, "--op-profile", "--results", tmp_path / folder, *quick)
        assert code == 0, err
        assert "operator types: " in out and "CONV_2D" in out
    code, out, _ = run("bench", host_models[0], "--results", tmp_path / "plain", *quick)
    assert code == 0 and not list(tmp_path.glob("plain/*/op_times.json"))
    # A model the profiler cannot cut (no operator): the row stands, without op times, and says why.
    code, _, err = run("bench", tiny_model(tmp_path / "empty.tflite"), "--op-profile", "--results",
                       tmp_path / "empty", *quick)
    assert code == 0 and "no per-operator times: empty.tflite has no operators to profile" in err
    assert list(tmp_path.glob("empty/*/rows.csv")) and not list(tmp_path.glob("empty/*/op_times.json"))

    code, out, _ = run("compare", tmp_path / "base", tmp_path / "cur", "--json", "--fail-on", "never")
    (pair,) = json.loads(out)["pairs"]
    found = pair["operators"]
    assert code == 0 and pair["verdict"] in ("regression", "noisy") and found["source"] == "mnbench profile"
    mul = found["by_type"][0]
    assert mul["name"] == "MUL" and mul["baseline_us"] == 0 and mul["share"] > 0.5
    # The 12 MULs are new; conv, dw, pw, pool and logits match by name though their indices moved by 12.
    assert found["nodes_unmatched"] == 12 and len(found["by_node"]) == 5
    assert {entry["type"] for entry in found["by_node"]} == {"CONV_2D", "DEPTHWISE_CONV_2D", "MEAN",
                                                              "FULLY_CONNECTED"}
    code, out, _ = run("compare", tmp_path / "base", tmp_path / "cur", "--fail-on", "never")
    (line,) = [line for line in out.splitlines() if line.startswith("operators that changed most")]
    assert line.split(": ", 1)[1].startswith("MUL +") and "(new, " in line
    code, out, _ = run("compare", tmp_path / "base", tmp_path / "cur", "--markdown", "-",
                       "--fail-on", "never")
    assert "| type | `MUL` | 0.000 |" in out and "12 node(s) found on one side only" in out

    code, out, _ = run("compare", tmp_path / "plain", tmp_path / "cur", "--json", "--fail-on", "never")
    (pair,) = json.loads(out)["pairs"]
    assert pair["operators"] is None and "per-operator times only on the current side" in pair["notes"]


# ----------------------------------------------------------------------------------------- history
def test_history_regressions_name_the_operator_of_a_step(db_url, tmp_path):
    from tests.history_support import write_history

    base, slow = tables(OWN_LOG), tables(slowed(OWN_LOG, "HARD_SWISH", 6.0))
    root = tmp_path / "runs"
    # Two early commits measured before op times were stored, then op profiles; HARD_SWISH slows at 6.
    write_history(root, [8500.0] * 6 + [10650.0] * 4, op_times=[None, None] + [base] * 4 + [slow] * 4)
    # Another model steps up too, with no op times anywhere: its step names no operator.
    write_history(root, [4000.0] * 5 + [5000.0] * 5, model="v3-small_a1.00_r224_fp32.tflite", seed=3)
    code, out, _ = run("history", "ingest", root, "--db", db_url)
    assert code == 0 and out.startswith("20 run(s) added")
    code, out, _ = run("history", "ingest", root, "--db", db_url, "--verify")  # op times in the digest
    assert code == 0 and "0 run(s) added" in out

    code, out, _ = run("history", "regressions", "--db", db_url, "--json")
    steps = {item["series"].split(" ")[0]: item for item in json.loads(out)}
    assert code == 1 and set(steps) == {"v3-small_a1.00_r224_int8.tflite", "v3-small_a1.00_r224_fp32.tflite"}
    found = steps["v3-small_a1.00_r224_int8.tflite"]["operators"]
    assert steps["v3-small_a1.00_r224_int8.tflite"]["commit_range"] == "c005..c006"
    assert found["by_type"][0]["name"] == "HARD_SWISH" and found["by_type"][0]["share"] > 0.99
    assert steps["v3-small_a1.00_r224_fp32.tflite"]["operators"] is None
    code, out, _ = run("history", "regressions", "--db", db_url)
    (line,) = [line for line in out.splitlines() if line.startswith("operators that changed most")]
    assert "int8.tflite" in line and "at c005..c006: HARD_SWISH +" in line


@pytest.mark.timeout(300)
def test_ab_with_op_profile_names_the_operator_type_that_got_slower(host_models, tmp_path):
    model_a, model_b = host_models
    code, out, _ = run("ab", model_a, model_b, "--op-profile", "--max-secs", "10", "--runs", "10",
                       "--min-secs", "0.1", "--fail-on", "never", "--markdown", tmp_path / "ab.md", "--json")
    result = json.loads(out)
    assert code == 0 and result["verdict"] in ("regression", "noisy")
    assert result["operators"]["by_type"][0]["name"] == "MUL" and result["operators"]["nodes_unmatched"] == 12
    markdown = (tmp_path / "ab.md").read_text()
    assert "**Operators that changed most**: B against A" in markdown
    assert "| type | `MUL` | 0.000 |" in markdown
    code, out, _ = run("ab", model_a, model_b, "--max-secs", "5", "--fail-on", "never", "--json")
    assert code == 0 and "operators" not in json.loads(out)
    code, _, err = run("ab", model_a, model_b, "--target", "R58M123", "--op-profile")
    assert code == 2 and "mnbench device --op-profile" in err and err.count("\n") == 1
