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

from device_bench import tflite_file
from mobilenets_tf.config import ModelConfig
from mobilenets_tf.specs import HSwishForm

from . import calibration
from .errors import ExportError, ExportWriteError
from .quantization import DEFAULT_LOWERING, IoType, Lowering, Quant, configure_converter
from .stem import Stem, default_stem, effective_stem

DEFAULT_OUT = Path("results/models")


@dataclass(frozen=True)
class ExportRequest:
    config: ModelConfig
    quant: Quant
    io: IoType = IoType.INT8
    weights: Path | None = None
    calib_dir: Path | None = None
    calib_samples: int = 64
    verify: bool = True
    hswish: Lowering = DEFAULT_LOWERING["host"]
    precision: str = "int8"                 # int8: every block int8; auto: latency-aware mix (export.mixed)
    float_blocks: tuple[str, ...] = ()      # explicit mixed precision: these blocks stay float32
    threads: int = 2                        # the thread count precision=auto decides for
    target: str = "host"                    # where precision=auto times: host, or a phone's serial
    benchmark_binary: Path | None = None    # benchmark_model for a phone target (None: Google's prebuilt)
    int8_softmax: bool = False              # keep the final softmax in int8 models (XNNPACK cannot run it)
    stem: Stem | None = None                # int8 first-convolution lowering (None: export.stem.default_stem)

    @property
    def ends_in_softmax(self) -> bool:
        """int8 models end at the logits unless asked: XNNPACK has no int8 softmax, so keeping it would
        leave the graph not fully delegated; top-1/top-5 are the same on logits."""
        return self.config.include_top and (self.quant is not Quant.INT8 or self.int8_softmax)

    @property
    def lowering(self) -> Lowering | None:
        """The h-swish lowering that applies: only int8 models with h-swish layers have one."""
        knobs = self.config.knobs
        has_hswish = self.config.version.startswith("v3") and knobs.get("activation") == "hswish" \
            and not knobs.get("minimalistic")
        return self.hswish if self.quant is Quant.INT8 and has_hswish else None

    @property
    def stem_lowering(self) -> Stem | None:
        """The stem lowering that applies: int8 models only (float models keep the convolution as built)."""
        if self.quant is not Quant.INT8:
            return None
        return self.stem or default_stem(self.config)


def model_stem(config: ModelConfig, quant: Quant, io: IoType = IoType.INT8,
               lowering: Lowering | None = None) -> str:
    """``v3-small_a1.00_r224_int8``, with non-default knobs, classes, per-layer widths (a digest), I/O type
    and lowering spelled out."""
    parts = [config.version, f"a{config.alpha:.2f}", f"r{config.resolution}"]
    parts += [f"{k}-{str(v).lower()}" for k, v in sorted(config.non_default_knobs.items())]
    if config.num_classes != 1000:
        parts.append(f"c{config.num_classes}")
    if config.widths:   # per-layer widths (mnbench adapt): a digest keeps names short and distinct
        parts.append("w" + hashlib.sha256(json.dumps(config.widths, sort_keys=True).encode()).hexdigest()[:8])
    parts.append(quant.value)
    if quant is Quant.INT8 and io is not IoType.INT8:
        parts.append(f"io{io.value}")
    if lowering is not None and lowering is not DEFAULT_LOWERING["host"]:
        parts.append(f"hswish-{lowering.value}")
    return "_".join(parts)


def request_stem(request: ExportRequest) -> str:
    """File name stem of a request: ``model_stem`` plus its precision choices."""
    stem = model_stem(request.config, request.quant, request.io, request.lowering)
    if request.quant is Quant.INT8 and request.precision == "auto":
        where = "" if request.target == "host" else \
            "-" + "".join(c if c.isalnum() else "-" for c in request.target)
        stem += f"_precision-auto{where}-t{request.threads}"
    if request.quant is Quant.INT8 and request.float_blocks:
        stem += "_float-" + "-".join(request.float_blocks)
    if request.quant is Quant.INT8 and request.int8_softmax:
        stem += "_softmax"
    if request.stem_lowering not in (None, default_stem(request.config)):
        stem += f"_stem-{request.stem_lowering.value}"
    return stem


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from device_bench.provenance import toolkit_version

    result = {"mnbench": toolkit_version()}
    for package in ("tensorflow", "keras", "ai-edge-litert"):
        try:
            result[package] = version(package)
        except PackageNotFoundError:
            result[package] = "not installed"
    return result


