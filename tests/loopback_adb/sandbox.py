"""The loopback device's file system: a host folder that stands in for the phone's.

Device paths such as ``/data/local/tmp/x`` live at ``<root>/data/local/tmp/x``. ``getprop``, ``dumpsys
battery``, ``/sys`` cpufreq/thermal files and ``/proc/cpuinfo`` are generated from a device PROFILE (a dict,
optionally loaded from JSON). Commands run with the host's ``/bin/sh`` (dash, not mksh/toybox), with
``<root>/system/bin`` first on PATH; absolute device paths in the command text are rewritten to sandbox paths
and the sandbox prefix is removed from the output again. This is a test fixture, not a security boundary:
paths built at run time (``cd data``, ``$X/data``) are not rewritten.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

DEFAULT_PROFILE: dict[str, Any] = {
    "props": {
        "ro.product.name": "loopback_phone",
        "ro.product.model": "Loopback Phone 7",
        "ro.product.device": "loopback",
        "ro.product.manufacturer": "mnbench",
        "ro.product.brand": "mnbench",
        "ro.board.platform": "gs201",
        "ro.soc.manufacturer": "Google",
        "ro.soc.model": "GS201",
        "ro.product.cpu.abi": "arm64-v8a",
        "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.build.version.release": "14",
        "ro.build.version.sdk": "34",
        "ro.build.fingerprint":
            "mnbench/loopback_phone/loopback:14/UQ1A.240105.004/11206848:user/release-keys",
        "ro.serialno": "LOOPBACK0001",
    },
    # One entry per core, little cores first, as cpufreq reports them.
    "cpus": [{"max_freq_khz": 1803000, "governor": "schedutil"}] * 4
    + [{"max_freq_khz": 2348000, "governor": "schedutil"}] * 2
    + [{"max_freq_khz": 2850000, "governor": "schedutil"}] * 2,
    "thermal_zones": [
        {"type": "BIG", "temp_mC": 41000},
        {"type": "MID", "temp_mC": 39500},
        {"type": "LITTLE", "temp_mC": 37250},
        {"type": "battery", "temp_mC": 30100},
    ],
    "battery": {"level": 87, "temp_dC": 301, "status": 2, "ac_powered": False, "usb_powered": True},
    "cpuinfo": "Hardware\t: Loopback GS201\n",
}

# Top-level device folders whose absolute paths are rewritten into the sandbox.
MAPPED_TOP_DIRS = ("data", "sdcard", "storage", "sys", "system", "vendor", "mnt")
MAPPED_PROC_FILES = ("cpuinfo", "meminfo")
# Host tools exposed under /system/bin so scripts that spell /system/bin/<tool> still work.
TOOLBOX = ("sh", "cat", "ls", "rm", "mkdir", "chmod", "cp", "mv", "touch", "echo", "sleep", "kill",
           "ps", "id", "uname", "stat", "head", "tail", "grep", "sed", "awk", "wc", "printf", "env",
           "sha256sum", "md5sum", "nproc", "true", "false", "test", "df", "date", "cmp")
STATE_DIR = ".loopback"
_SAFE_ROOT = re.compile(r"^[A-Za-z0-9_./+-]+$")


def load_profile(path: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The default profile, updated key by key (``props`` merged) with a JSON file if given."""
    profile = copy.deepcopy(DEFAULT_PROFILE)
    if path:
        loaded = json.loads(Path(path).read_text())
        profile["props"].update(loaded.pop("props", {}))
        profile.update(loaded)
    return profile


