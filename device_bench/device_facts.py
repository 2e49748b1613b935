"""What a phone is, read in one shell round trip: identity, CPU clusters, thermal state, battery.

:func:`read_facts` runs :data:`FACTS_SCRIPT` (``getprop``, ``/sys`` cpufreq and thermal files, ``dumpsys
battery``) and :func:`parse_facts` reads its tagged lines back. A file or property the device does not have is
``None`` (unknown), never an error. :func:`read_temperatures` re-reads only the thermal zones, for the
temperatures before and after each run and for the cool-down between runs. :func:`pin_cores` picks the cores
``taskset`` pins a run to: the fastest cluster, one of its cores for a single thread (the "single large core"
of the MobileNetV3 paper's Pixel measurements).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

from .transport import Transport

FACTS_TIMEOUT_S = 30.0
# Thermal zones report millidegrees Celsius; a few report degrees. Readings outside this range are not
# temperatures (disabled sensors print -273000 or garbage) and count as unknown.
_PLAUSIBLE_C = (-40.0, 200.0)

_ZONES = (
    "for z in /sys/class/thermal/thermal_zone*; do [ -d \"$z\" ] || continue; "
    "printf 'zone|%s|%s|%s\\n' \"${z##*thermal_zone}\" \"$(cat \"$z/temp\" 2>/dev/null)\" "
    "\"$(cat \"$z/type\" 2>/dev/null)\"; done\n"
    "printf 'battemp|%s\\n' \"$(cat /sys/class/power_supply/battery/temp 2>/dev/null)\"\n")
#: Prints every fact as a tagged line; runs under mksh/toybox (Android) and dash (the loopback device).
FACTS_SCRIPT = (
    "getprop\n"
    "for d in /sys/devices/system/cpu/cpu[0-9]*; do [ -d \"$d\" ] || continue; "
    "printf 'cpu|%s|%s|%s\\n' \"${d##*/cpu}\" \"$(cat \"$d/cpufreq/cpuinfo_max_freq\" 2>/dev/null)\" "
    "\"$(cat \"$d/cpufreq/scaling_governor\" 2>/dev/null)\"; done\n"
    + _ZONES +
    "printf 'batlevel|%s\\n' \"$(cat /sys/class/power_supply/battery/capacity 2>/dev/null)\"\n"
    "dumpsys battery 2>/dev/null | sed 's/^/dumpsys|/'\n"
    "for t in taskset sha256sum pkill; do printf 'tool|%s|%s\\n' \"$t\" \"$(command -v \"$t\")\"; done\n")
#: Only the temperatures (thermal zones and battery).
TEMPERATURES_SCRIPT = _ZONES

_PROP_RE = re.compile(r"^\[(?P<key>[^\]]+)\]: \[(?P<value>.*)\]$")
_DUMPSYS_RE = re.compile(r"^\s*(?P<key>level|temperature):\s*(?P<value>-?\d+)\s*$")
_PROPS = {"model": "ro.product.model", "manufacturer": "ro.product.manufacturer",
          "board_platform": "ro.board.platform", "soc_manufacturer": "ro.soc.manufacturer",
          "soc_model": "ro.soc.model", "abi": "ro.product.cpu.abi", "abilist": "ro.product.cpu.abilist",
          "android_release": "ro.build.version.release", "sdk": "ro.build.version.sdk",
          "fingerprint": "ro.build.fingerprint", "hardware": "ro.hardware"}


@dataclass(frozen=True)
class CpuCore:
    """One core: its index, ``cpuinfo_max_freq`` (kHz) and ``scaling_governor``; None when unreadable."""

    index: int
    max_freq_khz: int | None
    governor: str | None


@dataclass(frozen=True)
class ThermalZone:
    """``/sys/class/thermal/thermal_zone<zone>``: its ``type`` and temperature in °C (None: unreadable)."""

    zone: int
    type: str | None
    temp_c: float | None


@dataclass(frozen=True)
class Temperatures:
    """One reading of every thermal zone and the battery."""

    zones: tuple[ThermalZone, ...]
    battery_c: float | None

    def hottest(self) -> ThermalZone | None:
        """The zone with the highest known temperature, or None when no zone reads."""
        known = [zone for zone in self.zones if zone.temp_c is not None]
        return max(known, key=lambda zone: zone.temp_c) if known else None

    def as_dict(self) -> dict:
        hottest = self.hottest()
        return {"hottest_c": hottest.temp_c if hottest else None,
                "hottest_zone": f"{hottest.zone}:{hottest.type}" if hottest else None,
                "zones_c": {str(zone.zone): zone.temp_c for zone in self.zones}, "battery_c": self.battery_c}


@dataclass(frozen=True)
class DeviceFacts:
    """The facts recorded with every result of a device (``target_desc``); None = unknown."""

    serial: str
    model: str | None = None
    manufacturer: str | None = None
    board_platform: str | None = None
    soc_manufacturer: str | None = None
    soc_model: str | None = None
    hardware: str | None = None
    abi: str | None = None
    abilist: tuple[str, ...] = ()
    android_release: str | None = None
    sdk: int | None = None
    fingerprint: str | None = None
    cpus: tuple[CpuCore, ...] = ()
    temperatures: Temperatures = Temperatures((), None)
    battery_level_pct: int | None = None
    tools: dict[str, bool] = field(default_factory=dict)

    def clusters(self) -> list[dict]:
        """Cores grouped by max frequency, slowest first; the last one is the big (fastest) cluster."""
        groups: dict[int, list[int]] = {}
        for core in self.cpus:
            if core.max_freq_khz is not None:
                groups.setdefault(core.max_freq_khz, []).append(core.index)
        return [{"max_freq_khz": freq, "cpus": sorted(groups[freq])} for freq in sorted(groups)]

    def has_tool(self, name: str) -> bool:
        """Whether ``command -v name`` found the tool; True when it was not checked."""
        return self.tools.get(name, True)

    def as_dict(self) -> dict:
        """JSON-ready facts, with the clusters and the temperatures when the facts were read."""
        data = dataclasses.asdict(self)
        data["abilist"] = list(self.abilist)
        data["temperatures"] = self.temperatures.as_dict()
        data["thermal_zone_types"] = {str(zone.zone): zone.type for zone in self.temperatures.zones}
        data["clusters"] = self.clusters()
        return data


def read_facts(transport: Transport, serial: str, timeout_s: float = FACTS_TIMEOUT_S) -> DeviceFacts:
    """Read the device's facts with one shell command.

    Raises:
        CommandFailed: the script itself could not run (its exit status is ignored otherwise).
        DeviceError: the connection failed (ConnectionLost, CommandTimeout, ...).
    """
    completed = transport.shell(FACTS_SCRIPT, timeout_s)
    return parse_facts(completed.stdout + completed.stderr, serial)


def read_temperatures(transport: Transport, timeout_s: float = FACTS_TIMEOUT_S) -> Temperatures:
    """Read every thermal zone and the battery temperature with one shell command."""
    completed = transport.shell(TEMPERATURES_SCRIPT, timeout_s)
    return _temperatures(_tagged(completed.stdout + completed.stderr))


def parse_facts(text: str, serial: str) -> DeviceFacts:
    """Facts from the output of :data:`FACTS_SCRIPT` (pure; missing lines give None)."""
    props = {match["key"]: match["value"] for line in text.splitlines()
             if (match := _PROP_RE.match(line.strip()))}
    values = {name: props.get(key) or None for name, key in _PROPS.items()}
    tagged = _tagged(text)
    cpus = []
    for rest in tagged.get("cpu", []):
        index, freq, governor = _fields(rest, 3)
        if index.strip().isdigit():
            cpus.append(CpuCore(int(index), _int(freq), governor.strip() or None))
    battery = {match["key"]: int(match["value"]) for rest in tagged.get("dumpsys", [])
               if (match := _DUMPSYS_RE.match(rest))}
    temperatures = _temperatures(tagged)
    if temperatures.battery_c is None and "temperature" in battery:
        temperatures = Temperatures(temperatures.zones, _celsius(battery["temperature"], milli=False))
    tools = {name: bool(path.strip()) for name, path in (_fields(rest, 2) for rest in tagged.get("tool", []))}
    values["abilist"] = tuple(filter(None, (values["abilist"] or "").split(",")))
    values["sdk"] = _int(values["sdk"])
    level = battery.get("level", _int(_last(tagged.get("batlevel"))))
    return DeviceFacts(serial=serial, **values, cpus=tuple(sorted(cpus, key=lambda core: core.index)),
                       temperatures=temperatures, battery_level_pct=level, tools=tools)


def pin_cores(facts: DeviceFacts, threads: int) -> tuple[int, ...]:
    """The cores a run with ``threads`` threads is pinned to; () when no core's frequency is known.

    One thread: the highest-numbered core of the fastest cluster. Up to the fastest cluster's size: that
    whole cluster. More threads: the fastest ``threads`` cores (the big cluster, then the next ones).
    """
    clusters = facts.clusters()
    if not clusters or threads < 1:
        return ()
    fastest = clusters[-1]["cpus"]
    if threads == 1:
        return (fastest[-1],)
    if threads <= len(fastest):
        return tuple(fastest)
    ordered = [cpu for cluster in reversed(clusters) for cpu in reversed(cluster["cpus"])]
    return tuple(sorted(ordered[:threads]))


def cpu_mask(cores: tuple[int, ...]) -> str | None:
    """``taskset`` mask in hex without ``0x`` (cores 4-7 -> ``f0``), None for no cores."""
    return format(sum(1 << core for core in cores), "x") if cores else None


def _tagged(text: str) -> dict[str, list[str]]:
    tagged: dict[str, list[str]] = {}
    for line in text.splitlines():
        tag, sep, rest = line.partition("|")
        if sep and tag.isalpha():
            tagged.setdefault(tag, []).append(rest)
    return tagged


def _temperatures(tagged: dict[str, list[str]]) -> Temperatures:
    zones = []
    for rest in tagged.get("zone", []):
        index, temp, kind = _fields(rest, 3)
        if index.strip().isdigit():
            zones.append(ThermalZone(int(index), kind.strip() or None, _celsius(_int(temp), milli=True)))
    battery = _celsius(_int(_last(tagged.get("battemp"))), milli=False)
    return Temperatures(tuple(sorted(zones, key=lambda zone: zone.zone)), battery)


def _celsius(value: int | None, milli: bool) -> float | None:
    """Thermal zones: m°C (or °C on a few kernels); battery: tenths of °C."""
    if value is None:
        return None
    celsius = (value / 1000 if abs(value) > 500 else float(value)) if milli else value / 10
    return celsius if _PLAUSIBLE_C[0] <= celsius <= _PLAUSIBLE_C[1] else None


def _fields(rest: str, count: int) -> list[str]:
    parts = rest.split("|", count - 1)
    return parts + [""] * (count - len(parts))


def _int(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _last(values: list[str] | None) -> str | None:
    return values[-1] if values else None
