"""Accuracy of .tflite models on labeled images, run by the LiteRT interpreter (no TensorFlow).

Each model sees its own preprocessing, read from the configuration mnbench embedded in it: the shorter side
resized to resolution / 0.875, a centre crop, pixels scaled to its input range (V1/V2 [-1, 1], V3 [0, 255])
-- exactly what export calibration feeds it (``export.calibration.preprocess``). Images are decoded once
and every model is run on them, so models of one configuration (fp32 and int8) see identical inputs.

Model outputs map to the data's classes by name when the model's class names are known (``--class-names``,
names embedded in the model, or the sidecar of the weights it was exported from), else by integer class
names (``7`` is output 7), else by sorted position when the counts agree.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device_bench.tflite_file import open_interpreter, read_bytes, read_metadata, sha256
from export.calibration import preprocess

from ..errors import MnbenchError

from . import datasets, metrics
from .datasets import LabeledImages
from .errors import ClassMismatchError, DatasetError


@dataclass
class ModelUnderTest:
    """One opened model: its interpreter, input/output details, preprocessing and class names."""

    path: Path
    sha256: str
    metadata: dict | None
    interpreter: object
    input: dict
    output: dict
    resolution: int
    input_range: tuple[float, float]
    class_names: list[str] | None
    names_source: str
    scores: list = field(default_factory=list)

    @property
    def outputs(self) -> int:
        return int(self.output["shape"][-1])


def read_class_names(path: Path) -> list[str]:
    """Class names from a finetune sidecar (``*.json`` with ``class_names``), a JSON list, or one per line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read class names {path}: {error}") from None
    if path.suffix.lower() == ".json":
        try:
            value = json.loads(text)
            names = value["class_names"] if isinstance(value, dict) else value
            if not isinstance(names, list):
                raise TypeError("expected a list")
        except (ValueError, KeyError, TypeError) as error:
            raise DatasetError(f"class names file {path}: {error}") from None
        return [str(name) for name in names]
    names = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not names:
        raise DatasetError(f"class names file {path} is empty")
    return names


def _names_from_export_sidecar(path: Path, digest: str) -> list[str] | None:
    """Class names of the weights a model was exported from, found through the export sidecar beside it."""
    from .weights_file import read_sidecar

    sidecar = path.with_suffix(".json")
    try:
        record = json.loads(sidecar.read_text())
        weights = record["weights"]
        if record.get("sha256") != digest or not weights.get("sha256"):
            return None
        weights_path = Path(weights["source"].rsplit(" (", 1)[0])
        carried = read_sidecar(weights_path) if weights_path.is_file() else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, MnbenchError):
        return None      # no export sidecar, or a stale or corrupt weights sidecar: no names from here
    if carried is None or carried.record.get("weights_sha256") != weights["sha256"]:
        return None
    return list(carried.class_names)


def _class_names(path: Path, digest: str, metadata: dict | None, explicit: list[str] | None):
    if explicit is not None:
        return list(explicit), "--class-names"
    if metadata and metadata.get("class_names"):
        return [str(n) for n in metadata["class_names"]], "embedded in the model"
    names = _names_from_export_sidecar(path, digest)
    if names is not None:
        return names, "sidecar of the weights the model was exported from"
    return None, "none"


def open_model(path: Path, threads: int = 2, input_range: tuple[float, float] | None = None,
               class_names: list[str] | None = None) -> ModelUnderTest:
    """Open a classifier .tflite and work out its preprocessing and class names.

    Raises:
        ModelFileError: not a loadable .tflite.
        ClassMismatchError: not a (1, H, W, 3) -> (1, classes) model, or class names that do not fit it.
        DatasetError: a model mnbench did not export, without ``input_range``.
    """
    path = Path(path)
    data = read_bytes(path)
    metadata = read_metadata(data)
    interpreter = open_interpreter(data, num_threads=threads)
    (inp,), outputs = interpreter.get_input_details(), interpreter.get_output_details()
    shape = [int(s) for s in inp["shape"]]
    if len(shape) != 4 or shape[0] != 1 or shape[1] != shape[2] or shape[3] != 3 or len(outputs) != 1 \
            or len(outputs[0]["shape"]) != 2:
        raise ClassMismatchError(f"{path.name} is not an image classifier with input (1, H, W, 3) and output "
                                 f"(1, classes): input {shape}, "
                                 f"outputs {[list(o['shape']) for o in outputs]}")
    if input_range is None:
        if not metadata or "input_range" not in metadata:
            raise DatasetError(f"{path.name} carries no mnbench configuration; pass --input-range LOW,HIGH "
                               "(e.g. 0,255 or -1,1)")
        input_range = tuple(float(v) for v in metadata["input_range"])
    digest = sha256(data)
    names, source = _class_names(path, digest, metadata, class_names)
    model = ModelUnderTest(path, digest, metadata, interpreter, inp, outputs[0], shape[1], input_range, names,
                           source)
    if names is not None and len(names) != model.outputs:
        raise ClassMismatchError(f"{path.name} has {model.outputs} outputs but {len(names)} class names "
                                 f"({source})")
    return model


