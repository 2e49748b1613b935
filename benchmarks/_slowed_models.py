"""Models with a known extra cost, for the latency gate's power curve (``gate_power.py``).

A is MobileNetV3-Small (alpha 1.0) at a low resolution. ``B_k`` is the same network, with the same weights,
behind a chain of ``k`` extra element-wise operators on its input (``relu6(x * 0.999)``, one fused MUL each
in LiteRT): the backbone's work is unchanged and the extra work grows with ``k``. The slowdown each ``k``
really causes is measured afterwards (a long interleaved run), not assumed.
"""

from __future__ import annotations

from pathlib import Path


def export_chain_models(out: Path, chains: list[int], resolution: int = 96) -> dict[int, Path]:
    """``{k: path}`` of .tflite files, fp32, one per chain length (0 = A itself); cached by file name."""
    out.mkdir(parents=True, exist_ok=True)
    wanted = {k: out / f"v3s_r{resolution}_chain{k}.tflite" for k in chains}
    if all(path.is_file() for path in wanted.values()):
        return wanted
    import tensorflow as tf

    from mobilenets_tf import build

    backbone = build("v3-small", 1.0, resolution, batch_size=1)
    for k, path in wanted.items():
        if path.is_file():
            continue
        inputs = tf.keras.Input((resolution, resolution, 3), batch_size=1)
        x = inputs
        for _ in range(k):
            x = tf.keras.layers.ReLU(6.0)(tf.keras.layers.Rescaling(0.999)(x))
        model = tf.keras.Model(inputs, backbone(x))
        data = tf.lite.TFLiteConverter.from_keras_model(model).convert()
        partial = path.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(path)
    return wanted


if __name__ == "__main__":
    import sys

    print(export_chain_models(Path(sys.argv[1]), [int(k) for k in sys.argv[2:]]))
