"""How an int8 model's first convolution (3x3, stride 2, on the 3 colour channels) is lowered.

XNNPACK runs an int8 convolution as an indirect GEMM: one pass per kernel tap (9 here), each over the input
channels rounded up to the micro-kernel's k-block (kr). With 3 channels part of every pass is padding, and
how much depends on the CPU's kernel (XNNPACK src/configs/gemm-config.c, qs8_qc8w_gemm_config): 3 useful
bytes of 4 on an ARM64 phone core with the dot product (4x16c4 neondot), no padding on Cortex-A53/A55
without it (4x16 mlal_lane, kr 1), 3 of 8 on ARM i8mm cores, Cortex-A72/A73 (c8 mlal) and x86
AVX2/AVX512-VNNI, and 3 of 64-byte AMX tile rows on Intel Sapphire Rapids and later. docs/int8.md, "The
stem", has the argument for phones and the x86 measurements.

Lowerings (the sidecar records the one used):
    conv   as built: the default for every version (full integer; the lowering phones' kernels waste least
           on, and the one the stock converter and the V3 paper's quantized figures use).
    s2d    space-to-depth of the input into 2x2 blocks (12 channels at half the resolution) followed by an
           equivalent 2x2 stride-1 convolution: the same function (TensorFlow 'same' padding of an even
           input pads one row and column after, which the 2x2 'same' convolution reproduces), 4 taps of
           12 channels instead of 9 of 3, identical int8 weights (the fourth tap row and column are zeros).
    float  the stem kept float32, quantized after its activation (int8 mixed precision: not full integer).
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
    """conv, for every version: the int8 model stays full integer (int8 I/O, no float32 tensor), which an
    NPU, DSP or Edge TPU delegate needs, and conv is what an ARM64 phone's XNNPACK kernels serve best.

    Per output pixel and filter, the stem's 9 taps of 3 channels cost 36 k-steps with the dot product
    (4x16c4 neondot, kr 4) against 48 for s2d (4 taps of 12, 21 of them zero weights) plus s2d's
    SPACE_TO_DEPTH pass; 27 against 48 on Cortex-A53/A55 without it (kr 1); only on i8mm cores (kr 8) does
    s2d do fewer (64 against 72), still with the extra pass. A float stem adds a DEQUANTIZE of the input, a
    float32 convolution at a quarter of the dot product's multiply-adds per instruction, and a QUANTIZE of
    an output 4x the int8 one's bytes. s2d and float stay on request and are candidates of
    ``--precision auto`` (docs/int8.md, "The stem").
    ``config`` is kept so a future per-version choice needs no caller change.
    """
    return Stem.CONV


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

