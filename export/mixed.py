"""Latency-aware mixed precision: keep a block in float32 where the target runs it faster than in int8.

1. Time every block of the float32 and of the int8 model on the target (flatbuffer slices, `mnbench
   profile`'s method).
2. A block goes float when its float32 slice is faster than its int8 slice by more than ``MARGIN`` and
   ``MIN_SAVING_US`` (the QUANTIZE/DEQUANTIZE at its borders are not free).
3. The mixed model is kept only if, timed whole and interleaved with the int8 model, it is faster, and its
   fidelity against Keras stays within ``SQNR_BUDGET_DB`` of the int8 model's (float blocks cannot lose
   signal, but the check makes the promise testable).
Otherwise the plain int8 model is the answer, and the sidecar says why.
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

MARGIN = 0.10
MIN_SAVING_US = 5.0     # below this a block's difference is timer noise
SQNR_BUDGET_DB = 0.5
ROUNDS = 3


def block_times(model: bytes, threads: int) -> dict[str, float]:
    from device_bench.profile import profile

    with tempfile.TemporaryDirectory(prefix="mnbench-mixed-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        return {row["slice"]: row["median_us"] for row in profile(path, by="block", threads=threads)["slices"]}


def choose_float_blocks(fp32_us: dict[str, float], int8_us: dict[str, float]) -> list[str]:
    """Blocks whose float32 slice beats the int8 one by more than MARGIN and MIN_SAVING_US, in model order."""
    return [block for block, int8 in int8_us.items()
            if block in fp32_us and int8 - fp32_us[block] > max(MARGIN * int8, MIN_SAVING_US)]


def whole_model_ms(models: dict[str, bytes], threads: int) -> dict[str, float]:
    """Median latency of each model, measured in interleaved rounds of fresh processes."""
    from device_bench.host import HostParams, run_worker

    params = HostParams(runs=50, min_secs=0.3, warmup=5, warmup_min_secs=0.1)
    times: dict[str, list[float]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory(prefix="mnbench-mixed-") as tmp:
        paths = {}
        for name, data in models.items():
            paths[name] = Path(tmp) / f"{name}.tflite"
            paths[name].write_bytes(data)
        for _ in range(ROUNDS):
            for name, path in paths.items():
                result = run_worker(path, threads, params)
                if result["ok"]:
                    times[name].append(statistics.median(result["samples_us"]) / 1000)
    return {name: statistics.median(values) if values else float("inf") for name, values in times.items()}


def decide(fp32: bytes, int8: bytes, build_mixed, fidelity, threads: int) -> tuple[bytes, dict]:
    """Return the faster of int8 and a latency-aware mix, with the decision record for the sidecar.

    Args:
        fp32, int8: the float32 and int8 models of the same network.
        build_mixed: ``blocks -> bytes``, the int8 model with those blocks in float32.
        fidelity: ``bytes -> SQNR dB`` of a model's logits against Keras.
        threads: thread count to decide for.
    """
    fp32_us, int8_us = block_times(fp32, threads), block_times(int8, threads)
    blocks = choose_float_blocks(fp32_us, int8_us)
    record = {"mode": "auto", "target": "host", "threads": threads, "margin": MARGIN,
              "blocks": [{"block": b, "fp32_us": round(fp32_us.get(b, 0.0), 1), "int8_us": round(us, 1),
                          "float": b in blocks} for b, us in int8_us.items()],
              "float_blocks": blocks, "chosen": "int8"}
    if not blocks:
        record["reason"] = "int8 is at least as fast as float32 in every block on this target"
        return int8, record
    mixed = build_mixed(tuple(blocks))
    timed = whole_model_ms({"int8": int8, "mixed": mixed}, threads)
    record.update(int8_ms=round(timed["int8"], 3), mixed_ms=round(timed["mixed"], 3))
    int8_sqnr, mixed_sqnr = fidelity(int8), fidelity(mixed)
    record.update(int8_sqnr_db=int8_sqnr, mixed_sqnr_db=mixed_sqnr)
    if timed["mixed"] >= timed["int8"]:
        record["reason"] = "the mixed model was not faster when timed whole"
        return int8, record
    if mixed_sqnr < int8_sqnr - SQNR_BUDGET_DB:
        record["reason"] = f"the mixed model lost more than {SQNR_BUDGET_DB} dB of SQNR"
        return int8, record
    record.update(chosen="mixed", reason="faster whole, fidelity within budget")
    return mixed, record
