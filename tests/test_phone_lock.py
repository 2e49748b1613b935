"""One benchmark per phone at a time: the lock folder on the phone, waiting, busy, stale locks broken (and
said so), release on every exit, and the run folders of dead runs removed on the next connection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import mnbench.commands
from device_bench.phone_lock import LOCK_DIR, Holder, parse_holder, this_host
from device_bench.store import ResultStore
from mnbench.commands.device import device
from tests.loopback_adb.fixtures import FAKE_BENCHMARK
from tests.test_device_run import tiny_model
from tests.helpers import run_cli as run

pytestmark = pytest.mark.timeout(60)
FAST = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0", "--benchmark-binary", FAKE_BENCHMARK]


@pytest.fixture(autouse=True)
def device_commands(monkeypatch, adb_home):
    monkeypatch.setattr(mnbench.commands, "COMMANDS", [*mnbench.commands.COMMANDS, device])


def plant_lock(phone, holder: Holder, since_s: int, beat_age_s: float = 0.0) -> Path:
    """A lock folder as another mnbench process would have left it, its heartbeat beat_age_s old."""
    folder = phone.host_path(LOCK_DIR)
    folder.mkdir(parents=True)
    holder_file = folder / "holder"
    holder_file.write_text("\n".join(holder.lines() + [f"since={since_s}"]) + "\n")
    beat = time.time() - beat_age_s
    os.utime(holder_file, (beat, beat))
    return holder_file


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_holder_file_round_trip():
    holder = Holder("lab-host-3", 4242, "ab12", "/data/local/tmp/mnbench-x")
    parsed = parse_holder("\n".join(holder.lines() + ["since=1764536400", "junk line"]))
    assert (parsed.host, parsed.pid, parsed.token, parsed.run) == ("lab-host-3", 4242, "ab12", holder.run)
    assert parsed.describe() == "held by lab-host-3 pid 4242 since 2025-11-30T21:00:00Z"
    assert parse_holder("").describe() == "held by ? pid 0 since ?"
    assert parse_holder("stale_after=625.250\n").stale_after_s == 625.25
    assert Holder(this_host(), dead_pid()).is_gone_here()
    assert not Holder(this_host(), os.getpid()).is_gone_here()
    assert not Holder("another-host", dead_pid()).is_gone_here()   # another host's pids say nothing here


def test_busy_phone_fails_its_runs_after_lock_wait(loopback_device, tmp_path):
    since = int(time.time()) - 30
    holder_file = plant_lock(loopback_device, Holder("lab-host-3", 4242, "f00d", "/x"), since)
    started = time.monotonic()
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--lock-wait", "1.5", "--json", "--results", tmp_path / "r", *FAST)
    waited_s = time.monotonic() - started
    (row,) = json.loads(out)
    since_text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since))
    assert code == 1 and row["status"] == "failed" and waited_s >= 1.5
    assert row["error"] == (f"cannot lock the phone: busy (held by lab-host-3 pid 4242 since {since_text}; "
                            "waited 1.5 s, see --lock-wait)")
    assert holder_file.read_text().startswith("host=lab-host-3\n")        # the holder's lock is untouched
    assert not loopback_device.host_path(BINARY := "/data/local/tmp/mnbench/benchmark_model").exists(), BINARY


def test_a_holder_that_promised_long_runs_is_not_judged_by_the_waiters_settings(loopback_device, tmp_path):
    patient = Holder("lab-host-3", 4242, "slow1", "/x", stale_after_s=100_000.0)   # e.g. --timeout 90000
    plant_lock(loopback_device, patient, int(time.time()) - 10_000, beat_age_s=10_000)
    code, out, _ = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                       "--timeout", "5", "--lock-wait", "0", "--json", "--results", tmp_path / "r", *FAST)
    assert code == 1 and "busy (held by lab-host-3 pid 4242 since " in json.loads(out)[0]["error"]
    kept = parse_holder(loopback_device.host_path(LOCK_DIR + "/holder").read_text())
    assert (kept.token, kept.stale_after_s) == ("slow1", 100_000.0)   # not broken


@pytest.mark.parametrize("who", ["dead process on this host", "silent for longer than a run"])
def test_stale_lock_is_broken_and_said_and_dead_runs_folders_removed(loopback_device, tmp_path, who,
                                                                      caplog):
    if who == "dead process on this host":
        holder, age_s, why = Holder(this_host(), dead_pid(), "dead1"), 0, "its process no longer exists"
    else:
        holder, age_s, why = Holder("lab-host-9", 77, "old1"), 10_000, "no heartbeat for "
    plant_lock(loopback_device, holder, int(time.time()) - age_s, age_s)
    leftover = loopback_device.host_path("/data/local/tmp/mnbench-20261129T000000.000Z-dead00")
    leftover.mkdir(parents=True)
    (leftover / "m.tflite").write_bytes(b"left by a run that died")
    code, out, err = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                         "--timeout", "5", "--json", "--results", tmp_path / "r", *FAST)
    assert code == 0, err
    said = caplog.text   # logged as warnings: the command line prints them on stderr
    assert f"broke a stale lock (held by {holder.host} pid {holder.pid} since " in said and why in said
    assert "removed run folders left on the phone by earlier runs that died: " \
           "/data/local/tmp/mnbench-20261129T000000.000Z-dead00" in said
    desc = json.loads(json.loads(out)[0]["target_desc"])
    assert desc["lock"]["notes"][0].startswith(f"broke a stale lock (held by {holder.host}")
    assert desc["stale_run_folders_removed"] == ["/data/local/tmp/mnbench-20261129T000000.000Z-dead00"]
    assert not leftover.exists() and not loopback_device.host_path(LOCK_DIR).exists()   # released too


def test_lock_is_released_after_failures_and_never_left(loopback_device, tmp_path):
    loopback_device.set_benchmark("crash")
    code, out, _ = run("device", "--serial", loopback_device.serial, tiny_model(tmp_path / "m.tflite"),
                       "--json", "--results", tmp_path / "r", *FAST)
    assert code == 1 and json.loads(out)[0]["error"].startswith("benchmark_model was killed by SIGSEGV")
    assert not loopback_device.host_path(LOCK_DIR).exists()
    assert not list(loopback_device.host_path("/data/local/tmp").glob("mnbench-*"))
    assert list(ResultStore(tmp_path / "r").load()["status"]) == ["failed"]
