"""Train a MobileNet on a user's labeled images on the CPU: from scratch, or transfer from a weights file.

Inputs are what ``mnbench evaluate`` and export calibration feed the model (see ``pixels``), augmented for
training (``flip=False`` for digits and text). A stratified validation split (or a separate validation
set) drives early stopping, and the best epoch is restored. AdamW with a linear warm-up and cosine decay.

BatchNorm. The builder's momentum 0.999 (the papers' long ImageNet runs) leaves the moving statistics
near their initial 0/1 after a few hundred steps, so a short run is accurate in training mode and close to
chance in inference mode -- which is all an exported model has (and all early stopping should look at).
So the moving averages are never trusted: before every validation (on ``bn_epoch_images`` training images)
and after training (on ``bn_images``), every BatchNorm's moving mean and variance are set to the population
statistics of training images ("precise BN", Wu & Johnson, arXiv:2105.07576; ``batchnorm``). The report
gives the final validation top-1 in inference mode and, as the yardstick, with batch statistics.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mobilenets_tf.config import ModelConfig

from ..errors import EXPECTED

from . import datasets, pixels
from .datasets import LabeledImages
from .errors import ClassMismatchError, DatasetError, TrainingError, WeightsFileError
from .weights_file import read_sidecar, write_sidecar, write_weights

log = logging.getLogger(__name__)

CHECK_IMAGES = 2048                # validation images for the batch-statistics yardstick


@dataclass(frozen=True)
class FinetuneOptions:
    """Training settings; ``learning_rate=None`` picks 2e-3 from scratch and 5e-4 from weights."""

    epochs: int = 10
    batch_size: int = 32
    learning_rate: float | None = None
    weight_decay: float = 0.01         # AdamW, decoupled; not applied to BatchNorm or biases
    val_fraction: float = 0.2
    patience: int = 3
    flip: bool = True
    freeze: bool = False               # with weights: train only the classifier
    dropout: float = 0.2
    bn_images: int = 2048              # training images whose statistics set the final BatchNorm statistics
    bn_epoch_images: int = 512         # ... and those set before each validation
    seed: int = 0

    def check(self) -> None:
        for name in ("epochs", "batch_size", "bn_images", "bn_epoch_images"):
            if getattr(self, name) < 1:
                raise TrainingError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise TrainingError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise TrainingError(f"learning rate must be positive, got {self.learning_rate}")



def initial_weights(model, config: ModelConfig, weights: Path) -> dict:
    """Copy into ``model`` every layer of ``weights`` whose name and shapes fit (the classifier may be new).

    ``weights``: a file from ``mnbench finetune`` (its sidecar gives the configuration), our layout for this
    configuration with this or 1000 classes, or keras.applications' ImageNet file (with or without top).

    Raises:
        WeightsFileError: the weights fit no candidate configuration, or their sidecar names another model.
    """
    from export.weights import build_model

    carried = read_sidecar(weights)
    if carried is not None:
        theirs = carried.config
        if (theirs.version, theirs.alpha, theirs.knobs, theirs.widths) != \
                (config.version, config.alpha, config.knobs, config.widths):
            raise WeightsFileError(f"weights {weights} are for {theirs.version} alpha={theirs.alpha:g} knobs="
                                   f"{theirs.non_default_knobs or 'default'}"
                                   f"{' with per-layer widths' if theirs.widths else ''}; "
                                   "pass the same --version/--alpha/--set")
        candidates = [dataclasses.replace(theirs, resolution=config.resolution)]
    else:
        candidates = [config, dataclasses.replace(config, num_classes=1000),
                      dataclasses.replace(config, num_classes=1000, include_top=False)]
    failures = []
    for candidate in candidates:
        try:
            with warnings.catch_warnings():     # Keras warns while failing on a candidate that does not fit
                warnings.simplefilter("ignore")
                source, described = build_model(candidate, weights, images=None)
        except EXPECTED as error:
            failures.append(str(error))
            continue
        copied, fresh = copy_by_name(source, model)
        if copied:
            return {"source": described["source"], "sha256": described["sha256"], "layers_copied": copied,
                    "layers_new": fresh}
    raise WeightsFileError(f"initial weights {weights} do not fit {config.version} alpha={config.alpha:g}: "
                           f"{failures[0] if failures else 'no layer in common'}")


def copy_by_name(source, target) -> tuple[int, list[str]]:
    """Copy the weights of layers with the same name and shapes; return (layers copied, layers left new)."""
    by_name = {layer.name: layer for layer in source.layers if layer.weights}
    copied, fresh = 0, []
    for layer in target.layers:
        if not layer.weights:
            continue
        other = by_name.get(layer.name)
        shapes = [tuple(w.shape) for w in layer.weights]
        if other is not None and [tuple(w.shape) for w in other.weights] == shapes:
            layer.set_weights(other.get_weights())
            copied += 1
        else:
            fresh.append(layer.name)
    return copied, fresh


def _check_out(out: Path, force: bool) -> Path:
    out = Path(out)
    if not out.name.endswith(".weights.h5"):
        raise TrainingError(f"--out must end in .weights.h5 (Keras' weights format), got {out.name}")
    if out.exists() and not force:
        raise TrainingError(f"{out} exists; pass --force to replace it")
    if not out.parent.is_dir() or not os.access(out.parent, os.W_OK):
        raise TrainingError(f"cannot write {out}: folder {out.parent} does not exist or is not writable")
    return out


def _validation(data: LabeledImages, val_data: LabeledImages | None, options: FinetuneOptions):
    """(train, validation, validation labels in training-class indices)."""
    if val_data is None:
        train, val = datasets.split(data, options.val_fraction, options.seed)
        return train, val, (np.asarray(val.labels) if val is not None else None)
    index = {name: i for i, name in enumerate(data.class_names)}
    unknown = [name for name in val_data.class_names if name not in index]
    if unknown:
        raise ClassMismatchError(f"validation data {val_data.root} has classes the training data lacks: "
                                 f"{', '.join(unknown[:5])}")
    return data, val_data, np.asarray([index[val_data.class_names[label]] for label in val_data.labels])


def _callbacks(on_progress, steps_per_epoch: int, epochs: int, settle, val_inputs, val_labels,
               batch_size: int, patience: int):
    """Keras callbacks: progress to ``on_progress(stage, done, total, info)``; BatchNorm statistics set and
    validation run in inference mode at every epoch end (``val_accuracy``/``val_loss`` for early stopping)."""
    import keras

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_end(self, batch, logs=None):
            if on_progress:
                on_progress("train", self.epoch * steps_per_epoch + batch + 1, steps_per_epoch * epochs,
                            {"epoch": self.epoch + 1, "loss": float((logs or {}).get("loss", math.nan))})

        def on_epoch_end(self, epoch, logs=None):
            logs = logs if logs is not None else {}
            if val_inputs is not None:
                settle()
                scores = self.model.predict(val_inputs, batch_size=batch_size, verbose=0)
                truth = scores[np.arange(len(val_labels)), val_labels]
                logs["val_accuracy"] = float(np.mean(np.argmax(scores, axis=1) == val_labels))
                logs["val_loss"] = float(-np.mean(np.log(np.maximum(truth, 1e-7))))
            if on_progress:
                on_progress("epoch", epoch + 1, epochs, {k: float(v) for k, v in logs.items()})

    result = [keras.callbacks.TerminateOnNaN(), Epochs()]
    if val_inputs is not None:    # after Epochs, which puts val_accuracy in the logs
        result.append(_early_stopping(StoppingRule(epochs, patience, len(val_labels))))
    return result


@dataclass(frozen=True)
class StoppingRule:
    """When a run may stop early, judged on validation top-1 that is noisy on a small validation split.

    Three guards against stopping on noise (issue 12, defect 3: patience 3 on 36 validation images stopped a
    15-epoch run after 6 epochs at 0.79 test top-1, where a plain full run reaches 0.82-0.93):
      * never before half the run: the cosine schedule still has most of its learning rate to spend;
      * patience grows with the run: at least a third of the epochs;
      * the curve is smoothed (mean of the last ``WINDOW`` epochs) and an epoch counts as better only by more
        than one binomial standard error of that mean.
    The weights kept are the last epoch's, unless the best smoothed epoch beat it by more than that error.
    """

    epochs: int
    patience: int
    val_images: int
    WINDOW = 3

    @property
    def min_epochs(self) -> int:
        return math.ceil(self.epochs / 2)

    @property
    def effective_patience(self) -> int:
        return max(self.patience, math.ceil(self.epochs / 3))

    def smoothed(self, accuracies: list[float]) -> list[float]:
        return [float(np.mean(accuracies[max(0, i + 1 - self.WINDOW):i + 1])) for i in range(len(accuracies))]

    def margin(self, accuracy: float) -> float:
        """One standard error of a smoothed top-1 (a mean of ``WINDOW`` epochs on ``val_images`` images)."""
        return math.sqrt(max(accuracy * (1 - accuracy), 0.0) / max(1, self.val_images * self.WINDOW))

    def top_epoch(self, accuracies: list[float]) -> int:
        """Index of the best smoothed epoch (the later one on ties)."""
        curve = self.smoothed(accuracies)
        return max(range(len(curve)), key=lambda i: (curve[i], i))

    def kept_epoch(self, accuracies: list[float]) -> int:
        """Index of the epoch whose weights to keep: the last, unless the top one is better beyond noise."""
        curve, top, last = self.smoothed(accuracies), self.top_epoch(accuracies), len(accuracies) - 1
        return top if curve[top] > curve[last] + self.margin(curve[last]) else last

    def should_stop(self, accuracies: list[float]) -> bool:
        """True when, past the minimum, no smoothed epoch beat the best by the margin for the patience."""
        if len(accuracies) < self.min_epochs or len(accuracies) >= self.epochs:
            return False
        curve, best = self.smoothed(accuracies), 0
        for index, value in enumerate(curve):
            if value > curve[best] + self.margin(curve[best]):
                best = index
        return len(accuracies) - 1 - best >= self.effective_patience


def _early_stopping(rule: StoppingRule):
    """A Keras callback applying ``rule`` to ``val_accuracy``; at the end it sets the kept epoch's weights."""
    import keras

    class EarlyStopping(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.accuracies, self.top_weights, self.stopped_epoch = [], None, 0

        def on_epoch_end(self, epoch, logs=None):
            self.accuracies.append(float((logs or {}).get("val_accuracy", math.nan)))
            if rule.top_epoch(self.accuracies) == epoch:
                self.top_weights = self.model.get_weights()
            if rule.should_stop(self.accuracies):
                self.stopped_epoch = epoch + 1
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.accuracies and rule.kept_epoch(self.accuracies) != len(self.accuracies) - 1:
                self.model.set_weights(self.top_weights)

    return EarlyStopping()


def _fit(model, train_px, train_labels, val_inputs, val_labels, config, options, from_weights: bool,
         on_progress):
    from mobilenets_tf import _quiet  # noqa: F401

    import keras

    from .batchnorm import PopulationStatistics

    steps = math.ceil(len(train_px) / options.batch_size)
    total = steps * options.epochs
    rate = options.learning_rate or (5e-4 if from_weights else 2e-3)
    warmup = max(1, min(steps, total // 10))
    schedule = keras.optimizers.schedules.CosineDecay(0.0, max(1, total - warmup), warmup_target=rate,
                                                      warmup_steps=warmup)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=options.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    k = min(5, config.num_classes)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False,
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(k=k, name=f"top{k}")])
    statistics, rng = PopulationStatistics(model), np.random.default_rng(options.seed)

    def settle(count: int = options.bn_epoch_images) -> int:
        chosen = rng.permutation(len(train_px))[:count]
        return statistics.apply(pixels.eval_inputs(train_px[np.sort(chosen[part])], config)
                                for part in _parts(len(chosen), options.batch_size))

    callbacks = _callbacks(on_progress, steps, options.epochs, settle, val_inputs, val_labels,
                           options.batch_size, options.patience)
    data = pixels.train_dataset(train_px, np.asarray(train_labels), config, options.batch_size, options.flip,
                                options.seed)
    history = model.fit(data, epochs=options.epochs, callbacks=callbacks, verbose=0, shuffle=False)
    epochs = [{"epoch": i + 1, **{key: float(values[i]) for key, values in history.history.items()}}
              for i in range(len(history.history.get("loss", [])))]
    if not epochs or any(not math.isfinite(e["loss"]) for e in epochs):
        raise TrainingError(f"training diverged (loss {epochs[-1]['loss'] if epochs else 'missing'}); "
                            "lower --lr or check the images")
    return epochs, settle


def _parts(count: int, batch_size: int) -> list[np.ndarray]:
    """Index batches of nearly equal size, at least 32 images (batch statistics of a few images are noisy)."""
    return np.array_split(np.arange(count), max(1, round(count / max(32, batch_size))))


def _final_batchnorm(model, settle, train_images: int, val_inputs, val_labels, options) -> dict:
    """Set the final BatchNorm statistics (unless the backbone is frozen) and measure inference mode."""
    from . import batchnorm

    report = {"method": "population statistics of training images (precise BN)", "images": 0, "layers": 0}
    if options.freeze:
        report["method"] = "frozen backbone: pretrained statistics kept"
    else:
        report["layers"] = settle(options.bn_images)
        report["images"] = min(options.bn_images, train_images)
    if val_inputs is not None:
        scores = model.predict(val_inputs, batch_size=options.batch_size, verbose=0)
        report["val_top1"] = float(np.mean(np.argmax(scores, axis=1) == val_labels))
        check = np.random.default_rng(options.seed).permutation(len(val_labels))[:CHECK_IMAGES]
        report["val_top1_batch_statistics"] = batchnorm.batch_statistics_top1(
            model, val_inputs[check], val_labels[check], max(32, options.batch_size), options.seed)
    return report


def finetune(config: ModelConfig, data: LabeledImages, out: Path, weights: Path | None = None,
             val_data: LabeledImages | None = None, options: FinetuneOptions = FinetuneOptions(),
             force: bool = False, on_progress=None) -> dict:
    """Train ``config`` on ``data``, write ``out`` (.weights.h5) and its configuration sidecar; return a
    report.

    Args:
        config: the architecture; ``num_classes`` must equal the number of classes in ``data``.
        data: training images (a stratified ``options.val_fraction`` is held out unless ``val_data``).
        out: weights file to write, ending in ``.weights.h5``; ``out.with_suffix('.json')`` is the sidecar.
        weights: initial weights (transfer learning); None trains from scratch.
        on_progress: ``callback(stage, done, total, info)``; stage "load" (images), "train" (steps, info:
            epoch and loss) or "epoch" (info: the epoch's metrics, val_accuracy in inference mode).

    Raises:
        DatasetError, ClassMismatchError, WeightsFileError, TrainingError: bad input or a diverged run.
    """
    started = time.perf_counter()
    options.check()
    out = _check_out(out, force)
    if options.freeze and not weights:
        raise TrainingError("--freeze trains only the classifier and needs --weights")
    if len(data.class_names) < 2:
        raise DatasetError(f"{data.root} has {len(data.class_names)} class; training needs at least 2")
    if config.num_classes != len(data.class_names) or not config.include_top:
        raise ClassMismatchError(f"a classifier with {config.num_classes} outputs for "
                                 f"{len(data.class_names)} classes")
    train, val, val_labels = _validation(data, val_data, options)
    train_px = pixels.load_pixels(train, config.resolution, on_progress)
    val_inputs = pixels.eval_inputs(pixels.load_pixels(val, config.resolution),
                                    config) if val is not None else None
    model, initial = _model(config, weights, options)
    epochs, settle = _fit(model, train_px, train.labels, val_inputs, val_labels, config, options,
                          bool(weights), on_progress)
    bn = _final_batchnorm(model, settle, len(train), val_inputs, val_labels, options)
    write_weights(model, out)
    rule = StoppingRule(options.epochs, options.patience, len(val) if val is not None else 0)
    best = epochs[rule.kept_epoch([e["val_accuracy"] for e in epochs])] if val is not None else epochs[-1]
    training = {"data": data.source, "data_root": str(Path(data.root).resolve()),
                "validation": val.source if val is not None else None, "train_images": len(train),
                "val_images": len(val) if val is not None else 0, "epochs_run": len(epochs),
                "best_epoch": best["epoch"], "history": epochs, "batchnorm": bn, "initial_weights": initial,
                "options": dataclasses.asdict(options), "seconds": round(time.perf_counter() - started, 1)}
    sidecar = write_sidecar(out, config, data.class_names, training)
    return {"weights": str(out), "sidecar": str(sidecar), "config": config.as_dict(),
            "class_names": list(data.class_names), **training}


def _model(config: ModelConfig, weights: Path | None, options: FinetuneOptions):
    """The Keras model to train, with its initial weights, and a description of them."""
    from mobilenets_tf.builder import build_from_config  # first: imports TensorFlow quietly

    import keras

    keras.utils.set_random_seed(options.seed)
    model = build_from_config(config, dropout=options.dropout)
    initial = initial_weights(model, config,
                              Path(weights)) if weights else {"source": "random initialisation"}
    if weights:
        log.info("initial weights %s: %d layers copied, new: %s", initial["source"], initial["layers_copied"],
                 ", ".join(initial["layers_new"]) or "none")
    keras.utils.set_random_seed(options.seed)       # loading weights reseeds; training starts from ours
    if options.freeze:
        for layer in model.layers:
            layer.trainable = layer.name in initial["layers_new"]
    return model, initial
