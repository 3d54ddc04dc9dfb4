"""Summing metric accumulators across DDP ranks."""

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
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
