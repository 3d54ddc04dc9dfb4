"""SQ data initialisation (the codebook and s² from the layer's own inputs) and the per-layer
information measure I(x; k) = H(p̄) − E H(P(· | x)) that judges collapse."""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import hqvae
from hqvae.evaluate import evaluate
from hqvae.metrics import LayerInformation
from hqvae.quantizers import ResidualQuantizer, StochasticQuantizer

DIM, K = 8, 16


def inputs(seed: int = 0, scale: float = 3.0) -> torch.Tensor:
    """(4, DIM, 5, 5) latents with mean-per-dimension variance about scale²."""
    return scale * torch.randn(4, DIM, 5, 5, generator=torch.Generator().manual_seed(seed)) + 1.0


def rows_of(z: torch.Tensor) -> torch.Tensor:
    return z.movedim(1, -1).reshape(-1, DIM)


def distance_to_nearest_row(codes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """(K,) Euclidean distance from each code to its nearest row, computed exactly."""
    return (codes.detach()[:, None, :] - rows[None]).pow(2).sum(-1).min(dim=1).values.sqrt()


# ----------------------------------------------------------------------------- data initialisation


@pytest.mark.parametrize("var_floor, bounded, ratio", [(False, False, 1.0), (True, False, 1.0), (False, True, 0.5),
                                                       (False, False, 0.25)])
def test_data_init_takes_codes_from_the_inputs_and_s2_from_their_variance(var_floor, bounded, ratio):
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, K, init="data", init_noise=0.0, var_floor=var_floor, bounded_variance=bounded,
                            init_variance_ratio=ratio)
    assert not bool(q.initialized)
    z = inputs()
    q.train()
    q(z)
    rows = rows_of(z)
    # with no noise every code is one of the input rows
    assert distance_to_nearest_row(q.weight, rows).max() < 1e-6
    v = rows.var(dim=0, unbiased=False).mean()
    torch.testing.assert_close(q.variance(), ratio * v)
    assert bool(q.initialized)


def test_data_init_noise_is_relative_to_the_inputs_spread():
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, 256, init="data", init_noise=0.2)
    z = inputs(scale=5.0)
    q.train()
    q(z)
    rows = rows_of(z)
    nearest = distance_to_nearest_row(q.weight, rows).pow(2)
    sigma2 = rows.var(dim=0, unbiased=False).mean()
    # the noise is N(0, (0.2 σ)² I): its mean squared norm is d·0.04·σ²
    assert nearest.mean() == pytest.approx(DIM * 0.04 * float(sigma2), rel=0.25)


def test_kmeans_init_starts_at_the_centroids_of_the_inputs_and_s2_from_their_variance():
    """Clustered inputs: every code is the mean of the rows nearest to it (Lloyd's fixed point),
    inside the cloud rather than on one of its rows, and s² is the inputs' variance as with the data
    start."""
    torch.manual_seed(0)
    centres = 4.0 * torch.randn(8, DIM)
    rows = centres.repeat_interleave(25, 0) + torch.randn(200, DIM)  # (200, DIM), 8 clusters
    z = rows.reshape(8, 5, 5, DIM).movedim(-1, 1)  # (8, DIM, 5, 5)
    q = StochasticQuantizer(DIM, 4, init="kmeans", init_noise=0.0, bounded_variance=True)
    q.train()
    q(z)
    codes = q.weight.detach()
    nearest = torch.cdist(rows, codes).argmin(1)
    for k in nearest.unique():
        torch.testing.assert_close(codes[k], rows[nearest == k].mean(0))
    assert distance_to_nearest_row(codes, rows).min() > 0.5
    torch.testing.assert_close(q.variance(), rows.var(dim=0, unbiased=False).mean())


def test_kmeans_init_noise_separates_codes_that_start_from_one_row():
    """More codes than distinct rows: without noise some codes would coincide, get identical
    gradients and never part; the data start's noise keeps them apart."""
    torch.manual_seed(0)
    z = inputs()[:1, :, :2, :2]  # 4 rows for K = 16 codes
    q = StochasticQuantizer(DIM, K, init="kmeans")
    q.train()
    q(z)
    gaps = torch.cdist(q.weight.detach(), q.weight.detach()) + torch.eye(K) * 1e9
    assert gaps.min() > 1e-3


