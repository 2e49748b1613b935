"""Shared test helpers."""

import contextlib
import io
import signal

import numpy as np

from mnbench.cli import main


def run_cli(*args) -> tuple[int, str, str]:
    """``mnbench ARGS`` in this process through the real entry point: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(arg) for arg in args])
    return code, out.getvalue(), err.getvalue()


def randomize(model, seed=0, scale=0.1):
    """Give every weight a random value (BatchNorm variances stay positive), so comparisons mean something."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        values = []
        for weight, value in zip(layer.weights, layer.get_weights()):
            noise = rng.normal(0.0, scale, value.shape).astype(value.dtype)
            if "variance" in weight.path:
                noise = 1.0 + np.abs(noise)
            elif "gamma" in weight.path:
                noise = 1.0 + noise
            values.append(noise)
        if values:
            layer.set_weights(values)
    return model


def images(version, count=2, resolution=224, seed=1):
    """Inputs in the range each version's model expects."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 1.0, (count, resolution, resolution, 3)).astype("float32")
    return x * 255.0 if version.startswith("v3") else x * 2.0 - 1.0


def sigint_as_ctrl_c() -> None:
    """``preexec_fn`` for a child that a test interrupts: Ctrl-C's default action even when the test runner
    was started in the background by a non-interactive shell, which leaves SIGINT ignored in its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