# The packages an exported model's bytes depend on: export and every package it imports (the builders, and
# device_bench's .tflite file layer and slicing for mixed precision); tests/test_layers.py keeps it complete.
SOURCE_PACKAGES = ("mobilenets_tf", "device_bench", "export")


def code_digest(root: Path = Path(__file__).resolve().parent.parent) -> str:
    """sha256 of the sources of ``SOURCE_PACKAGES`` under ``root``: a model made by other code is not up
    to date."""
    digest = hashlib.sha256()
    for package in SOURCE_PACKAGES:
        for source in sorted((root / package).rglob("*.py")):
            digest.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


def cache_key(request: ExportRequest, calib: calibration.CalibrationSet | None,
              weights_sha: str | None) -> str:
    payload = {"config": request.config.as_dict(), "quant": request.quant.value, "io": request.io.value,
               "hswish": request.lowering.value if request.lowering else None,
               "softmax": request.ends_in_softmax,
               "stem": request.stem_lowering.value if request.stem_lowering else None,
               "precision": [request.precision, list(request.float_blocks),
                             [request.threads, request.target] if request.precision == "auto" else None],
               "weights": weights_sha or "random", "verify": request.verify, "tools": tool_versions(),
               "code": code_digest(),
               "calibration": calib.digest if calib else None, "samples": request.calib_samples}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _cached(tflite: Path, sidecar: Path, key: str) -> dict | None:
    if not (tflite.is_file() and sidecar.is_file()):
        return None
    try:
        recorded = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    if recorded.get("cache_key") != key or recorded.get("sha256") != tflite_file.sha256(tflite):
        return None
    return recorded


def _writable_dir(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ExportWriteError(f"cannot create output folder {out_dir}: {error.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise ExportWriteError(f"output folder {out_dir} is not writable")
    return out_dir


def _temp_copy(path: Path, data: bytes) -> Path:
    """``data`` in a flushed temporary file beside ``path``, readable as a normal file would be."""
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)     # mkstemp's 0600 would hide the model from other users
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)


def _write_together(files: dict[Path, Path]) -> None:
    """Rename every temporary file onto its final path, or on any failure remove them all (and any final
    path already renamed): a model never stands without its sidecar."""
    done: list[Path] = []
    try:
        for final, temp in files.items():
            os.replace(temp, final)
            done.append(final)
    except BaseException:
        for path in [*files.values(), *done]:
            path.unlink(missing_ok=True)
        raise


@dataclass
class _Prepared:
    """What every quantization of one model shares: the Keras model, frozen graphs, reference outputs."""

    model: object
    weights: dict
    reference: tuple | None
    frozen: dict

    def frozen_graph(self, config: ModelConfig, hswish: HSwishForm, softmax: bool = True,
                     stem: Stem = Stem.CONV):
        """The model as a frozen concrete function, with h-swish built as ``hswish``, ending in a softmax
        or at the logits, its stem lowered as ``stem`` (export.stem; same weights)."""
        key = (hswish, softmax and config.include_top, stem)
        if key not in self.frozen:
            from mobilenets_tf import _quiet  # noqa: F401

            import tensorflow as tf
            from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

            from mobilenets_tf.builder import build_from_config
            from mobilenets_tf.keras_apps import transfer_weights

            from .stem import rewrite_stem

            model = self.model
            if key[:2] != (HSwishForm.BUILTIN, config.include_top):
                model = build_from_config(config, batch_size=1, hswish=hswish,
                                          classifier_activation="softmax" if key[1] else None)
                transfer_weights(self.model, model)
            model = rewrite_stem(model, stem)
            # A frozen concrete function converts to the same graph as from_keras_model (which writes a
            # SavedModel first) in less than half the time.
            spec = tf.TensorSpec(model.input.shape, tf.float32, name="image")
            function = tf.function(lambda image: model(image, training=False)).get_concrete_function(spec)
            self.frozen[key] = convert_variables_to_constants_v2(function)
        return self.frozen[key]


def _prepare(request: ExportRequest, calib: calibration.CalibrationSet | None) -> _Prepared:
    from .verify import keras_reference
    from .weights import build_model

    images = calib.images if calib is not None else None
    model, weights = build_model(request.config, request.weights, images)
    reference = keras_reference(model, images) if request.verify else None
    return _Prepared(model, weights, reference, {})


