"""Random number generator states as tensors and plain containers, so that ``train_state.pt``
loads with ``torch.load(..., weights_only=True)``.

    {"torch": ByteTensor, "cuda": ByteTensor | None (the current device's),
     "numpy": {"keys": int64 (624,), "pos": int, "has_gauss": int, "cached_gaussian": float},
     "python": {"version": int, "internal": int64 (625,), "gauss_next": float | None}}

The Gumbel noise of SQ layers follows torch's global generator (``hqvae.quantizers.relaxed``
draws its NumPy seed from it); NumPy's and Python's global generators are saved too, for any
code that uses them.
"""
from __future__ import annotations

import random

import numpy as np
import torch


def capture() -> dict:
    """The global generators' states of this process."""
    _, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() and torch.cuda.is_initialized() else None,
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                  "cached_gaussian": float(cached_gaussian)},
        "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64), "gauss_next": gauss_next},
    }


def restore(state: dict) -> None:
    """Set the global generators to a state from :func:`capture`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["internal"].tolist()), python_state["gauss_next"]))


def seed_all(seed: int) -> None:
    """Seed torch (CPU and CUDA), NumPy and Python's global generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
