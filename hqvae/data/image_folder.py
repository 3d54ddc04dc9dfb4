"""Folders of image files (``.png``, ``.jpg``, ``.jpeg``, ``.bmp``), or tar archives of them.

This is how CelebA-HQ, FFHQ, ImageNet subsets or the CIFAR-10 JPEG copy get in.  The layout
rules (class sub-folders, flat folders, ``train/``/``val/``/``test/`` folders) and the split
rule are those of :mod:`hqvae.data.layout`.

Decoding:

* ``channels=3`` converts every image to RGB, ``channels=1`` to greyscale (PIL's ``L``).
* ``size=None`` keeps the stored size, which must then be the same for every image.
  ``size=S`` or ``(H, W)`` resizes (bicubic, antialiased): with ``center_crop=True`` (default)
  the largest centred region of the target's aspect ratio is cut and scaled to (H, W);
  with ``center_crop=False`` the whole image is stretched to (H, W).  Large JPEG files are
  decoded directly at a reduced scale (PIL's draft mode) when that still leaves at least the
  target resolution.
* An image that cannot be decoded raises :class:`CorruptFileError` naming it; with
  ``skip_corrupt=True`` it is left out instead, and one warning gives the count.

Archives are read in one streaming pass that keeps only the compressed bytes of the files the
requested split needs.  With ``cache=True`` (default) the decoded uint8 tensor is stored as a
``.safetensors`` file in ``$HQVAE_DATA/decoded/``, so later loads skip decoding (seconds for
tens of thousands of JPEG files; reading back takes a fraction of one).  The file's name is a
hash of everything that determines its contents (the source's path, size and modification
times, the decoding options and a format version), so a changed source or option never
returns stale data: it just makes a new file.  Delete the folder to reclaim the space.
"""

import hashlib
import io
import json
import logging
import math
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from hqvae.data.archive import is_archive, iter_members
from hqvae.data.dataset import ImageDataset
from hqvae.data.errors import CorruptFileError, DataError
from hqvae.data.layout import FolderPlan, decode_files, folder_dataset, list_files, plan_folder
from hqvae.data.paths import cache_dir
from hqvae.data.splits import SPLITS, check_split
from hqvae.io import atomic_write

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
CACHE_FORMAT = 1


def decode_image(data: bytes, source: str, channels: int = 3, size: tuple[int, int] | None = None,
                 center_crop: bool = True) -> np.ndarray:
    """Decode one image file's bytes into uint8 (H, W, channels); ``source`` names it in errors."""
    mode = {1: "L", 3: "RGB"}[channels]
    try:
        image = Image.open(io.BytesIO(data))
        if size is not None:
            image = _resized(image, mode, size, center_crop)
        image = image.convert(mode)
        array = np.asarray(image)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise CorruptFileError(f"{source}: cannot decode the image ({error}); delete or replace the file, "
                               f"or pass skip_corrupt=True to leave unreadable files out") from error
    return array.reshape(array.shape[0], array.shape[1], channels)


def _resized(image: Image.Image, mode: str, size: tuple[int, int], center_crop: bool) -> Image.Image:
    height, width = size
    w, h = image.size
    crop_w, crop_h = (min(w, h * width / height), min(h, w * height / width)) if center_crop else (w, h)
    if image.format == "JPEG":  # decode at the smallest 1/2^k scale that keeps the crop at least (H, W)
        image.draft(mode, (math.ceil(w * width / crop_w), math.ceil(h * height / crop_h)))
        crop_w, crop_h = crop_w * image.size[0] / w, crop_h * image.size[1] / h
        w, h = image.size
    image = image.convert(mode)
    if (w, h) == (width, height):
        return image
    left, top = (w - crop_w) / 2, (h - crop_h) / 2
    return image.resize((width, height), Image.Resampling.BICUBIC, box=(left, top, left + crop_w, top + crop_h))


def _as_size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive, got {size}")
    return int(height), int(width)


def _is_image(path: str) -> bool:
    """An image file's name without a hidden component (``.DS_Store``, ``._x.jpg``, ``.cache/...``)."""
    return path.lower().endswith(IMAGE_SUFFIXES) and not any(part.startswith(".") for part in path.split("/"))


