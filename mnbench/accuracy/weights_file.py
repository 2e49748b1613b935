"""Weights that carry their configuration: ``W.weights.h5`` plus the sidecar ``W.weights.json`` beside it.

The sidecar holds ``ModelConfig.as_dict()`` (version, alpha, resolution, classes, every knob), the class
names in output order, the preprocessing the model was trained with, the sha256 of the weights file (so a
sidecar left beside other weights is refused) and how training went. ``mnbench export --weights W`` and
``mnbench evaluate`` read it instead of asking for the flags again. No TensorFlow here.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from device_bench.tflite_file import sha256
from mobilenets_tf.config import ModelConfig

from .errors import WeightsFileError

FORMAT = "mnbench-weights/1"
CROP_FRACTION = 0.875       # export.calibration.CROP_FRACTION: resize the shorter side to resolution / 0.875


@dataclass(frozen=True)
class CarriedWeights:
    """A weights file and what its sidecar says about it."""

    path: Path
    config: ModelConfig
    class_names: tuple[str, ...]
    record: dict

    @property
    def training_data(self) -> Path | None:
        """The folder the weights were trained on, if it still exists: the natural calibration set."""
        root = (self.record.get("training") or {}).get("data_root")
        return Path(root) if root and Path(root).is_dir() else None


def sidecar_path(weights: Path) -> Path:
    """``run.weights.h5`` -> ``run.weights.json``."""
    return Path(weights).with_suffix(".json")


def preprocessing(config: ModelConfig) -> dict:
    """How images are turned into model inputs (the same as export calibration and ``mnbench evaluate``)."""
    return {"color": "RGB", "exif_orientation": True,
            "resize": "shorter side to resolution / 0.875, bilinear",
            "crop": "centre, resolution x resolution", "crop_fraction": CROP_FRACTION,
            "input_range": list(config.spec.input_range)}




def write_weights(model, path: Path) -> None:
    """``model``'s weights to ``path`` (a ``.weights.h5``) through a temporary file: never half-written."""
    path = Path(path)
    temp = path.parent / f".tmp-{os.getpid()}-{path.name}"       # Keras insists on the .weights.h5 ending
    try:
        model.save_weights(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def write_sidecar(weights: Path, config: ModelConfig, class_names, training: dict) -> Path:
    """Write ``W.json`` beside ``weights`` (atomically) and return its path."""
    from mnbench import __version__

    if len(class_names) != config.num_classes:
        raise WeightsFileError(f"{len(class_names)} class names for a model with "
                               f"{config.num_classes} outputs")
    record = {"format": FORMAT, "weights_file": Path(weights).name, "weights_sha256": sha256(weights),
              "config": config.as_dict(), "class_names": list(class_names),
              "preprocessing": preprocessing(config), "training": training, "mnbench": __version__,
              "created_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}
    path = sidecar_path(weights)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return path


def read_sidecar(weights: Path) -> CarriedWeights | None:
    """The configuration ``weights`` carries, or None when it has no sidecar (e.g. keras.applications files).

    Raises:
        WeightsFileError: the weights file is missing, or its sidecar is corrupt or describes other weights.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise WeightsFileError(f"weights file {weights} does not exist")
    path = sidecar_path(weights)
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT:
            raise ValueError(f"format {record.get('format')!r} is not {FORMAT!r}")
        config = ModelConfig.from_dict(record["config"])
        names = tuple(str(name) for name in record["class_names"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        detail = " ".join(str(error).split())[:200]
        raise WeightsFileError(f"weights sidecar {path} is unreadable: {detail}") from None
    if record.get("weights_sha256") != sha256(weights):
        raise WeightsFileError(f"{path} describes other weights than {weights} (sha256 differs); "
                               "delete the sidecar or re-run `mnbench finetune`")
    if len(names) != config.num_classes:
        raise WeightsFileError(f"{path}: {len(names)} class names for {config.num_classes} outputs")
    return CarriedWeights(weights, config, names, record)


def carried_config(weights: Path | None, version: str | None = None, alpha: float | None = None,
                   resolution: int | None = None, knobs: dict | None = None,
                   num_classes: int | None = None) -> ModelConfig | None:
    """The configuration ``weights`` carry, checked against the options the user typed (None = not typed).

    For ``mnbench export --weights W``: version, width, knobs and classes must agree with the weights (they
    would not load otherwise); a typed resolution replaces the trained one, as convolution weights do not
    depend on it. Returns None for weights without a sidecar (the typed options then describe them).

    Raises:
        WeightsFileError: a typed option contradicts the weights, or the sidecar is unreadable or stale.
    """
    if weights is None:
        return None
    carried = read_sidecar(Path(weights))
    if carried is None:
        return None
    config = carried.config
    typed = {"version": version, "alpha": alpha, "num_classes": num_classes}
    for name, value in typed.items():
        recorded = getattr(config, name)
        if value is not None and value != recorded:
            raise WeightsFileError(f"weights {weights} are for {name}={recorded}, not {value} "
                                   f"(their configuration is in {sidecar_path(weights)}; drop the option)")
    if knobs:
        from mobilenets_tf.registry import resolve_knobs

        wanted = resolve_knobs(config.spec, dict(knobs))
        different = {k: v for k, v in wanted.items() if k in knobs and config.knobs.get(k) != v}
        if different:
            raise WeightsFileError(f"weights {weights} were trained with knobs "
                                   f"{config.non_default_knobs or 'default'}, "
                                   f"not {different}")
    if resolution is not None and resolution != config.resolution:
        config = ModelConfig.from_dict({**config.as_dict(), "resolution": resolution})
    return config