def test_data_init_happens_once_in_training_and_never_in_eval_or_after_loading(tmp_path):
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, K, init="data")
    q.eval()
    with torch.no_grad():
        q(inputs())
    assert not bool(q.initialized)  # evaluation does not initialise
    q.train()
    q(inputs(1))
    codes = q.weight.detach().clone()
    q(inputs(2, scale=50.0))
    assert torch.equal(q.weight.detach(), codes)  # the second batch changes nothing

    fresh = StochasticQuantizer(DIM, K, init="data")
    fresh.load_state_dict(q.state_dict())
    fresh.train()
    fresh(inputs(3, scale=50.0))
    assert torch.equal(fresh.weight.detach(), codes)


def test_a_state_dict_from_before_the_flag_counts_as_initialised():
    q = StochasticQuantizer(DIM, K, init="data")
    old = {key: value for key, value in q.state_dict().items() if key != "initialized"}
    fresh = StochasticQuantizer(DIM, K, init="data")
    fresh.load_state_dict(old)
    assert bool(fresh.initialized)


def test_each_residual_depth_initialises_from_the_residual_it_receives():
    torch.manual_seed(0)
    stack = ResidualQuantizer([StochasticQuantizer(DIM, K, init="data", init_noise=0.0) for _ in range(3)])
    received = {}
    for depth, layer in enumerate(stack.layers):
        layer.register_forward_pre_hook(lambda module, args, depth=depth: received.setdefault(depth, args[0].detach()))
    stack.train()
    z = inputs()
    stack(z)
    assert torch.equal(received[0], z)
    for depth, layer in enumerate(stack.layers):
        rows = rows_of(received[depth])
        torch.testing.assert_close(layer.variance(), rows.var(dim=0, unbiased=False).mean())
        assert distance_to_nearest_row(layer.weight, rows).max() < 1e-6
    assert stack.layers[2].variance() < stack.layers[0].variance()


def test_bad_init_options_are_rejected():
    with pytest.raises(ValueError, match="init must be one of"):
        StochasticQuantizer(DIM, K, init="k-means")
    with pytest.raises(ValueError, match="bounded_variance replaces var_floor"):
        StochasticQuantizer(DIM, K, var_floor=True, bounded_variance=True)
    with pytest.raises(ValueError, match="init_variance_ratio > 0"):
        StochasticQuantizer(DIM, K, init="data", init_variance_ratio=0.0)
    with pytest.raises(ValueError, match="variance_bound_ratio must be > 1"):
        StochasticQuantizer(DIM, K, bounded_variance=True, variance_bound_ratio=1.0)


@pytest.mark.parametrize("ratio", [2.0, 1.25, 4.0])
def test_bounded_variance_starts_at_s2_0_and_stays_below_ratio_times_it(ratio):
    q = StochasticQuantizer(DIM, K, init_variance=3.0, bounded_variance=True, variance_bound_ratio=ratio)
    s2 = q.variance()
    assert float(s2.detach()) == pytest.approx(3.0)
    # s² = c·s²₀·σ(θ) with c·σ(θ₀) = 1: ds²/dθ = c·s²₀·σ(1 − σ) = s²₀·(1 − 1/c) at the start
    (grad,) = torch.autograd.grad(s2, q.variance_logit)
    assert float(grad) == pytest.approx(3.0 * (1.0 - 1.0 / ratio))
    with torch.no_grad():
        q.variance_logit.fill_(50.0)
    assert float(q.variance().detach()) == pytest.approx(3.0 * ratio)


def test_data_init_restarts_the_bounded_variance_at_its_start():
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, K, init="data", bounded_variance=True, variance_bound_ratio=1.25)
    with torch.no_grad():
        q.variance_logit.fill_(-3.0)
    z = inputs()
    q.train()
    q(z)
    v = rows_of(z).var(dim=0, unbiased=False).mean()
    torch.testing.assert_close(q.variance(), v)
    torch.testing.assert_close(q.variance_bound, v)


# ----------------------------------------------------------------------------- affine codebook