def targets_for(model: ModelUnderTest, data: LabeledImages) -> np.ndarray:
    """The model output index of every image's class.

    Raises:
        ClassMismatchError: the data holds classes the model does not know, or the counts disagree.
    """
    names = data.class_names
    if model.class_names is not None:
        index = {name: i for i, name in enumerate(model.class_names)}
        unknown = [name for name in names if name not in index]
        if unknown:
            raise ClassMismatchError(f"{data.root} has {len(unknown)} class(es) that {model.path.name} does "
                                     f"not know ({model.names_source}): {', '.join(unknown[:5])}")
        mapping = [index[name] for name in names]
    elif all(datasets.is_integer_name(name) for name in names):
        mapping = [int(name) for name in names]
        if min(mapping) < 0 or max(mapping) >= model.outputs:
            raise ClassMismatchError(f"{data.root} has class {max(mapping)} but {model.path.name} has "
                                     f"{model.outputs} outputs (0-{model.outputs - 1})")
    elif len(names) != model.outputs:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise ClassMismatchError(f"{model.path.name} has {model.outputs} classes but {data.root} has "
                                 f"{len(names)} ({shown}); pass --class-names FILE to map them by name")
    else:
        mapping = list(range(len(names)))
    return np.asarray([mapping[label] for label in data.labels], dtype=np.int64)


def _run(model: ModelUnderTest, image: np.ndarray) -> np.ndarray:
    inp, out = model.input, model.output
    x = image[None]
    if np.issubdtype(inp["dtype"], np.integer):
        scale, zero = inp["quantization"]
        info = np.iinfo(inp["dtype"])
        x = np.clip(np.round(x / scale + zero), info.min, info.max)
    model.interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
    model.interpreter.invoke()
    y = model.interpreter.get_tensor(out["index"])[0]
    scale, zero = out["quantization"]
    if np.issubdtype(y.dtype, np.integer) and scale:
        return (y.astype(np.float32) - zero) * scale
    return y.astype(np.float32)


def run_models(models: list[ModelUnderTest], data: LabeledImages, skip_unreadable: bool = False,
               on_image=None) -> tuple[list[int], str]:
    """Run every model on every image (each decoded once); return the indices used and a digest of the data.

    Raises:
        DatasetError: unreadable images, unless ``skip_unreadable``.
    """
    digest, used, failures = hashlib.sha256(), [], []
    keys = {(m.resolution, m.input_range) for m in models}
    for index, (path, label) in enumerate(zip(data.paths, data.labels)):
        try:
            content = path.read_bytes()
            image = datasets.read_rgb(path, content)
        except (OSError, DatasetError) as error:
            failures.append((path, str(error)))
        else:
            inputs = {key: preprocess(image, key[0], key[1]) for key in keys}
            for model in models:
                model.scores.append(_run(model, inputs[(model.resolution, model.input_range)]))
            used.append(index)
            digest.update(f"{data.relative(path)}\0{data.class_names[label]}\0".encode() + content)
        if on_image:
            on_image(index + 1, len(data))
    if failures and (not skip_unreadable or not used):
        raise datasets.unreadable_error(data, failures)
    return used, digest.hexdigest()


def evaluate(paths: list[Path], data: LabeledImages, threads: int = 2, input_range=None,
             class_names: list[str] | None = None, skip_unreadable: bool = False, confusions: int = 5,
             on_image=None) -> list[dict]:
    """top-1/top-5, per-class accuracy and confusions of each model on ``data``; paired with the first model.

    Returns one dict per model (see :func:`metrics.summarize`, plus model, dataset and timing fields).
    """
    models = [open_model(path, threads, input_range, class_names) for path in paths]
    targets = [targets_for(model, data) for model in models]     # all checked before any image is run
    started = time.perf_counter()
    used, digest = run_models(models, data, skip_unreadable, on_image)
    seconds = time.perf_counter() - started
    results = []
    for model, target in zip(models, targets):
        names = model.class_names or [str(i) for i in range(model.outputs)]
        summary = metrics.summarize(np.stack(model.scores), target[used], names, confusions)
        results.append({"model": model.path.name, "path": str(model.path), "model_sha256": model.sha256,
                        "quant": (model.metadata or {}).get("quant"), "resolution": model.resolution,
                        "input_range": list(model.input_range), "class_names_source": model.names_source,
                        "dataset": data.source, "dataset_sha256": digest, "skipped": len(data) - len(used),
                        "seconds": round(seconds, 2), **summary})
    _pair_with_first(results, [t[used] for t in targets])
    return results


def _pair_with_first(results: list[dict], targets: list[np.ndarray]) -> None:
    for result, target in zip(results[1:], targets[1:]):
        if np.array_equal(target, targets[0]):
            result["vs_first"] = {"model": results[0]["model"],
                                  **metrics.paired(np.asarray(results[0]["predictions"]),
                                                   np.asarray(result["predictions"]), target)}
