"""Two CPU processes with the gloo backend: EMA codebooks stay bit-identical across ranks and equal
a single process that sees the concatenated batch; k-means init and dead-code restarts agree."""
from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hqvae.quantizers import ResidualQuantizer, VectorQuantizer

WORLD, STEPS, DIM, K = 2, 6, 8, 32


def batches(step: int) -> list[torch.Tensor]:
    """Different data for each rank at each step: (B=3, DIM, 4, 4) per rank."""
    g = torch.Generator().manual_seed(100 + step)
    return [torch.randn(3, DIM, 4, 4, generator=g) + rank for rank in range(WORLD)]


def make_quantizer(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "ema":
        return VectorQuantizer(DIM, K, init="normal", decay=0.8)
    if kind == "kmeans_restart":
        return VectorQuantizer(DIM, K, init="kmeans", decay=0.8, dead_code_threshold=0.5)
    return ResidualQuantizer([VectorQuantizer(DIM, K, init="data", decay=0.8, dead_code_threshold=0.5) for _ in range(2)])


def worker(rank: int, init_file: str, kind: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    torch.manual_seed(1000 + rank)  # ranks draw different random numbers: decisions must still agree
    q = make_quantizer(kind)
    q.train()
    for step in range(STEPS):
        q(batches(step)[rank])
    torch.save(q.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def run_two_ranks(tmp_path, kind: str) -> list[dict]:
    mp.spawn(worker, args=(str(tmp_path / "init"), kind, str(tmp_path)), nprocs=WORLD, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


def test_ema_codebooks_are_identical_across_ranks_and_match_one_process(tmp_path):
    states = run_two_ranks(tmp_path, "ema")
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    single = make_quantizer("ema")
    single.train()
    for step in range(STEPS):
        single(torch.cat(batches(step)))
    for key, value in single.state_dict().items():
        torch.testing.assert_close(states[0][key], value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["kmeans_restart", "residual_restart"])
def test_kmeans_init_and_dead_code_restarts_agree_across_ranks(tmp_path, kind):
    states = run_two_ranks(tmp_path, kind)
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
