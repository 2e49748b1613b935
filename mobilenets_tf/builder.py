"""Build a Keras MobileNet from a configuration: one generic builder for every version."""

from __future__ import annotations

from typing import Any

from . import _quiet  # noqa: F401  (keeps TensorFlow's start-up logging off the terminal)

import keras

from .blocks import BlockOptions, build_layers
from .config import ModelConfig, configure
from .specs import HSwishForm


def build(version: str, alpha: float = 1.0, resolution: int = 224, num_classes: int = 1000,
          include_top: bool = True, batch_size: int | None = None, *, dropout: float = 0.2,
          classifier_activation: str | None = "softmax", **knobs: Any) -> keras.Model:
    """Build MobileNet ``version`` ('v1', 'v2', 'v3-large', 'v3-small').

    Args:
        version: which paper's network.
        alpha: width multiplier in (0, 2].
        resolution: input height and width (>= 32).
        num_classes: classifier outputs.
        include_top: False stops before global pooling (feature extractor).
        batch_size: fix the batch dimension (1 gives static shapes after conversion).
        dropout: dropout rate before the classifier (training only).
        classifier_activation: 'softmax', or None for logits.
        **knobs: ablation knobs of the version (see ``mnbench info --help``).

    Raises:
        SpecError: invalid version, width, resolution or knob.
    """
    config = configure(version, alpha, resolution, num_classes, include_top, knobs)
    return build_from_config(config, batch_size=batch_size, dropout=dropout,
                             classifier_activation=classifier_activation)


def build_from_config(config: ModelConfig, batch_size: int | None = None, dropout: float = 0.2,
                      classifier_activation: str | None = "softmax",
                      hswish: HSwishForm = HSwishForm.BUILTIN) -> keras.Model:
    """Build the Keras model of an already validated :class:`ModelConfig`.

    ``hswish=HSwishForm.DECOMPOSED`` writes h-swish as ``x * relu6(x + 3) * 0.16666666`` layers (same
    function, same weights; the constant is deliberately not 1/6, see ``DecomposedHardSwish``), the
    int8-friendly lowering the export stage uses.
    """
    options = BlockOptions(dropout=dropout, classifier_activation=classifier_activation, hswish=hswish)
    inputs = keras.Input((config.resolution, config.resolution, 3), batch_size=batch_size, name="image")
    x = inputs
    low, high = config.spec.input_range
    if (low, high) == (0.0, 255.0):
        # V3 takes raw [0, 255] pixels and rescales to [-1, 1] in the graph, as keras.applications does.
        x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="rescale")(x)
    outputs = build_layers(x, config.plan().layers, options)
    name = f"mobilenet_{config.version.replace('-', '_')}_{config.alpha:g}_{config.resolution}"
    return keras.Model(inputs, outputs, name=name)
