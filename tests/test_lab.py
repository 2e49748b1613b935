"""A lab of phones across hosts, proven on loopback: 8 loopback phones behind 2 private Google adb servers
(Debian's ``adb`` on non-default ports of 127.0.0.1), benchmarked in parallel as one run; a phone killed
mid-run; Ctrl-C mid-matrix; two mnbench processes on one phone; serials, labels and ``--where``."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mnbench.commands
from device_bench.adb_server import AdbServer, server_address
from device_bench.lab import DeviceSpec, parse_server, parse_spec
from device_bench.phone_lock import LOCK_DIR
from device_bench.store import ResultStore
from device_bench.errors import BenchError
from mnbench.commands.device import device, devices
from tests.loopback_adb.fixtures import FAKE_BENCHMARK, REPO_ROOT
from tests.loopback_adb.lab import Lab, start_lab
from tests.test_device_run import tiny_model
from tests.helpers import sigint_as_ctrl_c, run_cli as run

pytestmark = [pytest.mark.timeout(120)]
FAST = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0", "--benchmark-binary", FAKE_BENCHMARK]


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Lab:
    if shutil.which("adb") is None:
        pytest.skip("Google's adb is not installed (Debian/Ubuntu: apt-get install -y adb)")
    running = start_lab(tmp_path_factory.mktemp("lab"), phones=8, servers=2)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(autouse=True)
def device_commands(monkeypatch, adb_home):
    monkeypatch.setattr(mnbench.commands, "COMMANDS", [*mnbench.commands.COMMANDS, devices, device])


@pytest.fixture
def models(tmp_path) -> list[Path]:
    return [tiny_model(tmp_path / "models" / f"m{index}.tflite") for index in range(2)]


def spawn(*args) -> subprocess.Popen:
    """``mnbench`` in its own process (as two CI jobs or a user at a terminal would run it)."""
    path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen([sys.executable, "-m", "mnbench.cli", *map(str, args)], cwd=REPO_ROOT,
                            preexec_fn=sigint_as_ctrl_c, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": path})


def spans(phone) -> list[dict]:
    path = phone.host_path("/.loopback/fake_benchmark_spans.jsonl")
    lines = path.read_text().splitlines() if path.exists() else []
    return sorted((json.loads(line) for line in lines), key=lambda span: span["start_s"])


def servers_args(lab: Lab) -> list[str]:
    return [item for server in lab.servers for item in ("--adb-server", lab.address(server))]


def assert_clean(phone) -> None:
    assert not phone.host_path(LOCK_DIR).exists(), f"{phone.serial}: lock left"
    assert not list(phone.host_path("/data/local/tmp").glob("mnbench-*")), f"{phone.serial}: run folder left"


# ------------------------------------------------------------------------------------ names, no lab
def test_device_names_servers_and_labels_parse(monkeypatch):
    spec = parse_spec("lab-1:5037/R58M123ABC soc=sm8550 pool=ci")
    assert (spec.server, spec.serial, spec.labels, spec.name) == (
        "lab-1:5037", "R58M123ABC", {"soc": "sm8550", "pool": "ci"}, "lab-1:5037/R58M123ABC")
    assert parse_spec("192.168.1.7:5555") == DeviceSpec("192.168.1.7:5555")   # an adbd endpoint or a serial
    with pytest.raises(BenchError, match="label 'pool' is not key=value"):
        parse_spec("R58M123ABC pool")
    with pytest.raises(BenchError, match="--adb-server 'lab-1' is not HOST:PORT"):
        parse_server("lab-1")
    for value, address in (("tcp:lab-2:5038", ("lab-2", 5038)), ("tcp:5039", ("127.0.0.1", 5039))):
        monkeypatch.setenv("ADB_SERVER_SOCKET", value)
        assert server_address() == address and AdbServer().address == "%s:%d" % address
    monkeypatch.setenv("ADB_SERVER_SOCKET", "localfilesystem:/tmp/adb")
    with pytest.raises(BenchError, match="ADB_SERVER_SOCKET must be tcp:HOST:PORT or tcp:PORT"):
        server_address()
    monkeypatch.delenv("ADB_SERVER_SOCKET")
    code, _, err = run("device", "--adb-server", "lab-1", "--all-devices")
    assert code == 2 and "'--adb-server': 'lab-1' is not HOST:PORT" in err and err.count("\n") == 1


# ----------------------------------------------------------------------------------------------------
def test_eight_phones_on_two_servers_run_as_one(lab, models, tmp_path, monkeypatch):
    for index, phone in enumerate(lab.phones):
        phone.set_benchmark("ok", inference_avg_us=1000 + index)   # each phone's figure names the phone
    code, out, err = run("device", "--all-devices", *servers_args(lab), *models, "--json",
                         "--results", tmp_path / "r", *FAST)
    assert code == 0, err
    rows = json.loads(out)
    assert len(rows) == 16 and {row["status"] for row in rows} == {"ok"}
    assert len({row["run_id"] for row in rows}) == 1
    for index, phone in enumerate(lab.phones):
        mine = [row for row in rows if row["target"] == phone.serial]
        assert sorted(row["model"] for row in mine) == ["m0.tflite", "m1.tflite"]
        assert {row["avg_us"] for row in mine} == {1000.0 + index}
        assert {json.loads(row["target_desc"])["adb_server"] for row in mine} == {
            lab.address(lab.server_of[phone.serial])}
        assert_clean(phone)
    code, out, _ = run("devices", *servers_args(lab), "--json")
    listed = {item["serial"]: item["server"] for item in json.loads(out)}
    assert code == 0
    assert listed == {phone.serial: lab.address(lab.server_of[phone.serial]) for phone in lab.phones}
    first = lab.servers[0]
    monkeypatch.setenv("ADB_SERVER_SOCKET", f"tcp:127.0.0.1:{first.server_port}")   # as Google's adb reads it
    code, out, _ = run("devices", "--json")
    assert code == 0 and {item["serial"] for item in json.loads(out)} == {
        phone.serial for phone in lab.phones if lab.server_of[phone.serial] is first}


def test_devices_file_labels_where_and_qualified_serials(lab, models, tmp_path):
    one, two, three = lab.phones[0], lab.phones[1], lab.phones[5]
    listing = tmp_path / "phones.txt"
    qualified = f"{lab.address(lab.server_of[one.serial])}/{one.serial}"
    listing.write_text(f"# the CI pool\n{qualified} soc=sm8550 pool=ci\n{two.serial} soc=gs201 pool=manual\n"
                       f"{three.serial}   soc=gs201 pool=ci  # shelf 2\n")
    code, out, err = run("device", "--devices-file", listing, "--where", "pool=ci", *servers_args(lab),
                         models[0], "--json", "--results", tmp_path / "r", *FAST)
    assert code == 0, err
    rows = {row["target"]: json.loads(row["target_desc"]) for row in json.loads(out)}
    assert set(rows) == {qualified, three.serial}
    assert rows[qualified]["labels"] == {"soc": "sm8550", "pool": "ci"}
    assert rows[three.serial]["adb_server"] == lab.address(lab.server_of[three.serial])
    code, _, err = run("device", "--devices-file", listing, "--where", "pool=lab", *servers_args(lab),
                       models[0])
    assert code == 2 and "--where pool=lab selects no device of the devices file" in err


def test_a_serial_on_two_servers_must_be_qualified(lab, models, tmp_path):
    phone, other = lab.phones[0], next(server for server in lab.servers if server is not lab.server_of[
        lab.phones[0].serial])
    assert other.connect(phone.serial) == "device"
    try:
        code, _, err = run("device", "--serial", phone.serial, *servers_args(lab), models[0], *FAST)
    finally:
        other.disconnect(phone.serial)
    names = sorted(f"{lab.address(server)}/{phone.serial}" for server in lab.servers)
    assert code == 2 and err.count("\n") == 1
    assert f"device {phone.serial} is listed by 2 adb servers: name one of " in err
    assert all(name in err for name in names)


def test_a_phone_killed_mid_run_fails_alone(lab, models, tmp_path):
    doomed = lab.add_phone(tmp_path / "doomed", lab.servers[0])
    doomed.set_benchmark("ok", delay_s=3)
    calls = doomed.host_path("/.loopback/fake_benchmark_calls.jsonl")

    def kill_when_running() -> None:
        deadline = time.monotonic() + 60
        while not calls.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        doomed.process.kill()

    killer = threading.Thread(target=kill_when_running)
    killer.start()
    try:
        survivors = lab.phones[2:4]
        serials = [f"--serial={phone.serial}" for phone in (doomed, *survivors)]
        code, out, err = run("device", *servers_args(lab), *serials, *models, "--json",
                             "--results", tmp_path / "r", *FAST)
    finally:
        killer.join()
        lab.server_of[doomed.serial].disconnect(doomed.serial)
    rows = json.loads(out)
    assert code == 1 and f"2 of 6 runs failed (first: {doomed.serial} m0.tflite" in err
    lost = [row["error"] for row in rows if row["target"] == doomed.serial]
    assert lost[0].startswith(f"connection lost during the run: {doomed.serial}: the shell stream closed")
    assert lost[1].startswith(f"device lost after: {doomed.serial}: ") and "reconnecting failed: " in lost[1]
    assert [row["status"] for row in rows if row["target"] != doomed.serial] == ["ok"] * 4
    for phone in survivors:
        assert_clean(phone)
    assert list(ResultStore(tmp_path / "r").load()["status"]).count("ok") == 4


def test_ctrl_c_mid_matrix_keeps_rows_and_cleans_every_phone(lab, tmp_path):
    phones = lab.phones[:4]
    for phone in phones:
        phone.set_benchmark("ok", delay_s=1.5)  # after the first ok, >= 4.5 s of runs are left to interrupt
    models = [tiny_model(tmp_path / "models" / f"m{index}.tflite") for index in range(4)]
    process = spawn("device", *servers_args(lab), *(f"--serial={p.serial}" for p in phones), *models,
                    "--results", tmp_path / "r", *FAST)
    progress = []
    for line in process.stderr:   # progress lines: "<serial> <model> threads=1 xnnpack: ok 1.23 ms"
        progress.append(line)
        if ": ok " in line:
            process.send_signal(signal.SIGINT)
            break
    rest = process.communicate(timeout=60)[1]
    assert process.returncode == 130, "".join(progress) + rest
    stored = ResultStore(tmp_path / "r").load()
    assert 1 <= list(stored["status"]).count("ok") < 16
    for phone in phones:
        assert_clean(phone)


def test_two_processes_on_one_phone_never_overlap(lab, tmp_path):
    phone = lab.phones[6]
    phone.set_benchmark("ok", delay_s=0.3)
    models = [tiny_model(tmp_path / "models" / f"m{index}.tflite") for index in range(3)]
    before = len(spans(phone))
    jobs = [spawn("device", *servers_args(lab), "--serial", phone.serial, *models,
                  "--results", tmp_path / f"r{index}", *FAST) for index in range(2)]
    outputs = [job.communicate(timeout=90) for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], outputs
    runs = spans(phone)[before:]
    assert len(runs) == 6
    for earlier, later in zip(runs, runs[1:]):
        assert later["start_s"] >= earlier["end_s"], f"overlapping runs: {earlier} {later}"
    folders = [os.path.dirname(span["graph"]) for span in runs]
    assert folders[:3] == [folders[0]] * 3 and folders[3:] == [folders[3]] * 3   # one process, then the other
    assert folders[0] != folders[3]
    assert_clean(phone)
