"""``mnbench history``: migrations, idempotent ingest, queries, steps and the regressions gate, on SQLite
and on a real PostgreSQL server (``tests/history_support.py``)."""

import json

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from device_bench.store import ResultStore
from mnbench.history import HistoryError, schema
from mnbench.history.db import head_revision, open_db
from mnbench.history.ingest import ingest
from mnbench.history.steps import change_points, find_steps
from tests.history_support import HOST as HOST_DESC, PHONE, write_history
from tests.helpers import run_cli as run

STEP_AT = 12


@pytest.fixture
def results(tmp_path):
    """Host: V3-Small int8 steps up 10 % at commit 12 of 24; a phone series stays level."""
    root = tmp_path / "runs"
    write_history(root, [500.0] * STEP_AT + [550.0] * 12, seed=1)
    write_history(root, [2000.0] * 24, target_kind="android", target="28031FDH2003", desc=PHONE, seed=2,
                  model="v3-small_a1.00_r224_fp32.tflite", threads=4)
    return root


def test_migrations_build_exactly_the_schema(db_url):
    engine = open_db(db_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head_revision()
        assert compare_metadata(context, schema.metadata) == []
    open_db(db_url)  # opening again migrates nothing and keeps the revision
    with engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM alembic_version").scalar() == 1


def test_ingest_is_idempotent_and_keeps_rows_and_samples(db_url, results):
    engine = open_db(db_url)
    first = ingest(engine, [results])
    assert (first.runs_added, first.runs_skipped, first.rows_added, first.samples_added) == (48, 0, 48, 48)
    again = ingest(engine, [results])
    assert (again.runs_added, again.runs_skipped, again.rows_added) == (0, 48, 0)
    with engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.results)).scalar() == 48
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.series)).scalar() == 2
        first = sa.select(schema.results).order_by(schema.results.c.result_id)
        row = connection.execute(first).mappings().first()
        stored = connection.execute(sa.select(schema.samples.c.latencies_us)
                                    .where(schema.samples.c.result_id == row["result_id"])).scalar()
    store = ResultStore(results)
    loaded = store.load(results)
    original = loaded[loaded["run_id"] == row["run_id"]].iloc[0].to_dict()
    assert stored == store.load_samples(original)
    assert row["median_us"] == original["median_us"] and row["git_commit"] == original["git_commit"]


def test_a_run_edited_after_ingest_is_refused_and_nothing_is_written(db_url, results, tmp_path):
    engine = open_db(db_url)
    ingest(engine, [results])
    run_dir = sorted(p for p in results.iterdir() if p.is_dir())[0]
    samples = json.loads((run_dir / "samples.json").read_text())
    key = next(iter(samples))
    samples[key][0] *= 2
    (run_dir / "samples.json").write_text(json.dumps(samples))
    write_history(tmp_path / "more", [700.0] * 3, seed=9, commit_prefix="d")
    code, out, _ = run("history", "ingest", str(results), "--db", db_url)  # known run folders: not read again
    assert code == 0 and out.startswith("0 run(s) added (0 rows, 0 with samples), 48 already")
    code, _, err = run("history", "ingest", str(tmp_path / "more"), str(results), "--db", db_url, "--verify")
    assert code == 2 and err.count("\n") == 1 and "already in the history with other content" in err
    with engine.connect() as connection:  # the batch with the conflict added nothing, not even the new runs
        assert connection.execute(sa.select(sa.func.count()).select_from(schema.runs)).scalar() == 48


def test_end_to_end_query_and_regressions_gate(db_url, results):
    code, out, _ = run("history", "ingest", str(results), "--db", db_url)
    assert code == 0 and out.startswith("48 run(s) added")
    code, out, _ = run("history", "query", "--db", db_url, "--series", "--json")
    series = json.loads(out)
    assert code == 0 and {s["target_label"] for s in series} == {"host (AMD EPYC 7B13, 2 cores)",
                                                               "28031FDH2003 (Google Pixel 7)"}
    host = next(s for s in series if s["target_label"].startswith("host"))
    phone = next(s for s in series if not s["target_label"].startswith("host"))
    assert phone["steps"] == [] and host["commits"] == 24 and len(host["steps"]) == 1
    step = host["steps"][0]
    assert step["commit_range"] == f"c{STEP_AT - 1:03d}..c{STEP_AT:03d}" and step["open"]
    assert 1.08 < step["ratio"] < 1.12 and step["ci_low"] < step["ratio"] < step["ci_high"]

    code, out, _ = run("history", "query", "--db", db_url, "--model", "fp32", "--since",
                       "2026-11-01T20:00:00Z", "--json", "--limit", "100")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4 and {r["target"] for r in rows} == {"28031FDH2003"}
    assert all(r["utc_time"] >= "2026-11-01T20:00:00Z" for r in rows)

    code, out, err = run("history", "regressions", "--db", db_url, "--threshold", "5%")
    assert code == 1 and "+10." in out and "1 open step(s) above +5%" in err
    code, out, _ = run("history", "regressions", "--db", db_url, "--threshold", "20%", "--json")
    assert code == 0 and [s["exceeds_threshold"] for s in json.loads(out)] == [False]
    code, out, _ = run("history", "regressions", "--db", db_url, "--target", "Pixel")
    assert code == 0 and "no open regressions" in out


def test_a_fixed_regression_is_not_open(tmp_path):
    write_history(tmp_path / "runs", [500.0] * 10 + [560.0] * 8 + [500.0] * 10, seed=3)
    db = str(tmp_path / "h.sqlite")
    assert run("history", "ingest", str(tmp_path / "runs"), "--db", db)[0] == 0
    code, out, _ = run("history", "query", "--db", db, "--series", "--json")
    steps = json.loads(out)[0]["steps"]
    assert [(s["regression"], s["open"]) for s in steps] == [(True, False), (False, False)]
    assert run("history", "regressions", "--db", db)[0] == 0


