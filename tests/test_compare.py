"""`mnbench compare`: pairing, verdicts on synthetic samples, targets, Markdown/JSON output, bad input."""

import contextlib
import io
import json

import numpy as np
import pytest

from device_bench import stats
from device_bench.compare import CompareError, CompareSettings, compare, model_identity, target_identity
from device_bench.store import ResultStore, row_key
from mnbench.cli import cli, main
from mnbench.commands.compare import Fraction
from mnbench.report.markdown import markdown_table
from mobilenets_tf import configure

HOST = {"cpu": "AMD EPYC 7B13", "cores": 2, "machine": "x86_64", "os": "Linux", "python": "3.11",
        "hostname": "vm"}
OTHER_HOST = {**HOST, "cpu": "Intel Xeon 8272CL", "hostname": "runner-7"}


def run(*args):
    """The real entry point with the new commands registered (the lead registers them in COMMANDS)."""
    from mnbench.commands.compare import ab, report
    from mnbench.commands.compare import compare as compare_command

    for command in (compare_command, ab, report):
        cli.add_command(command)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def latencies(median_us=1000.0, count=200, spread=0.02, seed=0):
    """Log-normal latencies with the given median: ``spread`` is sigma of the log."""
    return list(median_us * np.random.default_rng(seed).lognormal(0.0, spread, count))


def model_row(version="v3-small", alpha=1.0, resolution=224, quant="fp32", sha=None, **knobs):
    config = configure(version, alpha, resolution, knobs=knobs)
    cost = config.cost()
    name = f"{version}_a{alpha:.2f}_r{resolution}_{quant}.tflite"
    return {"model": name, "model_sha256": sha or f"{name}-sha", "version": version, "alpha": alpha,
            "resolution": resolution, "quant": quant, "params": cost.params, "macs": cost.macs,
            "config": json.dumps({"version": version, "alpha": alpha, "resolution": resolution,
                                  "num_classes": 1000, "include_top": True, "knobs": config.knobs},
                                 sort_keys=True)}


def write_run(root, entries, desc=HOST, kind="host", target="host", runtime="ai-edge-litert 2.3.0",
              utc_time="2026-11-28T00:00:00Z", commit="abc123"):
    """One stored run; ``entries`` = [(model_row(...), threads, samples or None, extra columns)]."""
    store = ResultStore(root)
    run_id = store.new_run_id()
    rows, samples = [], {}
    for entry in entries:
        model, threads, values = entry[:3]
        extra = entry[3] if len(entry) > 3 else {}
        row = {**model, "run_id": run_id, "utc_time": utc_time, "git_commit": commit, "target": target,
               "target_kind": kind, "target_desc": json.dumps(desc), "runtime": runtime, "threads": threads,
               "delegate": "xnnpack", "status": "ok"}
        if values is not None:
            summary = stats.summarize(values)
            row.update(summary)
            samples[row_key(row)] = values
        row.update(extra)
        if row["status"] == "failed":
            row.update({key: None for key in stats.summarize([1.0])}, error="worker crashed")
        rows.append(row)
    return store.write_run(run_id, rows, samples)


@pytest.fixture
def pair(tmp_path):
    """Two single-run result sets of one model at 1 and 2 threads: (baseline dir, current dir, samples)."""
    base = latencies(seed=1)
    write_run(tmp_path / "base", [(model_row(), 1, base), (model_row(), 2, latencies(600, seed=2))])
    return tmp_path / "base", base


def current(tmp_path, values, values_2t=None, **kwargs):
    values_2t = values_2t if values_2t is not None else latencies(600, seed=2)
    entries = [(model_row(), 1, values), (model_row(), 2, values_2t)]
    return write_run(tmp_path / "cur", entries, **kwargs).parent


def test_one_process_per_side_is_not_confident_about_small_changes(pair, tmp_path):
    """Identical samples in one process per side: the spread between processes is unknown, so no verdict."""
    base_dir, base = pair
    code, out, err = run("compare", str(base_dir), str(current(tmp_path, base)), "--json")
    data = json.loads(out)
    assert code == 0, err
    assert [p["verdict"] for p in data["pairs"]] == ["noisy", "noisy"]
    first = data["pairs"][0]
    assert first["ratio"] == 1.0 and first["ci_low"] < 0.93 and first["ci_high"] > 1.07
    assert "one process per side: interval widened" in first["notes"]
    # the former sample-level interval alone, which this widening replaces, would have said "unchanged"
    ratio, low, high = stats.ratio_ci(base, base)
    assert stats.verdict(ratio, low, high) == "unchanged"


