"""Weights into a thinner model: the filters with the largest L1 norm are kept (NetAdapt's choice).

Every channel axis of every weight belongs to a *group*: the image, a stage's output ("stage04.out"), a
block's expansion ("block05.expand") or its squeeze-and-excite bottleneck ("block05.se"). When a group
shrinks, the channels kept are those whose producing kernels have the largest L1 norm (summed over all the
layers of a stage, which a residual sum joins), and every weight indexed by the group is sliced alike, so
the layers that read the group stay consistent with those that write it.
"""

from __future__ import annotations

import numpy as np

from mobilenets_tf.config import ModelConfig
from mobilenets_tf.plan import ClassifierLayer, ConvLayer, DwSepLayer, InvResLayer

from .errors import AdaptError


def layer_groups(config: ModelConfig) -> dict[str, tuple[str, str | None]]:
    """Keras layer name -> (group of its input channels, group of its output channels)."""
    plan = config.plan()
    stages, groups, current = plan.stages(), {}, "image"
    for layer in plan.layers:
        name = layer.name
        if isinstance(layer, ConvLayer):
            out = f"{stages[name]}.out"
            groups.update({name: (current, out), f"{name}_bn": (out, out)})
            current = out
        elif isinstance(layer, DwSepLayer):
            out = f"{stages[name]}.out"
            groups.update({f"{name}_dw": (current, current), f"{name}_dw_bn": (current, current),
                           f"{name}_pw": (current, out), f"{name}_pw_bn": (out, out)})
            current = out
        elif isinstance(layer, InvResLayer):
            out, se = f"{stages[name]}.out", f"{name}.se"
            expanded = f"{name}.expand" if layer.expand else current
            if layer.expand:
                groups.update({f"{name}_expand": (current, expanded),
                               f"{name}_expand_bn": (expanded, expanded)})
            groups.update({f"{name}_dw": (expanded, expanded), f"{name}_dw_bn": (expanded, expanded),
                           f"{name}_se_reduce": (expanded, se), f"{name}_se_expand": (se, expanded),
                           f"{name}_project": (expanded, out), f"{name}_project_bn": (out, out)})
            current = out
        elif isinstance(layer, ClassifierLayer):
            groups[name] = (current, None)
    return groups


def _axes(layer, weight_index: int, groups: tuple[str, str | None]) -> dict[int, str | None]:
    """Which group each axis of one weight of a Keras layer is indexed by."""
    import keras

    group_in, group_out = groups
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        return {2: group_in}
    if isinstance(layer, keras.layers.Conv2D):
        return {2: group_in, 3: group_out} if weight_index == 0 else {0: group_out}
    return {0: group_out}                      # BatchNormalization: gamma, beta, mean, variance


def _norms(source, groups: dict[str, tuple[str, str | None]]) -> dict[str, np.ndarray]:
    """L1 norm of every output channel of every group, summed over the convolutions that write it."""
    import keras

    norms: dict[str, np.ndarray] = {}
    for layer in source.layers:
        if layer.name not in groups or not isinstance(layer, keras.layers.Conv2D) or \
                isinstance(layer, keras.layers.DepthwiseConv2D):
            continue
        group = groups[layer.name][1]
        if group is not None:
            norms[group] = norms.get(group, 0) + np.abs(layer.get_weights()[0]).sum(axis=(0, 1, 2))
    return norms


def norm_removed(source, config: ModelConfig, key: str, width: int) -> float:
    """Share of the L1 norm of width ``key``'s channels that narrowing it to ``width`` removes (0 to 1)."""
    norms = _norms(source, layer_groups(config))[key]
    return float(1 - np.sort(norms)[::-1][:width].sum() / max(norms.sum(), 1e-12))


def kept_channels(source, groups: dict[str, tuple[str, str | None]],
                  sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """For each group that shrinks to ``sizes[group]``: indices of the channels kept, in their order."""
    norms, kept = _norms(source, groups), {}
    for group, size in sizes.items():
        if group not in norms or size == len(norms[group]):
            continue
        if size > len(norms[group]):
            raise AdaptError(f"{group} would grow from {len(norms[group])} to {size} channels; "
                             "adapt only shrinks")
        kept[group] = np.sort(np.argsort(-norms[group], kind="stable")[:size])
    return kept


def carry_weights(source, target, config: ModelConfig) -> dict[str, int]:
    """Copy ``source``'s weights into ``target`` (same layer names, narrower or equal), keeping by magnitude.

    Returns the number of channels kept per shrunk group.

    Raises:
        AdaptError: a layer's weights fit neither as they are nor after slicing.
    """
    groups = layer_groups(config)
    by_name = {layer.name: layer for layer in source.layers}
    sizes: dict[str, int] = {}
    for layer in target.layers:
        if layer.name in groups and layer.weights:
            for index, weight in enumerate(layer.get_weights()):
                for axis, group in _axes(layer, index, groups[layer.name]).items():
                    if group is not None:
                        sizes[group] = weight.shape[axis]
    kept = kept_channels(source, groups, sizes)
    for layer in target.layers:
        if not layer.weights:
            continue
        old = by_name.get(layer.name)
        if old is None:
            raise AdaptError(f"layer {layer.name} has no counterpart in the model adapted from")
        weights = []
        for index, weight in enumerate(old.get_weights()):
            axes = _axes(layer, index, groups[layer.name]) if layer.name in groups else {}
            for axis, group in axes.items():
                if group in kept and weight.shape[axis] != len(kept[group]):
                    weight = np.take(weight, kept[group], axis=axis)
            weights.append(weight)
        expected = [tuple(w.shape) for w in layer.weights]
        if [w.shape for w in weights] != expected:
            raise AdaptError(f"weights of {layer.name} do not fit after slicing: "
                             f"{[w.shape for w in weights]} vs {expected}")
        layer.set_weights(weights)
    return {group: len(indices) for group, indices in kept.items()}
