"""The codec: the .hqz container (version 2, and version 1 files still decode), progressive
segments of every family, the grid probabilities, and files that decode under other CPU kernels."""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import hqvae
from hqvae.codes_file import load_codes
from hqvae.hqz import HqzError, pack, read_hqz, unpack
from hqvae.priors import CodeLayout, CodePrior, PriorConfig, build_prior
from hqvae.priors.coding import check_progressive, coding_copy, decode_tokens, encode_tokens, probabilities_v1
from hqvae.priors.grid import EXP_TABLE, grid_probabilities, grid_weights, tie_margin

FIXTURES = Path(__file__).resolve().parent / "fixtures"
FINGERPRINTS = dict(prior_fingerprint="0123456789abcdef", model_fingerprint="fedcba9876543210")
TINY = {"sqvae2": dict(hidden=16, codebook_size=16, dim=8), "vqvae2": dict(hidden=16, codebook_size=16, dim=8),
        "rsqvae": dict(hidden=16, codebook_size=16, dim=8, depth=3), "rqvae": dict(hidden=16, codebook_size=16, dim=8,
                                                                                  depth=3),
        "pqvae": dict(hidden=16, dim=8, depth=3, groups=2, codebook_size=8, code_dim=4)}


def peaked_prior(layout: CodeLayout, seed: int = 0, d_model: int = 32) -> CodePrior:
    """A prior with sharp, context-dependent distributions (as trained ones have)."""
    torch.manual_seed(seed)
    prior = CodePrior(PriorConfig([list(s) for s in layout.code_shapes], list(layout.codebook_sizes),
                                  d_model=d_model, n_layer=2, n_head=2))
    with torch.no_grad():
        for head in prior.heads:
            head.weight.mul_(30)
        prior.token_embedding.weight.mul_(20)
    return prior.eval()


def test_a_version_1_file_of_the_previous_release_still_decodes():
    """tests/fixtures/hqz-v1: written by hqvae's main branch before version 2 (see its README)."""
    folder = FIXTURES / "hqz-v1"
    result = hqvae.decompress(folder / "v1.hqz", prior=folder / "prior", images=False)
    codes, _, _ = load_codes(folder / "codes.safetensors")
    assert result.hqz.version == 1 and result.upto == 2
    assert all(torch.equal(a, b) for a, b in zip(codes, result.layers))
    assert all(torch.equal(a, b) for a, b in zip(codes[:1], hqvae.decompress(folder / "v1.hqz", folder / "prior",
                                                                              upto=1, images=False).layers))
    data = (folder / "v1.hqz").read_bytes()
    with pytest.raises(HqzError, match="format version 3, but this hqvae .* reads versions 1 and 2"):
        unpack(data[:4] + struct.pack("<H", 3) + data[6:])


@pytest.mark.parametrize("name", list(TINY))
def test_every_prefix_of_a_progressive_file_decodes_exactly_the_first_layers_of_encode(name):
    """sqvae2/vqvae2 layers, rsqvae/rqvae depths, pqvae steps: segment l holds layer l, and the file's
    first prefix_bytes[l] bytes decode exactly encode's first l + 1 layers."""
    torch.manual_seed(1)
    model = hqvae.create_model(name, in_channels=1, image_size=16, batch_norm=False, **TINY[name]).eval()
    layers = model.encode(torch.rand(7, 1, 16, 16))
    layout = CodeLayout.from_codes(model, layers)
    prior = coding_copy(peaked_prior(layout))
    segments = encode_tokens(prior, layout.flatten(layers), coding_batch=3, progressive=True)
    assert len(segments) == layout.num_layers
    data = pack(segments, items=7, coding_batch=3, layers=layout.num_layers, progressive=True, **FINGERPRINTS)
    whole = unpack(data)
    assert whole.prefix_bytes[-1] == len(data) and whole.complete == layout.num_layers
    for upto in range(1, layout.num_layers + 1):
        for hqz in (unpack(data, upto=upto), unpack(data[:whole.prefix_bytes[upto - 1]])):
            assert hqz.complete == upto
            tokens = decode_tokens(prior, hqz.segments, 7, 3, progressive=True)
            assert torch.equal(tokens, layout.flatten(layers)[:, :sum(layout.lengths[:upto])]), (name, upto)
    # a file cut inside a segment gives the whole segments before it
    assert unpack(data[:whole.prefix_bytes[0] + 2]).complete == 1


