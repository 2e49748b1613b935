"""Device facts (device_bench.device_facts): parsing, core pinning, and reading them from the loopback device.

The loopback device answers getprop, /sys cpufreq/thermal files and ``dumpsys battery`` from its profile
(tests/loopback_adb/sandbox.py); facts are read directly over TCP and through Google's adb server.
"""

from __future__ import annotations

import pytest

from device_bench.adb_direct import AdbDirectTransport
from device_bench.adb_server import AdbServer, AdbServerTransport
from device_bench.device_facts import (FACTS_SCRIPT, CpuCore, DeviceFacts, cpu_mask, parse_facts, pin_cores,
                                       read_facts, read_temperatures)

pytestmark = pytest.mark.timeout(60)

LOOPBACK_CLUSTERS = [{"max_freq_khz": 1803000, "cpus": [0, 1, 2, 3]},
                     {"max_freq_khz": 2348000, "cpus": [4, 5]},
                     {"max_freq_khz": 2850000, "cpus": [6, 7]}]


def _facts(*freqs: int | None) -> DeviceFacts:
    return DeviceFacts("x", cpus=tuple(CpuCore(index, freq, None) for index, freq in enumerate(freqs)))


# ---------------------------------------------------------------------------------------------- pure
def test_parse_facts_reads_tagged_lines_and_leaves_the_unknown_as_none():
    text = "\n".join([
        "[ro.product.model]: [Pixel 7]", "[ro.product.manufacturer]: [Google]",
        "[ro.board.platform]: [gs201]",
        "[ro.product.cpu.abi]: [arm64-v8a]", "[ro.product.cpu.abilist]: [arm64-v8a,armeabi-v7a]",
        "[ro.build.version.sdk]: [34]", "[ro.build.version.release]: []",
        "cpu|0|1803000|schedutil", "cpu|1||", "cpu|2|2850000|performance",
        "zone|0|41000|BIG", "zone|1||skin", "zone|2|-273000|broken", "zone|3|38|degrees kernel",
        "battemp|", "batlevel|55", "dumpsys|  level: 87", "dumpsys|  temperature: 301",
        "tool|taskset|/system/bin/taskset", "tool|sha256sum|", "noise without a tag", "[not: a prop]"])
    facts = parse_facts(text, "SERIAL")
    assert (facts.serial, facts.model, facts.manufacturer, facts.board_platform) == (
        "SERIAL", "Pixel 7", "Google", "gs201")
    assert facts.soc_model is None and facts.android_release is None and facts.fingerprint is None
    assert facts.abilist == ("arm64-v8a", "armeabi-v7a") and facts.sdk == 34
    assert facts.cpus == (CpuCore(0, 1803000, "schedutil"), CpuCore(1, None, None),
                          CpuCore(2, 2850000, "performance"))
    assert [(zone.zone, zone.type, zone.temp_c) for zone in facts.temperatures.zones] == [
        (0, "BIG", 41.0), (1, "skin", None), (2, "broken", None), (3, "degrees kernel", 38.0)]
    assert facts.temperatures.battery_c == 30.1  # /sys had none: dumpsys tenths of °C
    assert facts.battery_level_pct == 87  # dumpsys wins over /sys capacity
    assert facts.tools == {"taskset": True, "sha256sum": False}
    assert facts.has_tool("taskset") and not facts.has_tool("sha256sum") and facts.has_tool("pkill")
    assert facts.clusters() == [{"max_freq_khz": 1803000, "cpus": [0]},
                                {"max_freq_khz": 2850000, "cpus": [2]}]
    assert facts.temperatures.hottest().type == "BIG"
    assert parse_facts("", "EMPTY") == DeviceFacts("EMPTY")


@pytest.mark.parametrize("freqs, threads, cores, mask", [
    ((1803000,) * 4 + (2348000,) * 2 + (2850000,) * 2, 1, (7,), "80"),  # the loopback profile
    ((1803000,) * 4 + (2348000,) * 2 + (2850000,) * 2, 2, (6, 7), "c0"),
    ((1803000,) * 4 + (2348000,) * 2 + (2850000,) * 2, 4, (4, 5, 6, 7), "f0"),  # big cluster too small
    ((1803000,) * 4 + (2348000,) * 2 + (2850000,) * 2, 8, tuple(range(8)), "ff"),
    ((1400000,) * 4 + (2400000,) * 4, 1, (7,), "80"),
    ((1400000,) * 4 + (2400000,) * 4, 4, (4, 5, 6, 7), "f0"),  # Pixel 2's f0
    ((2400000,) * 2 + (1400000,) * 6, 1, (1,), "2"),  # big cores numbered first
    ((1400000, None, 2400000, None), 2, (0, 2), "5"),  # unknown cores are never chosen
    ((None, None), 1, (), None),
])
def test_pin_cores_prefers_the_fastest_cluster(freqs, threads, cores, mask):
    facts = _facts(*freqs)
    assert pin_cores(facts, threads) == cores
    assert cpu_mask(cores) == mask


