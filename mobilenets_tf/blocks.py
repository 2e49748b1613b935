"""Keras layers for each kind of planned layer. One function per block kind, names from the plan.

BatchNorm uses epsilon 1e-3 as the reference implementations do; every stride-2 layer uses 'same' padding,
which for even input sizes is the reference code's explicit ((0, 1), (0, 1)) / ((1, 2), (1, 2)) padding, and
needs no separate PAD op after conversion.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _quiet  # noqa: F401  (before keras: keeps TF start-up noise quiet)

import keras
from keras import layers

from .plan import ClassifierLayer, ConvLayer, DwSepLayer, InvResLayer, PoolLayer
from .specs import Act, Gate, HSwishForm


@dataclass(frozen=True)
class BlockOptions:
    """Builder-wide settings shared by every block."""

    bn_momentum: float = 0.999
    bn_epsilon: float = 1e-3
    dropout: float = 0.2
    classifier_activation: str | None = "softmax"
    hswish: HSwishForm = HSwishForm.BUILTIN


class DecomposedHardSwish(layers.Layer):
    """h-swish written as ``x * relu6(x + 3) * 0.16666666``.

    Mathematically the paper's h-swish; the constant is deliberately not the float nearest to 1/6, so the
    TFLite converter does not fuse the pattern back into a HARD_SWISH op. In an int8 model it lowers to
    ADD(+RELU6) and two MULs, which XNNPACK runs in int8 (it takes HARD_SWISH only in float).
    """

    def call(self, inputs):
        return inputs * keras.ops.relu6(inputs + 3.0) * 0.16666666


def activation(x, act: Act, name: str, hswish: HSwishForm = HSwishForm.BUILTIN):
    if act is Act.LINEAR:
        return x
    if act is Act.HSWISH and HSwishForm(hswish) is HSwishForm.DECOMPOSED:
        return DecomposedHardSwish(name=name)(x)
    if act is Act.RELU:
        return layers.ReLU(name=name)(x)
    if act is Act.RELU6:
        return layers.ReLU(6.0, name=name)(x)
    keras_name = {Act.HSWISH: "hard_swish", Act.SWISH: "swish"}[act]
    return layers.Activation(keras_name, name=name)(x)


def _bn(x, name: str, options: BlockOptions):
    return layers.BatchNormalization(epsilon=options.bn_epsilon, momentum=options.bn_momentum, name=name)(x)


def _conv_bn_act(x, name, filters, kernel_size, strides, act, options, batch_norm=True):
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=not batch_norm,
                      name=name)(x)
    if batch_norm:
        x = _bn(x, f"{name}_bn", options)
    return activation(x, act, f"{name}_act", options.hswish)


def _dw_bn_act(x, name, kernel_size, strides, act, options):
    x = layers.DepthwiseConv2D(kernel_size, strides=strides, padding="same", use_bias=False, name=name)(x)
    x = _bn(x, f"{name}_bn", options)
    return activation(x, act, f"{name}_act", options.hswish)


def conv_block(x, layer: ConvLayer, options: BlockOptions):
    return _conv_bn_act(x, layer.name, layer.filters, layer.kernel_size, layer.strides, layer.activation,
                        options, batch_norm=layer.batch_norm)


def dw_separable(x, layer: DwSepLayer, options: BlockOptions):
    x = _dw_bn_act(x, f"{layer.name}_dw", 3, layer.strides, layer.activation, options)
    return _conv_bn_act(x, f"{layer.name}_pw", layer.filters, 1, 1, layer.activation, options)


def squeeze_excite(x, layer: InvResLayer):
    name = f"{layer.name}_se"
    gate = layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_pool")(x)
    gate = layers.Conv2D(layer.se_filters, 1, name=f"{name}_reduce")(gate)
    gate = layers.ReLU(name=f"{name}_relu")(gate)
    gate = layers.Conv2D(layer.expanded, 1, name=f"{name}_expand")(gate)
    keras_gate = "hard_sigmoid" if layer.gate is Gate.HARD_SIGMOID else "sigmoid"
    gate = layers.Activation(keras_gate, name=f"{name}_gate")(gate)
    return layers.Multiply(name=f"{name}_mul")([x, gate])


def inverted_residual(x, layer: InvResLayer, options: BlockOptions):
    shortcut = x
    if layer.expanded != layer.in_channels:
        x = _conv_bn_act(x, f"{layer.name}_expand", layer.expanded, 1, 1, layer.activation, options)
    x = _dw_bn_act(x, f"{layer.name}_dw", layer.kernel_size, layer.strides, layer.activation, options)
    if layer.se_filters:
        x = squeeze_excite(x, layer)
    x = layers.Conv2D(layer.filters, 1, padding="same", use_bias=False, name=f"{layer.name}_project")(x)
    x = _bn(x, f"{layer.name}_project_bn", options)
    if not layer.linear:
        x = activation(x, Act.RELU6, f"{layer.name}_project_act")
    if layer.residual:
        x = layers.Add(name=f"{layer.name}_add")([shortcut, x])
    return x


def pool(x, layer: PoolLayer, options: BlockOptions):
    return layers.GlobalAveragePooling2D(keepdims=True, name=layer.name)(x)


def classifier(x, layer: ClassifierLayer, options: BlockOptions):
    if options.dropout > 0:
        x = layers.Dropout(options.dropout, name="dropout")(x)
    x = layers.Conv2D(layer.classes, 1, name=layer.name)(x)
    x = layers.Flatten(name="flatten")(x)
    if options.classifier_activation:
        x = layers.Activation(options.classifier_activation, name="predictions")(x)
    return x


BLOCKS = {
    ConvLayer: conv_block,
    DwSepLayer: dw_separable,
    InvResLayer: inverted_residual,
    PoolLayer: pool,
    ClassifierLayer: classifier,
}


def build_layers(inputs: keras.KerasTensor, plan_layers, options: BlockOptions):
    x = inputs
    for layer in plan_layers:
        x = BLOCKS[type(layer)](x, layer, options)
    return x
