"""hqvae.data on real bytes (Fashion-MNIST IDX files, the CIFAR-10 JPEG copy, FSDD clips) and on files the
tests write themselves (canonical CIFAR-10 batches, corrupt and tampered files, file:// downloads)."""

import dataclasses
import gzip
import hashlib
import math
import os
import pickle
import shutil
import tarfile
import wave
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hqvae.data import (ChecksumError, CorruptFileError, DataError, ImageDataset, LogMel, download, load_dataset,
                        make_loader, read_wav, write_wav)
from hqvae.data import cifar, cifar_folder, mnist
from hqvae.data.audio import mel_to_audio
from hqvae.data.idx import read_idx
from hqvae.data.image_folder import load_image_folder

SHARED = Path(os.environ.get("HQVAE_DATA_ROOT") or Path(__file__).resolve().parents[2] / "shared" / "data")
FASHION = Path("/usr/share/datasets/fashion-mnist")
CIFAR_ARCHIVE = SHARED / "cifar10-jpeg-q75.tar.gz"
FSDD = SHARED / "fsdd" / "recordings"
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

needs_fashion = pytest.mark.skipif(not FASHION.is_dir(), reason="Debian package dataset-fashion-mnist not installed")
needs_cifar_copy = pytest.mark.skipif(not CIFAR_ARCHIVE.is_file(), reason=f"{CIFAR_ARCHIVE} not present")
needs_fsdd = pytest.mark.skipif(not FSDD.is_dir(), reason=f"{FSDD} not present")


# --- Fashion-MNIST / MNIST IDX files -------------------------------------------------------------------------------

def copy_fashion_test_files(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(FASHION / name, folder / name)
    return folder


@needs_fashion
def test_fashion_mnist_test_split_from_the_debian_files(data_cache):
    test = load_dataset("fashion_mnist", "test")  # no root, no HQVAE_DATA_ROOT: found at the Debian location
    assert str(FASHION) in test.description and "test split" in test.description
    assert test.images.shape == (10000, 1, 28, 28) and test.images.dtype == torch.uint8
    assert test.labels.bincount().tolist() == [1000] * 10
    assert test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
    assert test.classes[9] == "Ankle boot" and test.num_channels == 1 and test.image_size == (28, 28)
    x, y = test[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28) and y.item() == 9
    assert torch.equal(x, test.images[0].float() / 255) and 0 <= x.min() and x.max() <= 1
    assert not list(data_cache.rglob("*.gz"))  # nothing was downloaded


@needs_fashion
def test_fashion_mnist_train_and_val_partition_the_official_training_set(data_cache):
    train = load_dataset("fashion_mnist", "train", root=FASHION)
    val = load_dataset("fashion_mnist", "val", root=FASHION)
    assert (len(train), len(val)) == (55000, 5000)
    assert val.labels.bincount().tolist() == [500] * 10
    official = torch.from_numpy(read_idx(FASHION / "train-images-idx3-ubyte.gz"))
    labels = torch.from_numpy(read_idx(FASHION / "train-labels-idx1-ubyte.gz")).long()
    # val = the last 500 of each class in file order; train = the rest, order kept
    val_index = torch.cat([torch.nonzero(labels == c).flatten()[-500:] for c in range(10)]).sort().values
    keep = torch.ones(60000, dtype=torch.bool)
    keep[val_index] = False
    assert torch.equal(val.images[:, 0], official[val_index]) and torch.equal(val.labels, labels[val_index])
    assert torch.equal(train.images[:, 0], official[keep]) and torch.equal(train.labels, labels[keep])


@needs_fashion
def test_plain_and_gzipped_idx_files_load_the_same(tmp_path, data_cache):
    folder = copy_fashion_test_files(tmp_path / "fm")
    gzipped = load_dataset("fashion_mnist", "test", root=folder)
    gz = folder / "t10k-images-idx3-ubyte.gz"
    (folder / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz.read_bytes()))
    gz.unlink()
    plain = load_dataset("fashion_mnist", "test", root=folder)
    assert torch.equal(gzipped.images, plain.images)