def test_facts_script_is_one_command_with_tagged_output():
    assert FACTS_SCRIPT.startswith("getprop\n")
    for tag in ("cpu|", "zone|", "battemp|", "batlevel|", "dumpsys|", "tool|"):
        assert tag in FACTS_SCRIPT


# ---------------------------------------------------------------------------------------- loopback
def _check_profile_facts(facts: DeviceFacts, serial: str) -> None:
    assert facts.serial == serial
    identity = (facts.model, facts.manufacturer, facts.board_platform, facts.soc_model,
                facts.soc_manufacturer)
    assert identity == ("Loopback Phone 7", "mnbench", "gs201", "GS201", "Google")
    assert (facts.abi, facts.android_release, facts.sdk) == ("arm64-v8a", "14", 34)
    assert facts.abilist == ("arm64-v8a", "armeabi-v7a", "armeabi")
    assert facts.fingerprint.startswith("mnbench/loopback_phone/")
    assert len(facts.cpus) == 8 and {core.governor for core in facts.cpus} == {"schedutil"}
    assert facts.clusters() == LOOPBACK_CLUSTERS
    assert [(zone.type, zone.temp_c) for zone in facts.temperatures.zones] == [
        ("BIG", 41.0), ("MID", 39.5), ("LITTLE", 37.25), ("battery", 30.1)]
    assert facts.temperatures.battery_c == 30.1 and facts.battery_level_pct == 87
    assert facts.tools == {"taskset": True, "sha256sum": True, "pkill": True}


def test_read_facts_direct_in_one_round_trip(loopback_device, adb_key):
    with AdbDirectTransport.tcp(loopback_device.host, loopback_device.port, key_path=adb_key) as transport:
        spawned = len(loopback_device.events("spawn"))
        facts = read_facts(transport, loopback_device.serial)
        assert len(loopback_device.events("spawn")) == spawned + 1
    _check_profile_facts(facts, loopback_device.serial)
    data = facts.as_dict()
    assert data["clusters"] == LOOPBACK_CLUSTERS and data["thermal_zone_types"]["0"] == "BIG"
    assert data["temperatures"]["hottest_c"] == 41.0 and data["temperatures"]["hottest_zone"] == "0:BIG"


def test_missing_files_and_properties_are_unknown(loopback_factory, adb_key):
    profile = {"props": {"ro.soc.model": "", "ro.build.version.sdk": ""}}
    device = loopback_factory(profile=profile)
    (device.host_path("/sys/devices/system/cpu/cpu3/cpufreq/cpuinfo_max_freq")).unlink()
    (device.host_path("/sys/devices/system/cpu/cpu5/cpufreq/scaling_governor")).unlink()
    (device.host_path("/sys/class/thermal/thermal_zone1/temp")).unlink()
    (device.host_path("/sys/class/power_supply/battery/temp")).unlink()
    (device.sandbox / "system/bin/dumpsys").unlink()
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key) as transport:
        facts = read_facts(transport, device.serial)
        temperatures = read_temperatures(transport)
    assert facts.soc_model is None and facts.sdk is None and facts.model == "Loopback Phone 7"
    assert facts.cpus[3] == CpuCore(3, None, "schedutil") and facts.cpus[5] == CpuCore(5, 2348000, None)
    assert facts.clusters()[0]["cpus"] == [0, 1, 2]
    assert facts.temperatures.zones[1].temp_c is None and facts.temperatures.zones[1].type == "MID"
    assert facts.temperatures.battery_c is None  # neither /sys nor dumpsys
    assert facts.battery_level_pct == 87  # /sys capacity when dumpsys is gone
    assert temperatures == facts.temperatures


def test_no_cpufreq_no_thermal_means_no_pinning(loopback_factory, adb_key):
    device = loopback_factory(profile={"cpus": [], "thermal_zones": []})
    with AdbDirectTransport.tcp(device.host, device.port, key_path=adb_key) as transport:
        facts = read_facts(transport, device.serial)
    assert facts.cpus == () and facts.clusters() == [] and pin_cores(facts, 1) == ()
    assert facts.temperatures.zones == () and facts.temperatures.hottest() is None


def test_read_facts_through_googles_adb_server(google_adb, served_loopback):
    transport = AdbServerTransport(served_loopback.serial, server=AdbServer(port=google_adb.server_port))
    _check_profile_facts(read_facts(transport, served_loopback.serial), served_loopback.serial)
