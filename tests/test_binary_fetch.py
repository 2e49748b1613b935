"""benchmark_model provisioned like a package: Google's versioned prebuilt URL, a cache trusted on first use,
``--benchmark-sha256`` pins, one-line errors, and a fresh install benchmarking a loopback phone with nothing
but a loopback HTTP server standing in for Google's storage (never the internet)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

import mnbench.commands
from device_bench.binary import (BinaryChoice, BinaryUnavailable, litert_release, prebuilt_binary,
                                 prebuilt_url, user_binary)
from device_bench.errors import DownloadFailed
from device_bench.fetch import LOCK_FILE, cache_path, fetch, read_lock
from mnbench.commands.device import device, devices
from tests.loopback_adb.fixtures import FAKE_BENCHMARK
from tests.test_device_run import tiny_model
from tests.helpers import run_cli as run

pytestmark = pytest.mark.timeout(60)
FAST = ["--runs", "3", "--min-secs", "0", "--cooldown-max-wait", "0"]
TOOL_PATH = f"/litert/binaries/{litert_release()}/android_arm64/benchmark_model"


def cache_files(cache: Path) -> list[Path]:
    return sorted(path for path in cache.rglob("*") if path.is_file() and path.name != ".lock")


@pytest.fixture(autouse=True)
def device_commands(monkeypatch, adb_home):
    monkeypatch.setattr(mnbench.commands, "COMMANDS", [*mnbench.commands.COMMANDS, devices, device])


# ---------------------------------------------------------------------------------------- the URL
def test_prebuilt_url_follows_googles_release_layout(monkeypatch):
    monkeypatch.delenv("MNBENCH_BINARIES_URL")
    assert prebuilt_url("arm64-v8a", "2.3.0") == (
        "https://storage.googleapis.com/litert/binaries/2.3.0/android_arm64/benchmark_model")
    assert prebuilt_url("arm64-v8a").split("/")[-3] == litert_release()
    monkeypatch.setenv("MNBENCH_BINARIES_URL", "http://127.0.0.1:9/mirror/")
    assert prebuilt_url("arm64-v8a", "nightly") == (
        "http://127.0.0.1:9/mirror/nightly/android_arm64/benchmark_model")
    with pytest.raises(BinaryUnavailable) as raised:
        prebuilt_binary(["x86_64", "x86"])
    assert str(raised.value) == ("no prebuilt benchmark_model for the phone's ABI x86_64 (Google publishes "
                                 "arm64-v8a only): pass --benchmark-binary PATH (your own build) instead")
    with pytest.raises(BinaryUnavailable, match="is not 64 hexadecimal digits"):
        BinaryChoice(sha256="abc")


# ------------------------------------------------------------------------------ download and trust
def test_first_download_is_recorded_cached_and_later_changes_refused(loopback_http, tmp_path):
    url, cache = loopback_http.base + "/tool", tmp_path / "cache"
    loopback_http.files["/tool"] = b"\x7fELF first release"
    first = fetch(url, cache, executable=True)
    digest = hashlib.sha256(b"\x7fELF first release").hexdigest()
    assert (first.sha256, first.downloaded, first.path) == (digest, True, cache_path(cache, url))
    assert first.path.read_bytes() == b"\x7fELF first release" and os.access(first.path, os.X_OK)
    assert read_lock(cache) == {url: {"sha256": digest, "size_bytes": 18}}
    assert fetch(url, cache).downloaded is False and loopback_http.requests == ["/tool"]   # fetched once
    # The file on the server changes and the cached copy is gone: the new file is refused, the lock kept.
    loopback_http.files["/tool"] = b"\x7fELF something else"
    first.path.unlink()
    with pytest.raises(DownloadFailed) as raised:
        fetch(url, cache)
    message = str(raised.value)
    changed = hashlib.sha256(b"\x7fELF something else").hexdigest()
    assert message.startswith(f"{url} now has sha256 {changed}")
    assert f"not {digest} from the first download (recorded in {LOCK_FILE}): refused" in message
    assert cache_files(cache) == [cache / LOCK_FILE] and read_lock(cache)[url]["sha256"] == digest
    # A cached copy that was tampered with is replaced by a fresh download only if that matches the lock.
    loopback_http.files["/tool"] = b"\x7fELF first release"
    assert fetch(url, cache).downloaded is True
    first.path.write_bytes(b"tampered")
    assert fetch(url, cache).path.read_bytes() == b"\x7fELF first release"


def test_pin_is_checked_and_replaces_the_recorded_hash(loopback_http, tmp_path):
    url, cache = loopback_http.base + "/tool", tmp_path / "cache"
    loopback_http.files["/tool"] = b"release two"
    with pytest.raises(DownloadFailed, match=f"not {'0' * 64} from --benchmark-sha256: refused; or pass"):
        fetch(url, cache, pin_sha256="0" * 64, hint="or pass --benchmark-binary PATH")
    assert cache_files(cache) == []
    good = hashlib.sha256(b"release two").hexdigest()
    assert fetch(url, cache, pin_sha256=good.upper()).sha256 == good
    assert read_lock(cache)[url]["sha256"] == good
    mine = tmp_path / "benchmark_model"
    mine.write_bytes(b"my build")
    with pytest.raises(BinaryUnavailable, match="not the pinned --benchmark-sha256 0000"):
        user_binary(mine, "0" * 64)
    assert user_binary(mine, hashlib.sha256(b"my build").hexdigest()).source == str(mine.resolve())


@pytest.mark.parametrize("fault, message", [
    ("truncated", "download of {url} was truncated: 5000 of 10000 bytes; pass --benchmark-binary"),
    ("missing", "cannot download {url}: HTTP 404 no such object; pass --benchmark-binary"),
    ("offline", "cannot download {url}: [Errno 111] Connection refused; pass --benchmark-binary"),
])
def test_failed_downloads_are_one_line_and_leave_nothing(loopback_http, tmp_path, fault, message):
    url = {"offline": os.environ["MNBENCH_BINARIES_URL"] + "/tool"}.get(fault, loopback_http.base + "/tool")
    if fault == "truncated":
        loopback_http.files["/tool"] = os.urandom(10000)
        loopback_http.truncate.add("/tool")
    with pytest.raises(DownloadFailed) as raised:
        fetch(url, tmp_path / "cache", hint="pass --benchmark-binary PATH")
    assert str(raised.value).startswith(message.format(url=url)) and "\n" not in str(raised.value)
    assert cache_files(tmp_path / "cache") == []


# ------------------------------------------------------------------------------ a fresh install
def test_fresh_install_benchmarks_a_phone_with_the_prebuilt(loopback_http, loopback_device, tmp_path,
                                                           monkeypatch):
    """Done when: no --benchmark-binary; fetched from a loopback URL, cached, its hash recorded in the row."""
    monkeypatch.setenv("MNBENCH_BINARIES_URL", loopback_http.base + "/litert/binaries")
    monkeypatch.setenv("MNBENCH_CACHE_DIR", str(tmp_path / "fresh-cache"))
    loopback_http.files[TOOL_PATH] = FAKE_BENCHMARK.read_bytes()
    digest = hashlib.sha256(FAKE_BENCHMARK.read_bytes()).hexdigest()
    model = tiny_model(tmp_path / "m.tflite")
    loopback_device.set_benchmark("ok", tool="compiled_model")  # what Google publishes
    for _ in range(2):
        code, out, err = run("device", "--serial", loopback_device.serial, model, "--json",
                             "--results", tmp_path / "results", *FAST)
        assert code == 0, err
        (row,) = json.loads(out)
        binary = json.loads(row["target_desc"])["binary"]
        assert (row["status"], binary["kind"], binary["sha256"]) == ("ok", "prebuilt", digest)
        assert binary["source"] == loopback_http.base + TOOL_PATH
        assert (binary["tool"], json.loads(row["target_desc"])["run"]["tool"]) == ("compiled_model",) * 2
        assert "LiteRT release" in binary["tool_known_from"]
        warnings = json.loads(row["target_desc"])["run"]["warnings"]
        assert not any("ignored flags" in warning for warning in warnings)
    calls = loopback_device.host_path("/.loopback/fake_benchmark_calls.jsonl").read_text().splitlines()
    assert json.loads(calls[-1])["argv"][5:] == ["--use_cpu=true"]
    assert not loopback_device.host_path("/.loopback/fake_benchmark_probes.jsonl").exists()  # not asked
    # A mirror serving a classic build there: the flags it ignored are never silent.
    loopback_device.set_benchmark("ok", tool="classic")
    code, out, err = run("device", "--serial", loopback_device.serial, model, "--json",
                         "--results", tmp_path / "results", *FAST)
    (row,) = json.loads(out)
    assert ("benchmark_model ignored flags mnbench passed (Unconsumed cmdline flags: --use_cpu=true): the "
            "row may not measure what was asked") in json.loads(row["target_desc"])["run"]["warnings"]
    assert loopback_http.requests == [TOOL_PATH]                 # downloaded once, then cached
    assert read_lock(tmp_path / "fresh-cache")[loopback_http.base + TOOL_PATH]["sha256"] == digest
    code, _, err = run("device", "--serial", loopback_device.serial, model, "--benchmark-sha256", "1" * 64,
                       "--results", tmp_path / "results", *FAST)
    assert code == 1 and f"not {'1' * 64} from --benchmark-sha256: refused" in err


def test_devices_check_says_whether_the_binary_is_ready(loopback_http, google_adb, served_loopback, tmp_path,
                                                        monkeypatch):
    monkeypatch.setenv("MNBENCH_BINARIES_URL", loopback_http.base + "/litert/binaries")
    loopback_http.files[TOOL_PATH] = FAKE_BENCHMARK.read_bytes()
    server = f"127.0.0.1:{google_adb.server_port}"

    def state() -> str:
        code, out, err = run("devices", "--adb-server", server, "--check", "--json")
        assert code == 0, err
        return next(item for item in json.loads(out) if item["serial"] == served_loopback.serial)[
            "benchmark_model"]

    assert state() == f"will download {loopback_http.base}{TOOL_PATH}"
    code, _, err = run("device", "--adb-server", server, "--serial", served_loopback.serial,
                       tiny_model(tmp_path / "m.tflite"), "--results", tmp_path / "results", *FAST)
    assert code == 0, err
    assert state().startswith(f"ready ({loopback_http.base}{TOOL_PATH}, sha256 ")
    mine = tmp_path / "benchmark_model"
    mine.write_bytes(b"#!/bin/sh\n")
    code, out, _ = run("devices", "--adb-server", server, "--check", "--benchmark-binary", mine)
    assert code == 0 and f"will push {mine.resolve()} (sha256 " in out and server in out
    assert loopback_http.requests == [TOOL_PATH]
