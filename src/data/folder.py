"""An image folder, ``root/train/<class>/*`` and ``root/test/<class>/*``, read with Pillow.

* Classes are the folder names under ``train/``, numbered in sorted order; ``test/`` must hold the
  same folders. Files and folders whose name starts with a dot are not read (``.DS_Store``).
* Images are PNG or JPEG, grey or colour, 8 bits per channel. They are numbered in the order of
  their file names across the classes (ties broken by class folder), so that a folder written by
  ``python -m src.data.export_png`` numbers its images exactly as the IDX files do.
* Every image has the size of the first one, unless a size is asked for (``data.image_size``):
  then an image of another size is resized (Pillow's bilinear filter, which averages when it
  shrinks). Grey images are kept as one channel and colour as three; with the channel count left
  to the data (``data.channels=null``) a colour image in a grey dataset is an error, not a silent
  conversion.
* The fingerprint of a split is the sha256 of its ``sha256sum`` manifest (one line per file,
  ``<sha256>  <path relative to the split folder>``, in sorted path order), so it can be checked
  with shell tools (docs/data.md).

Every problem is a ``DatasetError`` of one line that names the file or folder.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.errors import DatasetError

SPLITS = ("train", "test")
SUFFIXES = (".png", ".jpg", ".jpeg")
FORMATS = ("PNG", "JPEG")
SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")  # how a PNG and a JPEG file start
# Pillow modes read as one channel; palette images may hold colour, so they count as colour.
GREY_MODES = ("1", "L", "LA")
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "P", "PA", "CMYK", "YCbCr", "LAB", "HSV")
LAYOUT = "data=folder reads root/train/<class>/* and root/test/<class>/* (PNG or JPEG)"


@dataclass(frozen=True)
class Listing:
    """What a folder holds: class names and, per split, its files in numbering order."""

    root: Path
    class_names: tuple[str, ...]
    files: dict[str, tuple[tuple[str, int], ...]]  # split -> ((path relative to the split folder, label), ...)

    def count(self, split: str) -> int:
        return len(self.files[split])

    def path(self, split: str, rel: str) -> Path:
        return self.root / split / rel


def _visible(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        raise DatasetError(f"{folder}: cannot list the folder ({err.strerror or err})") from None


def _split_folder(root: Path, split: str) -> Path:
    folder = root / split
    if not folder.is_dir():
        raise DatasetError(f"{root} has no {split}/ folder; {LAYOUT}")
    return folder


def _class_folders(root: Path, split: str) -> list[str]:
    folder = _split_folder(root, split)
    names = []
    for entry in _visible(folder):
        if not entry.is_dir():
            raise DatasetError(f"{folder / entry.name}: {split}/ must hold only class folders ({LAYOUT})")
        names.append(entry.name)
    if not names:
        raise DatasetError(f"{folder} holds no class folder; {LAYOUT}")
    return names


def _images_in(folder: Path) -> list[str]:
    names = []
    for entry in _visible(folder):
        if entry.is_dir():
            raise DatasetError(f"{folder / entry.name}: a folder inside a class folder; {LAYOUT}")
        if not entry.name.lower().endswith(SUFFIXES):
            raise DatasetError(f"{folder / entry.name} is not an image: data=folder reads .png, .jpg and .jpeg "
                               "files (remove it, or move it out of the class folder)")
        names.append(entry.name)
    if not names:
        raise DatasetError(f"{folder} is empty: every class folder needs at least one image "
                           "(remove the folder to drop the class)")
    return names


def _signature(root: Path) -> tuple:
    """Changes when a file is added, removed or renamed anywhere in the layout (folder mtimes)."""
    parts = []
    for split in SPLITS:
        folder = root / split
        try:
            parts.append((split, folder.stat().st_mtime_ns))
            with os.scandir(folder) as it:
                parts += sorted((split, e.name, e.stat().st_mtime_ns) for e in it if e.is_dir())
        except OSError:
            parts.append((split, None))
    return tuple(parts)


_LISTINGS: dict[tuple, Listing] = {}


def list_folder(root: str | Path) -> Listing:
    """The folder's classes and files, checked (cached in this process while no folder changes)."""
    root = Path(root).expanduser().resolve()
    key = (str(root), _signature(root))
    if key in _LISTINGS:
        return _LISTINGS[key]
    classes = _class_folders(root, "train")
    test_classes = _class_folders(root, "test")
    for name in classes:
        if name not in test_classes:
            raise DatasetError(f"{root / 'test'} has no folder for class {name!r}: every class of train/ needs "
                               f"test images ({len(classes)} classes in train/: {', '.join(classes)})")
    for name in test_classes:
        if name not in classes:
            raise DatasetError(f"{root / 'test' / name} is not a class of train/ ({', '.join(classes)})")
    files = {}
    for split in SPLITS:
        items = [(name, label) for label, cls in enumerate(classes) for name in _images_in(root / split / cls)]
        # File name first, then class: an export of numbered images keeps its numbering.
        items.sort(key=lambda item: (item[0], classes[item[1]]))
        files[split] = tuple((f"{classes[label]}/{name}", label) for name, label in items)
    listing = Listing(root, tuple(classes), files)
    _LISTINGS.clear()  # one folder at a time is enough
    _LISTINGS[key] = listing
    return listing


