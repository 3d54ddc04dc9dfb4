"""Data loading throughput on this machine: decoding, cached reloading and batch serving.

For each source, in a fresh temporary cache (``HQVAE_DATA``) so that nothing is pre-decoded:

* ``cifar10_folder`` (CIFAR-10 JPEG q75 copy, read straight from the .tar.gz): cold load of the
  train split (decodes all 50,000 training JPEG files), warm load (from the decoded cache),
  and serving one shuffled epoch of float batches from memory with ``make_loader``;
* ``fashion_mnist`` (the IDX files, checksummed): load of the train split and serving;
* ``fsdd``: all 3,000 clips read and turned into 1×80×128 log-mel spectrograms.

Serving is timed over three shuffled epochs at batch 128 (uint8 → float32 in [0, 1] included),
median reported.  Writes
``benchmarks/results/data_loading.json`` atomically and prints it.

    HQVAE_DATA_ROOT=../shared/data python benchmarks/data_loading.py
"""

import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).parent / "results" / "data_loading.json"
BATCH_SIZE = 128
EPOCHS = 3


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def serving(dataset) -> dict:
    """Items per second of shuffled epochs of float batches from memory: the median of EPOCHS epochs."""
    from hqvae.data import make_loader

    loader = make_loader(dataset, BATCH_SIZE, shuffle=True, seed=0)
    seconds = []
    for epoch in range(EPOCHS):
        loader.set_epoch(epoch)
        count, elapsed = timed(lambda: sum(x.shape[0] for x, _ in loader))
        seconds.append(elapsed)
    median = statistics.median(seconds)
    return {"batch_size": BATCH_SIZE, "items": count, "epochs": EPOCHS, "seconds_median": median,
            "seconds_first_epoch": seconds[0], "items_per_second": count / median}


def cifar10_folder() -> dict:
    from hqvae.data import load_dataset

    cold, cold_seconds = timed(lambda: load_dataset("cifar10_folder", "train"))
    _, warm_seconds = timed(lambda: load_dataset("cifar10_folder", "train"))
    decoded = len(cold) + len(load_dataset("cifar10_folder", "val"))  # the whole train/ folder was decoded
    return {"description": cold.description,
            "cold_load": {"images_decoded": decoded, "seconds": cold_seconds,
                          "images_per_second": decoded / cold_seconds},
            "warm_load_from_cache": {"images": len(cold), "seconds": warm_seconds,
                                     "images_per_second": len(cold) / warm_seconds},
            "serving": serving(cold)}


def fashion_mnist() -> dict:
    from hqvae.data import load_dataset

    train, seconds = timed(lambda: load_dataset("fashion_mnist", "train"))
    return {"description": train.description,
            "load": {"images": len(train), "seconds": seconds, "images_per_second": len(train) / seconds},
            "serving": serving(train)}


def fsdd() -> dict:
    from hqvae.data import load_dataset

    splits, seconds = timed(lambda: [load_dataset("fsdd", split) for split in ("train", "val", "test")])
    clips = sum(len(split) for split in splits)
    return {"description": "; ".join(split.description for split in splits),
            "load": {"clips": clips, "seconds": seconds, "clips_per_second": clips / seconds},
            "serving": serving(splits[0])}


def write_atomically(path: Path, document: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    os.replace(partial, path)


def main() -> None:
    if not os.environ.get("HQVAE_DATA_ROOT"):
        sys.exit("set HQVAE_DATA_ROOT to the folder holding cifar10-jpeg-q75.tar.gz and fsdd/recordings/")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="hqvae-bench-cache-") as cache:
        os.environ["HQVAE_DATA"] = cache
        results = {"cifar10_folder": cifar10_folder(), "fashion_mnist": fashion_mnist(), "fsdd": fsdd()}
    document = {
        "benchmark": "data loading: decode, cached reload, and serving float batches from memory",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": f"CPU ({os.cpu_count()} cores)",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]},
        "note": "shared machine (see load_average_1min): timings are noisy; cold loads include reading the archive "
                "or IDX files",
        "results": results,
    }
    write_atomically(RESULTS, document)
    print(json.dumps(document, indent=2))


if __name__ == "__main__":
    main()
