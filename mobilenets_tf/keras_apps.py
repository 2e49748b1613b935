"""Weight interchange with keras.applications (MobileNet, MobileNetV2, MobileNetV3Small/Large).

Users who hold ImageNet weight files for keras.applications can load them into our models, and back. Layers
with weights are paired in graph order; each pair must hold the same number of values (a 1x1 convolution
and a Dense layer of the same size are the same weights, reshaped).
"""

from __future__ import annotations

from . import _quiet  # noqa: F401  (before keras: keeps TF start-up noise quiet)

import keras
import numpy as np

from .errors import SpecError

from .config import ModelConfig

_APPLICATIONS = {
    "v1": "MobileNet",
    "v2": "MobileNetV2",
    "v3-large": "MobileNetV3Large",
    "v3-small": "MobileNetV3Small",
}


def is_canonical(config: ModelConfig) -> bool:
    """True when keras.applications builds the same architecture: default knobs (minimalistic allowed) at a
    width it publishes (keras.applications rounds some layers differently at other widths)."""
    changed = set(config.non_default_knobs) - {"minimalistic"}
    return not changed and config.alpha in config.spec.canonical_alphas


def keras_application(config: ModelConfig, weights: str | None = None, batch_size: int | None = None,
                      classifier_activation: str | None = "softmax") -> keras.Model:
    """The keras.applications model of a canonical configuration (``weights``: None or an .h5 path)."""
    if not is_canonical(config):
        raise SpecError(f"keras.applications has no equivalent of knobs {config.non_default_knobs}")
    factory = getattr(keras.applications, _APPLICATIONS[config.version])
    kwargs = dict(input_shape=(config.resolution, config.resolution, 3), alpha=config.alpha,
                  include_top=config.include_top, weights=weights, classes=config.num_classes,
                  classifier_activation=classifier_activation)
    if config.version.startswith("v3"):
        kwargs["minimalistic"] = config.knobs["minimalistic"]
    if batch_size is not None:
        kwargs["input_tensor"] = keras.Input((config.resolution, config.resolution, 3), batch_size=batch_size)
        del kwargs["input_shape"]
    return factory(**kwargs)


def _weight_layers(model: keras.Model) -> list:
    return [layer for layer in model.layers if layer.weights]


def transfer_weights(source: keras.Model, target: keras.Model) -> None:
    """Copy every weight of ``source`` into ``target``, layer by layer in graph order.

    Raises:
        SpecError: the two models do not have the same layers and weight sizes.
    """
    src_layers, dst_layers = _weight_layers(source), _weight_layers(target)
    if len(src_layers) != len(dst_layers):
        raise SpecError(f"architectures differ: {source.name} has {len(src_layers)} layers with weights, "
                        f"{target.name} has {len(dst_layers)}")
    updates = []
    for src, dst in zip(src_layers, dst_layers):
        src_values, dst_weights = src.get_weights(), dst.weights
        if len(src_values) != len(dst_weights):
            raise SpecError(f"layer {src.name} has {len(src_values)} weight arrays, {dst.name} has "
                            f"{len(dst_weights)}")
        for value, weight in zip(src_values, dst_weights):
            if value.size != int(np.prod(weight.shape)):
                raise SpecError(f"weights of {src.name} {tuple(value.shape)} do not fit {dst.name} "
                                f"{tuple(weight.shape)}")
            updates.append((weight, value.reshape(weight.shape)))
    for weight, value in updates:
        weight.assign(value)