def test_identical_samples_in_three_processes_per_side_are_unchanged(tmp_path):
    runs = [latencies(1000 * shift, seed=seed) for seed, shift in enumerate((1.0, 1.01, 0.99))]
    for side in ("base", "cur"):
        for values in runs:
            write_run(tmp_path / side, [(model_row(), 1, values)])
    code, out, err = run("compare", str(tmp_path / "base"), str(tmp_path / "cur"), "--json")
    pair = json.loads(out)["pairs"][0]
    assert code == 0 and pair["verdict"] == "unchanged" and pair["ratio"] == 1.0, err
    assert "widened" not in pair["notes"] and pair["method"].startswith("two-level")


def test_samples_scaled_by_two_are_a_regression_and_fail_the_gate(pair, tmp_path):
    base_dir, base = pair
    cur = current(tmp_path, [2 * value for value in base])
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 1 and err.count("\n") == 1 and "latency gate failed on 1 of 2 pairs" in err
    assert "regression" in out and "2.000" in out
    code, _, err = run("compare", str(base_dir), str(cur), "--fail-on", "never")
    assert code == 0 and err == ""


def test_halved_samples_are_an_improvement(pair, tmp_path):
    base_dir, base = pair
    code, out, _ = run("compare", str(base_dir), str(current(tmp_path, [v / 2 for v in base])), "--json")
    assert code == 0 and json.loads(out)["pairs"][0]["verdict"] == "improvement"


def test_widely_spread_samples_are_noisy(pair, tmp_path):
    base_dir, _ = pair
    wild = latencies(1000, count=8, spread=0.6, seed=5)
    code, out, _ = run("compare", str(base_dir), str(current(tmp_path, wild)), "--json", "--fail-on", "noisy")
    pairs = json.loads(out)["pairs"]
    assert pairs[0]["verdict"] == "noisy" and code == 1


def test_threshold_is_respected(pair, tmp_path):
    base_dir, base = pair
    cur = current(tmp_path, [1.25 * v for v in base])
    verdicts = {}
    for threshold in ("5%", "0.30"):
        code, out, _ = run("compare", str(base_dir), str(cur), "--threshold", threshold, "--json")
        verdicts[threshold] = json.loads(out)["pairs"][0]["verdict"]
    assert verdicts == {"5%": "regression", "0.30": "unchanged"}


def test_markdown_file_and_github_step_summary(pair, tmp_path, monkeypatch):
    base_dir, base = pair
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    code, _, _ = run("compare", str(base_dir), str(current(tmp_path, [2 * v for v in base])), "--markdown",
                     str(tmp_path / "pr.md"))
    text = (tmp_path / "pr.md").read_text()
    assert code == 1 and text.startswith("### Latency") and "| 🔴 regression |" in text
    assert summary.read_text() == "earlier step\n" + text


def test_different_targets_are_refused_unless_allowed(pair, tmp_path):
    base_dir, base = pair
    cur = current(tmp_path, base, desc=OTHER_HOST)
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 2 and out == "" and err.count("\n") == 1
    assert "different targets" in err and "Intel Xeon" in err and "--allow-different-targets" in err
    code, out, _ = run("compare", str(base_dir), str(cur), "--allow-different-targets", "--json")
    assert code == 0 and "other target" in json.loads(out)["pairs"][0]["notes"]


def test_same_cpu_on_another_host_name_pairs(pair, tmp_path):
    base_dir, base = pair
    cur = current(tmp_path, base, desc={**HOST, "hostname": "ci-2"})
    code, out, _ = run("compare", str(base_dir), str(cur), "--json")
    assert code == 0 and len(json.loads(out)["pairs"]) == 2


def test_pairs_by_configuration_and_notes_a_changed_file(pair, tmp_path):
    base_dir, base = pair
    cur = write_run(tmp_path / "cur", [(model_row(sha="new-bytes"), 1, base)]).parent
    code, out, _ = run("compare", str(base_dir), str(cur), "--json")
    data = json.loads(out)
    assert code == 0 and data["pairs"][0]["notes"].startswith("model file changed; one process per side")
    assert [(u["side"], u["threads"]) for u in data["unpaired"]] == [("baseline", 2)]
    code, _, err = run("compare", str(base_dir), str(cur), "--match", "sha")
    assert code == 2 and "no common rows" in err


