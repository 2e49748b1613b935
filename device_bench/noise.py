"""How busy the machine was while we measured: load, CPU steal, frequency, other processes' CPU.

Read from Linux's ``/proc`` and ``/sys`` (absent elsewhere: the figures are then None). ``snapshot()``
before and after a measurement, ``between()`` gives the rates over it; ``heavy()`` says in words when the
machine was too busy for a quiet measurement. Our own CPU time (this process and the finished workers it
waited for) is subtracted, so "other processes" means everything that is not the benchmark.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import dataclass

__all__ = ["HEAVY_LOAD_PER_CORE", "HEAVY_OTHER_CPU", "HEAVY_STEAL", "Noise", "Snapshot", "between", "heavy",
           "snapshot"]

HEAVY_OTHER_CPU = 0.25  # other processes used more than a quarter of all cores
HEAVY_STEAL = 0.05      # the hypervisor took more than 5 % of the CPU time
HEAVY_LOAD_PER_CORE = 1.0


@dataclass(frozen=True)
class Snapshot:
    wall: float
    cpu_jiffies: tuple[int, ...] | None  # /proc/stat "cpu": user nice system idle iowait irq softirq steal
    own_cpu_s: float


@dataclass(frozen=True)
class Noise:
    """Rates over one measurement; None where the system does not tell."""

    seconds: float
    load1: float | None
    cores: int
    busy: float | None        # fraction of all cores busy (anyone)
    other_cpu: float | None   # fraction of all cores used by processes other than ours
    steal: float | None       # fraction of CPU time stolen by the hypervisor
    freq_mhz: float | None    # mean current frequency of the cores, where cpufreq is exposed

    def as_dict(self) -> dict:
        return {key: getattr(self, key) for key in self.__dataclass_fields__}


def _cpu_jiffies() -> tuple[int, ...] | None:
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return tuple(int(value) for value in fields[1:9])


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def snapshot() -> Snapshot:
    return Snapshot(time.monotonic(), _cpu_jiffies(), _own_cpu_s())


def _freq_mhz() -> float | None:
    values = []
    for path in glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq"):
        try:
            with open(path) as file:
                values.append(int(file.read().strip()) / 1000)
        except (OSError, ValueError):
            continue
    return sum(values) / len(values) if values else None


def between(before: Snapshot, after: Snapshot) -> Noise:
    """The machine's business from ``before`` to ``after``."""
    seconds = max(after.wall - before.wall, 1e-9)
    cores = os.cpu_count() or 1
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    busy = other = steal = None
    if before.cpu_jiffies and after.cpu_jiffies:
        delta = [b - a for a, b in zip(before.cpu_jiffies, after.cpu_jiffies)]
        total = sum(delta)
        if total > 0:
            idle = delta[3] + delta[4]
            busy = (total - idle) / total
            steal = delta[7] / total
            tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
            # In jiffies on both sides: the machine's counters tick at 1/tick s, so over a short window
            # a share of wall time could exceed 1; a share of the counted jiffies cannot.
            own = (after.own_cpu_s - before.own_cpu_s) * tick
            other = min(1.0, max(0.0, total - idle - delta[7] - own) / total)
    return Noise(seconds, load1, cores, busy, other, steal, _freq_mhz())


def heavy(noise: Noise) -> str | None:
    """Why the machine was too busy for a quiet measurement, in a few words; None if it was not."""
    reasons = []
    if noise.other_cpu is not None and noise.other_cpu > HEAVY_OTHER_CPU:
        reasons.append(f"other processes used {noise.other_cpu:.0%} of the CPU")
    if noise.steal is not None and noise.steal > HEAVY_STEAL:
        reasons.append(f"the hypervisor stole {noise.steal:.0%}")
    if noise.load1 is not None and noise.load1 > HEAVY_LOAD_PER_CORE * noise.cores:
        reasons.append(f"load {noise.load1:.1f} on {noise.cores} cores")
    return ", ".join(reasons) or None