def _decode(plan: FolderPlan, split: str, read: Callable[[str], bytes], channels: int,
            size: tuple[int, int] | None, center_crop: bool, skip_corrupt: bool) -> dict:
    """:func:`decode_files` with the items as ``images`` uint8 (N, C, H, W)."""
    def decode(path: str) -> np.ndarray:
        return decode_image(read(path), f"{plan.source}/{path}", channels, size, center_crop)

    data = decode_files(plan, split, decode, skip_corrupt, "image", "size= to resize every image")
    data["images"] = torch.from_numpy(data.pop("items")).permute(0, 3, 1, 2).contiguous()
    return data


def _cached(key: dict, use_cache: bool, decode: Callable[[], dict]) -> dict:
    """``decode()``'s result for ``key`` (a JSON-serialisable dict), read from its cache file (module
    docstring) when ``use_cache`` and that file is readable (an unreadable one is deleted), else
    decoded and written there atomically (``hqvae.io``): tensors as such, the rest as JSON metadata."""
    if not use_cache:
        return decode()
    text = json.dumps({"format": CACHE_FORMAT, **key}, sort_keys=True)
    path = cache_dir() / "decoded" / f"image_folder-{hashlib.sha256(text.encode()).hexdigest()[:20]}.safetensors"
    if path.is_file():
        try:
            with safe_open(path, framework="pt") as f:
                stored = {name: f.get_tensor(name) for name in f.keys()}
                stored.update(json.loads(f.metadata()["meta"]))
        except (SafetensorError, OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(f"ignoring unreadable cache file {path} ({error}); it will be rebuilt", stacklevel=3)
            path.unlink(missing_ok=True)
        else:
            log.info("loaded decoded data from %s", path)
            return stored
    decoded = decode()
    tensors = {name: value.contiguous() for name, value in decoded.items() if isinstance(value, torch.Tensor)}
    meta = json.dumps({name: value for name, value in decoded.items() if name not in tensors})
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"meta": meta}))
    return decoded


def _decode_archive(archive: Path, split: str, **options) -> dict:
    """:func:`_decode` of an archive, keeping the bytes of the images of the requested split folders
    (or of every folder when unsplit); the other images are listed so that the layout is seen whole."""
    tops = {"test"} if split == "test" else {"train", "val"}

    def wanted(path: str) -> bool:
        top = path.split("/", 1)[0]
        return _is_image(path) and (top in tops or top not in SPLITS)

    contents = {path: data for path, data in iter_members(archive, wanted) if _is_image(path)}
    return _decode(plan_folder(list(contents), str(archive)), split, contents.__getitem__, **options)


def load_image_folder(root, split: str = "train", *, size=None, center_crop: bool = True, channels: int = 3,
                      val_fraction: float = 0.1, test_fraction: float = 0.1, skip_corrupt: bool = False,
                      cache: bool = True, name: str = "image_folder", title: str | None = None) -> ImageDataset:
    """A folder or tar archive of images as uint8 (N, channels, H, W); see the module docstring.

    ``root``: the folder, or a ``.tar``/``.tar.gz``/``.tgz`` file with the same layout inside.
    ``val_fraction``/``test_fraction``: the per-class tail fractions of :mod:`hqvae.data.splits`.
    ``name``/``title``: the registry name and the human-readable title used in ``description``.
    ``meta`` of the result: ``files`` (each item's path inside ``root``) and ``skipped``.
    """
    check_split(split)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    root = Path(root)
    options = {"channels": channels, "size": _as_size(size), "center_crop": center_crop, "skip_corrupt": skip_corrupt}
    if root.is_dir():  # the cache key: the listing of the files the split needs
        plan = plan_folder(list_files(root, IMAGE_SUFFIXES), str(root))
        groups = plan.needed_groups(split)
        stats = [(path, (root / path).stat()) for path, group in zip(plan.paths, plan.groups) if group in groups]
        key = {"listing": [(path, stat.st_size, stat.st_mtime_ns) for path, stat in stats]}
        decode = partial(_decode, plan, split, lambda path: (root / path).read_bytes())
    elif root.is_file() and is_archive(root):  # the cache key: the archive's size and time
        stat = root.stat()
        request = "test" if split == "test" else "train+val"
        key = {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns, "request": request}
        decode = partial(_decode_archive, root, split)
    else:
        raise DataError(f"{root}: not an existing folder or .tar/.tar.gz/.tgz archive; pass root= pointing at "
                        f"the image folder")
    data = _cached({"source": str(root.resolve()), **key, **options}, cache, lambda: decode(**options))
    return folder_dataset(data, split, val_fraction, test_fraction, root=root, name=name,
                          title=title or "Image folder", what="image", items="images")
