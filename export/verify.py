"""Run an exported model in the LiteRT interpreter beside the Keras model and measure agreement.

Metrics are computed on the model outputs and, when the model ends in a softmax, also on the logits that
feed it: with untrained (random) weights the softmax is nearly uniform and an int8 softmax (scale 1/256)
rounds it to zero, so only the logits tell whether quantization kept the network's signal.
"""

from __future__ import annotations

import numpy as np

from device_bench.tflite_file import open_interpreter

from .errors import ExportError
from .quantization import Quant

FP32_MAX_ABS_DIFF = 1e-4


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero = detail["quantization"]
    if np.issubdtype(values.dtype, np.integer) and scale:
        return (values.astype(np.float32) - zero) * scale
    return values.astype(np.float32)


def run_tflite(data: bytes, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Outputs (and softmax-input logits, if any) for each image, run at batch 1, dequantized to float32."""
    interpreter = open_interpreter(data, num_threads=2, preserve_all_tensors=True)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    softmax = [op for op in interpreter._get_ops_details() if op["op_name"] == "SOFTMAX"]
    logits_detail = None
    if softmax:
        index = int(softmax[-1]["inputs"][0])
        logits_detail = next(d for d in interpreter.get_tensor_details() if d["index"] == index)
    in_scale, in_zero = inp["quantization"]
    outputs, logits = [], []
    for image in images:
        x = image[None]
        if np.issubdtype(inp["dtype"], np.integer):
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / in_scale + in_zero), info.min, info.max)
        interpreter.set_tensor(inp["index"], x.astype(inp["dtype"]))
        interpreter.invoke()
        outputs.append(_dequantize(interpreter.get_tensor(out["index"])[0], out))
        if logits_detail is not None:
            logits.append(_dequantize(interpreter.get_tensor(logits_detail["index"])[0], logits_detail))
    return np.stack(outputs), (np.stack(logits) if logits else None)


def compare(reference: np.ndarray, outputs: np.ndarray) -> dict:
    """max |diff|, top-1 agreement, mean cosine similarity and SQNR (dB) of ``outputs`` vs ``reference``."""
    ref_flat = reference.reshape(len(reference), -1).astype(np.float64)
    out_flat = outputs.reshape(len(outputs), -1).astype(np.float64)
    norms = np.linalg.norm(ref_flat, axis=1) * np.linalg.norm(out_flat, axis=1)
    cosine = np.sum(ref_flat * out_flat, axis=1) / np.maximum(norms, 1e-30)
    noise, signal = float(np.sum((out_flat - ref_flat) ** 2)), float(np.sum(ref_flat ** 2))
    sqnr = float("inf") if noise == 0 else 10.0 * np.log10(max(signal, 1e-30) / noise)
    return {"images": int(len(reference)), "max_abs_diff": float(np.abs(out_flat - ref_flat).max()),
            "top1_agreement": float(np.mean(ref_flat.argmax(1) == out_flat.argmax(1))),
            "cosine": round(float(cosine.mean()), 6), "sqnr_db": round(sqnr, 2)}


def keras_reference(model, images: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Keras outputs, and the logits feeding a final softmax when there is one."""
    import keras

    last = model.layers[-1]
    if isinstance(last, keras.layers.Activation) and last.activation.__name__ == "softmax":
        logits_model = keras.Model(model.input, last.input)
        logits = logits_model.predict(images, batch_size=16, verbose=0)
        return np.asarray(keras.activations.softmax(logits)), logits
    return model.predict(images, batch_size=16, verbose=0), None


def verify(data: bytes, keras_outputs: tuple, images: np.ndarray, quant: Quant, softmax: bool = True) -> dict:
    """Compare the exported model with the Keras outputs (``keras_reference``) on ``images``.

    ``softmax`` False: the model ends at the logits (int8 models by default), compared with Keras' logits.

    Raises:
        ExportError: a float32 model whose outputs differ from Keras by more than 1e-4.
    """
    reference, reference_logits = keras_outputs
    outputs, logits = run_tflite(data, images)
    if not softmax and reference_logits is not None:
        reference, logits = reference_logits, outputs
    metrics = {"outputs": compare(reference, outputs)}
    if logits is not None and reference_logits is not None:
        metrics["logits"] = compare(reference_logits, logits)
    worst = metrics["outputs"]["max_abs_diff"]
    metrics["passed"] = quant is not Quant.FP32 or worst <= FP32_MAX_ABS_DIFF
    if not metrics["passed"]:
        raise ExportError(f"float32 model differs from Keras by {worst:.3g} (limit {FP32_MAX_ABS_DIFF:g}); "
                          "the file was not written")
    return metrics
