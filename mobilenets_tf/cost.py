"""Parameter and Mult-Add accounting, counted the way the MobileNet papers count.

Convention (docs/counting.md explains each published figure against it):
    * Mult-Adds: multiply-accumulates of convolutions and fully connected layers only
      (standard conv: H_out * W_out * k^2 * C_in * C_out; depthwise: H_out * W_out * k^2 * C;
      FC: C_in * C_out). Activations, BatchNorm, pooling, additions and the SE multiply are not counted.
    * Params: weights of the same layers plus one bias per output channel, which is what a deployed model
      holds once BatchNorm is folded into the preceding layer. BatchNorm moving statistics are not counted.
The seed's worked example: an 8x8x3 input to 256 filters of 5x5 costs 1,228,800 Mult-Adds as a standard
convolution and 4,800 + 49,152 = 53,952 as depthwise + pointwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from .plan import Plan, WeightOp


@dataclass(frozen=True)
class CostRow:
    name: str
    kind: str
    output_shape: tuple[int, int, int]
    params: int
    macs: int


@dataclass(frozen=True)
class CostReport:
    rows: tuple[CostRow, ...]

    @property
    def params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def macs(self) -> int:
        return sum(r.macs for r in self.rows)

    def as_dicts(self) -> list[dict]:
        return [{"name": r.name, "kind": r.kind, "output_shape": list(r.output_shape), "params": r.params,
                 "macs": r.macs} for r in self.rows]


def cost(model) -> CostReport:
    """Per-layer params and Mult-Adds of a :class:`Plan` or of any Keras model built from conv/FC layers."""
    if isinstance(model, Plan):
        return CostReport(tuple(_row(op) for op in model.ops()))
    return _keras_cost(model)


def _row(op: WeightOp) -> CostRow:
    return CostRow(op.name, op.kind, (op.out_size, op.out_size, op.out_channels), op.params, op.macs)


def layer_cost(kind: str, kernel_size: int, in_channels: int, out_channels: int, out_size: int) -> CostRow:
    """Cost of one layer (e.g. the seed's worked example) without building anything."""
    return _row(WeightOp(kind, kind, kernel_size, in_channels, out_channels, out_size))


def _keras_cost(model) -> CostReport:
    import keras

    folded = _layers_followed_by_batchnorm(model, keras)
    rows = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            kind = "depthwise"
        elif isinstance(layer, keras.layers.Conv2D):
            kind = "conv"
        elif isinstance(layer, keras.layers.Dense):
            kind = "fc"
        else:
            continue
        kernel = layer.kernel.shape
        shape = tuple(int(d) for d in layer.output.shape[1:])
        height, width = (shape[0], shape[1]) if len(shape) == 3 else (1, 1)
        out_channels = shape[-1]
        biases = out_channels if (layer.use_bias or layer.name in folded) else 0
        weights = 1
        for d in kernel:
            weights *= int(d)
        if kind == "conv" and height == width == 1 and kernel[0] == kernel[1] == 1:
            kind = "fc"
        macs = height * width * weights  # every weight is used once per output position
        out_shape = (height, width, out_channels)
        rows.append(CostRow(layer.name, kind, out_shape, weights + biases, macs))
    return CostReport(tuple(rows))


def _layers_followed_by_batchnorm(model, keras) -> set[str]:
    names = set()
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            history = getattr(layer.input, "_keras_history", None)
            if history is not None:
                names.add(history.operation.name)
    return names