def test_reading_a_prefix_reads_only_its_bytes(tmp_path):
    layout = CodeLayout.of([[2, 2], [4, 4]], [8, 8])
    prior = coding_copy(peaked_prior(layout))
    tokens = torch.randint(0, 8, (5, layout.length))
    data = pack(encode_tokens(prior, tokens, 4, progressive=True), items=5, coding_batch=4, layers=2,
                progressive=True, prior_path="priors/x", **FINGERPRINTS)
    first = unpack(data).prefix_bytes[0]
    damaged = bytearray(data)
    damaged[first:] = bytes(len(data) - first)  # garbage after the first layer: never read for upto=1
    (tmp_path / "f.hqz").write_bytes(damaged)
    hqz = read_hqz(tmp_path / "f.hqz", upto=1)
    assert hqz.bytes_read == first and hqz.complete == 1
    assert hqz.prior_path == "priors/x" and torch.equal(decode_tokens(prior, hqz.segments, 5, 4, True), tokens[:, :4])
    with pytest.raises(HqzError, match="segment 1 .* does not match its checksum"):
        read_hqz(tmp_path / "f.hqz")


def test_the_container_refuses_damaged_files():
    data = pack([np.arange(5, dtype=np.uint32), np.arange(3, dtype=np.uint32)], items=1, coding_batch=1, layers=2,
                progressive=True, **FINGERPRINTS)
    hqz = unpack(data)
    assert [s.tolist() for s in hqz.segments] == [[0, 1, 2, 3, 4], [0, 1, 2]]
    assert FINGERPRINTS["prior_fingerprint"].startswith(hqz.prior_fingerprint) and hqz.prior_path is None
    assert len(data) - 32 == 6 + 1 + 8 + 4 + 2 * (1 + 2) + 2  # the header: preamble, flags, fingerprints, 4 varints, table, CRC
    trimmed = unpack(pack([np.array([7, 0x12000000, 0], np.uint32), np.array([0x34000000], np.uint32)], items=1,
                          coding_batch=1, layers=2, progressive=True, **FINGERPRINTS))
    assert trimmed.segment_bytes == [9, 1] and [s.tolist() for s in trimmed.segments] == [[7, 0x12000000, 0], [0x34000000]]
    with pytest.raises(HqzError, match="truncated inside its header"):
        unpack(data[:12])
    with pytest.raises(HqzError, match="not even its first segment"):
        unpack(data[:hqz.prefix_bytes[0] - 1])
    flipped = bytearray(data)
    flipped[8] ^= 1
    with pytest.raises(HqzError, match="header checksum"):
        unpack(bytes(flipped))
    flipped = bytearray(data)
    flipped[-1] ^= 1
    with pytest.raises(HqzError, match="segment 1"):
        unpack(bytes(flipped))
    with pytest.raises(HqzError, match="not an hqvae compressed file"):
        unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(HqzError, match="after its end"):
        unpack(data + b"x")
    with pytest.raises(HqzError, match="upto must be between 1 and 2"):
        unpack(data, upto=3)


def test_the_depth_prior_is_refused_for_progressive_files():
    layout = CodeLayout.of([[3, 3], [3, 3]], [8, 8])
    depth = build_prior(PriorConfig([[3, 3], [3, 3]], [8, 8], d_model=16, n_layer=1, n_head=2, kind="depth"))
    with pytest.raises(ValueError, match="cannot be decoded on its own.*--no-progressive.*model.kind=flat"):
        check_progressive(depth)
    tokens = torch.randint(0, 8, (3, layout.length))
    [words] = encode_tokens(coding_copy(depth), tokens, 2, progressive=False)
    assert torch.equal(decode_tokens(coding_copy(depth), [words], 3, 2), tokens)