def convert(prepared: _Prepared, request: ExportRequest,
            calib: calibration.CalibrationSet | None) -> tuple[bytes, dict]:
    """Frozen Keras graph -> .tflite bytes for ``request.quant`` (TensorFlow's converter, output silenced)."""
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf

    from device_bench.quiet import captured

    if request.quant is Quant.INT8:
        return _convert_int8(prepared, request, calib)
    converter = tf.lite.TFLiteConverter.from_concrete_functions([prepared.frozen_graph(request.config,
                                                                                       HSwishForm.BUILTIN)])
    configure_converter(converter, request.quant)
    try:
        with captured():
            return converter.convert(), {}
    except Exception as error:
        raise ExportError(f"conversion failed: {' '.join(str(error).split())[:300]}") from None


def _convert_int8(prepared: _Prepared, request: ExportRequest, calib) -> tuple[bytes, dict]:
    from .int8 import quantize

    hswish = request.lowering.form if request.lowering else HSwishForm.BUILTIN
    lowering = request.lowering or Lowering.FUSED

    def build(stem: Stem, blocks: tuple[str, ...] = ()) -> tuple[bytes, dict]:
        """The int8 model with the stem lowered as ``stem`` and ``blocks`` kept float32."""
        frozen = prepared.frozen_graph(request.config, hswish, request.ends_in_softmax, stem)
        stem_blocks = ("stem",) if stem is Stem.FLOAT else ()
        return quantize(frozen, calib.images, request.io, lowering,
                        tuple(dict.fromkeys(stem_blocks + blocks)))

    stem, stem_note = effective_stem(prepared.model, request.stem_lowering)
    data, info = build(stem, request.float_blocks)
    requested = request.stem.value if request.stem else f"default ({request.stem_lowering.value})"
    info["stem"] = {"requested": requested, "lowering": stem.value, **stem_note}
    if request.precision != "auto":
        return data, info
    from . import mixed
    from .verify import compare, keras_reference, run_tflite

    reference = prepared.reference or keras_reference(prepared.model, calib.images)
    fp32, _ = convert(prepared, ExportRequest(request.config, Quant.FP32), calib)

    def sqnr(model: bytes) -> float:
        outputs, logits = run_tflite(model, calib.images)
        if reference[1] is None:
            return compare(reference[0], outputs)["sqnr_db"]
        return compare(reference[1], logits if request.ends_in_softmax else outputs)["sqnr_db"]

    # Every other stem lowering that applies is a candidate too, so the choice is at least as fast here as
    # the best fixed lowering.
    others = [other for other in Stem
              if other is not stem and effective_stem(prepared.model, other)[0] is other]
    alternatives = {f"int8-stem-{other.value}": build(other, request.float_blocks)[0] for other in others}
    timer = mixed.HostTimer(request.threads) if request.target == "host" else \
        mixed.PhoneTimer(request.target, request.threads, request.benchmark_binary)
    data, decision = mixed.decide(fp32, data, lambda blocks: build(stem, blocks)[0], sqnr, timer,
                                  alternatives)
    chosen = decision["chosen"]
    if chosen.startswith("int8-stem-"):
        info["stem"]["lowering"] = chosen.removeprefix("int8-stem-")
        info["float_blocks"] = list(dict.fromkeys(
            (["stem"] if info["stem"]["lowering"] == "float" else []) + list(request.float_blocks)))
    elif chosen == "mixed":
        info["float_blocks"] = list(dict.fromkeys(
            (["stem"] if stem is Stem.FLOAT else []) + decision["float_blocks"]))
    return data, {**info, "precision": decision}


def int8_choices(conversion: dict) -> dict:
    """What an int8 export chose (stem lowering, float blocks) and how: fixed defaults, or timed on which
    CPU."""
    from device_bench.host import cpu_facts

    decision = conversion.get("precision")
    basis = {"by": "fixed", "exported_on": cpu_facts()} if decision is None else \
        {"by": "precision auto", "target": decision["target"], "threads": decision["threads"],
         "measured_on": decision.get("measured_on"), "chosen": decision["chosen"]}
    return {"stem": conversion["stem"]["lowering"], "float_blocks": conversion.get("float_blocks", []),
            **basis}


def _group_key(request: ExportRequest) -> tuple:
    return (request.config.to_json(), request.io, request.weights, request.calib_dir, request.calib_samples,
            request.verify)


