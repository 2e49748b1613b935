"""Labeled images: a folder per class (the ImageFolder layout) or a labels file. No TensorFlow here.

ImageFolder: ``DIR/<class>/**/<image>.{jpg,jpeg,png}``; the class names are the sub-folder names.
Labels file: lines ``relative/path.jpg,label`` (comma, tab, or whitespace before the label; paths relative
to the file's folder; an optional ``path,label`` header; ``#`` comments), e.g. ImageNet's validation list.

Class order is the sorted names, numerically when every name is an integer (``2`` before ``10``), so index
``i`` of a model trained here is the ``i``-th name. Hidden files and folders are ignored.
"""

from __future__ import annotations

import csv
import logging
import random
from dataclasses import dataclass
from pathlib import Path

from .errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_HEADER_NAMES = {"path", "file", "filename", "image", "file_name", "image_path"}


@dataclass(frozen=True)
class LabeledImages:
    """Image files with a class index each; ``class_names[labels[i]]`` is the class of ``paths[i]``."""

    root: Path
    paths: tuple[Path, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...]
    layout: str                      # "folder" or "labels file"

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def source(self) -> str:
        return f"{self.root} ({self.layout}, {len(self.class_names)} classes, {len(self)} images)"

    def counts(self) -> list[int]:
        """Images per class, in class order."""
        counts = [0] * len(self.class_names)
        for label in self.labels:
            counts[label] += 1
        return counts

    def relative(self, path: Path) -> str:
        try:
            return path.relative_to(self.root).as_posix()
        except ValueError:
            return str(path)

    def subset(self, indices) -> LabeledImages:
        """The images at ``indices`` (same classes, same order of names)."""
        indices = list(indices)
        return LabeledImages(self.root, tuple(self.paths[i] for i in indices),
                             tuple(self.labels[i] for i in indices), self.class_names, self.layout)


def sort_names(names) -> list[str]:
    """Sorted class names; numerically when every name is an integer."""
    names = list(dict.fromkeys(names))
    if names and all(is_integer_name(name) for name in names):
        return sorted(names, key=lambda name: (int(name), name))
    return sorted(names)


def is_integer_name(text: str) -> bool:
    """True for class names such as ``7`` or ``012`` (read as output indices when a model has no names)."""
    try:
        int(text)
    except ValueError:
        return False
    return True


def _visible(path: Path, root: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(root).parts)


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and _visible(p, folder) and p.is_file())


def load(path: Path) -> LabeledImages:
    """A class-per-folder directory or a labels file.

    Raises:
        DatasetError: missing path, no class folders, an empty class, a labels file naming missing images.
    """
    path = Path(path)
    if path.is_dir():
        return from_folder(path)
    if path.is_file():
        return from_labels_file(path)
    raise DatasetError(f"data {path} does not exist (expected a folder with one sub-folder per class, "
                       "or a labels file)")


def from_folder(folder: Path) -> LabeledImages:
    """``folder/<class>/**/<image>``: one sub-folder per class (the ImageFolder layout)."""
    folder = Path(folder)
    class_dirs = [d for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
             and not p.name.startswith(".")]
    if not class_dirs:
        if loose:
            raise DatasetError(f"data folder {folder} holds {len(loose)} images but no class sub-folders: "
                               f"the images are unlabeled (expected {folder}/<class>/<image>.jpg, or a "
                               f"labels file)")
        raise DatasetError(f"data folder {folder} is empty (expected {folder}/<class>/<image>.jpg)")
    if loose:
        log.warning("%d images directly in %s are in no class folder and are ignored", len(loose), folder)
    names = sort_names(d.name for d in class_dirs)
    by_name = {d.name: d for d in class_dirs}
    paths, labels = [], []
    for index, name in enumerate(names):
        files = _images_below(by_name[name])
        if not files:
            raise DatasetError(f"class folder {by_name[name]} holds no .jpg, .jpeg or .png images")
        paths += files
        labels += [index] * len(files)
    return LabeledImages(folder, tuple(paths), tuple(labels), tuple(names), "folder")