def _affine_and_plain(seed: int = 0) -> tuple[StochasticQuantizer, StochasticQuantizer]:
    """An affine-codebook layer with a random scale and shift, and a plain layer whose codebook is
    the affine layer's codes, as a free (K, d) parameter."""
    generator = torch.Generator().manual_seed(seed)
    affine = StochasticQuantizer(DIM, K, init_variance=4.0, affine_codebook=True)
    plain = StochasticQuantizer(DIM, K, init_variance=4.0)
    with torch.no_grad():
        affine.codebook_scale.copy_(0.5 + torch.rand(DIM, generator=generator))
        affine.codebook_shift.copy_(torch.randn(DIM, generator=generator))
        plain.weight.copy_(affine.codebook)
    return affine, plain


def _train_step_loss(q: StochasticQuantizer, z: torch.Tensor) -> torch.Tensor:
    torch.manual_seed(1)  # the same Gumbel noise for both layers
    out = q.train()(z)
    return out.losses["discrete"] + out.losses["continuous"] + out.z_q.pow(2).mean()


def test_affine_codebook_gradients_are_the_plain_codebooks_through_the_chain_rule():
    """e_k = a ⊙ w_k + b: ∂L/∂w_k = a ⊙ g_k, ∂L/∂a = Σ_k g_k ⊙ w_k, ∂L/∂b = Σ_k g_k, with g_k = ∂L/∂e_k
    the gradient of a plain layer holding the same codes."""
    affine, plain = _affine_and_plain()
    z = inputs()
    loss_affine, loss_plain = _train_step_loss(affine, z), _train_step_loss(plain, z)
    torch.testing.assert_close(loss_affine, loss_plain)
    loss_affine.backward()
    loss_plain.backward()
    g = plain.weight.grad
    torch.testing.assert_close(affine.weight.grad, affine.codebook_scale.detach() * g)
    torch.testing.assert_close(affine.codebook_scale.grad, (g * affine.weight.detach()).sum(0))
    torch.testing.assert_close(affine.codebook_shift.grad, g.sum(0))


def test_an_unused_code_moves_only_with_the_affine_codebook():
    """A code far from every input holds no posterior mass and gets no gradient of its own; with the
    affine codebook the shared scale and shift, trained by the used codes, move it too."""
    moved = {}
    for affine in (False, True):
        torch.manual_seed(0)
        q = StochasticQuantizer(DIM, K, init_variance=4.0, affine_codebook=affine)
        with torch.no_grad():
            q.weight[0].fill_(1e3)
        before = q.codebook.detach().clone()
        _train_step_loss(q, inputs()).backward()
        torch.optim.SGD(q.parameters(), lr=0.1).step()
        moved[affine] = (q.codebook.detach()[0] - before[0]).abs().max().item()
    assert moved[False] == 0.0
    assert moved[True] > 1e-3


def test_data_init_gives_the_affine_codebook_the_rows_themselves():
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, K, init="data", init_noise=0.0, affine_codebook=True)
    with torch.no_grad():
        q.codebook_scale.fill_(2.0)
    z = inputs()
    q.train()(z)
    assert torch.equal(q.codebook_scale.detach(), torch.ones(DIM)) and not q.codebook_shift.detach().any()
    assert distance_to_nearest_row(q.codebook, rows_of(z)).max() < 1e-6


def test_a_stack_sharing_one_codebook_shares_its_scale_and_shift():
    stack = ResidualQuantizer([StochasticQuantizer(DIM, K, affine_codebook=True) for _ in range(2)], shared_codebook=True)
    first, second = stack.layers
    assert second.codebook_scale is first.codebook_scale and second.codebook_shift is first.codebook_shift
    with pytest.raises(ValueError, match="same affine_codebook"):
        ResidualQuantizer([StochasticQuantizer(DIM, K, affine_codebook=True), StochasticQuantizer(DIM, K)],
                          shared_codebook=True)


