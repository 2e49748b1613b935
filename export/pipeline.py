"""One export: build, calibrate, convert, verify, embed the configuration, write atomically, describe.

Files: ``<out>/<version>_a<alpha>_r<resolution>[_<knobs>]_<quant>.tflite`` and a sidecar ``.json`` beside it.
A model whose sidecar records the same cache key (configuration, weights, calibration, quantization, tool
versions) and whose file still has the recorded sha256 is reused unless ``force``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mnbench.errors import ExportError
from mobilenets_tf.config import ModelConfig

from . import calibration, tflite_file
from .quantization import IoType, Quant, configure_converter

DEFAULT_OUT = Path("results/models")


@dataclass(frozen=True)
class ExportRequest:
    config: ModelConfig
    quant: Quant
    io: IoType = IoType.INT8
    weights: Path | None = None
    calib_dir: Path | None = None
    calib_samples: int = 100
    verify: bool = True


def model_stem(config: ModelConfig, quant: Quant, io: IoType = IoType.INT8) -> str:
    """``v3-small_a1.00_r224_int8``, with non-default knobs, classes and I/O type spelled out."""
    parts = [config.version, f"a{config.alpha:.2f}", f"r{config.resolution}"]
    parts += [f"{k}-{str(v).lower()}" for k, v in sorted(config.non_default_knobs.items())]
    if config.num_classes != 1000:
        parts.append(f"c{config.num_classes}")
    parts.append(quant.value)
    if quant is Quant.INT8 and io is not IoType.INT8:
        parts.append(f"io{io.value}")
    return "_".join(parts)


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    import mnbench

    result = {"mnbench": mnbench.__version__}
    for package in ("tensorflow", "keras", "ai-edge-litert"):
        try:
            result[package] = version(package)
        except PackageNotFoundError:
            result[package] = "not installed"
    return result


def cache_key(request: ExportRequest, calib: calibration.CalibrationSet | None, weights_sha: str | None) -> str:
    payload = {"config": request.config.as_dict(), "quant": request.quant.value, "io": request.io.value,
               "weights": weights_sha or "random", "verify": request.verify, "tools": tool_versions(),
               "calibration": calib.digest if calib else None, "samples": request.calib_samples}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cached(tflite: Path, sidecar: Path, key: str) -> dict | None:
    if not (tflite.is_file() and sidecar.is_file()):
        return None
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("cache_key") != key or recorded.get("sha256") != tflite_file.sha256(tflite.read_bytes()):
        return None
    return recorded


def _writable_dir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise ExportError(f"output folder {out_dir} is not writable")
    return out_dir


def _atomic_write(path: Path, data: bytes) -> None:
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def convert(model, request: ExportRequest, calib: calibration.CalibrationSet | None) -> bytes:
    """Keras model -> .tflite bytes for ``request.quant`` (TensorFlow's converter, output silenced)."""
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf

    from mnbench.quiet import captured

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    representative = None
    if calib is not None:
        representative = lambda: ([image[None]] for image in calib.images)  # noqa: E731
    configure_converter(converter, request.quant, request.io, representative)
    try:
        with captured():
            return converter.convert()
    except Exception as error:
        raise ExportError(f"conversion failed: {' '.join(str(error).split())[:300]}") from None


def export(request: ExportRequest, out_dir: Path = DEFAULT_OUT, force: bool = False) -> dict:
    """Export one model; return its sidecar (with ``"cached": True`` when an up-to-date file was reused)."""
    started = time.perf_counter()
    out_dir = _writable_dir(Path(out_dir))
    stem = model_stem(request.config, request.quant, request.io)
    tflite, sidecar = out_dir / f"{stem}.tflite", out_dir / f"{stem}.json"
    needs_images = request.quant is Quant.INT8 or request.verify or request.weights is None
    spec = request.config.spec
    calib = (calibration.load(request.calib_dir, request.calib_samples, request.config.resolution, spec.input_range)
             if needs_images else None)
    weights_sha = None
    if request.weights is not None:
        from .weights import file_digest

        if not Path(request.weights).is_file():
            raise ExportError(f"weights file {request.weights} does not exist")
        weights_sha = file_digest(request.weights)
    key = cache_key(request, calib, weights_sha)
    if not force and (recorded := _cached(tflite, sidecar, key)):
        return {**recorded, "cached": True}
    return _build_and_write(request, calib, key, tflite, sidecar, started)


def _build_and_write(request, calib, key, tflite: Path, sidecar: Path, started: float) -> dict:
    from .verify import verify
    from .weights import build_model

    images = calib.images if calib is not None else None
    model, weights = build_model(request.config, request.weights, images)
    data = convert(model, request, calib if request.quant is Quant.INT8 else None)
    embedded = {"config": request.config.as_dict(), "quant": request.quant.value, "io": request.io.value,
                "weights": weights["source"], "input_range": list(request.config.spec.input_range),
                "mnbench": tool_versions()["mnbench"]}
    data = tflite_file.embed_metadata(data, embedded)
    verification = None
    if request.verify:
        verification = verify(data, model, images, request.quant)
    _atomic_write(tflite, data)
    info = tflite_file.describe(tflite)
    report = request.config.cost()
    record = {
        "file": tflite.name, "sha256": info["sha256"], "size_bytes": info["size_bytes"],
        "config": request.config.as_dict(), "version": request.config.version, "alpha": request.config.alpha,
        "resolution": request.config.resolution, "knobs": request.config.knobs,
        "params": report.params, "macs": report.macs, "quant": request.quant.value, "io": request.io.value,
        "inputs": info["inputs"], "outputs": info["outputs"], "op_histogram": info["op_histogram"],
        "float_ops": info["float_ops"] if request.quant is Quant.INT8 else [],
        "delegation": info["delegation"], "weights": weights,
        "calibration": {"source": calib.source, "samples": calib.count} if calib is not None else None,
        "verification": verification, "tool_versions": tool_versions(),
        "export_seconds": round(time.perf_counter() - started, 2),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cache_key": key,
    }
    _atomic_write(sidecar, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
    return {**record, "cached": False}
