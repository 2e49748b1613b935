"""Phones leased from a DeviceFarmer STF farm (issue #23): a loopback STF in front of loopback phones.

The stand-in (``tests/loopback_stf.py``) answers with STF's documented bodies and status codes and bridges
each remote connect to a loopback phone that speaks the real ADB protocol. Every case checks that no lease is
left (``held()`` empty, as many releases as leases) and that the token is in no file written and no output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from device_bench.errors import FarmInputError
from device_bench.stf import StfClient, StfDevice, parse_url, read_token
from tests.helpers import run_cli as run, sigint_as_ctrl_c
from tests.loopback_adb.fixtures import REPO_ROOT, start_loopback
from tests.loopback_stf import OTHER, LoopbackStf, loopback_stf  # noqa: F401 - a fixture
from tests.test_device_run import mode_binary, tiny_model

pytestmark = pytest.mark.timeout(180)
FAST = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0"]
SECRETS = "secrets"    # the folder of a test's token file: the one place the token may be


def token_file(farm: LoopbackStf, tmp_path: Path) -> Path:
    path = tmp_path / SECRETS / "token"
    path.parent.mkdir(exist_ok=True)
    path.write_text(f"{farm.token}\n")
    return path


@pytest.fixture
def farm(loopback_stf, loopback_factory, adb_home, monkeypatch, tmp_path) -> LoopbackStf:
    """Two free phones (FARM-A, FARM-B) and one that alice holds (HELD-C); ``$STF_TOKEN`` is set."""
    monkeypatch.setenv("STF_TOKEN", loopback_stf.token)
    loopback_stf.loopbacks = {"FARM-A": loopback_factory(), "FARM-B": loopback_factory()}
    loopback_stf.add("FARM-A", loopback_stf.loopbacks["FARM-A"].serial, model="Pixel 7", provider="rack-1")
    loopback_stf.add("FARM-B", loopback_stf.loopbacks["FARM-B"].serial, model="Galaxy S23",
                     manufacturer="samsung", provider="rack-2")
    loopback_stf.add("HELD-C", None, model="Pixel 8", owner={key: OTHER[key] for key in ("email", "name")})
    return loopback_stf


def binary(tmp_path: Path) -> list:
    return ["--benchmark-binary", mode_binary(tmp_path / "bin")]


def device_args(farm: LoopbackStf, tmp_path: Path, *rest) -> list:
    return ["device", "--stf", farm.url, *binary(tmp_path), "--results", tmp_path / "results", *FAST, *rest]


def assert_nothing_leased(farm: LoopbackStf) -> None:
    assert farm.held() == [], f"still leased: {farm.held()}"
    assert farm.taken == farm.released + farm.expired + farm.revoked, farm.requests


def assert_token_nowhere(farm: LoopbackStf, root: Path, *outputs: str, rows: bool = True) -> None:
    """The token is in no output and no file under ``root`` (results, raw logs, phone sandboxes, caches)."""
    token = farm.token.encode()
    for text in outputs:
        assert farm.token not in text
    written = [path for path in root.rglob("*") if path.is_file() and SECRETS not in path.parts]
    assert any(path.name == "rows.csv" for path in written) or not rows   # the results were searched too
    for path in written:
        assert token not in path.read_bytes(), f"the token is in {path}"


def stored_rows(results: Path) -> list[dict]:
    from device_bench.store import ResultStore

    return ResultStore(results).load().to_dict("records") if list(results.glob("*/rows.csv")) else []


def spawn(args: list, log: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT),
                                                                     os.environ.get("PYTHONPATH")])),
           **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-m", "mnbench.cli", *map(str, args)], cwd=REPO_ROOT, env=env,
                            preexec_fn=sigint_as_ctrl_c, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=log.open("w"))


def started(phone, model: str) -> bool:
    return any(f"{model}.tflite" in event.get("command", "") for event in phone.events("spawn"))


# ------------------------------------------------------------------------------------ the client
def test_client_reads_stf_answers_and_refuses_bad_input(farm, tmp_path, monkeypatch):
    client = StfClient(farm.url + "/", farm.token)
    assert client.user()["email"] == "bench@example.org"
    devices = {device.serial: device for device in client.devices()}
    assert {serial: device.state for serial, device in devices.items()} == {
        "FARM-A": "free", "FARM-B": "free", "HELD-C": "held by alice"}
    fields_a, fields_b = devices["FARM-A"].fields, devices["FARM-B"].fields
    assert (fields_b["manufacturer"], fields_b["provider"], fields_a["abi"], fields_a["sdk"]) == (
        "samsung", "rack-2", "arm64-v8a", "34")
    client.lease("FARM-A", 60)
    assert client.device("FARM-A").state == "yours" and farm.held() == ["FARM-A"]
    with pytest.raises(Exception, match="403 Device is being used or not available"):
        client.lease("FARM-A", 60)        # STF refuses a second lease: it is no renewal
    address = client.remote_connect("FARM-A")
    assert address.startswith("127.0.0.1:") and address != farm.loopbacks["FARM-A"].serial   # the bridge
    client.remote_disconnect("FARM-A")
    client.release("FARM-A")
    assert farm.held() == [] and (farm.taken, farm.released) == (1, 1)
    with pytest.raises(FarmInputError, match=r"rejected the access token \(401 Bad Credentials\)") as error:
        StfClient(farm.url, "wrong-token").devices()
    assert "wrong-token" not in str(error.value)
    with pytest.raises(Exception, match="404 Device not found"):
        client.device("NOPE")
    with pytest.raises(FarmInputError, match="is not an http"):
        parse_url("stf.example.org")
    with pytest.raises(FarmInputError, match="the token goes in"):
        parse_url(f"http://user:{farm.token}@127.0.0.1:1")
    monkeypatch.delenv("STF_TOKEN")
    with pytest.raises(FarmInputError, match=r"no STF access token: set \$STF_TOKEN"):
        read_token()
    assert read_token(token_file(farm, tmp_path)) == farm.token
    assert StfDevice.from_json({"serial": "x", "present": False}).state == "absent"


def test_an_idle_lease_expires_at_its_timeout(farm):
    """The stand-in does release an idle lease, so the keep-alive test below can fail."""
    StfClient(farm.url, farm.token).lease("FARM-A", 0.3)
    farm.wait(lambda: farm.expired == 1, 30, "the idle lease expire")
    assert farm.held() == []


# ------------------------------------------------------------------------------- done when (issue)
def test_all_devices_takes_the_free_phones_and_gives_them_back(farm, tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    code, out, err = run(*device_args(farm, tmp_path, "--all-devices", model, "--json"))
    assert code == 0, err
    rows = json.loads(out)
    assert sorted((row["target"], row["status"]) for row in rows) == [("FARM-A", "ok"), ("FARM-B", "ok")]
    assert "farm phone HELD-C (Pixel 8): held by alice, not taken" in err
    desc = {row["target"]: json.loads(row["target_desc"]) for row in rows}
    assert desc["FARM-B"]["stf"]["url"] == farm.url and desc["FARM-B"]["stf"]["model"] == "Galaxy S23"
    assert desc["FARM-B"]["stf"]["provider"] == "rack-2" and desc["FARM-A"]["stf"]["sdk"] == "34"
    assert all(item["lock"]["released"] for item in desc.values())   # the phone lock, on top of the lease
    assert (farm.taken, farm.released, farm.expired) == (2, 2, 0)
    assert_nothing_leased(farm)
    assert len(farm.adb_keys) == 1 and farm.adb_keys[0]["publickey"].startswith("QAAAA")   # adbkey.pub
    assert_token_nowhere(farm, tmp_path, out, err)


def test_where_selects_on_stf_fields(farm, tmp_path):
    model = tiny_model(tmp_path / "m.tflite")
    code, out, err = run(*device_args(farm, tmp_path, "--all-devices", "--where", "model=Galaxy S23", model,
                                      "--json"))
    assert code == 0, err
    assert [row["target"] for row in json.loads(out)] == ["FARM-B"] and farm.taken == 1
    code, _, err = run(*device_args(farm, tmp_path, "--all-devices", "--where", "abi=x86", model))
    assert code == 2 and "--where abi=x86 selects no phone" in err and err.count("\n") == 1
    code, _, err = run(*device_args(farm, tmp_path, "--all-devices", "--where", "colour=red", model))
    assert code == 2 and "--where colour: STF phones have abi, manufacturer, marketName, model" in err
    assert_nothing_leased(farm)
    assert_token_nowhere(farm, tmp_path, out, err)


def test_bad_input_is_one_line_and_exit_2(farm, tmp_path, monkeypatch):
    model = tiny_model(tmp_path / "m.tflite")
    monkeypatch.setenv("STF_TOKEN", "not-the-token")
    code, out, err = run(*device_args(farm, tmp_path, "--all-devices", model))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "rejected the access token (401 Bad Credentials): check $STF_TOKEN" in err
    assert "not-the-token" not in err
    token = token_file(farm, tmp_path)
    monkeypatch.delenv("STF_TOKEN")
    cases = {   # args -> the line expected
        ("--serial", "NOPE"): "has no phone NOPE (404 Device not found)",
        ("--stf", "http://127.0.0.1:9", "--all-devices"): "is unreachable",
        ("--stf", "ftp://x", "--all-devices"): "is not an http(s)://HOST[:PORT] URL"}
    for extra, expected in cases.items():
        code, _, err = run(*device_args(farm, tmp_path, "--stf-token-file", token, *extra,
                                        model))
        assert code == 2 and expected in err and err.count("\n") == 1, (extra, err)
    code, _, err = run(*device_args(farm, tmp_path, "--serial", "NOPE", model))
    assert code == 2 and "no STF access token" in err
    farm.add("FARM-X86", farm.loopbacks["FARM-A"].serial, abi="x86_64")
    code, _, err = run("device", "--stf", farm.url, "--stf-token-file", token, "--serial",
                       "FARM-X86", model, "--results", tmp_path / "results")   # Google's prebuilt: arm64 only
    assert code == 2 and "farm phone FARM-X86: no prebuilt benchmark_model for the phone's ABI x86_64" in err
    assert farm.taken == 0 and farm.held() == []
    assert_token_nowhere(farm, tmp_path, rows=False)


def test_devices_lists_the_farm_with_whose_each_phone_is(farm, tmp_path, monkeypatch):
    StfClient(farm.url, farm.token).lease("FARM-B", 60)
    code, out, err = run("devices", "--stf", farm.url)
    assert code == 0, err
    lines = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert "free" in lines["FARM-A"] and "yours" in lines["FARM-B"] and "held by alice" in lines["HELD-C"]
    assert "rack-2" in lines["FARM-B"] and "samsung" in lines["FARM-B"] and "34" in lines["FARM-A"]
    code, out, _ = run("devices", "--stf", farm.url, "--json")
    items = {item["serial"]: item for item in json.loads(out)}
    assert items["HELD-C"]["state"] == "held by alice" and items["FARM-A"]["farm"] == farm.url
    assert_token_nowhere(farm, tmp_path, out, err, rows=False)


# --------------------------------------------------------------------------- nothing stays leased
def test_a_failed_run_still_gives_the_phones_back(farm, tmp_path):
    models = [tiny_model(tmp_path / "crash.tflite"), tiny_model(tmp_path / "ok.tflite")]
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-A", *models, "--json"))
    assert code == 1 and "1 of 2 runs failed (first: FARM-A crash.tflite" in err
    assert_nothing_leased(farm)
    assert_token_nowhere(farm, tmp_path, out, err)


def test_an_stf_error_while_leasing_releases_what_was_taken(farm, tmp_path):
    farm.faults[("POST", "/api/v1/user/devices/FARM-B/remoteConnect")] = (504, "Device is not responding")
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-A", "--serial", "FARM-B",
                                      tiny_model(tmp_path / "m.tflite")))
    assert code == 1 and err.count("\n") == 1 and "remoteConnect: 504 Device is not responding" in err
    assert (farm.taken, farm.released) == (2, 2)
    assert_nothing_leased(farm)


def test_the_farm_taking_a_phone_back_mid_run(farm, tmp_path):
    """An STF error mid-run: an admin takes FARM-A; its remote connection closes, its run fails, FARM-B's
    rows are kept, and the release of a phone no longer ours is not an error."""
    farm.loopbacks["FARM-A"].set_benchmark("ok", delay_s=60)
    taker = threading.Thread(target=lambda: (farm.wait(lambda: started(farm.loopbacks["FARM-A"], "m"), 90,
                                                       "FARM-A's run start"), farm.revoke("FARM-A")))
    taker.start()
    try:
        code, out, err = run(*device_args(farm, tmp_path, "--all-devices", tiny_model(tmp_path / "m.tflite"),
                                          "--json"))
    finally:
        taker.join()
    rows = {row["target"]: row for row in json.loads(out)}
    assert code == 1 and rows["FARM-B"]["status"] == "ok", err
    assert rows["FARM-A"]["status"] == "failed"
    assert "connection lost during the run" in rows["FARM-A"]["error"]
    assert "could not release" not in err
    assert_nothing_leased(farm)
    assert_token_nowhere(farm, tmp_path, out, err)


def test_an_adb_error_mid_run_still_gives_the_phone_back(farm, loopback_factory, tmp_path):
    dropping = loopback_factory(drop_on_shell="num_threads=")
    farm.add("FARM-D", dropping.serial)
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-D", tiny_model(tmp_path / "m.tflite"),
                                      "--json"))
    row = json.loads(out)[0]
    assert code == 1 and row["status"] == "failed" and "connection lost during the run" in row["error"], err
    assert_nothing_leased(farm)


def test_a_lease_that_cannot_be_released_is_said_with_its_serial(farm, tmp_path):
    farm.faults[("DELETE", "/api/v1/user/devices/FARM-A")] = (500, "Internal Server Error")
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-A", tiny_model(tmp_path / "m.tflite"),
                                      "--json"))
    assert code == 1 and err.count("\n") == 1, err
    assert f"could not release 1 phone(s) leased from {farm.url}: FARM-A (" in err and "500 Internal" in err
    assert json.loads(out)[0]["status"] == "ok"
    assert farm.held() == ["FARM-A"]    # really still leased: the message is true
    del farm.faults[("DELETE", "/api/v1/user/devices/FARM-A")]


def test_a_long_run_keeps_its_lease_alive(farm, tmp_path):
    """A run silent for longer than the lease's idle timeout: the keep-alive's ADB traffic holds the lease."""
    farm.loopbacks["FARM-A"].set_benchmark("ok", delay_s=7)
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-A", "--stf-lease", "3",
                                      tiny_model(tmp_path / "m.tflite"), "--json"))
    assert code == 0 and json.loads(out)[0]["status"] == "ok", err
    assert farm.expired == 0 and (farm.taken, farm.released) == (1, 1)


@pytest.mark.parametrize("signals", [["SIGINT"], ["SIGINT", "SIGINT"], ["SIGTERM"]],
                         ids=["ctrl-c", "ctrl-c-twice", "sigterm"])
def test_interrupted_runs_give_every_phone_back(farm, tmp_path, signals):
    models = [tiny_model(tmp_path / f"{name}.tflite") for name in ("a", "hang")]
    log = tmp_path / "stderr.txt"
    process = spawn(device_args(farm, tmp_path, "--all-devices", *models), log)
    phone = farm.loopbacks["FARM-A"]
    stopped = []
    try:
        farm.wait(lambda: all(started(farm.loopbacks[name], "hang") for name in ("FARM-A", "FARM-B")),
                  120, "both hang runs start")
        if len(signals) == 2:     # the phone stops answering, so the first Ctrl-C's clean-up cannot finish
            os.kill(phone.process.pid, signal.SIGSTOP)
            stopped.append(phone.process.pid)
        process.send_signal(getattr(signal, signals[0]))
        if len(signals) == 2:
            farm.wait(lambda: "interrupted: stopping the benchmark running on" in log.read_text(), 30,
                      "the first Ctrl-C's message")
            process.send_signal(signal.SIGINT)
        assert process.wait(60) == 130, log.read_text()
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
        process.kill()
    assert_nothing_leased(farm)
    assert (farm.taken, farm.released) == (2, 2)
    text = log.read_text()
    assert "mnbench: interrupted" in text and "leased from" not in text   # no lease failed to be released
    rows = stored_rows(tmp_path / "results")
    assert {(row["target"], row["model"], row["status"]) for row in rows} >= {
        ("FARM-A", "a.tflite", "ok"), ("FARM-B", "a.tflite", "ok")}
    assert_token_nowhere(farm, tmp_path, text)


def test_a_held_phone_is_waited_for_with_lock_wait(farm, tmp_path):
    phone = start_loopback(tmp_path / "phone-c")
    try:
        def alice_gives_it_back() -> None:
            farm.wait(lambda: ("POST", "/api/v1/user/devices", 403) in farm.requests, 60, "a refused lease")
            with farm.lock:
                farm.phones["HELD-C"].doc["owner"] = None
                farm.phones["HELD-C"].adbd = phone.serial

        giver = threading.Thread(target=alice_gives_it_back)
        giver.start()
        code, out, err = run(*device_args(farm, tmp_path, "--serial", "HELD-C", "--lock-wait", "60",
                                          tiny_model(tmp_path / "m.tflite"), "--json"))
        giver.join()
    finally:
        phone.stop()
    assert code == 0 and [row["target"] for row in json.loads(out)] == ["HELD-C"], err
    assert_nothing_leased(farm)


def test_farm_and_adb_server_phones_in_one_run(farm, google_adb, served_loopback, tmp_path):
    server = f"127.0.0.1:{google_adb.server_port}"
    code, out, err = run(*device_args(farm, tmp_path, "--serial", "FARM-A", "--serial",
                                      served_loopback.serial, "--adb-server", server,
                                      tiny_model(tmp_path / "m.tflite"), "--json"))
    assert code == 0, err
    desc = {row["target"]: json.loads(row["target_desc"]) for row in json.loads(out)}
    assert set(desc) == {"FARM-A", served_loopback.serial}
    assert desc[served_loopback.serial]["adb_server"] == server and "stf" not in desc[served_loopback.serial]
    assert desc["FARM-A"]["stf"]["serial"] == "FARM-A"
    assert all(item["lock"]["released"] for item in desc.values())
    assert_nothing_leased(farm)
    assert_token_nowhere(farm, tmp_path, out, err)
