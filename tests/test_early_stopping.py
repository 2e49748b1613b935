"""finetune's early stopping on a scripted noisy validation curve (issue 12, defect 3).

The callbacks ``finetune`` installs are driven with scripted ``val_accuracy`` values, epoch by epoch, as
Keras would: a short run on a small validation split must not stop on noise, and must stop on a real plateau.
"""

import numpy as np
import pytest

from mobilenets_tf import _quiet  # noqa: F401

import keras

from mnbench.accuracy.finetune import StoppingRule, _callbacks

# 15 epochs on 36 validation images: rising, with the +-1-image noise of a small split (what stopped a run
# after 6 epochs at patience 3).
NOISY_RISE = [0.33, 0.56, 0.53, 0.50, 0.53, 0.47, 0.61, 0.64, 0.58, 0.69, 0.72, 0.69, 0.75, 0.78, 0.75]
PLATEAU = [0.50, 0.80, 0.81, 0.80, 0.79, 0.80, 0.81, 0.79, 0.80, 0.79, 0.80, 0.79, 0.80, 0.81, 0.80,
           0.80, 0.79, 0.80, 0.80, 0.80, 0.81, 0.79, 0.80, 0.80, 0.79, 0.80, 0.80, 0.79, 0.80, 0.80]


def _epochs_run(curve: list[float], epochs: int, patience: int = 3,
                val_images: int = 36) -> tuple[int, object]:
    """Drive finetune's stopping callbacks with ``curve``; return (epochs run, the model)."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.stop_training = False
    callbacks = _callbacks(None, 1, epochs, lambda: 0, np.zeros((val_images, 2)), np.zeros(val_images, int),
                           8, patience)
    stoppers = [c for c in callbacks if type(c).__name__ not in ("Epochs", "TerminateOnNaN")]
    assert stoppers, "finetune installs no early stopping"
    for callback in stoppers:
        callback.set_model(model)
        callback.on_train_begin()
    run = 0
    for epoch, value in enumerate(curve[:epochs]):
        model.layers[0].bias.assign([float(epoch)])     # weights tell the epochs apart
        for callback in stoppers:
            callback.on_epoch_end(epoch, {"val_accuracy": value, "val_loss": 1 - value})
        run = epoch + 1
        if model.stop_training:
            break
    for callback in stoppers:
        callback.on_train_end()
    return run, model


def test_noisy_short_run_is_not_stopped():
    run, model = _epochs_run(NOISY_RISE, epochs=15)
    assert run == 15
    assert float(model.layers[0].bias.numpy()[0]) == 14.0       # the last epoch's weights are kept


def test_real_plateau_still_stops_and_keeps_a_late_epoch():
    run, model = _epochs_run(PLATEAU, epochs=30)
    assert 15 <= run < 30
    assert float(model.layers[0].bias.numpy()[0]) == run - 1    # no earlier epoch was better beyond noise


def test_clearly_better_earlier_epoch_is_restored():
    curve = [0.3, 0.5, 0.9, 0.92, 0.91, 0.9, 0.5, 0.45, 0.4, 0.42, 0.4, 0.41]
    run, model = _epochs_run(curve, epochs=12, val_images=200)
    assert run < 12                                             # collapsed for longer than the patience
    assert float(model.layers[0].bias.numpy()[0]) == 5.0        # the top of the smoothed curve (3..5)


@pytest.mark.parametrize("epochs, patience, min_epochs, effective", [(15, 3, 8, 5), (40, 3, 20, 14),
                                                                     (4, 6, 2, 6)])
def test_rule_scales_with_the_run(epochs, patience, min_epochs, effective):
    rule = StoppingRule(epochs, patience, 36)
    assert (rule.min_epochs, rule.effective_patience) == (min_epochs, effective)
    assert not rule.should_stop([0.9] + [0.1] * (min_epochs - 2))
