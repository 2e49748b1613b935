"""Weights for an export: a user's file (ours or keras.applications'), or seeded random weights.

Without a weights file the model gets reproducible random weights (seed 0), and its BatchNorm statistics
are measured on the calibration images, so activations have realistic ranges for quantization (untrained
BatchNorm would pass activations through unscaled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from device_bench.tflite_file import sha256
from mobilenets_tf.config import ModelConfig
from mobilenets_tf.errors import SpecError

from .errors import ExportError

RANDOM_SEED = 0




def build_model(config: ModelConfig, weights: Path | None, images: np.ndarray):
    """The Keras model to export (batch size 1, static shapes) and a description of its weights."""
    from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

    import keras

    keras.utils.set_random_seed(RANDOM_SEED)
    model = build_from_config(config, batch_size=1)
    if weights is None:
        set_batchnorm_statistics(model, images)
        return model, {"source": f"random (seed {RANDOM_SEED}), BatchNorm statistics from the calibration "
                                 f"images",
                       "sha256": None}
    weights = Path(weights)
    if not weights.is_file():
        raise ExportError(f"weights file {weights} does not exist")
    try:
        _load_strictly(model, weights)    # ours, or any Keras file with the same layers in the same order
        kind = "Keras weights, same layer layout"
    except Exception as own_error:  # not that layout: try keras.applications' for this configuration
        kind = "keras.applications weights, transferred"
        _load_keras_application_weights(config, model, weights, own_error)
    return model, {"source": f"{weights} ({kind} weights)", "sha256": sha256(weights)}


def _load_strictly(model, path: Path) -> None:
    """``model.load_weights`` that fails instead of warning and keeping fresh weights for some layers."""
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.load_weights(path)
    messages = [str(w.message) for w in caught]
    skipped = [m for m in messages if "load" in m.lower() or "skipping" in m.lower()]
    if skipped:
        raise ValueError(skipped[0])


def _load_keras_application_weights(config: ModelConfig, model, path: Path, own_error: Exception) -> None:
    from mobilenets_tf.keras_apps import is_canonical, keras_application, transfer_weights

    if not is_canonical(config):
        raise ExportError(f"weights {path} do not fit {config.version} with these knobs: {_short(own_error)}")
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("error", message=".*(Skipping|could not be loaded|freshly-initialized).*")
            source = keras_application(config, weights=str(path))
        transfer_weights(source, model)
    except (ValueError, OSError, SpecError, UserWarning):
        raise ExportError(f"weights {path} do not fit {config.version} alpha={config.alpha:g} "
                          f"resolution={config.resolution}: {_short(own_error)}") from None


def _short(error: Exception) -> str:
    text = " ".join(str(error).split())
    return text[:200] + ("..." if len(text) > 200 else "")


def set_batchnorm_statistics(model, images: np.ndarray) -> None:
    """Set every BatchNorm's moving mean/variance to the statistics of ``images`` (one training-mode pass)."""
    from mobilenets_tf import _quiet  # noqa: F401

    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    saved = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    batch = images[: min(len(images), 16)]
    model(batch, training=True)
    for layer, momentum in zip(layers, saved):
        layer.momentum = momentum
