"""How an int8 model's first convolution (3x3, stride 2, on the 3 colour channels) is lowered.

XNNPACK runs an int8 convolution as an indirect GEMM: one pass per kernel tap (9 here), each over the input
channels rounded up to the micro-kernel's k-block. With 3 channels most of every pass is padding: 3 of 8
on AVX512-VNNI (the 7x16c8 kernels), and on CPUs with AMX (Intel Sapphire Rapids and later) XNNPACK picks
16x64c4 tile kernels for every int8 convolution (src/configs/gemm-config.c, qs8_qc8w_gemm_config), whose
64-byte tile rows then hold 3 useful channels and whose 64 output columns hold the stem's 16 or 32 filters.
Float32 uses other kernels, so the same stem can be several times slower in int8 than in float32.

Lowerings (the sidecar records the one used):
    conv   as built.
    s2d    space-to-depth of the input into 2x2 blocks (12 channels at half the resolution) followed by an
           equivalent 2x2 stride-1 convolution: the same function (TensorFlow 'same' padding of an even
           input pads one row and column after, which the 2x2 'same' convolution reproduces), 4 taps of
           12 channels instead of 9 of 3, identical int8 weights (the fourth tap row and column are zeros).
    float  the stem kept float32, quantized after its activation (int8 mixed precision).
"""

from __future__ import annotations

import enum
import functools

import numpy as np

from .errors import ExportError


class Stem(str, enum.Enum):
    CONV = "conv"
    S2D = "s2d"
    FLOAT = "float"


STEM_LAYER = "stem"


def default_stem(config) -> Stem:
    """float where the stem's activation is h-swish (V3), else s2d (V1/V2: ReLU6 fused into the convolution).

    Chosen as the lowering whose worst case over the two x86 CPUs measured is the smallest (Google's tool,
    whole models, results/int8_speed_cpus.md, docs/int8.md "The default"). V3: float is fastest on an AMX
    Xeon (7-20 % ahead of conv) and within 3 % of the fastest on AMD Zen 4. V1/V2: on the Xeon float is
    fastest and conv slowest (by up to 11 %); on AMD float loses up to 10 % and s2d up to 4 %; s2d is within
    6 % of the fastest on both. A float stem pays a DEQUANTIZE before it and a QUANTIZE after it; s2d a
    SPACE_TO_DEPTH (and falls back to conv where the input is not of even size).
    """
    from mobilenets_tf.specs import Act

    return Stem.FLOAT if getattr(config.plan().layers[0], "activation", None) is Act.HSWISH else Stem.S2D


def effective_stem(model, requested: Stem) -> tuple[Stem, dict]:
    """The lowering used for ``requested``: s2d falls back to conv where it does not apply (noted why)."""
    if requested is Stem.S2D:
        reason = s2d_applies(model)
        if reason:
            return Stem.CONV, {"fallback": f"s2d does not apply: {reason}"}
    return requested, {}


def s2d_kernel(kernel: np.ndarray) -> np.ndarray:
    """A 3x3 stride-2 kernel (3, 3, C, O) as the 2x2 stride-1 kernel (2, 2, 4C, O) over space_to_depth(x, 2).

    Tap (ky, kx) of the original reads pixel (2i + ky, 2j + kx): block (i + ky // 2, j + kx // 2), offset
    (ky % 2, kx % 2) within it, which tf.nn.space_to_depth stores at channel ((ky % 2) * 2 + kx % 2) * C + c.
    """
    if kernel.shape[:2] != (3, 3):
        raise ExportError(f"space-to-depth stem needs a 3x3 kernel, got {kernel.shape[:2]}")
    channels = kernel.shape[2]
    result = np.zeros((2, 2, 4 * channels, kernel.shape[3]), kernel.dtype)
    for ky in range(3):
        for kx in range(3):
            block = (ky % 2) * 2 + kx % 2
            result[ky // 2, kx // 2, block * channels:(block + 1) * channels] = kernel[ky, kx]
    return result


def s2d_applies(model) -> str | None:
    """Why the space-to-depth stem cannot replace ``model``'s stem, or None when it can."""
    import keras

    try:
        layer = model.get_layer(STEM_LAYER)
    except ValueError:
        return "the model has no layer named 'stem'"
    if type(layer) is not keras.layers.Conv2D:
        return f"the stem is a {type(layer).__name__}, not a Conv2D"
    if tuple(layer.kernel_size) != (3, 3) or tuple(layer.strides) != (2, 2) or layer.padding != "same" \
            or tuple(layer.dilation_rate) != (1, 1) or layer.groups != 1:
        return "the stem is not a 3x3 stride-2 'same' convolution"
    height, width = layer.input.shape[1:3]
    if height is None or width is None or height % 2 or width % 2:
        return f"the input ({height}x{width}) is not of even height and width"
    return None


def rewrite_stem(model, stem: Stem):
    """``model`` with its stem lowered as ``stem`` (same weights, same function).

    s2d: the 3x3/2 convolution becomes space-to-depth + 2x2 convolution. float: a decomposed h-swish after
    the stem becomes Keras' hard_swish again (one float HARD_SWISH op instead of ADD, MUL, MUL in float).
    conv: unchanged.

    Raises:
        ExportError: s2d asked of a stem that is not a 3x3 stride-2 'same' convolution of an even input.
    """
    import keras

    from mobilenets_tf.blocks import DecomposedHardSwish

    if stem is Stem.S2D and s2d_applies(model):
        raise ExportError(f"--stem s2d: {s2d_applies(model)}")
    conv = model.get_layer(STEM_LAYER) if stem is Stem.S2D else None
    act = next((layer for layer in model.layers if layer.name == f"{STEM_LAYER}_act"
                and isinstance(layer, DecomposedHardSwish)), None) if stem is Stem.FLOAT else None
    if conv is None and act is None:
        return model

    def clone(layer):
        if layer is conv:
            return space_to_depth_conv_class()(conv.filters, conv.use_bias, name=STEM_LAYER)
        if layer is act:
            return keras.layers.Activation("hard_swish", name=act.name)
        return layer.__class__.from_config(layer.get_config())

    rewritten = keras.models.clone_model(model, clone_function=clone)
    for layer in rewritten.layers:
        values = model.get_layer(layer.name).get_weights()
        if conv is not None and layer.name == STEM_LAYER:
            values = [s2d_kernel(values[0])] + values[1:]
        layer.set_weights(values)
    return rewritten


@functools.cache
def space_to_depth_conv_class():
    """The Keras layer (made on first use, so importing this module does not import Keras)."""
    import keras

    class SpaceToDepthConv(keras.layers.Layer):
        """tf.nn.space_to_depth(x, 2), then a 2x2 stride-1 'same' convolution (SPACE_TO_DEPTH + CONV_2D)."""

        def __init__(self, filters: int, use_bias: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.filters, self.use_bias = filters, use_bias

        def build(self, input_shape):
            self.kernel = self.add_weight(name="kernel", shape=(2, 2, 4 * input_shape[-1], self.filters))
            self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros") \
                if self.use_bias else None

        def call(self, inputs):
            import tensorflow as tf

            x = tf.nn.conv2d(tf.nn.space_to_depth(inputs, 2), self.kernel, strides=1, padding="SAME")
            return x if self.bias is None else tf.nn.bias_add(x, self.bias)

        def compute_output_shape(self, input_shape):
            batch, height, width, _ = input_shape
            return (batch, None if height is None else height // 2, None if width is None else width // 2,
                    self.filters)

        def get_config(self):
            return {**super().get_config(), "filters": self.filters, "use_bias": self.use_bias}

    return SpaceToDepthConv

