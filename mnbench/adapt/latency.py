"""The latency lookup table: microseconds per layer shape, measured on the target, cached per target and
family.

A layer's entry is keyed by everything that decides its latency (its planned shape: kind, kernel, widths,
stride, spatial size, activation, ...; ``proposals.signature``). Entries come from probe models exported at
the run's precision and timed block by block on the target: on the host with ``mnbench profile``'s slices,
on a phone with one benchmark_model run per block (``export.mixed``'s timers). Every measurement is kept and
the median used. The file lives in ``cache_dir`` as ``<target>_<version>_<quant>_t<threads>.json`` and is
dropped when the tool versions that made it differ from this run's.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from pathlib import Path

from mobilenets_tf.config import ModelConfig

from mnbench.errors import MnbenchFailure

from .proposals import signature

FORMAT = "mnbench-latency-table/1"


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def timing_provenance() -> dict[str, str]:
    """What a table's timings depend on besides target, model family, precision and threads: the tools'
    versions and the export code (a change of lowering, such as a new default stem, gives new timings)."""
    from export.pipeline import code_digest, tool_versions

    return {**tool_versions(), "export code": code_digest()}


class LatencyTable:
    """Median microseconds per layer shape on one target, at one precision and thread count."""

    def __init__(self, cache_dir: Path | None, target: str, version: str, quant: str, threads: int,
                 tools: dict[str, str]):
        self.key = {"target": target, "version": version, "quant": quant, "threads": threads, "tools": tools}
        self.path = None if cache_dir is None else \
            Path(cache_dir) / f"{_safe(target)}_{version}_{quant}_t{threads}.json"
        self.samples: dict[str, list[float]] = {}
        self.loaded = 0
        if self.path is not None and self.path.is_file():
            try:
                record = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                record = {}
            if record.get("format") == FORMAT and record.get("key") == self.key:
                self.samples = {k: [float(v) for v in values] for k, values in record["entries"].items()}
                self.loaded = len(self.samples)

    def has(self, layer) -> bool:
        return signature(layer) in self.samples

    def layer_us(self, layer) -> float:
        """Median microseconds of a layer of this shape (KeyError when never measured)."""
        return statistics.median(self.samples[signature(layer)])

    def missing(self, config: ModelConfig) -> list:
        return [layer for layer in config.plan().layers if not self.has(layer)]

    def model_us(self, config: ModelConfig) -> float:
        """Sum of the table over the model's layers."""
        return sum(self.layer_us(layer) for layer in config.plan().layers)

    def record(self, config: ModelConfig, block_us: dict[str, float]) -> None:
        """Add one probe's block timings (block name -> microseconds) for every layer of ``config``.

        A layer with no slice of its own (the target fused it into a neighbour) costs 0 here.
        """
        for layer in config.plan().layers:
            value = max(0.0, float(block_us.get(layer.name, 0.0)))
            self.samples.setdefault(signature(layer), []).append(value)
        self.save()

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"format": FORMAT, "key": self.key, "entries": self.samples}
        handle, temp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".partial")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                json.dump(record, file, sort_keys=True)
            os.replace(temp, self.path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise


class Target:
    """Exports configurations at the run's precision and times them on the target (host or a phone)."""

    def __init__(self, target: str, quant: str, threads: int, work: Path,
                 benchmark_binary: Path | None = None):
        from export import mixed

        self.name, self.quant, self.threads, self.work = target, quant, threads, Path(work)
        self.benchmark_binary, self.exported = benchmark_binary, {}
        self.timer = mixed.HostTimer(threads) if target == "host" else \
            mixed.PhoneTimer(target, threads, benchmark_binary)

    def model(self, config: ModelConfig) -> bytes:
        """The .tflite of ``config`` at the run's precision (random weights: latency does not depend on
        them)."""
        from export.pipeline import ExportRequest, export_many
        from export.quantization import Quant

        key = json.dumps(config.as_dict(), sort_keys=True)
        if key not in self.exported:            # the start is timed again and again
            request = ExportRequest(config, Quant(self.quant), verify=False, calib_samples=8)
            record = export_many([request], self.work / "models")[0]
            self.exported[key] = (self.work / "models" / record["file"]).read_bytes()
        return self.exported[key]

    def files(self, configs: dict[str, ModelConfig]) -> dict[str, Path]:
        """Each configuration exported at the run's precision into ``work/timed/<name>.tflite``."""
        folder = self.work / "timed"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, config in configs.items():
            paths[name] = folder / f"{name}.tflite"
            paths[name].write_bytes(self.model(config))
        return paths

    def pair_runner(self):
        """The latency gate's runner of two models interleaved (``device_bench.interleave``): a fresh LiteRT
        process on the host, benchmark_model back to back on a phone (its per-phone lock held per run)."""
        from device_bench import interleave

        if self.name == "host":
            return interleave.host_pair_runner()
        from device_bench.android_run import BenchSettings

        return interleave.phone_pair_runner(self.name, "xnnpack", BenchSettings(), self.benchmark_binary,
                                            self.work / "confirm-runs")

    def blocks_us(self, config: ModelConfig) -> dict[str, float]:
        return self.timer.block_us(self.model(config), self.quant)

    def whole_ms(self, configs: dict[str, ModelConfig]) -> dict[str, float]:
        """Each model timed whole, interleaved in rounds (fresh processes on the host)."""
        timed = self.timer.whole_ms({name: self.model(config) for name, config in configs.items()})
        failed = [name for name, ms in timed.items() if ms == float("inf")]
        if failed:
            raise MnbenchFailure(f"timing {', '.join(failed)} on {self.name} failed")
        return timed


def fill(table: LatencyTable, target: Target, probes: list[ModelConfig]) -> int:
    """Time every probe that has a layer the table lacks; return how many were timed."""
    timed = 0
    for config in probes:
        if table.missing(config):
            table.record(config, target.blocks_us(config))
            timed += 1
    return timed
