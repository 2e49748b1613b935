"""Images as training and evaluation inputs: uint8 squares in memory, centre crops, augmented batches.

Each image is resized as ``export.calibration.preprocess`` does (shorter side to resolution / 0.875) and
kept as a square of that side, cropped so that its centre ``resolution`` crop is exactly the crop that
function (hence export calibration and ``mnbench evaluate``) takes. Training takes random crops of 80-100 %
of the square resized back to ``resolution``, optional horizontal flips and mild brightness/contrast jitter.
"""

from __future__ import annotations

import numpy as np

from mobilenets_tf.config import ModelConfig

from . import datasets
from .datasets import LabeledImages
from .errors import DatasetError
from .weights_file import CROP_FRACTION

MAX_PIXEL_BYTES = 4 << 30          # images are held in memory as uint8 squares
MIN_CROP = 0.8                     # random crops cover 80-100 % of the side of the resized square


def square_side(resolution: int) -> int:
    """Side of the resized square that centre crops of ``resolution`` come from (``resolution / 0.875``)."""
    return max(resolution, round(resolution / CROP_FRACTION))


def square_crop(image, resolution: int) -> np.ndarray:
    """A PIL image -> uint8 (S, S, 3), S = ``square_side``: resized as ``export.calibration.preprocess`` does,
    cropped so that its centre ``resolution`` crop is exactly that function's crop."""
    from PIL import Image

    scale = (resolution / CROP_FRACTION) / min(image.size)
    size = (max(resolution, round(image.size[0] * scale)), max(resolution, round(image.size[1] * scale)))
    image = image.resize(size, Image.BILINEAR)
    side = min(square_side(resolution), *size)
    offsets = [min(max(0, (full - resolution) // 2 - (side - resolution) // 2), full - side) for full in size]
    box = (offsets[0], offsets[1], offsets[0] + side, offsets[1] + side)
    pixels = np.asarray(image.crop(box), dtype=np.uint8)
    if side != square_side(resolution):        # an image smaller than the square: pad by edge replication
        pad = square_side(resolution) - side
        pixels = np.pad(pixels, ((pad // 2, pad - pad // 2), (pad // 2, pad - pad // 2), (0, 0)), mode="edge")
    return pixels


def load_pixels(data: LabeledImages, resolution: int, on_progress=None) -> np.ndarray:
    """Every image of ``data`` as a uint8 square (N, S, S, 3).

    Raises:
        DatasetError: unreadable images, or more pixels than fit comfortably in memory.
    """
    side = square_side(resolution)
    needed = len(data) * side * side * 3
    if needed > MAX_PIXEL_BYTES:
        raise DatasetError(f"{len(data)} images at {side}x{side} need {needed / 2**30:.1f} GiB in memory "
                           f"(limit {MAX_PIXEL_BYTES / 2**30:.0f} GiB); use fewer images or a lower "
                           f"resolution")
    pixels, failures = np.zeros((len(data), side, side, 3), np.uint8), []
    for index, path in enumerate(data.paths):
        try:
            pixels[index] = square_crop(datasets.read_rgb(path), resolution)
        except DatasetError as error:
            failures.append((path, str(error)))
        if on_progress:
            on_progress("load", index + 1, len(data), {})
    if failures:
        raise datasets.unreadable_error(data, failures)
    return pixels


def _scale(x, input_range):
    low, high = input_range
    return x * ((high - low) / 255.0) + low


def centre(pixels, resolution: int):
    """The centre ``resolution`` crop of uint8 squares (what evaluation sees)."""
    start = (pixels.shape[1] - resolution) // 2
    return pixels[:, start:start + resolution, start:start + resolution]


def train_dataset(pixels: np.ndarray, labels: np.ndarray, config: ModelConfig, batch_size: int, flip: bool,
                  seed: int):
    """Shuffled, augmented batches scaled to the model's input range (tf.data)."""
    from mobilenets_tf import _quiet  # noqa: F401

    import tensorflow as tf

    res, side = config.resolution, pixels.shape[1]
    low_side = max(res, int(side * MIN_CROP)) if side > res else res

    def augment(image, label):
        crop = tf.random.uniform([], low_side, side + 1, dtype=tf.int32)
        image = tf.image.random_crop(image, tf.stack([crop, crop, 3]))
        image = tf.image.resize(tf.cast(image, tf.float32), [res, res], method="bilinear")
        if flip:
            image = tf.image.random_flip_left_right(image)
        mean = tf.reduce_mean(image)
        image = (image - mean) * tf.random.uniform([], 0.8, 1.2) + mean + tf.random.uniform([], -20.0, 20.0)
        return _scale(tf.clip_by_value(image, 0.0, 255.0), config.spec.input_range), label

    data = tf.data.Dataset.from_tensor_slices((pixels, labels.astype(np.int32)))
    data = data.shuffle(len(pixels), seed=seed, reshuffle_each_iteration=True).map(augment)
    return data.batch(batch_size).prefetch(2)


def eval_inputs(pixels: np.ndarray, config: ModelConfig) -> np.ndarray:
    """Centre crops in the model's input range, float32."""
    return _scale(centre(pixels, config.resolution).astype(np.float32), config.spec.input_range)