def test_series_never_mix_machines(tmp_path):
    root = tmp_path / "runs"
    write_history(root, [500.0] * 6, seed=4)
    write_history(root, [900.0] * 6, seed=5,
                  desc={"cpu": "Intel Xeon 8272CL", "cores": 2, "machine": "x86_64"})
    db = str(tmp_path / "h.sqlite")
    run("history", "ingest", str(root), "--db", db)
    series = json.loads(run("history", "query", "--db", db, "--series", "--json")[1])
    assert sorted((s["target_label"], s["commits"], s["steps"]) for s in series) == [
        ("host (AMD EPYC 7B13, 2 cores)", 6, []), ("host (Intel Xeon 8272CL, 2 cores)", 6, [])]


def test_several_runs_of_a_commit_make_one_point(tmp_path):
    write_history(tmp_path / "runs", [500.0] * 5, runs_per_commit=3, seed=6)
    db = str(tmp_path / "h.sqlite")
    assert run("history", "ingest", str(tmp_path / "runs"), "--db", db)[1].startswith("15 run(s) added")
    series = json.loads(run("history", "query", "--db", db, "--series", "--json")[1])
    assert series[0]["commits"] == 5


def test_step_fit_finds_steps_not_noise():
    rng = np.random.default_rng(0)
    level = 1000 * rng.lognormal(0, 0.01, 60)
    assert change_points(level) == []
    stepped = level * np.r_[np.ones(30), np.full(30, 1.08)]
    assert change_points(stepped) == [30]
    assert change_points(level[:3]) == []  # too short for two segments


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    open_db(tmp_path / "h.sqlite")  # an existing database, so each case fails on its own bad input
    cases = [("history", "ingest", str(tmp_path / "missing"), "--db", str(tmp_path / "h.sqlite")),
             ("history", "query", "--db", "mysql://u@127.0.0.1/x"),
             ("history", "query", "--db", "postgresql://nobody@127.0.0.1:1/none"),
             ("history", "query", "--since", "yesterday", "--db", str(tmp_path / "h.sqlite")),
             ("history", "regressions", "--threshold", "150%", "--db", str(tmp_path / "h.sqlite"))]
    for args in cases:
        code, _, err = run(*args)
        assert code == 2 and err.startswith("mnbench: error:") and err.count("\n") == 1, (args, err)


def test_reading_a_missing_database_is_an_error_and_creates_nothing(tmp_path):
    missing = tmp_path / "nowhere" / "h.sqlite"
    for args in (("query",), ("regressions",), ("publish", "--out", str(tmp_path / "site"))):
        code, _, err = run("history", *args, "--db", str(missing))
        assert code == 2 and "no history database at" in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "site").exists()


def test_a_database_from_a_newer_mnbench_is_refused(tmp_path):
    db = tmp_path / "h.sqlite"
    engine = open_db(db)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(HistoryError, match="newer than this mnbench"):
        open_db(db)


def test_find_steps_reports_the_commit_range():
    import pandas as pd

    values = [100.0] * 8 + [120.0] * 8
    points = pd.DataFrame({"commit": [f"k{i}" for i in range(16)], "first_time": [f"t{i}" for i in range(16)],
                           "median_us": values})
    (step,) = find_steps(points)
    assert (step.before_commit, step.after_commit, step.index) == ("k7", "k8", 8)
    assert step.ratio == pytest.approx(1.2) and step.open


def test_failed_rows_are_kept_and_queryable_but_are_not_points(tmp_path):
    root = tmp_path / "runs"
    write_history(root, [500.0] * 4, seed=7)
    failed = {"utc_time": "2026-11-02T00:00:00Z", "mnbench_version": "0.1.0", "git_commit": "c004",
              "target": "host", "target_kind": "host", "target_desc": json.dumps(HOST_DESC), "runtime":
              "ai-edge-litert 2.3.0", "model": "v3-small_a1.00_r224_int8.tflite", "threads": 1,
              "delegate": "xnnpack", "status": "failed", "error": "benchmark process died (signal 9)"}
    ResultStore(root).write_run("failed-run", [failed], {})
    db = str(tmp_path / "h.sqlite")
    out = run("history", "ingest", str(root), "--db", db)[1]
    assert out.startswith("5 run(s) added (5 rows, 4 with samples)")
    rows = json.loads(run("history", "query", "--db", db, "--failed", "--json")[1])
    assert [(r["run_id"], r["error"]) for r in rows] == [("failed-run", "benchmark process died (signal 9)")]
    (series,) = json.loads(run("history", "query", "--db", db, "--series", "--json")[1])
    assert series["commits"] == 4 and series["latest_commit"] == "c003"


def test_publish_replaces_its_own_site_and_refuses_other_folders(tmp_path):
    write_history(tmp_path / "runs", [500.0] * 6, seed=8)
    db = str(tmp_path / "h.sqlite")
    run("history", "ingest", str(tmp_path / "runs"), "--db", db)
    site = tmp_path / "site"
    for _ in range(2):
        code, out, _ = run("history", "publish", "--db", db, "--out", str(site))
        assert code == 0 and out.startswith("1 series, 0 step(s)")
    assert sorted(p.name for p in site.iterdir()) == ["index.html", "plotly.min.js", "series"]
    assert len(list((site / "series").iterdir())) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no build folders left
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    code, _, err = run("history", "publish", "--db", db, "--out", str(other))
    assert code == 2 and "refusing to replace it" in err and (other / "keep.txt").read_text() == "mine"
