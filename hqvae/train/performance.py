"""Process-wide speed settings the training loop applies before its first step (and
``benchmarks/speed.py`` with it, so that its figures are the loop's).

* ``keep_freed_memory()`` (CPU, glibc): by default glibc returns every freed block over 128 KB
  to the kernel and maps fresh pages for the next one, so each (N, K) temporary of an SQ layer
  (4 MB at N = 2,048, K = 512) costs a thousand page faults. Raising the mmap and trim
  thresholds keeps freed memory for reuse: measured 5,187 → 51 minor faults and 24 → 17 ms per
  forward+backward of that layer, 2 threads.
* ``channels_last(model)`` / ``channels_last_batch(x)``: NHWC activations, which oneDNN
  convolutions (CPU) and tensor cores (CUDA) prefer, and in which the quantizers' move of the
  channel dimension to the end needs no copy.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools

import torch
from torch import Tensor, nn

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Make glibc keep freed memory for reuse (see the module docstring); True if applied, False
    on other C libraries. Safe to call more than once."""
    try:  # no libc found (None): CDLL(None) is the process itself on POSIX, a TypeError elsewhere
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))


def channels_last(model: nn.Module) -> nn.Module:
    """The model with its 4-D weights in channels-last layout (in place, returned for chaining)."""
    return model.to(memory_format=torch.channels_last)


def channels_last_batch(x: Tensor) -> Tensor:
    """A 4-D batch (B, C, H, W) in channels-last layout; other ranks are returned as they are."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def match_parameter_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter optimiser state tensor its parameter's memory layout (a state
    saved by a run in the other layout and loaded into this one would otherwise be read with the
    wrong strides by fused optimiser kernels)."""
    for parameter, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                state[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)
