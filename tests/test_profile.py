"""Profiling slices: they partition the model, and each computes exactly what the whole model computes."""

import numpy as np
import pytest

from device_bench.host import HostParams
from device_bench.profile import FOOTPRINT_SLACK, SLICES_PER_SESSION, profile, sessions
from device_bench.slices import ELEMENTWISE, bundle, cut, footprint, groups, layers, op_name, slice_graph, \
    weight_bytes, whole_footprint
from device_bench.tflite_file import open_interpreter, tree as model_tree
from export.pipeline import ExportRequest, export
from export.quantization import Quant
from mobilenets_tf import configure

from .test_cli_models import run


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    out = tmp_path_factory.mktemp("profile")
    record = export(ExportRequest(configure("v3-small", 0.35, 64), Quant.INT8, calib_samples=4, verify=False),
                    out)
    return out / record["file"]


def test_blocks_partition_the_operators(int8_model):
    tree = model_tree(int8_model.read_bytes())
    blocks = groups(tree, "block")
    labels = [label for label, _ in blocks]
    assert labels[:2] == ["stem", "block01"] and labels[-1] == "logits" and "other" not in labels
    indices = sorted(i for _, ops in blocks for i in ops)
    assert indices == list(range(len(tree.subgraphs[0].operators)))
    assert len(groups(tree, "op")) == len(indices)


def _whole_run(data: bytes, seed: int):
    """The whole model run on a random int8 image, every tensor kept."""
    whole = open_interpreter(data, preserve_all_tensors=True)
    x = np.random.default_rng(seed).integers(-128, 128, whole.get_input_details()[0]["shape"]).astype(np.int8)
    whole.set_tensor(whole.get_input_details()[0]["index"], x)
    whole.invoke()
    return whole


def test_a_slice_computes_what_the_whole_model_computes(int8_model):
    data = int8_model.read_bytes()
    whole = _whole_run(data, seed=0)
    tree = model_tree(data)
    for label, indices in groups(tree, "block")[3:6]:
        part = open_interpreter(cut(tree, indices))
        for detail in part.get_input_details():
            part.set_tensor(detail["index"], whole.get_tensor(detail["index"]))
        part.invoke()
        for detail in part.get_output_details():
            np.testing.assert_array_equal(part.get_tensor(detail["index"]), whole.get_tensor(detail["index"]),
                                          err_msg=label)


def test_layers_join_elementwise_operators_to_their_producer(int8_model):
    tree = model_tree(int8_model.read_bytes())
    operators = tree.subgraphs[0].operators
    chains = layers(tree)
    assert sorted(i for chain in chains for i in chain) == list(range(len(operators)))
    producer = {t: i for i, op in enumerate(operators) for t in op.outputs}
    for chain in chains:
        assert chain == sorted(chain)
        for index in chain[1:]:
            assert op_name(tree, operators[index]) in ELEMENTWISE
            assert any(producer.get(t) in chain for t in operators[index].inputs)
    names = [[op_name(tree, operators[i]) for i in chain] for chain in chains]
    hswish = [chain for chain in names if chain[:3] == ["CONV_2D", "ADD", "MUL"]]
    assert hswish, "a convolution followed by its decomposed h-swish is one layer"
    assert [label for label, _ in groups(tree, "layer")] == [f"{c[0]}:{n[0]}" for c, n in zip(chains, names)]


def _run_subgraph(interpreter, index, tensors):
    wrapper = interpreter._interpreter
    wrapper.AllocateTensors(index)
    for tensor, value in tensors.items():
        wrapper.SetTensor(tensor, value, index)
    wrapper.Invoke(index)
    return wrapper


def test_every_subgraph_of_the_bundle_computes_what_the_whole_model_computes(int8_model):
    from ai_edge_litert.interpreter import Interpreter

    data = int8_model.read_bytes()
    whole = _whole_run(data, seed=1)
    tree = model_tree(data)
    slices = [indices for _, indices in groups(tree, "layer")]
    model, inputs = bundle(tree, slices)
    interpreter = Interpreter(model_content=model)
    assert interpreter._interpreter.NumSubgraphs() == len(slices) + 1 and len(inputs) == len(slices) + 1
    a, b = np.arange(8, dtype=np.float32)[None], np.full((1, 8), 0.5, np.float32)
    floor = _run_subgraph(interpreter, 0, dict(zip(inputs[0], (a, b))))
    np.testing.assert_array_equal(floor.GetTensor(2, 0), a + b)
    for position, indices in enumerate(slices):
        subgraph = position + 1
        wrapper = _run_subgraph(interpreter, subgraph, {t: whole.get_tensor(t) for t in inputs[subgraph]})
        outputs = slice_graph(tree, indices).outputs
        assert len(outputs) >= 1
        for tensor in outputs:
            np.testing.assert_array_equal(wrapper.GetTensor(tensor, subgraph), whole.get_tensor(tensor),
                                          err_msg=f"slice {indices}")