def _open(path: Path, data: bytes | None = None):  # -> PIL.Image.Image
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data) if data is not None else path)
    except UnidentifiedImageError:
        head = data[:8] if data is not None else _read_head(path)
        if not head:  # an interrupted copy leaves empty files
            raise DatasetError(f"{path}: corrupt or truncated image (the file is empty)") from None
        if head.startswith(SIGNATURES):  # a PNG or JPEG whose header or chunks are damaged
            raise DatasetError(f"{path}: corrupt or truncated image (Pillow cannot parse it)") from None
        raise DatasetError(f"{path} is not an image Pillow can read (data=folder reads PNG and JPEG files)") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise DatasetError(f"{path}: corrupt or truncated image ({err})") from None
    if image.format not in FORMATS:
        raise DatasetError(f"{path} is a {image.format} image; data=folder reads PNG and JPEG")
    if image.mode not in GREY_MODES + COLOUR_MODES:
        raise DatasetError(f"{path}: Pillow mode {image.mode} (16-bit or floating point) is not read; "
                           "data=folder reads 8-bit grey or colour images")
    return image


def _read_head(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(8)
    except OSError:
        return b""


def channels_of(mode: str) -> int:
    return 1 if mode in GREY_MODES else 3


def first_image(listing: Listing) -> tuple[str, int, int, int]:
    """``(path, channels, height, width)`` of the first training image (its header only)."""
    rel = listing.files["train"][0][0]
    path = listing.path("train", rel)
    with _open(path) as image:
        return str(path), channels_of(image.mode), image.height, image.width


@dataclass
class Decoded:
    images: np.ndarray  # uint8 (N, H, W) for one channel, (N, C, H, W) for three
    labels: np.ndarray  # int64 (N,)
    resized: int


def _read_file(path: str) -> bytes:
    """The file's bytes, through os.open/os.read: a third of Path.read_bytes' time on small files."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, max(os.fstat(fd).st_size, 1))]
        while chunks[-1]:  # a file that grew since fstat is read to its end
            chunks.append(os.read(fd, 1 << 20))
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_split(listing: Listing, split: str) -> tuple[list[bytes], dict[str, str | int]]:
    """Every file's bytes (numbering order) and the split's fingerprint: ``{path, files, bytes, sha256}``."""
    folder = str(listing.root / split)
    blobs, lines, total = [], [], 0
    for rel, _ in listing.files[split]:
        path = os.path.join(folder, rel)
        try:
            data = _read_file(path)
        except OSError as err:
            raise DatasetError(f"{path}: cannot read the file ({err.strerror or err})") from None
        blobs.append(data)
        lines.append((rel, hashlib.sha256(data).hexdigest()))
        total += len(data)
    manifest = "".join(f"{digest}  {rel}\n" for rel, digest in sorted(lines))
    return blobs, {"path": str(folder), "files": len(blobs), "bytes": total,
                   "sha256": hashlib.sha256(manifest.encode()).hexdigest()}


def decode_split(
    listing: Listing, split: str, blobs: Sequence[bytes], channels: int, size: tuple[int, int],
    resize: bool, convert: bool, first: str,
) -> Decoded:
    """Decode a split's files (bytes from ``read_split``) into one uint8 array.

    ``size`` is (height, width); an image of another size is resized when ``resize``, an error
    otherwise (``first`` names the image that set the size). ``convert``: a colour image may become
    grey (the channel count was asked for); otherwise it is an error."""
    from PIL import Image

    height, width = size
    n = len(blobs)
    shape = (n, height, width) if channels == 1 else (n, channels, height, width)
    images = np.empty(shape, dtype=np.uint8)
    resized = 0
    mode = "L" if channels == 1 else "RGB"
    for i, ((rel, _), data) in enumerate(zip(listing.files[split], blobs, strict=True)):
        path = listing.path(split, rel)
        image = _open(path, data)
        try:
            if channels == 1 and channels_of(image.mode) == 3 and not convert:
                raise DatasetError(f"{path} is a colour image but the first image ({first}) is grey: set "
                                   "data.channels=3 (grey images repeated over three channels) or data.channels=1 "
                                   "(colour converted to grey)")
            if (image.height, image.width) != (height, width) and not resize:
                raise DatasetError(f"{path} is {image.width}x{image.height} but the first image ({first}) is "
                                   f"{width}x{height}: images of mixed sizes need data.image_size (e.g. "
                                   f"data.image_size={height}) to be resized to one size")
            image.load()  # decodes: a truncated or corrupt file fails here
            if image.mode != mode:
                image = image.convert(mode)
            if (image.height, image.width) != (height, width):
                image = image.resize((width, height), Image.Resampling.BILINEAR)
                resized += 1
            pixels = np.asarray(image)
        except DatasetError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError) as err:
            raise DatasetError(f"{path}: corrupt or truncated image ({err})") from None
        finally:
            image.close()
        images[i] = pixels if channels == 1 else pixels.transpose(2, 0, 1)
    labels = np.fromiter((label for _, label in listing.files[split]), dtype=np.int64, count=n)
    return Decoded(images, labels, resized)
