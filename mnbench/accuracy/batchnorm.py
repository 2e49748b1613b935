"""BatchNorm moving statistics after a short run: set them to the training images' population statistics.

With momentum 0.999 a moving average keeps 0.999^300 = 74 % of its initial value (mean 0, variance 1)
after 300 steps, so an inference-mode model (every exported model) normalises with the wrong numbers.
``reestimate`` runs training images through the network in training mode, records each BatchNorm's
per-batch mean and variance of its input, and combines them (law of total variance) into the population
statistics ("precise BN", Wu & Johnson 2021, arXiv:2105.07576). ``batch_statistics_top1`` is the yardstick:
top-1 with batch statistics, which inference mode should match once the moving statistics are right.
"""

from __future__ import annotations

import numpy as np

from mobilenets_tf import _quiet  # noqa: F401  (before keras: keeps TF start-up noise quiet)

import keras


def batchnorm_layers(model, trainable_only: bool = False) -> list:
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)
            and (layer.trainable or not trainable_only)]


def set_momentum(model, momentum) -> list[float]:
    """Set every BatchNorm's momentum (one value, or one per layer); return the previous values."""
    layers = batchnorm_layers(model)
    values = momentum if isinstance(momentum, (list, tuple)) else [momentum] * len(layers)
    saved = [layer.momentum for layer in layers]
    for layer, value in zip(layers, values):
        layer.momentum = value
    return saved


def _chunks(count: int, batch_size: int) -> list[np.ndarray]:
    """Index batches of nearly equal size (no tiny last batch whose statistics would be noisy)."""
    return np.array_split(np.arange(count), max(1, round(count / batch_size)))


class PopulationStatistics:
    """Sets the moving mean/variance of every trainable BatchNorm of ``model`` from batches of inputs.

    Frozen (non-trainable) BatchNorm layers run in inference mode and keep their statistics. The probe
    function is traced once, so calling :meth:`apply` after every epoch costs one forward pass per batch.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.layers = batchnorm_layers(model, trainable_only=True)
        if not self.layers:
            return
        probe = keras.Model(model.inputs, [layer.input for layer in self.layers])

        @tf.function(reduce_retracing=True)
        def moments(x):
            return [tf.nn.moments(tensor, axes=[0, 1, 2]) for tensor in probe(x, training=True)]

        self._moments = moments

    def apply(self, batches) -> int:
        """Args: batches: input arrays (e.g. centre crops of training images), 32 or more per batch.

        Returns: the number of BatchNorm layers updated.
        """
        if not self.layers:
            return 0
        total = 0
        sums = [[0.0, 0.0] for _ in self.layers]       # per layer: sum of n * mean, sum of n * (var + mean^2)
        for batch in batches:
            n = len(batch)
            for accumulator, (mean, var) in zip(sums, self._moments(batch)):
                mean, var = mean.numpy().astype(np.float64), var.numpy().astype(np.float64)
                accumulator[0] = accumulator[0] + n * mean
                accumulator[1] = accumulator[1] + n * (var + mean * mean)
            total += n
        if total == 0:
            return 0
        for layer, (sum_mean, sum_square) in zip(self.layers, sums):
            mean = sum_mean / total
            layer.moving_mean.assign(mean.astype(np.float32))
            layer.moving_variance.assign(np.maximum(sum_square / total - mean * mean, 0.0).astype(np.float32))
        return len(self.layers)


def reestimate(model, batches) -> int:
    """Set every trainable BatchNorm's moving statistics from ``batches``; see
    :class:`PopulationStatistics`."""
    return PopulationStatistics(model).apply(batches)


def batch_statistics_top1(model, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 64,
                          seed: int = 0) -> float:
    """top-1 in training mode (batch statistics, dropout off) over shuffled batches; the model is
    unchanged."""
    dropouts = [layer for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    rates = [layer.rate for layer in dropouts]
    saved = [v.numpy() for v in model.non_trainable_variables]   # training mode moves the moving statistics
    # Shuffled: class-sorted batches would skew the statistics.
    order = np.random.default_rng(seed).permutation(len(inputs))
    correct = 0
    try:
        for layer in dropouts:
            layer.rate = 0.0
        for chunk in _chunks(len(inputs), batch_size):
            indices = order[chunk]
            scores = np.asarray(model(inputs[indices], training=True))
            correct += int(np.sum(np.argmax(scores, axis=1) == targets[indices]))
    finally:
        for layer, rate in zip(dropouts, rates):
            layer.rate = rate
        for variable, value in zip(model.non_trainable_variables, saved):
            variable.assign(value)
    return correct / max(1, len(inputs))