def test_sessions_cover_the_slices_in_order_within_the_budget(int8_model):
    tree = model_tree(int8_model.read_bytes())
    everything = list(range(len(tree.subgraphs[0].operators)))
    weights = weight_bytes(tree, everything)
    assert 0 < weights <= sum(len(b.data) for b in tree.buffers if b.data is not None)
    assert weights < footprint(tree, everything) <= whole_footprint(tree)
    prefixes = [chain[:k] for chain in layers(tree) for k in range(1, len(chain) + 1)]
    blocks = [indices for _, indices in groups(tree, "block")]
    assert sum(weight_bytes(tree, p) for p in prefixes) > weights, "prefixes repeat the layers' weights"
    budget = FOOTPRINT_SLACK * whole_footprint(tree)
    for slices in (prefixes, blocks):
        runs = sessions(tree, slices)
        assert [p for group in runs for p in group] == list(range(len(slices)))
        assert max(len(group) for group in runs) <= SLICES_PER_SESSION
        assert len(runs) >= sum(footprint(tree, p) for p in slices) / budget
    assert len(sessions(tree, prefixes)) >= len(prefixes) / SLICES_PER_SESSION > 1


QUICK = HostParams(runs=5, min_secs=0.0, warmup=1, warmup_min_secs=0.0)


@pytest.mark.parametrize("by", ["block", "layer", "op"])
def test_profile_report(int8_model, by):
    report = profile(int8_model, by=by, params=QUICK)
    tree = model_tree(int8_model.read_bytes())
    rows = report["slices"]
    assert report["whole_us"] > 0 and report["floor_us"] > 0
    assert report["sum_us"] == pytest.approx(sum(row["median_us"] for row in rows) + report["floor_us"])
    assert report["sum_over_whole"] == pytest.approx(report["sum_us"] / report["whole_us"])
    assert report["sessions"] >= 1
    if by == "op":
        count = len(tree.subgraphs[0].operators)
        assert [int(row["slice"].split(":")[0]) for row in rows] == list(range(count))
        assert sum(report["by_op_type"].values()) == pytest.approx(report["sum_us"] - report["floor_us"])
        assert {"CONV_2D", "DEPTHWISE_CONV_2D"} <= set(report["by_op_type"])
        assert {row["layer"] for row in rows} == {label for label, _ in groups(tree, "layer")}
    else:
        assert [row["slice"] for row in rows] == [label for label, _ in groups(tree, by)]


def test_rounds_worker_times_every_subgraph(int8_model, tmp_path):
    from device_bench.host import run_worker

    tree = model_tree(int8_model.read_bytes())
    slices = [indices for _, indices in groups(tree, "block")]
    model, inputs = bundle(tree, slices)
    (tmp_path / "b.tflite").write_bytes(model)
    result = run_worker(tmp_path / "b.tflite", 1,
                        HostParams(runs=7, min_secs=0.0, warmup=1, warmup_min_secs=0.0), inputs)
    assert result["ok"], result
    assert len(result["samples_us"]) == len(slices) + 1
    assert {len(samples) for samples in result["samples_us"]} == {7}
    assert all(us > 0 for samples in result["samples_us"] for us in samples)


def test_profile_cli_and_phone_target(int8_model, tmp_path):
    code, out, _ = run("profile", str(int8_model), "--by", "layer")
    assert code == 0 and "sum of slices" in out and "invoke floor" in out and "2:CONV_2D" in out
    code, out, _ = run("profile", str(int8_model), "--by", "op")
    assert code == 0 and "adds to its layer" in out and "layer" in out.splitlines()[0]
    code, _, err = run("profile", str(int8_model), "--target", "R58M123")
    assert code != 0 and "mnbench device" in err
    (tmp_path / "bad.tflite").write_bytes(b"not a model")
    code, _, err = run("profile", str(tmp_path / "bad.tflite"))
    assert code != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1