@needs_fashion
def test_tampered_idx_file_fails_its_checksum_unless_verify_is_off(tmp_path, data_cache):
    folder = copy_fashion_test_files(tmp_path / "fm")
    path = folder / "t10k-images-idx3-ubyte.gz"
    data = bytearray(gzip.decompress(path.read_bytes()))
    data[1000] ^= 0xFF  # one pixel changed
    path.write_bytes(gzip.compress(bytes(data), compresslevel=1))
    with pytest.raises(ChecksumError, match=r"t10k-images-idx3-ubyte\.gz.*verify=False"):
        load_dataset("fashion_mnist", "test", root=folder)
    tampered = load_dataset("fashion_mnist", "test", root=folder, verify=False)
    assert tampered.images.flatten()[1000 - 16] == 255 - int(np.frombuffer(gzip.decompress(
        (FASHION / "t10k-images-idx3-ubyte.gz").read_bytes()), np.uint8)[1000])


@needs_fashion
def test_truncated_or_foreign_idx_files_raise_errors_naming_them(tmp_path, data_cache):
    folder = copy_fashion_test_files(tmp_path / "fm")
    images = folder / "t10k-images-idx3-ubyte.gz"
    original = images.read_bytes()
    images.write_bytes(original[: len(original) // 2])  # cut gzip stream
    with pytest.raises(CorruptFileError, match=str(images)):
        load_dataset("fashion_mnist", "test", root=folder)
    # a valid gzip stream whose IDX body is too short
    images.write_bytes(gzip.compress(gzip.decompress(original)[:-100], compresslevel=1))
    with pytest.raises(CorruptFileError, match="truncated"):
        load_dataset("fashion_mnist", "test", root=folder, verify=False)
    images.write_bytes(gzip.compress(b"\x89PNG not an idx file at all"))
    with pytest.raises(CorruptFileError, match="not an IDX file"):
        load_dataset("fashion_mnist", "test", root=folder, verify=False)


def test_missing_idx_files_name_the_folder(tmp_path, data_cache):
    with pytest.raises(DataError, match=f"{tmp_path}.*t10k-images-idx3-ubyte"):
        load_dataset("mnist", "test", root=tmp_path)
    with pytest.raises(DataError, match="MNIST not found"):
        load_dataset("mnist", "test", download=False)


@needs_fashion
def test_idx_download_checks_the_published_md5(tmp_path, data_cache, monkeypatch):
    mirror = copy_fashion_test_files(tmp_path / "mirror")
    source = dataclasses.replace(mnist.SOURCES["fashion_mnist"], mirrors=(mirror.as_uri() + "/",), system_dirs=())
    monkeypatch.setitem(mnist.SOURCES, "fashion_mnist", source)
    # The Debian files were recompressed, so their .gz md5 is not the published one: the download is refused.
    with pytest.raises(ChecksumError, match=r"t10k-images-idx3-ubyte\.gz: expected md5 bef4ecab"):
        load_dataset("fashion_mnist", "test")
    assert not list(data_cache.rglob("*.gz")) and not list(data_cache.rglob("*.part"))
    # With the mirror's own .gz checksums the same code path downloads, verifies the contents and loads.
    files = {split: tuple(dataclasses.replace(f, gz_md5=hashlib.md5((mirror / f"{f.name}.gz").read_bytes()
                                                                                ).hexdigest())
                          if (mirror / f"{f.name}.gz").exists() else f for f in pair)
             for split, pair in source.files.items()}
    monkeypatch.setitem(mnist.SOURCES, "fashion_mnist", dataclasses.replace(source, files=files))
    downloaded = load_dataset("fashion_mnist", "test")
    assert len(downloaded) == 10000 and str(data_cache / "fashion_mnist") in downloaded.description
    assert (data_cache / "fashion_mnist" / "t10k-labels-idx1-ubyte.gz").is_file()


# --- download -------------------------------------------------------------------------------------------------------

def test_download_from_file_url_is_checked_and_atomic(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"hqvae" * 1000)
    good_md5 = hashlib.md5(source.read_bytes()).hexdigest()
    dest = tmp_path / "cache" / "file.bin"
    assert download(source.as_uri(), dest, md5=good_md5) == dest and dest.read_bytes() == source.read_bytes()
    assert download(source.as_uri(), dest, md5=good_md5) == dest  # existing and correct: kept

    wrong = tmp_path / "cache" / "wrong.bin"
    with pytest.raises(ChecksumError, match=f"{source.as_uri()}: expected md5 {'0' * 32}, got {good_md5}"):
        download(source.as_uri(), wrong, md5="0" * 32)
    assert not wrong.exists() and sorted(p.name for p in dest.parent.iterdir()) == ["file.bin"]

    dest.write_bytes(b"damaged")
    with pytest.raises(ChecksumError, match=f"{dest}.*delete"):
        download(source.as_uri(), dest, sha256=hashlib.sha256(source.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="could not download"):
        download((tmp_path / "absent.bin").as_uri(), tmp_path / "x.bin", md5=good_md5)


# --- CIFAR-10 python batches ----------------------------------------------------------------------------------------

def cifar_images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)


def write_batch(path: Path, images: np.ndarray, labels: list[int], protocol: int = 2) -> None:
    """The canonical layout: a Python-2 style dict with byte-string keys, rows = R plane, G plane, B plane."""
    batch = {b"batch_label": b"written by the test", b"labels": labels, b"data": images.reshape(len(images), 3072),
             b"filenames": [f"img_{i}.png".encode() for i in range(len(images))]}
    path.write_bytes(pickle.dumps(batch, protocol=protocol))


def make_cifar_folder(root: Path, sizes=(7, 13, 0, 5, 9), test_size=11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tiny cifar-10-batches-py with uneven batch sizes; returns train images, train labels, test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images, labels = [], []
    for i, size in enumerate(sizes, start=1):
        batch_images = cifar_images(size, seed=i)
        batch_labels = [(3 * i + j) % 10 for j in range(size)]
        write_batch(folder / f"data_batch_{i}", batch_images, batch_labels, protocol=2 if i % 2 else 4)
        images.append(batch_images)
        labels += batch_labels
    test_images = cifar_images(test_size, seed=99)
    write_batch(folder / "test_batch", test_images, [j % 10 for j in range(test_size)], protocol=5)
    meta = {b"label_names": [name.encode() for name in CIFAR_CLASSES], b"num_cases_per_batch": 10000,
            b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return np.concatenate(images), np.array(labels), test_images


def test_cifar10_batches_of_any_size_load_with_the_documented_split(tmp_path, data_cache):
    train_images, train_labels, test_images = make_cifar_folder(tmp_path)
    test = load_dataset("cifar10", "test", root=tmp_path)
    assert torch.equal(test.images, torch.from_numpy(test_images)) and test.labels.tolist() == [j % 10 for j in
                                                                                                 range(11)]
    assert test.classes == CIFAR_CLASSES and test.image_size == (32, 32)
    train = load_dataset("cifar10", "train", root=tmp_path / "cifar-10-batches-py")
    val = load_dataset("cifar10", "val", root=tmp_path)
    assert len(train) + len(val) == 34
    for c in range(10):  # per class the last round(10%) items in batch order are val
        members = np.nonzero(train_labels == c)[0]
        n_val = math.floor(0.1 * len(members) + 0.5)
        held = members[len(members) - n_val:]
        assert torch.equal(val.images[val.labels == c], torch.from_numpy(train_images[held]))
        kept = members[:len(members) - n_val]
        assert torch.equal(train.images[train.labels == c], torch.from_numpy(train_images[kept]))
    # the channel planes: the first 1024 values of a row are red
    x, _ = test[0]
    assert torch.allclose(x[0].flatten(), torch.from_numpy(test_images[0].reshape(3072)[:1024]).float() / 255)


def test_cifar10_pickles_cannot_run_code(tmp_path, data_cache):
    train_images, _, _ = make_cifar_folder(tmp_path)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps({b"data": Payload()}, protocol=2))
    with pytest.raises(CorruptFileError, match=r"test_batch.*posix\.system is not allowed"):
        load_dataset("cifar10", "test", root=tmp_path)
    assert not marker.exists()


def test_cifar10_wrong_or_damaged_batches_name_the_file(tmp_path, data_cache):
    make_cifar_folder(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(pickle.dumps({"data": np.zeros((2, 3000), np.uint8), "labels": [0, 1]}))
    with pytest.raises(CorruptFileError, match=rf"{batch}: 'data' must be a uint8 array of shape \(n, 3072\)"):
        load_dataset("cifar10", "test", root=tmp_path)
    write_batch(batch, cifar_images(3, 0), [0, 1, 2])
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(CorruptFileError, match=f"{batch}: not a readable CIFAR-10 pickle"):
        load_dataset("cifar10", "test", root=tmp_path)
    write_batch(batch, cifar_images(3, 0), [0, 1, 12])
    with pytest.raises(CorruptFileError, match="labels outside 0..9"):
        load_dataset("cifar10", "test", root=tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing data_batch_3"):
        load_dataset("cifar10", "train", root=tmp_path)


def test_cifar10_tarball_is_checked_extracted_once_and_downloadable(tmp_path, data_cache, monkeypatch):
    make_cifar_folder(tmp_path / "src")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    with pytest.raises(ChecksumError, match=f"{archive}: expected md5 {cifar.MD5}"):
        load_dataset("cifar10", "test", root=archive)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    monkeypatch.setattr(cifar, "MD5", md5)
    monkeypatch.setattr(cifar, "URL", archive.as_uri())
    downloaded = load_dataset("cifar10", "test")  # nothing local: "downloaded" from the file:// URL
    assert len(downloaded) == 11 and (data_cache / "cifar10" / "cifar-10-python.tar.gz").is_file()
    assert (data_cache / "cifar10" / "cifar-10-batches-py" / "test_batch").is_file()
    assert torch.equal(load_dataset("cifar10", "test", root=archive).images, downloaded.images)


# --- image folders and the CIFAR-10 JPEG copy -----------------------------------------------------------------------

@needs_cifar_copy
def test_cifar10_jpeg_folder_splits_and_pixels(cifar10_jpeg_subset, data_cache):
    test = load_dataset("cifar10_folder", "test", root=cifar10_jpeg_subset)
    train = load_dataset("cifar10_folder", "train", root=cifar10_jpeg_subset)
    val = load_dataset("cifar10_folder", "val", root=cifar10_jpeg_subset)
    assert test.description.startswith("CIFAR-10 (JPEG q75 copy), test split")
    assert (len(train), len(val), len(test)) == (110, 10, 40) and test.classes == CIFAR_CLASSES
    assert val.meta["files"] == [f"train/{name}/0011.jpg" for name in CIFAR_CLASSES]  # last of each class
    assert sorted(train.meta["files"] + val.meta["files"]) == sorted(
        p.relative_to(cifar10_jpeg_subset).as_posix() for p in (cifar10_jpeg_subset / "train").rglob("*.jpg"))
    assert val.labels.tolist() == list(range(10))
    index = test.meta["files"].index("test/cat/0002.jpg")
    expected = np.array(Image.open(cifar10_jpeg_subset / "test/cat/0002.jpg").convert("RGB"))
    assert torch.equal(test.images[index], torch.from_numpy(expected).permute(2, 0, 1))
    assert test.labels[index] == 3


@needs_cifar_copy
def test_archive_and_extracted_folder_give_the_same_data(cifar10_jpeg_subset, tmp_path, data_cache):
    archive = tmp_path / "subset.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for split in ("train", "test"):
            tar.add(cifar10_jpeg_subset / split, arcname=split)
    for split in ("train", "val", "test"):
        from_folder = load_image_folder(cifar10_jpeg_subset, split, cache=False)
        from_archive = load_image_folder(archive, split)
        assert torch.equal(from_folder.images, from_archive.images) and from_folder.meta == from_archive.meta
    with pytest.raises(ChecksumError, match=f"{archive}.*{cifar_folder.SHA256}"):
        load_dataset("cifar10_folder", "test", root=archive)
    assert len(load_dataset("cifar10_folder", "test", root=archive, verify=False)) == 40


@needs_cifar_copy
def test_decoded_images_are_cached_and_the_cache_follows_the_source(cifar10_jpeg_subset, tmp_path, data_cache):
    folder = tmp_path / "imgs"
    shutil.copytree(cifar10_jpeg_subset, folder)
    first = load_image_folder(folder, "test")
    cached = list((data_cache / "decoded").glob("*.safetensors"))
    assert len(cached) == 1
    again = load_image_folder(folder, "test")
    assert torch.equal(first.images, again.images) and first.meta == again.meta
    shutil.copy(folder / "test/cat/0000.jpg", folder / "test/cat/0100.jpg")  # the source changed: re-decoded
    changed = load_image_folder(folder, "test")
    assert len(changed) == 41 and len(list((data_cache / "decoded").glob("*.safetensors"))) == 2


@needs_cifar_copy
def test_corrupt_images_raise_or_are_skipped_with_a_count(cifar10_jpeg_subset, tmp_path, data_cache):
    folder = tmp_path / "imgs"
    shutil.copytree(cifar10_jpeg_subset, folder)
    real = (folder / "test/dog/0001.jpg").read_bytes()
    (folder / "test/dog/0001.jpg").write_bytes(real[: len(real) // 2])  # truncated JPEG
    (folder / "test/ship/0003.jpg").write_bytes(b"this is not an image")
    with pytest.raises(CorruptFileError, match=r"test/dog/0001\.jpg.*skip_corrupt=True"):
        load_image_folder(folder, "test")
    with pytest.warns(UserWarning, match="skipped 2 unreadable image files"):
        kept = load_image_folder(folder, "test", skip_corrupt=True)
    assert len(kept) == 38 and kept.meta["skipped"] == ["test/dog/0001.jpg", "test/ship/0003.jpg"]
    assert "2 unreadable files skipped" in kept.description


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_flat_folder_resize_centre_crop_and_layout_errors(tmp_path, data_cache):
    # 20 flat images 40 (h) x 120 (w): red, then green well beyond the central 40 x 40, then blue
    image = np.zeros((40, 120, 3), np.uint8)
    image[:, :20, 0], image[:, 20:100, 1], image[:, 100:, 2] = 255, 255, 255
    for i in range(20):
        write_png(tmp_path / "flat" / f"{i:02d}.png", image)
    train = load_image_folder(tmp_path / "flat", "train", size=8)
    test = load_image_folder(tmp_path / "flat", "test", size=8)
    assert (len(train), len(test)) == (16, 2) and train.labels.eq(-1).all() and train.classes == []
    assert test.meta["files"] == ["18.png", "19.png"]
    assert train.images.shape == (16, 3, 8, 8)
    assert (train.images[:, 1] == 255).all() and (train.images[:, 0] == 0).all()  # the centre crop is all green
    full = load_image_folder(tmp_path / "flat", "val", size=8, center_crop=False)  # stretched: red on the left
    assert full.images.shape == (2, 3, 8, 8) and full.images[:, 0, :, 0].gt(200).all()
    stretched = load_image_folder(tmp_path / "flat", "val", size=(8, 16), center_crop=False, channels=1)
    assert stretched.images.shape == (2, 1, 8, 16)

    write_png(tmp_path / "flat" / "big.png", np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(DataError, match=r"flat/big\.png: image of size 30x30.*size="):
        load_image_folder(tmp_path / "flat", "train", cache=False)
    write_png(tmp_path / "mixed" / "cats" / "a.png", image)
    write_png(tmp_path / "mixed" / "stray.png", image)
    with pytest.raises(DataError, match=r"stray\.png lies beside class folders"):
        load_image_folder(tmp_path / "mixed", "train")
    with pytest.raises(DataError, match="needs root="):
        load_dataset("image_folder", "train")
    write_png(tmp_path / "only_train" / "train" / "cats" / "a.png", image)
    with pytest.raises(DataError, match=r"only_train: has split folders but no test/ folder"):
        load_image_folder(tmp_path / "only_train", "test")


# --- audio and FSDD -------------------------------------------------------------------------------------------------

FSDD_CLIPS = [f"{digit}_{speaker}_{take}.wav" for digit in (3, 7) for speaker in ("george", "jackson")
              for take in (0, 4, 5, 12)]


@pytest.fixture
def fsdd_subset(tmp_path) -> Path:
    folder = tmp_path / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for name in FSDD_CLIPS:
        shutil.copy(FSDD / name, folder / name)
    return folder


@needs_fsdd
def test_fsdd_clips_become_fixed_size_spectrograms_with_the_take_split(fsdd_subset, data_cache):
    test = load_dataset("fsdd", "test", root=fsdd_subset.parent)
    val = load_dataset("fsdd", "val", root=fsdd_subset)
    train = load_dataset("fsdd", "train", root=fsdd_subset)
    assert (len(train), len(val), len(test)) == (4, 4, 8)
    assert set(test.meta["takes"]) == {0, 4} and val.meta["takes"] == [5] * 4 and train.meta["takes"] == [12] * 4
    assert test.images.shape == (8, 1, 80, 128) and test.images.dtype == torch.float32
    assert 0 <= test.images.min() and test.images.max() <= 1 and test.images.max() > 0.5
    assert sorted(set(test.labels.tolist())) == [3, 7] and set(test.meta["speakers"]) == {"george", "jackson"}
    assert test.description.startswith("Free Spoken Digit Dataset as log-mel spectrograms (1, 80, 128), test split")


def reference_log_mel(samples: np.ndarray, sample_rate=8000, n_fft=256, hop=64, n_mels=80, db_min=-80.0,
                      db_max=40.0) -> np.ndarray:
    """The documented recipe, written independently in numpy (float64)."""
    padded = np.pad(samples.astype(np.float64), n_fft // 2, mode="reflect")
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)  # periodic Hann
    frames = np.stack([padded[t * hop:t * hop + n_fft] * window for t in range(1 + len(samples) // hop)])
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2  # (T, n_fft // 2 + 1)
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    edges = 700 * (10 ** (np.linspace(mel(0), mel(sample_rate / 2), n_mels + 2) / 2595) - 1)
    freqs = np.arange(n_fft // 2 + 1) * sample_rate / n_fft
    bank = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, mid, hi = edges[m:m + 3]
        bank[m] = np.clip(np.minimum((freqs - lo) / (mid - lo), (hi - freqs) / (hi - mid)), 0, None)
    db = 10 * np.log10(np.maximum(bank @ power.T, 1e-10))
    return np.clip((db - db_min) / (db_max - db_min), 0, 1)


@needs_fsdd
def test_log_mel_matches_an_independent_numpy_implementation():
    samples, rate = read_wav(FSDD / "3_jackson_12.wav")
    assert rate == 8000 and samples.shape[0] == 1
    ours = LogMel(frames=None)(samples[0])
    expected = reference_log_mel(samples[0].numpy())
    assert ours.shape == expected.shape == (80, 1 + samples.shape[1] // 64)
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-4)


@needs_fsdd
def test_fixed_length_crops_the_centre_and_pads_the_end():
    log_mel = LogMel()
    assert log_mel.num_samples == 127 * 64
    long = torch.arange(10000.0)
    assert torch.equal(log_mel.fix_length(long), long[936:936 + 8128])
    short = torch.ones(100)
    padded = log_mel.fix_length(short)
    assert padded.shape == (8128,) and padded[:100].eq(1).all() and padded[100:].eq(0).all()
    samples, _ = read_wav(FSDD / "7_george_5.wav")
    assert log_mel(samples[0]).shape == (80, 128)


@needs_fsdd
def test_griffin_lim_inverse_reproduces_the_spectrogram_and_writes_a_wav(tmp_path):
    samples, _ = read_wav(FSDD / "3_jackson_12.wav")
    log_mel = LogMel()
    spectrogram = log_mel(samples[0])
    audio = mel_to_audio(spectrogram, n_iter=32)
    assert audio.shape == (127 * 64,)
    error = (log_mel(audio) - spectrogram).abs().mean()
    assert error < 0.02 < spectrogram.mean()  # silence would be off by the mean itself
    write_wav(tmp_path / "reconstruction.wav", audio, 8000)
    back, rate = read_wav(tmp_path / "reconstruction.wav")
    assert rate == 8000 and back.shape == (1, 8128)
    assert (back[0] - audio.clamp(-1, 1)).abs().max() < 1 / 32767


def test_wav_reading_of_8_16_24_bit_pcm_and_corrupt_files(tmp_path):
    values = np.array([0, 1, -1, 12345, -32768, 32767], dtype=np.int16)
    write_wav(tmp_path / "a.wav", torch.from_numpy(values / 32767.0).float(), 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and torch.equal((back[0] * 32768).round().to(torch.int16)[1:], torch.from_numpy(
        np.clip(values, -32767, 32767))[1:])
    for width, raw, expected in ((1, bytes([128, 255, 0]), [0, 127 / 128, -1]),
                                 (3, b"\x00\x00\x80\xff\xff\x7f\x01\x00\x00", [-1, 1 - 2 ** -23, 2 ** -23])):
        with wave.open(str(tmp_path / f"w{width}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(width)
            f.setframerate(8000)
            f.writeframes(raw)
        np.testing.assert_allclose(read_wav(tmp_path / f"w{width}.wav")[0][0].numpy(), expected, atol=1e-7)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEnonsense")
    with pytest.raises(CorruptFileError, match=rf"{tmp_path / 'bad.wav'}: not a readable PCM WAV"):
        read_wav(tmp_path / "bad.wav")


@needs_fsdd
def test_fsdd_bad_files_are_reported_or_skipped(fsdd_subset, data_cache):
    (fsdd_subset / "3_george_1.wav").write_bytes(b"not a wav")
    with pytest.raises(CorruptFileError, match=r"3_george_1\.wav"):
        load_dataset("fsdd", "test", root=fsdd_subset)
    with pytest.warns(UserWarning, match="skipped 1 unreadable WAV files"):
        test = load_dataset("fsdd", "test", root=fsdd_subset, skip_corrupt=True)
    assert len(test) == 8 and test.meta["skipped"] == ["3_george_1.wav"]
    with pytest.raises(CorruptFileError, match="sample rate 8000 Hz, expected 16000 Hz"):
        load_dataset("fsdd", "val", root=fsdd_subset, sample_rate=16000)
    (fsdd_subset / "notes.wav").write_bytes(b"")
    with pytest.raises(DataError, match=r"notes\.wav: not an FSDD name"):
        load_dataset("fsdd", "train", root=fsdd_subset)


@needs_fsdd
def test_audio_folder_with_class_folders(tmp_path, data_cache):
    for name in FSDD_CLIPS:
        target = tmp_path / "speech" / f"digit{name[0]}" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(FSDD / name, target)
    test = load_dataset("audio_folder", "test", root=tmp_path / "speech", n_mels=64, frames=64)
    assert test.classes == ["digit3", "digit7"] and test.images.shape == (2, 1, 64, 64)
    assert test.meta["files"] == ["digit3/3_jackson_5.wav", "digit7/7_jackson_5.wav"]  # last 10% of each class


# --- in-memory batching ---------------------------------------------------------------------------------------------

def small_dataset(n=23) -> ImageDataset:
    images = torch.arange(n * 3 * 2 * 2, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, 3, 2, 2)
    return ImageDataset(images, torch.arange(n) % 5, name="toy", split="train", description="toy")


def test_batches_cover_every_item_once_and_convert_to_float():
    data = small_dataset()
    seen = []
    for x, y in data.batches(5):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 2, 2)
        seen.append(y)
    assert torch.equal(torch.cat(seen), data.labels) and [len(s) for s in seen] == [5, 5, 5, 5, 3]
    shuffled = list(data.batches(5, shuffle=True, generator=torch.Generator().manual_seed(0), drop_last=True))
    assert len(shuffled) == 4
    x, y = shuffled[0]
    assert not torch.equal(y, data.labels[:5])
    index = (data.images.flatten(1).float() / 255 == x[0].flatten()).all(1).nonzero().item()
    assert data.labels[index] == y[0]


def test_sharding_partitions_for_evaluation_and_balances_for_training():
    data = small_dataset()
    generator_for = lambda: torch.Generator().manual_seed(7)  # noqa: E731 - identical on every "rank"
    shards = [torch.cat([y for _, y in data.batches(4, True, generator_for(), rank=r, world_size=3)])
              for r in range(3)]
    assert sorted(len(s) for s in shards) == [7, 8, 8]
    first = [torch.cat([x.flatten(1) for x, _ in data.batches(4, True, generator_for(), rank=r, world_size=3)])
             for r in range(3)]
    assert torch.equal(torch.cat(first).sort(0).values, (data.images.flatten(1).float() / 255).sort(0).values)
    counts = [len(list(data.batches(2, True, generator_for(), drop_last=True, rank=r, world_size=3)))
              for r in range(3)]
    assert counts == [3, 3, 3]
    with pytest.raises(ValueError, match="seeded identically"):
        next(data.batches(4, shuffle=True, rank=0, world_size=2))


def test_make_loader_is_reproducible_and_reshuffles_per_epoch():
    data = small_dataset()
    loader = make_loader(data, batch_size=6, shuffle=True, seed=3)
    epoch0 = [y for _, y in loader]
    assert len(loader) == 4 and all(torch.equal(a, b) for a, b in zip(epoch0, [y for _, y in loader]))
    loader.set_epoch(1)
    assert not all(torch.equal(a, b) for a, b in zip(epoch0, [y for _, y in loader]))
    other_rank = make_loader(data, 6, shuffle=True, seed=3, rank=1, world_size=2)
    this_rank = make_loader(data, 6, shuffle=True, seed=3, rank=0, world_size=2)
    both = torch.cat([y for _, y in this_rank] + [y for _, y in other_rank])
    assert torch.equal(both.sort().values, data.labels.sort().values)
    dataloader = torch.utils.data.DataLoader(data, batch_size=23)  # the plain Dataset protocol works too
    x, y = next(iter(dataloader))
    assert torch.equal(x, data.images.float() / 255) and torch.equal(y, data.labels)


def test_subset_keeps_per_item_meta_aligned():
    data = small_dataset()
    data.meta = {"files": [f"{i}.png" for i in range(23)], "log_mel": "shared object"}
    part = data.subset(torch.tensor([4, 0, 9]), split="val", description="three items")
    assert part.meta == {"files": ["4.png", "0.png", "9.png"], "log_mel": "shared object"}
    assert torch.equal(part.images, data.images[[4, 0, 9]]) and part.split == "val" and len(part) == 3


def test_unknown_names_and_splits_are_rejected():
    with pytest.raises(ValueError, match="unknown data set 'imagenet'"):
        load_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        load_dataset("fashion_mnist", "validation")


@pytest.mark.slow
@needs_cifar_copy
def test_full_cifar10_jpeg_copy_test_split(data_cache, monkeypatch):
    monkeypatch.setenv("HQVAE_DATA_ROOT", str(SHARED))
    test = load_dataset("cifar10_folder", "test")
    assert test.images.shape == (10000, 3, 32, 32) and test.labels.bincount().tolist() == [1000] * 10
    assert test.description.startswith("CIFAR-10 (JPEG q75 copy), test split (test/ folder), 10000 images")
    assert torch.equal(load_dataset("cifar10_folder", "test").images, test.images)  # from the cache