def export_many(requests: list[ExportRequest], out_dir: Path = DEFAULT_OUT, force: bool = False,
                on_done=None) -> list[dict]:
    """Export several models; those differing only in quantization share one build and one reference run.

    Returns one sidecar per request, in order (``"cached": True`` when an up-to-date file was reused).
    """
    out_dir = _writable_dir(Path(out_dir))
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(_group_key(request), []).append(index)
    results: list[dict | None] = [None] * len(requests)
    for indices in groups.values():
        first = requests[indices[0]]
        calib = _calibration([requests[i] for i in indices])
        weights_sha = _weights_digest(first.weights)
        prepared = None
        for index in indices:
            started = time.perf_counter()
            request = requests[index]
            stem = request_stem(request)
            tflite, sidecar = out_dir / f"{stem}.tflite", out_dir / f"{stem}.json"
            key = cache_key(request, calib, weights_sha)
            recorded = None if force else _cached(tflite, sidecar, key)
            if recorded:
                results[index] = {**recorded, "cached": True}
            else:
                prepared = prepared or _prepare(request, calib)
                results[index] = _write(prepared, request, calib, key, tflite, sidecar, started)
            if on_done:
                on_done(results[index])
    return results


def export(request: ExportRequest, out_dir: Path = DEFAULT_OUT, force: bool = False) -> dict:
    """Export one model (see :func:`export_many`)."""
    return export_many([request], out_dir, force)[0]


def _calibration(group: list[ExportRequest]) -> calibration.CalibrationSet | None:
    """Images for a group of requests for one model, if any of them calibrates, verifies or sets BatchNorm."""
    if not any(r.quant is Quant.INT8 or r.verify or r.weights is None for r in group):
        return None
    request = group[0]
    spec = request.config.spec
    return calibration.load(request.calib_dir, request.calib_samples, request.config.resolution,
                            spec.input_range)


def _weights_digest(weights: Path | None) -> str | None:
    if weights is None:
        return None
    if not Path(weights).is_file():
        raise ExportError(f"weights file {weights} does not exist")
    return tflite_file.sha256(weights)


def _write(prepared: _Prepared, request: ExportRequest, calib, key: str, tflite: Path, sidecar: Path,
           started: float) -> dict:
    from .verify import verify

    data, conversion = convert(prepared, request, calib)
    lowering = request.lowering.value if request.lowering else None
    output = "probabilities" if request.ends_in_softmax else "logits"
    choices = int8_choices(conversion) if request.quant is Quant.INT8 else None
    report = request.config.cost()
    embedded = {"config": request.config.as_dict(), "quant": request.quant.value, "io": request.io.value,
                "hswish": lowering, "output": output, "params": report.params, "macs": report.macs,
                "int8_choices": choices,
                "weights": prepared.weights["source"], "input_range": list(request.config.spec.input_range),
                "mnbench": tool_versions()["mnbench"]}
    data = tflite_file.embed_metadata(data, embedded)
    verification = None
    if request.verify:
        verification = verify(data, prepared.reference, calib.images, request.quant, request.ends_in_softmax)
    temps: dict[Path, Path] = {}
    try:
        temps[tflite] = _temp_copy(tflite, data)
        record = _record(request, prepared, calib, key, tflite, tflite_file.describe(temps[tflite]),
                         conversion, verification, started)
        temps[sidecar] = _temp_copy(sidecar, (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        _write_together(temps)
    except OSError as error:
        raise ExportWriteError(f"cannot write {tflite} and its sidecar: {error.strerror or error}") from None
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
    return {**record, "cached": False}


def _record(request: ExportRequest, prepared: _Prepared, calib, key: str, tflite: Path, info: dict,
            conversion: dict, verification: dict | None, started: float) -> dict:
    """The sidecar of one model file."""
    lowering = request.lowering.value if request.lowering else None
    output = "probabilities" if request.ends_in_softmax else "logits"
    choices = int8_choices(conversion) if request.quant is Quant.INT8 else None
    report = request.config.cost()
    record = {
        "file": tflite.name, "sha256": info["sha256"], "size_bytes": info["size_bytes"],
        "config": request.config.as_dict(), "version": request.config.version, "alpha": request.config.alpha,
        "resolution": request.config.resolution, "knobs": request.config.knobs,
        "params": report.params, "macs": report.macs, "quant": request.quant.value, "io": request.io.value,
        "hswish": lowering, "output": output, "int8_choices": choices, "conversion": conversion,
        "inputs": info["inputs"], "outputs": info["outputs"], "op_histogram": info["op_histogram"],
        "float_ops": info["float_ops"] if request.quant is Quant.INT8 else [],
        "integer": info["integer"],
        "delegation": info["delegation"], "weights": prepared.weights,
        "calibration": {"source": calib.source, "samples": calib.count} if calib is not None else None,
        "verification": verification, "tool_versions": tool_versions(),
        "export_seconds": round(time.perf_counter() - started, 2),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cache_key": key,
    }
    return record