def test_model_configs_pass_the_init_options_to_every_sq_layer():
    model = hqvae.create_model("rsqvae", in_channels=1, image_size=8, hidden=8, dim=4, codebook_size=8,
                               sq_init="data", var_floor=False, init_variance_ratio=0.5, affine_codebook=True)
    layers = [m for m in model.modules() if isinstance(m, StochasticQuantizer)]
    assert len(layers) == 4 and all(q.init == "data" and q.init_variance_ratio == 0.5 and q.affine_codebook
                                    for q in layers)
    with pytest.raises(ValueError, match="init must be one of"):
        hqvae.create_model("sqvae", in_channels=1, image_size=8, hidden=8, sq_init="uniform")


def _ddp_worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(1000 + rank)  # ranks draw different random numbers: the codebooks must still agree
    q = ResidualQuantizer([StochasticQuantizer(DIM, K, init="data") for _ in range(2)])
    q.train()
    q(inputs(seed=rank))  # each rank sees different data
    torch.save(q.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_data_init_is_decided_on_rank_0_and_identical_across_ranks(tmp_path):
    mp.spawn(_ddp_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    assert all(bool(value) for key, value in states[0].items() if key.endswith("initialized"))


# ----------------------------------------------------------------------------- information per layer


def test_layer_information_against_hand_computed_values():
    # two positions: P1 = (1/2, 1/2, 0), P2 = (0, 0, 1): p̄ = (1/4, 1/4, 1/2), H(p̄) = 1.5 bits,
    # mean H(P) = (1 + 0) / 2 = 0.5 bits, I = 1 bit per position
    meter = LayerInformation(3)
    meter.update(torch.tensor([[0, 2]]), torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]]))
    result = meter.compute(positions_per_item=2)
    assert result["marginal_entropy_bits"] == pytest.approx(1.5)
    assert result["conditional_entropy_bits"] == pytest.approx(0.5)
    assert result["information_bits"] == pytest.approx(1.0)
    assert result["information_bits_per_item"] == pytest.approx(2.0)


def test_a_uniform_posterior_carries_no_information_however_its_argmax_spreads():
    meter = LayerInformation(4)
    codes = torch.tensor([[0, 1, 2, 3]])  # every code used: perplexity 4
    meter.update(codes, torch.full((4, 4), 0.25))
    assert meter.compute(4)["information_bits"] == pytest.approx(0.0, abs=1e-12)


def test_vq_layers_carry_their_histogram_entropy_and_batches_merge():
    codes = torch.tensor([[0, 0, 1, 3], [2, 2, 2, 1]])
    whole = LayerInformation(4)
    whole.update(codes)
    parts = LayerInformation(4)
    parts.update(codes[:1])
    other = LayerInformation(4)
    other.update(codes[1:])
    parts.merge(other)
    p = torch.tensor([2, 2, 3, 1], dtype=torch.float64) / 8
    expected = float(-(p * p.log2()).sum())
    assert whole.compute(4)["information_bits"] == pytest.approx(expected)
    assert parts.compute(4) == whole.compute(4)


@pytest.mark.parametrize("name", ["sqvae2", "rsqvae", "vqvae2"])
def test_encode_posteriors_gives_the_codes_of_encode_and_evaluate_reports_information(name):
    torch.manual_seed(0)
    model = hqvae.create_model(name, in_channels=1, image_size=16, hidden=16, dim=8, codebook_size=16,
                               **({"sq_init": "data", "var_floor": False} if name != "vqvae2" else {}))
    x = torch.rand(6, 1, 16, 16)
    model.train()
    model(x)  # initialise
    codes, posteriors = model.encode_posteriors(x)
    assert all(torch.equal(a, b) for a, b in zip(codes, model.encode(x)))
    for code, probs in zip(codes, posteriors):
        if name == "vqvae2":
            assert probs is None
        else:
            assert probs.shape == (code.numel(), 16)
            torch.testing.assert_close(probs.sum(-1), torch.ones(code.numel()))
    result = evaluate(model, [(x, None)], progressive=False)
    for layer in result["layers"]:
        bits = layer["information_bits"]
        assert 0 <= bits <= math.log2(16) + 1e-9
        assert layer["information_bits_per_item"] == pytest.approx(bits * layer["positions"])
        if name == "vqvae2":
            assert bits == pytest.approx(layer["entropy_bits"])