def test_no_common_rows(pair, tmp_path):
    base_dir, _ = pair
    cur = write_run(tmp_path / "cur", [(model_row("v1"), 1, latencies())]).parent
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 2 and out == "" and err.count("\n") == 1 and "no common rows" in err


def test_missing_and_corrupt_results_exit_2(pair, tmp_path):
    base_dir, base = pair
    cur = current(tmp_path, base)
    run_dir = next(cur.iterdir())
    cases = [(str(tmp_path / "nowhere"), "no results folder")]
    corrupt = tmp_path / "corrupt" / "run1"
    corrupt.mkdir(parents=True)
    (corrupt / "rows.csv").write_text("run_id,model\nx,y\n")
    cases.append((str(corrupt.parent), "corrupt results"))
    empty = tmp_path / "empty"
    empty.mkdir()
    cases.append((str(empty), "holds no rows"))
    for source, message in cases:
        code, out, err = run("compare", str(base_dir), source)
        assert code == 2 and out == "" and err.count("\n") == 1 and message in err, (source, err)
    (run_dir / "samples.json").write_text("{not json")
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 2 and err.count("\n") == 1 and "cannot read samples" in err


def test_a_failed_current_row_fails_the_gate(pair, tmp_path):
    base_dir, base = pair
    entries = [(model_row(), 1, None, {"status": "failed"}), (model_row(), 2, latencies(600, seed=2))]
    cur = write_run(tmp_path / "cur", entries).parent
    code, out, err = run("compare", str(base_dir), str(cur), "--json")
    verdicts = {p["threads"]: p["verdict"] for p in json.loads(out)["pairs"]}
    assert code == 1 and verdicts == {1: "failed", 2: "noisy"} and "failed" in err


def test_run_id_source_and_run_level_interval(tmp_path):
    """Several runs per side: the two-level bootstrap sees the spread between processes."""
    root = tmp_path / "runs"
    base_runs = [latencies(1000 * shift, seed=seed) for seed, shift in enumerate((1.0, 1.06, 0.95))]
    cur_runs = [latencies(1000 * shift, seed=10 + seed) for seed, shift in enumerate((1.04, 0.97, 1.01))]
    for values in base_runs:
        write_run(root / "base", [(model_row(), 1, values)])
    for values in cur_runs:
        write_run(root / "cur", [(model_row(), 1, values)])
    single = stats.ratio_ci(base_runs[0], cur_runs[0])
    ratio, low, high = stats.run_level_ratio_ci(base_runs, cur_runs)
    assert (high - low) > 2 * (single[2] - single[1]) and low < 1 < high
    run_id = next((root / "cur").iterdir()).name
    code, out, _ = run("compare", str(root / "base"), run_id, "--results", str(root / "cur"), "--json")
    pair = json.loads(out)["pairs"][0]
    assert code == 0 and pair["baseline_runs"] == 3 and pair["current_runs"] == 1
    assert pair["method"].startswith("two-level")


def test_rows_without_samples_use_their_summary(tmp_path):
    phone = {"serial": "8A1X0", "model": "Pixel 3", "manufacturer": "Google"}

    def summary_row(median):
        return {"median_us": median, "mean_us": median, "avg_us": median, "std_us": 0.02 * median,
                "count": 50}

    for side, median in (("base", 15000.0), ("cur", 30000.0)):
        write_run(tmp_path / side, [(model_row(), 1, None, {**summary_row(median), "delegate": "cpu"})],
                  desc=phone, kind="android", target="8A1X0", runtime="benchmark_model")
    code, out, _ = run("compare", str(tmp_path / "base"), str(tmp_path / "cur"), "--json")
    pair = json.loads(out)["pairs"][0]
    assert code == 1 and pair["verdict"] == "regression" and pair["method"].startswith("summary")
    assert pair["ratio"] == pytest.approx(2.0) and pair["target"] == "8A1X0 (Google Pixel 3)"


