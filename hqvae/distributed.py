"""Collectives over DDP ranks (torch.distributed), each a no-op outside a run of several processes.

Metric accumulators and the training loop sum over ranks with :func:`all_reduce`; quantizer
state is kept identical on every rank in place: EMA statistics summed inside the forward pass
(:func:`all_reduce_sum_`), decisions that use randomness (k-means initialisation, dead-code
restart) made on rank 0 and broadcast (:func:`broadcast_`, :func:`all_gather_rows`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce(tensor: Tensor, op: str = "sum") -> Tensor:
    """``tensor`` reduced over all ranks (``op`` "sum" or "max"), or unchanged outside DDP.

    The reduction runs on the current CUDA device under the NCCL backend and on the CPU
    otherwise; the result comes back on ``tensor``'s device.  Every rank must call it.
    """
    if not is_distributed():
        return tensor
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buffer = tensor.detach().to(device).clone()
    dist.all_reduce(buffer, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return buffer.to(tensor.device)


def all_reduce_sum_(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over ranks, in place."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_(tensor: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``tensor`` on every rank with rank ``src``'s value, in place."""
    if is_distributed():
        dist.broadcast(tensor, src=src)
    return tensor


def all_gather_rows(x: Tensor) -> Tensor:
    """Concatenate (n_r, d) rows from every rank (rows may differ in number) -> (Σ n_r, d)."""
    if not is_distributed():
        return x
    world = dist.get_world_size()
    count = torch.tensor([x.shape[0]], device=x.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    most = int(max(c.item() for c in counts))
    padded = torch.zeros(most, *x.shape[1:], dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    gathered = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(gathered, padded)
    return torch.cat([g[: int(c.item())] for g, c in zip(gathered, counts)])