class Sandbox:
    """A sandbox folder laid out like the device parts mnbench touches."""

    def __init__(self, root: str | os.PathLike[str], profile: dict[str, Any] | None = None) -> None:
        self.root = Path(root).resolve()
        if not _SAFE_ROOT.match(str(self.root)):
            raise ValueError(f"sandbox path {self.root} must not contain shell metacharacters")
        self.profile = profile if profile is not None else load_profile(None)
        self.state_dir = self.root / STATE_DIR
        self.bin_dir = self.root / "system" / "bin"
        self._events_lock = threading.Lock()
        proc = "|".join(re.escape(f"proc/{name}") for name in MAPPED_PROC_FILES)
        tops = "|".join(MAPPED_TOP_DIRS)
        # An absolute path starts after a quote, a space or an operator, never inside a word or a path.
        self._path_pattern = re.compile(rf"(?<![\w.~/$-])/(?=(?:{tops})(?:/|\b)|(?:{proc})\b)")

    # ----------------------------------------------------------------- layout
    def create(self) -> "Sandbox":
        """Create the folders, device files, shims and state files from the profile."""
        for folder in ("data/local/tmp", "sdcard", "storage/emulated/0", "vendor", "mnt", "proc"):
            (self.root / folder).mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        self._write_props()
        self._write_sys()
        self._write_shims()
        return self

    def _write_props(self) -> None:
        lines = [f"{key}={value}" for key, value in sorted(self.profile["props"].items())]
        (self.state_dir / "props").write_text("\n".join(lines) + "\n")
        battery = self.profile["battery"]
        dumpsys = (
            "Current Battery Service state:\n"
            f"  AC powered: {str(battery.get('ac_powered', False)).lower()}\n"
            f"  USB powered: {str(battery.get('usb_powered', True)).lower()}\n"
            "  Wireless powered: false\n"
            f"  status: {battery.get('status', 2)}\n  health: 2\n  present: true\n"
            f"  level: {battery['level']}\n  scale: 100\n  voltage: 4312\n"
            f"  temperature: {battery['temp_dC']}\n  technology: Li-ion\n")
        (self.state_dir / "dumpsys_battery").write_text(dumpsys)

    def _write_sys(self) -> None:
        cpus = self.profile["cpus"]
        cpu_root = self.root / "sys/devices/system/cpu"
        cpu_root.mkdir(parents=True, exist_ok=True)
        span = f"0-{len(cpus) - 1}\n"
        for name in ("possible", "present", "online"):
            (cpu_root / name).write_text(span)
        for index, cpu in enumerate(cpus):
            freq = cpu_root / f"cpu{index}" / "cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            files = {"cpuinfo_max_freq": cpu["max_freq_khz"], "scaling_max_freq": cpu["max_freq_khz"],
                     "scaling_cur_freq": cpu.get("cur_freq_khz", cpu["max_freq_khz"]),
                     "cpuinfo_min_freq": cpu.get("min_freq_khz", 300000),
                     "scaling_governor": cpu["governor"],
                     "scaling_available_governors": "schedutil performance powersave"}
            for name, value in files.items():
                (freq / name).write_text(f"{value}\n")
        for index, zone in enumerate(self.profile["thermal_zones"]):
            folder = self.root / f"sys/class/thermal/thermal_zone{index}"
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "type").write_text(f"{zone['type']}\n")
            (folder / "temp").write_text(f"{zone['temp_mC']}\n")
        battery = self.root / "sys/class/power_supply/battery"
        battery.mkdir(parents=True, exist_ok=True)
        (battery / "capacity").write_text(f"{self.profile['battery']['level']}\n")
        (battery / "temp").write_text(f"{self.profile['battery']['temp_dC']}\n")
        if self.profile.get("cpuinfo"):
            (self.root / "proc/cpuinfo").write_text(self.profile["cpuinfo"])

    def _write_shims(self) -> None:
        state = self.state_dir
        shims = {
            "getprop": (
                f"props='{state}/props'\n"
                "if [ $# -eq 0 ]; then\n"
                "  awk '{i=index($0,\"=\"); printf \"[%s]: [%s]\\n\", substr($0,1,i-1), substr($0,i+1)}' "
                "\"$props\"\n  exit 0\nfi\n"
                "awk -v key=\"$1\" -v dflt=\"$2\" 'BEGIN{found=0} "
                "{i=index($0,\"=\"); if (!found && substr($0,1,i-1)==key) {print substr($0,i+1); found=1}} "
                "END{if (!found) print dflt}' \"$props\"\n"),
            "dumpsys": (
                "case \"$1\" in\n"
                f"  battery) cat '{state}/dumpsys_battery' ;;\n"
                "  *) echo \"Can't find service: $1\" ;;\nesac\n"),
            # toybox syntax: taskset [-p] MASK [PID | COMMAND...]. Affinity is recorded, not applied: CI hosts
            # have fewer cores than the phone's masks name.
            "taskset": (
                "if [ \"$1\" = \"-p\" ]; then echo \"pid $3's new affinity mask: $2\"; exit 0; fi\n"
                "mask=\"$1\"\nshift\n"
                "case \"$mask\" in ''|*[!0-9a-fA-Fx]*)\n"
                "  echo \"taskset: bad mask '$mask'\" >&2; exit 1 ;;\nesac\n"
                "[ $# -gt 0 ] || { echo 'usage: taskset MASK COMMAND...' >&2; exit 1; }\n"
                f"printf '%s %s\\n' \"$mask\" \"$*\" | sed 's#{self.root}/#/#g' >> '{state}/taskset.log'\n"
                "exec \"$@\"\n"),
        }
        for name, body in shims.items():
            path = self.bin_dir / name
            path.write_text("#!/bin/sh\n" + body)
            path.chmod(0o755)
        links = {tool: shutil.which(tool) for tool in TOOLBOX}
        links["python3"] = sys.executable  # the fake benchmark binary is a Python script
        for tool, target in links.items():
            link = self.bin_dir / tool
            if target and not link.exists():
                link.symlink_to(target)

    # --------------------------------------------------------------- mapping
    def map_command(self, command: str) -> str:
        """Rewrite absolute device paths in command text to sandbox paths (best effort, see module doc)."""
        return self._path_pattern.sub(lambda match: f"{self.root}/", command)

    def host_path(self, device_path: str) -> Path:
        """The sandbox path for an absolute device path used by the sync service.

        Raises:
            PermissionError: the path escapes the sandbox.
        """
        relative = os.path.normpath("/" + device_path.lstrip("/")).lstrip("/")
        path = self.root / relative if relative not in ("", ".") else self.root
        if os.path.commonpath([self.root, path.parent.resolve()]) != str(self.root):
            raise PermissionError(f"{device_path}: outside the device")
        return path

    def output_unmapper(self) -> "OutputUnmapper":
        """A streaming filter that turns sandbox paths in command output back into device paths."""
        return OutputUnmapper(str(self.root).encode() + b"/")

    def environment(self) -> dict[str, str]:
        """Environment for device commands: shims first on PATH, Android-like variables."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("ADB_", "ANDROID_"))}
        env.update(PATH=f"{self.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
                   HOME=str(self.root / "data/local/tmp"), TMPDIR=str(self.root / "data/local/tmp"),
                   ANDROID_DATA="/data", ANDROID_ROOT="/system", LOOPBACK_SANDBOX=str(self.root))
        return env

    # ---------------------------------------------------------------- events
    def record(self, event: str, **fields: Any) -> None:
        """Append one JSON line to ``<root>/.loopback/events.jsonl`` (tests read it back)."""
        line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, default=str)
        with self._events_lock, open(self.state_dir / "events.jsonl", "a") as handle:
            handle.write(line + "\n")

    def banner(self, features: str) -> bytes:
        """The CNXN banner; ``adb devices -l`` takes product/model/device from it, not from getprop."""
        props = self.profile["props"]
        fields = [f"{key}={props.get(key, '')}" for key in
                  ("ro.product.name", "ro.product.model", "ro.product.device")]
        return f"device::{';'.join(fields)};features={features}".encode()


class OutputUnmapper:
    """Removes a prefix from a byte stream, holding back only a tail that may be the prefix's start."""

    def __init__(self, prefix: bytes) -> None:
        self._prefix = prefix
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        """Filter a chunk; may keep up to ``len(prefix) - 1`` bytes for the next call."""
        text = (self._pending + data).replace(self._prefix, b"/")
        keep = 0
        for size in range(min(len(text), len(self._prefix) - 1), 0, -1):
            if self._prefix.startswith(text[-size:]):
                keep = size
                break
        self._pending = text[len(text) - keep:] if keep else b""
        return text[:len(text) - keep] if keep else text

    def flush(self) -> bytes:
        """Whatever was held back (at end of stream)."""
        pending, self._pending = self._pending, b""
        return pending
