"""Calibration images: a user's folder of JPEG/PNG files, or photographs shipped inside scikit-image.

Images are preprocessed as ImageNet evaluation does (resize the shorter side to resolution / 0.875, centre
crop) and scaled to the range the model takes (V1/V2: [-1, 1]; V3: [0, 255], rescaled in the graph).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ExportError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
CROP_FRACTION = 0.875
# Photographs (not drawings or synthetic patterns) in the scikit-image wheel, under skimage/data.
PACKAGED_PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                   "motorcycle_right.png", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "camera.png",
                   "coins.png", "moon.png", "brick.png", "grass.png", "gravel.png")


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed images (N, H, W, 3) float32, where they came from, and a digest of the sources."""

    images: np.ndarray
    source: str
    digest: str

    @property
    def count(self) -> int:
        return int(self.images.shape[0])


def find_images(folder: Path) -> list[Path]:
    """JPEG and PNG files below ``folder``, recursively, in a stable order."""
    if not folder.exists():
        raise ExportError(f"calibration folder {folder} does not exist")
    if not folder.is_dir():
        raise ExportError(f"calibration folder {folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ExportError(f"calibration folder {folder} holds no .jpg, .jpeg or .png files")
    return files


def spread(items: list, count: int) -> list:
    """``count`` items evenly spaced over ``items`` (so one class folder does not take every slot)."""
    if len(items) <= count:
        return list(items)
    return [items[int(i * len(items) / count)] for i in range(count)]


def to_rgb(image):
    """A PIL image as 8-bit RGB. 16-bit greyscale (PIL mode ``I;16*`` or ``I``) is scaled to 0-255 first:
    PIL's own conversion clips it, turning almost every pixel of a 16-bit photograph white."""
    from PIL import Image

    if image.mode.startswith("I;16") or image.mode == "I":
        pixels = np.asarray(image, dtype=np.float64)
        full_scale = 65535.0 if image.mode.startswith("I;16") or pixels.max() > 255 else 255.0
        scaled = np.round(np.clip(pixels, 0, full_scale) * (255.0 / full_scale))
        image = Image.fromarray(scaled.astype(np.uint8))
    return image.convert("RGB")


def preprocess(image, resolution: int, input_range: tuple[float, float]) -> np.ndarray:
    """A PIL image -> (resolution, resolution, 3) float32 in ``input_range``."""
    from PIL import Image, ImageOps

    image = to_rgb(ImageOps.exif_transpose(image))    # phone JPEGs store rotation in EXIF
    short = resolution / CROP_FRACTION
    scale = short / min(image.size)
    size = (max(resolution, round(image.size[0] * scale)), max(resolution, round(image.size[1] * scale)))
    image = image.resize(size, Image.BILINEAR)
    left, top = (size[0] - resolution) // 2, (size[1] - resolution) // 2
    pixels = np.asarray(image.crop((left, top, left + resolution, top + resolution)), dtype=np.float32)
    low, high = input_range
    return pixels * ((high - low) / 255.0) + low


def from_folder(folder: Path, count: int, resolution: int,
                input_range: tuple[float, float]) -> CalibrationSet:
    """Load up to ``count`` images from ``folder``; unreadable or too large files are skipped (a warning)."""
    from PIL import Image, UnidentifiedImageError

    images, digest = [], hashlib.sha256()
    for path in spread(find_images(folder), count):
        try:
            with Image.open(path) as image:
                images.append(preprocess(image, resolution, input_range))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            log.warning("skipping unreadable image %s: %s", path, " ".join(str(error).split()))
            continue
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    if not images:
        raise ExportError(f"no readable image in calibration folder {folder}")
    return CalibrationSet(np.stack(images), f"{folder} ({len(images)} images)", digest.hexdigest())


def packaged_photos_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise ExportError("no calibration images: pass --calib-dir, or install scikit-image for its "
                          "photographs")
    return Path(spec.origin).parent / "data"


def from_package(count: int, resolution: int, input_range: tuple[float, float],
                 seed: int = 0) -> CalibrationSet:
    """``count`` crops (random position and scale, some mirrored) of scikit-image's photographs."""
    from PIL import Image, ImageOps

    folder = packaged_photos_dir()
    photos = [folder / name for name in PACKAGED_PHOTOS if (folder / name).exists()]
    if not photos:
        raise ExportError(f"scikit-image's photographs are missing from {folder}; pass --calib-dir")
    rng = np.random.default_rng(seed)
    images, digest = [], hashlib.sha256(f"seed={seed}".encode())
    opened = {path: Image.open(path).convert("RGB") for path in photos}
    for index in range(count):
        path = photos[index % len(photos)]
        photo = opened[path]
        if index >= len(photos):   # after one full view of each photo, random crops of 35-100 % of it
            side = int(min(photo.size) * rng.uniform(0.35, 1.0))
            left = int(rng.integers(0, photo.size[0] - side + 1))
            top = int(rng.integers(0, photo.size[1] - side + 1))
            photo = photo.crop((left, top, left + side, top + side))
            if rng.random() < 0.5:
                photo = ImageOps.mirror(photo)
        images.append(preprocess(photo, resolution, input_range))
    for path in photos:
        digest.update(path.name.encode() + path.read_bytes())
    names = ", ".join(p.stem for p in photos)
    source = f"scikit-image photographs ({len(photos)}: {names}; {count} crops, seed {seed})"
    return CalibrationSet(np.stack(images), source, digest.hexdigest())


def load(calib_dir: Path | None, count: int, resolution: int,
         input_range: tuple[float, float]) -> CalibrationSet:
    if count < 1:
        raise ExportError(f"--calib-samples must be at least 1, got {count}")
    if calib_dir is not None:
        return from_folder(Path(calib_dir), count, resolution, input_range)
    return from_package(count, resolution, input_range)