def _read_rows(path: Path) -> list[tuple[int, str, str]]:
    """(line number, image path, label) of every data line of a labels file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"cannot read labels file {path}: {error}") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if "\t" in line or "," in line:
            cells = next(csv.reader([line], delimiter="\t" if "\t" in line else ","))
            cells = [c.strip() for c in cells]
        else:
            cells = line.rsplit(None, 1)
        if len(cells) != 2 or not cells[0] or not cells[1]:
            raise DatasetError(f"labels file {path} line {number}: expected 'image path,label', got "
                               f"{line.strip()!r}")
        rows.append((number, cells[0], cells[1]))
    if rows and rows[0][1].lower() in _HEADER_NAMES and rows[0][2].lower() in {"label", "class", "category"}:
        rows = rows[1:]
    return rows


def from_labels_file(path: Path) -> LabeledImages:
    """Images and labels listed in a CSV/TSV/whitespace file; paths relative to the file's folder."""
    path = Path(path)
    rows = _read_rows(path)
    if not rows:
        raise DatasetError(f"labels file {path} lists no images")
    root = path.parent
    seen: dict[Path, str] = {}
    missing = []
    for number, image, label in rows:
        image_path = (root / image).resolve() if not Path(image).is_absolute() else Path(image)
        if image_path in seen and seen[image_path] != label:
            raise DatasetError(f"labels file {path} line {number}: {image} is labeled both "
                               f"{seen[image_path]!r} and {label!r}")
        seen[image_path] = label
        if not image_path.is_file():
            missing.append(image)
    if missing:
        raise DatasetError(f"labels file {path} names {len(missing)} image(s) that do not exist, "
                           f"e.g. {missing[0]}")
    names = sort_names(seen.values())
    index = {name: i for i, name in enumerate(names)}
    paths = tuple(seen)
    return LabeledImages(root.resolve(), paths, tuple(index[seen[p]] for p in paths), tuple(names),
                         "labels file")


def limit(data: LabeledImages, count: int | None) -> LabeledImages:
    """At most ``count`` images, taken round-robin over the classes (so every class is represented)."""
    if count is None or count >= len(data):
        return data
    if count < 1:
        raise DatasetError(f"--limit must be at least 1, got {count}")
    per_class = [[i for i,
                  label in enumerate(data.labels) if label == c] for c in range(len(data.class_names))]
    chosen: list[int] = []
    depth = 0
    while len(chosen) < count:
        chosen += [members[depth] for members in per_class if depth < len(members)][: count - len(chosen)]
        depth += 1
    return data.subset(sorted(chosen))


def split(data: LabeledImages, val_fraction: float, seed: int = 0) -> tuple[LabeledImages,
                                                                            LabeledImages | None]:
    """A stratified train/validation split: about ``val_fraction`` of each class, at least one image each.

    Raises:
        DatasetError: a class with fewer than two images (nothing left to train on or to validate).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return data, None
    rng = random.Random(seed)
    train, val = [], []
    for c, name in enumerate(data.class_names):
        members = [i for i, label in enumerate(data.labels) if label == c]
        if len(members) < 2:
            raise DatasetError(f"class {name!r} has {len(members)} image(s); a validation split needs at "
                               f"least 2 per class (add images, pass a separate validation folder, or "
                               f"--val-fraction 0)")
        rng.shuffle(members)
        take = min(len(members) - 1, max(1, round(len(members) * val_fraction)))
        val += members[:take]
        train += members[take:]
    return data.subset(sorted(train)), data.subset(sorted(val))


class UnreadableImage(DatasetError):
    """One image file that PIL cannot decode."""


def read_rgb(path: Path, content: bytes | None = None):
    """The image at ``path`` (or its ``content``, already read) as RGB, rotated upright by its EXIF
    orientation.

    Raises:
        UnreadableImage: the file is not a decodable JPEG/PNG (truncated, corrupt, another format).
    """
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content) if content is not None else path) as image:
            image = ImageOps.exif_transpose(image)
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"{path}: {' '.join(str(error).split())}") from None


def unreadable_error(data: LabeledImages, failures: list[tuple[Path, str]]) -> DatasetError:
    """One error naming how many images could not be read, with the first one and why."""
    path, reason = failures[0]
    return DatasetError(f"{len(failures)} of {len(data)} images in {data.root} are unreadable, e.g. "
                        f"{data.relative(path)} ({reason.split(': ', 1)[-1]}); remove them or pass "
                        f"--skip-unreadable")