def test_library_errors_and_identities():
    row = {**model_row(), "target_kind": "host", "target_desc": json.dumps(HOST)}
    assert target_identity(row) == "host|AMD EPYC 7B13|2|x86_64"
    assert model_identity(row).startswith("config|")
    assert model_identity(row, "sha") == "sha|" + row["model_sha256"]
    fused = {**row, "model": "v3-small_a1.00_r224_int8_hswish-fused.tflite"}
    assert model_identity(fused) != model_identity(row)
    assert model_identity({"model": "mine.tflite", "model_sha256": "x", "config": None}) == "file|mine.tflite"
    with pytest.raises(CompareError, match="threshold"):
        CompareSettings(threshold=5)
    import pandas as pd

    with pytest.raises(CompareError, match="baseline result set holds no rows"):
        compare(pd.DataFrame(), pd.DataFrame({"a": [1]}), lambda row: [])
    assert markdown_table(["a", "b"], [[1, None], ["x|y", 2.5]], right={0}) == (
        "| a | b |\n| ---: | --- |\n| 1 | – |\n| x\\|y | 2.5 |")


@pytest.mark.parametrize("text, value", [("5%", 0.05), ("0.05", 0.05), ("12.5 %", 0.125), (".1", 0.1)])
def test_threshold_parsing(text, value):
    assert Fraction().convert(text, None, None) == pytest.approx(value)


@pytest.mark.parametrize("text", ["5", "0", "100%", "abc", "-5%"])
def test_bad_threshold_is_a_usage_error(text, pair, tmp_path):
    base_dir, _ = pair
    code, out, err = run("compare", str(base_dir), str(base_dir), "--threshold", text)
    assert code == 2 and "percentage" in err


def _edit_run(run_dir, column=None, value=None, samples=None):
    """Hand-edits one stored run: a rows.csv column for every row, and/or the samples.json text."""
    import pandas as pd

    if column is not None:
        frame = pd.read_csv(run_dir / "rows.csv")
        frame[column] = value
        frame.to_csv(run_dir / "rows.csv", index=False)
    if samples is not None:
        (run_dir / "samples.json").write_text(samples, encoding="utf-8")


def test_phone_rows_with_an_average_but_no_median_compare_their_averages(tmp_path):
    """Issue 12, defect 1: builds before percentiles print only the average; compare crashed on them."""
    phone = {"serial": "8A1X0", "model": "Pixel 3", "manufacturer": "Google"}
    for side, avg in (("base", 15000.0), ("cur", 30000.0)):
        extra = {"median_us": None, "mean_us": None, "avg_us": avg, "std_us": 0.02 * avg, "count": 50,
                 "delegate": "cpu"}
        write_run(tmp_path / side, [(model_row(), 1, None, extra)], desc=phone, kind="android",
                  target="8A1X0", runtime="benchmark_model")
    code, out, err = run("compare", str(tmp_path / "base"), str(tmp_path / "cur"), "--json")
    assert "internal error" not in err
    pair = json.loads(out)["pairs"][0]
    assert code == 1 and pair["verdict"] == "regression" and pair["statistic"] == "mean"
    assert pair["ratio"] == pytest.approx(2.0) and pair["method"].startswith("summary of means")
    assert "compared averages" in pair["notes"] and pair["current_median_us"] == pytest.approx(30000.0)


@pytest.mark.parametrize("values, message", [
    ([1000.0, float("nan"), 1001.0, 999.0, 1000.5, 1002.0, 998.0], "not a finite number"),
    ([], "empty list")])
def test_bad_samples_are_bad_input_exit_2(pair, tmp_path, values, message):
    """Issue 17, item 7: NaN in samples.json exited 1 (a 'regression'); an empty list was judged 'noisy'."""
    base_dir, base = pair
    cur = current(tmp_path, base)
    run_dir = cur / next(cur.iterdir()).name
    samples = json.loads((run_dir / "samples.json").read_text())
    samples[next(iter(samples))] = values
    _edit_run(run_dir, samples=json.dumps(samples))  # json writes NaN as NaN, as Python's json reads it
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err, err


def test_samples_file_leaving_the_run_folder_is_refused(pair, tmp_path):
    """Issue 17, item 11: a hand-edited samples_file with ../ made compare open a file outside the store."""
    base_dir, base = pair
    cur = current(tmp_path, base)
    run_dir = cur / next(cur.iterdir()).name
    outside = tmp_path / "outside.json"
    outside.write_text(json.dumps({"k": [float(v) for v in base]}), encoding="utf-8")
    _edit_run(run_dir, column="samples_file", value=f"../../{outside.name}#k")
    code, out, err = run("compare", str(base_dir), str(cur))
    assert code == 2 and out == "" and "leaves the run folder" in err and err.count("\n") == 1, err
