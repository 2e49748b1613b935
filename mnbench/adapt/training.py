"""Short- and long-term fine-tuning for NetAdapt, and accuracy as an exported model has it.

Images are decoded once. Accuracy is always measured in inference mode after the BatchNorm statistics are
set from training images (``accuracy.batchnorm``: the trap ``finetune`` handles, since a few hundred steps
at momentum 0.999 leave the moving averages untrained).
"""

from __future__ import annotations

import numpy as np

from mnbench.accuracy import datasets, pixels
from mnbench.accuracy.datasets import LabeledImages
from mobilenets_tf.config import ModelConfig

BN_IMAGES = 512
EAGER_STEPS = 30       # short fine-tunes up to this long run eagerly (see ShortTraining.tune)


class ShortTraining:
    """A fixed train/validation split of ``data``, decoded once, for many short fine-tunes."""

    def __init__(self, data: LabeledImages, config: ModelConfig, val_fraction: float = 0.2,
                 batch_size: int = 32, learning_rate: float = 5e-4, flip: bool = True, seed: int = 0):
        self.train, self.val = datasets.split(data, val_fraction, seed)
        if self.val is None:
            raise ValueError("adapt needs a validation split")
        self.train_px = pixels.load_pixels(self.train, config.resolution)
        self.train_labels = np.asarray(self.train.labels)
        self.val_inputs = pixels.eval_inputs(pixels.load_pixels(self.val, config.resolution), config)
        self.val_labels = np.asarray(self.val.labels)
        self.config, self.batch_size, self.rate = config, batch_size, learning_rate
        self.flip, self.seed = flip, seed
        chosen = np.sort(np.random.default_rng(seed).permutation(len(self.train_px))[:BN_IMAGES])
        self.bn_inputs = pixels.eval_inputs(self.train_px[chosen], config)

    def tune(self, model, steps: int) -> None:
        """``steps`` steps of Adam on augmented training batches (BatchNorm in training mode).

        Up to ``EAGER_STEPS`` steps run eagerly: tracing a training step of a new architecture costs as much
        as 20-110 eager steps of V3-Small at 64 px on 2 cores (measured, issue 24), and every proposal is a
        new architecture. Longer tunes trace one ``tf.function`` step.
        """
        if steps < 1:
            return
        import keras
        import tensorflow as tf

        optimizer = keras.optimizers.Adam(self.rate)
        loss = keras.losses.SparseCategoricalCrossentropy()

        def step(images, labels):
            with tf.GradientTape() as tape:
                value = loss(labels, model(images, training=True))
            gradients = tape.gradient(value, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))

        if steps > EAGER_STEPS:
            step = tf.function(step)
        data = pixels.train_dataset(self.train_px, self.train_labels, self.config, self.batch_size, self.flip,
                                    self.seed).repeat()
        for images, labels in data.take(steps):
            step(images, labels)

    def accuracy(self, model) -> float:
        """Validation top-1 in inference mode, BatchNorm statistics set from training images first."""
        from mnbench.accuracy.batchnorm import PopulationStatistics

        parts = np.array_split(np.arange(len(self.bn_inputs)), max(1, round(len(self.bn_inputs) / 64)))
        PopulationStatistics(model).apply(self.bn_inputs[part] for part in parts)
        # eager calls: for a few hundred images, cheaper than tracing predict() for every proposal's model
        scores = np.concatenate([np.asarray(model(self.val_inputs[i:i + 256], training=False))
                                 for i in range(0, len(self.val_inputs), 256)])
        return float(np.mean(np.argmax(scores, axis=1) == self.val_labels))