def test_the_grid_table_is_exact_and_costs_little_rate():
    assert EXP_TABLE[0] == 2**40 and EXP_TABLE[256] == round(2**40 / np.e) and EXP_TABLE.min() >= 1
    assert np.all(np.diff(EXP_TABLE) <= 0)
    logits = torch.tensor([[0.0, -1.0, 3.0, 3.0 + 1 / 1024]], dtype=torch.float64)
    weights = grid_weights(logits)
    assert weights[0, 2] == weights[0, 3] == 2**40 and weights[0, 1] == EXP_TABLE[1024]  # 1/1024 rounds away
    probabilities = grid_probabilities(logits)
    assert probabilities.sum() == pytest.approx(1, abs=1e-15)
    assert np.allclose(probabilities, probabilities_v1(logits), rtol=3e-3)
    assert tie_margin(torch.tensor([[0.5 / 256 + 1e-9]], dtype=torch.float64)) == pytest.approx(1e-9 * 256, rel=1e-3)
    # snapping moves a logit by ≤ 1/512 nat: the rate changes by far less than 1%
    layout = CodeLayout.of([[4, 4], [32]], [8, 32])
    prior = peaked_prior(layout, seed=3)
    from hqvae.priors import sample

    tokens = sample(prior, 200, seed=5)
    v1 = 32 * encode_tokens(coding_copy(prior), tokens, 64, version=1)[0].size
    v2 = 32 * encode_tokens(coding_copy(prior), tokens, 64)[0].size
    assert abs(v2 - v1) <= 0.005 * v1 + 64, (v1, v2)


CROSS_KERNEL_SCRIPT = """
import sys, numpy as np, torch
from hqvae.priors.coding import coding_copy, decode_tokens, encode_tokens
from hqvae.priors import load_prior
prior = coding_copy(load_prior(sys.argv[1]))
tokens = torch.from_numpy(np.load(sys.argv[2]))
mode = sys.argv[3]
if mode == "encode":
    segments = encode_tokens(prior, tokens, 16, progressive=True)
    np.savez(sys.argv[4], *segments)
else:
    with np.load(sys.argv[4]) as archive:
        segments = [archive[f"arr_{i}"] for i in range(len(archive.files))]
    assert torch.equal(decode_tokens(prior, segments, tokens.shape[0], 16, progressive=True), tokens)
    print("exact")
"""
KERNELS = {"best": {}, "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
           "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
           "all-avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}}


@pytest.mark.slow
def test_files_are_identical_and_decode_exactly_under_other_cpu_kernels(tmp_path):
    """Separate processes with other kernel selections write the same bytes and decode each other's
    files exactly (the README's "Files that decode anywhere")."""
    layout = CodeLayout.of([[7, 7], [14, 14]], [64, 64])
    prior = peaked_prior(layout, seed=4, d_model=64)
    prior.save_pretrained(tmp_path / "prior")
    from hqvae.priors import sample

    np.save(tmp_path / "tokens.npy", sample(prior, 24, seed=1).numpy())
    environment = {key: value for key, value in os.environ.items()
                   if key not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")}

    def run(kernel: str, mode: str, archive: str) -> str:
        return subprocess.run([sys.executable, "-c", CROSS_KERNEL_SCRIPT, str(tmp_path / "prior"),
                               str(tmp_path / "tokens.npy"), mode, str(tmp_path / archive)], check=True, timeout=300,
                              capture_output=True, text=True, env={**environment, **KERNELS[kernel]}).stdout

    for kernel in KERNELS:
        run(kernel, "encode", f"{kernel}.npz")
    reference = (tmp_path / "best.npz").read_bytes()
    assert all((tmp_path / f"{kernel}.npz").read_bytes() == reference for kernel in KERNELS)
    assert run("aten-default", "decode", "best.npz").strip() == "exact"
    assert run("best", "decode", "all-avx2.npz").strip() == "exact"
