"""Quantizer library: generic contract tests over every quantizer, then the math, pinned by hand."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model

from hqvae.quantizers import Quantizer, QuantizerOutput, ResidualQuantizer, StochasticQuantizer, VectorQuantizer
from hqvae.quantizers.base import entropy, nearest_code, perplexity_of_counts
from hqvae.quantizers.relaxed import gumbel_noise

DIM, K = 8, 16

QUANTIZERS = {
    "vq_ema": lambda cl: VectorQuantizer(DIM, K, channel_last=cl),
    "vq_grad": lambda cl: VectorQuantizer(DIM, K, ema=False, init="normal", channel_last=cl),
    "vq_cosine_factorised": lambda cl: VectorQuantizer(DIM, K, cosine=True, codebook_dim=4, channel_last=cl),
    "vq_dead_code": lambda cl: VectorQuantizer(DIM, K, init="data", dead_code_threshold=2.0, channel_last=cl),
    "sq_gaussian_1": lambda cl: StochasticQuantizer(DIM, K, channel_last=cl),
    "sq_floor": lambda cl: StochasticQuantizer(DIM, K, var_floor=True, channel_last=cl),
    "sq_vmf": lambda cl: StochasticQuantizer(DIM, K, variance="vmf", channel_last=cl),
    "sq_data": lambda cl: StochasticQuantizer(DIM, K, init="data", channel_last=cl),
    "sq_data_bounded": lambda cl: StochasticQuantizer(DIM, K, init="data", bounded_variance=True, channel_last=cl),
    "rq": lambda cl: ResidualQuantizer([VectorQuantizer(DIM, K, channel_last=cl) for _ in range(3)]),
    "rq_shared": lambda cl: ResidualQuantizer(
        [VectorQuantizer(DIM, K, ema=False, init="normal", channel_last=cl) for _ in range(3)], shared_codebook=True
    ),
    "rsq": lambda cl: ResidualQuantizer([StochasticQuantizer(DIM, K, channel_last=cl) for _ in range(3)]),
    "rsq_data": lambda cl: ResidualQuantizer([StochasticQuantizer(DIM, K, init="data", channel_last=cl) for _ in range(3)]),
    "rsq_data_shared": lambda cl: ResidualQuantizer(
        [StochasticQuantizer(DIM, K, init="data", channel_last=cl) for _ in range(3)], shared_codebook=True
    ),
}

LAYOUTS = {  # name -> (input shape, channel_last)
    "bchw": ((2, DIM, 5, 6), False),
    "bct": ((3, DIM, 7), False),
    "bnc": ((2, 9, DIM), True),
}


def make(name: str, layout: str, seed: int = 0):
    torch.manual_seed(seed)
    shape, channel_last = LAYOUTS[layout]
    return QUANTIZERS[name](channel_last), torch.randn(shape)


def index_shape_of(q, shape, channel_last):
    base = shape[:-1] if channel_last else (shape[0], *shape[2:])
    return (*base, q.depth) if isinstance(q, ResidualQuantizer) else base


# ----------------------------------------------------------------------------- the generic contract


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("name", QUANTIZERS)
def test_forward_contract(name, layout):
    q, z = make(name, layout)
    z.requires_grad_(True)
    out = q(z)
    assert isinstance(out, QuantizerOutput)
    assert out.z_q.shape == z.shape and out.z_q.dtype == z.dtype
    assert out.indices.dtype == torch.long
    assert out.indices.shape == index_shape_of(q, z.shape, LAYOUTS[layout][1])
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert torch.isfinite(out.z_q).all()
    assert all(torch.isfinite(v).all() for losses, stats in out.per_depth() for v in (*losses.values(), *stats.values()))
    assert int(out.indices.min()) >= 0 and int(out.indices.max()) < K


@pytest.mark.parametrize("name", QUANTIZERS)
def test_loss_is_the_sum_of_the_named_losses_and_stats_are_detached(name):
    q, z = make(name, "bchw")
    z.requires_grad_(True)
    out = q(z)
    per_depth = out.per_depth()
    assert len(per_depth) == (q.depth if isinstance(q, ResidualQuantizer) else 1)
    parts = [value for losses, _ in per_depth for value in losses.values()]
    assert parts and all(value.dim() == 0 and value.requires_grad for value in parts)
    assert all("perplexity" in stats for _, stats in per_depth)
    assert not any(value.requires_grad for _, stats in per_depth for value in stats.values())
    torch.testing.assert_close(out.loss, sum(parts))
    if name.startswith("vq"):
        assert set(out.losses) == ({"commitment", "codebook"} if name == "vq_grad" else {"commitment"})
    if name.startswith("sq"):
        assert set(out.losses) == {"discrete", "continuous"}
    if name.startswith("rsq"):  # one continuous term for the whole stack
        assert set(out.losses) == {"continuous"} and all(set(d.losses) == {"discrete"} for d in out.depths)


def test_one_layer_quantizers_share_the_base_class():
    for name in ("vq_ema", "sq_gaussian_1"):
        q, z = make(name, "bchw")
        assert isinstance(q, Quantizer) and q.stochastic == name.startswith("sq")
        q.set_temperature(0.5)  # a no-op for VQ, τ for SQ
        q(z)
        q.eval()
        out = q(z)
        torch.testing.assert_close(q.embed(out.indices), out.z_q)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_every_parameter_and_the_input_get_gradient(name):
    q, z = make(name, "bchw")
    z.requires_grad_(True)
    out = q(z)
    (out.loss + out.z_q.pow(2).sum()).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for pname, p in q.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name", QUANTIZERS)
def test_eval_is_deterministic_and_embed_reproduces_z_q(name):
    q, z = make(name, "bchw")
    q.train()
    q(z)  # initialise data-dependent codebooks
    q.eval()
    with torch.no_grad():
        a, b = q(z), q(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.z_q, b.z_q) and torch.equal(a.loss, b.loss)
    torch.testing.assert_close(q.embed(a.indices), a.z_q, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_seeded_training_steps_are_reproducible(name):
    def run():
        q, z = make(name, "bchw", seed=3)
        outs = [q(z + 0.1 * i) for i in range(3)]
        return outs[-1], q.state_dict()

    (a, state_a), (b, state_b) = run(), run()
    assert torch.equal(a.z_q, b.z_q) and torch.equal(a.indices, b.indices)
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


@pytest.mark.parametrize("name", QUANTIZERS)
def test_safetensors_round_trip(name, tmp_path):
    q, z = make(name, "bchw")
    q(z)  # move EMA state and initialisation flags away from their defaults
    q.eval()
    path = tmp_path / "q.safetensors"
    save_model(q, str(path))
    fresh, _ = make(name, "bchw", seed=1)
    load_model(fresh, str(path))
    fresh.eval()
    with torch.no_grad():
        a, b = q(z), fresh(z)
    assert torch.equal(a.indices, b.indices) and torch.equal(a.z_q, b.z_q)


@pytest.mark.parametrize("name", ["vq_ema", "sq_gaussian_1", "rq", "rsq"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_gives_fp32_exact_indices(name, dtype):
    q, z = make(name, "bchw")
    q.train()
    q(z)
    q.eval()
    z_low = z.to(dtype)
    reference = q(z_low.float()).indices
    assert torch.equal(q(z_low).indices, reference)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(z_low.float())
    assert torch.equal(out.indices, reference)
    assert out.loss.dtype == torch.float32


def test_wrong_channel_count_is_a_clear_error():
    q = VectorQuantizer(DIM, K)
    with pytest.raises(ValueError, match=r"expected 8 channels.*channel_last=True"):
        q(torch.randn(2, 3, 4, DIM))
    with pytest.raises(ValueError, match="needs the predicted log_var"):
        StochasticQuantizer(DIM, K, variance="gaussian_3")(torch.randn(2, DIM, 4, 4))
    with pytest.raises(ValueError, match=r"must have shape \(2, 1, 4, 4\)"):
        StochasticQuantizer(DIM, K, variance="gaussian_3")(torch.randn(2, DIM, 4, 4), log_var=torch.zeros(2, DIM, 4, 4))
    with pytest.raises(ValueError, match="Gumbel temperature"):
        StochasticQuantizer(DIM, K).set_temperature(0.0)


# ----------------------------------------------------------------------------- helpers on known values


def test_entropy_and_perplexity_on_known_distributions():
    uniform = torch.full((K,), 1.0 / K)
    assert math.isclose(float(entropy(uniform)), math.log(K), rel_tol=1e-6)
    assert math.isclose(float(perplexity_of_counts(torch.ones(K) * 7)), K, rel_tol=1e-5)
    assert float(perplexity_of_counts(torch.tensor([0.0, 5.0, 0.0]))) == pytest.approx(1.0)
    two = torch.tensor([3.0, 1.0])
    h = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(perplexity_of_counts(two)) == pytest.approx(math.exp(h), rel=1e-6)
    assert float(entropy(torch.tensor([1.0, 0.0]))) == 0.0


def test_chunked_nearest_code_matches_full_distance_matrix():
    torch.manual_seed(0)
    x, codebook = torch.randn(1000, 16), torch.randn(300, 16)
    full = torch.cdist(x, codebook).argmin(-1)
    assert torch.equal(nearest_code(x, codebook, chunk_elements=300 * 7), full)


# ----------------------------------------------------------------------------- VQ math


def tiny_vq(ema: bool, beta: float = 0.25) -> VectorQuantizer:
    q = VectorQuantizer(2, 3, beta=beta, ema=ema, init="normal", channel_last=True)
    q.weight.data.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    return q


def test_vq_loss_against_hand_computed_values():
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2]], [[-1.5, 0.5], [0.6, 0.7]]])  # (B=2, N=2, d=2)
    # nearest codes: 0, 1 | 2, 1
    sq_err = (0.04 + 0.01) + (0.01 + 0.04) + (0.25 + 0.25) + (0.16 + 0.09)
    for ema in (True, False):
        q = tiny_vq(ema, beta=0.25)
        q.eval()
        out = q(z)
        assert out.indices.tolist() == [[0, 1], [2, 1]]
        expected = 0.25 * sq_err / 2 + (0 if ema else sq_err / 2)
        assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_vq_gradients_put_beta_on_the_encoder_and_the_codebook_term_on_the_codebook():
    beta = 0.25
    q = tiny_vq(ema=False, beta=beta)
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2]]], requires_grad=True)  # (B=1, N=2, d=2), codes 0 and 1
    out = q(z)
    out.loss.backward()
    e = q.weight.detach()[[0, 1]]
    # d/dz β||z − sg(e)||² = 2β(z − e);  the codebook term sends nothing to z
    torch.testing.assert_close(z.grad[0], 2 * beta * (z.detach()[0] - e))
    # d/de ||sg(z) − e||² = 2(e − z), for the used codes only; β does not reach the codebook
    expected = torch.zeros(3, 2)
    expected[[0, 1]] = 2 * (e - z.detach()[0])
    torch.testing.assert_close(q.weight.grad, expected)


def test_vq_straight_through_passes_the_downstream_gradient_unchanged():
    q = tiny_vq(ema=True)
    z = torch.randn(2, 4, 2, requires_grad=True)
    out = q(z)
    upstream = torch.randn_like(out.z_q)
    torch.autograd.grad(out.z_q, z, upstream)[0]
    torch.testing.assert_close(torch.autograd.grad(out.z_q, z, upstream)[0], upstream)


def test_ema_update_follows_the_laplace_smoothed_formula():
    decay, eps = 0.9, 1e-5
    q = VectorQuantizer(2, 3, ema=True, decay=decay, eps=eps, init="normal", channel_last=True)
    codes = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]])
    q.weight.copy_(codes)
    q.weight_avg.copy_(codes)
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2], [1.1, 0.8]]])  # codes 0, 1, 1
    q.train()
    q(z)
    counts = torch.tensor([1.0, 2.0, 0.0])
    sums = torch.tensor([[0.2, 0.1], [2.0, 2.0], [0.0, 0.0]])
    size = decay * torch.ones(3) + (1 - decay) * counts
    avg = decay * codes + (1 - decay) * sums
    smoothed = (size + eps) / (size.sum() + 3 * eps) * size.sum()
    torch.testing.assert_close(q.cluster_size, size)
    torch.testing.assert_close(q.weight, avg / smoothed[:, None])


def test_an_unused_code_decays_to_zero_not_to_subnormal_floats():
    """Subnormal code vectors make the distance product ~80× slower on a CPU (VQ-VAE-2's unused
    top-layer codes reach them after ~8,700 steps at decay 0.99)."""
    q = VectorQuantizer(2, 2, decay=0.5, init="normal", channel_last=True)
    q.weight.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    q.weight_avg.copy_(q.weight)
    z = torch.zeros(1, 4, 2)  # code 0 only
    q.train()
    for step in range(1, 160):
        q(z)
        assert ((q.weight == 0) | (q.weight.abs() >= torch.finfo(torch.float32).tiny)).all(), step
    assert (q.weight_avg[1] == 0).all() and (q.weight[1] == 0).all()


def test_kmeans_init_lowers_distortion_below_data_init():
    torch.manual_seed(0)
    centres = torch.randn(8, 2) * 5
    z = (centres[torch.arange(800) % 8] + 0.3 * torch.randn(800, 2))[None]  # (1, 800, 2)

    def distortion(init):
        torch.manual_seed(1)
        q = VectorQuantizer(2, 8, init=init, decay=1.0, channel_last=True)
        q.train()
        q(z)
        assert bool(q.initialized)
        return float(((z - q.embed(q(z).indices)) ** 2).sum())

    assert distortion("kmeans") < 0.7 * distortion("data")


def test_dead_codes_are_restarted_with_encoder_outputs():
    torch.manual_seed(0)
    q = VectorQuantizer(2, 4, init="normal", decay=0.5, dead_code_threshold=0.5, channel_last=True)
    q.weight.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [200.0, 0.0], [0.0, 300.0]]))
    z = 0.01 * torch.randn(1, 64, 2)  # only code 0 is ever the nearest
    q.train()
    q(z)
    q(z)  # codes 1..3 decay to 0.25 < 0.5 and are replaced by batch vectors
    assert q.weight[1:].abs().max() < 1.0
    assert (q.cluster_size[1:] == 0.5).all()


# ----------------------------------------------------------------------------- SQ math


def tiny_sq(**kwargs) -> StochasticQuantizer:
    q = StochasticQuantizer(2, 3, channel_last=True, **kwargs)
    q.weight.data.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [-2.0, 0.0]]))
    return q


def manual_sq_terms(z_rows, codebook, s2, batch, sample=None):
    dist = ((z_rows[:, None, :] - codebook[None]) ** 2).sum(-1)  # (N, K)
    log_p = torch.log_softmax(-dist / (2 * s2), dim=-1)
    discrete = (log_p.exp() * log_p).sum() / batch
    z_q = codebook[dist.argmin(-1)] if sample is None else sample @ codebook
    continuous = ((z_rows - z_q) ** 2).sum() / (2 * s2) / batch
    return discrete, continuous, log_p


@pytest.mark.parametrize("var_floor", [False, True])
def test_sq_eval_loss_against_hand_computed_values(var_floor):
    q = tiny_sq(init_variance=0.5, var_floor=var_floor)
    q.eval()
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2]], [[-1.5, 0.5], [0.6, 0.7]]])
    out = q(z)
    s2 = 0.5 + (1.0 if var_floor else 0.0)
    discrete, continuous, _ = manual_sq_terms(z.reshape(-1, 2), q.weight.detach(), s2, batch=2)
    assert out.indices.tolist() == [[0, 1], [2, 1]]
    assert out.losses["discrete"].item() == pytest.approx(float(discrete), rel=1e-6)
    assert out.losses["continuous"].item() == pytest.approx(float(continuous), rel=1e-6)
    assert out.loss.item() == pytest.approx(float(discrete + continuous), rel=1e-6)
    assert out.losses["discrete"].item() <= 0  # negative entropy, the n log K constant dropped


def test_sq_training_sample_is_the_gumbel_softmax_mixture():
    q = tiny_sq(init_variance=0.5, temperature=0.7)
    q.train()
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2], [-1.5, 0.5]]])
    torch.manual_seed(11)
    out = q(z)
    torch.manual_seed(11)
    gumbel = gumbel_noise((3, 3), torch.float32, torch.device("cpu"))
    _, _, log_p = manual_sq_terms(z[0], q.weight.detach(), 0.5, batch=1)
    sample = torch.softmax((log_p + gumbel) / 0.7, dim=-1)
    discrete, continuous, _ = manual_sq_terms(z[0], q.weight.detach(), 0.5, batch=1, sample=sample)
    torch.testing.assert_close(out.z_q[0], sample @ q.weight.detach())
    assert out.loss.item() == pytest.approx(float(discrete + continuous), rel=1e-5)
    torch.testing.assert_close(out.probs, log_p.exp())


def test_sq_gradients_follow_the_formula_with_no_stop_gradient():
    """d loss / d (z, codebook, log s²) equal those of the SPEC formula written out (itself
    checked against finite differences), and none is zero."""
    q = tiny_sq(init_variance=0.7).double()
    q.train()
    z = torch.tensor([[[0.2, 0.1], [0.9, 1.2], [-1.5, 0.5]]], dtype=torch.float64, requires_grad=True)

    def formula(z_in, weight, log_s2):
        torch.manual_seed(5)
        gumbel = gumbel_noise((3, 3), torch.float64, torch.device("cpu"))
        s2 = log_s2.exp()
        rows = z_in.reshape(-1, 2)
        log_p = torch.log_softmax(-((rows[:, None] - weight[None]) ** 2).sum(-1) / (2 * s2), -1)
        sample = torch.softmax(log_p + gumbel, -1)
        return (log_p.exp() * log_p).sum() + ((rows - sample @ weight) ** 2).sum() / (2 * s2)

    inputs = (z, q.weight, q.log_s2)
    torch.autograd.gradcheck(formula, inputs)
    torch.manual_seed(5)
    ours = torch.autograd.grad(q(z).loss, inputs)
    reference = torch.autograd.grad(formula(*inputs), inputs)
    for a, b in zip(ours, reference):
        torch.testing.assert_close(a, b)
        assert a.abs().sum() > 0


@pytest.mark.parametrize("variance", ["gaussian_1", "gaussian_2", "gaussian_3"])
def test_fused_training_step_equals_the_autograd_path(variance):
    """Values and every gradient (input, codebook, log s², predicted log-variance, and a gradient
    arriving through the posterior probabilities) agree with plain autograd, in float64."""
    torch.manual_seed(0)
    z = torch.randn(2, DIM, 3, 3, dtype=torch.float64)
    log_var = {"gaussian_1": None, "gaussian_2": torch.randn(2), "gaussian_3": torch.randn(2, 1, 3, 3)}[variance]
    results = []
    for fused in (True, False):
        q = StochasticQuantizer(DIM, K, variance=variance, init_variance=0.8, temperature=0.6, fused=fused).double()
        torch.manual_seed(1)
        q.weight.data.normal_()
        inputs = [z.clone().requires_grad_(True), q.weight, q.log_s2]
        if log_var is not None:
            inputs.append(log_var.double().clone().requires_grad_(True))
        torch.manual_seed(2)
        out = q(inputs[0], log_var=inputs[3] if log_var is not None else None)
        probe = torch.randn(out.probs.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
        objective = out.loss + (out.z_q * out.z_q.detach().flip(0)).sum() + (out.probs * probe).sum()
        results.append((out, torch.autograd.grad(objective, inputs)))
    (fused_out, fused_grads), (plain_out, plain_grads) = results
    torch.testing.assert_close(fused_out.z_q, plain_out.z_q)
    torch.testing.assert_close(fused_out.loss, plain_out.loss)
    torch.testing.assert_close(fused_out.probs, plain_out.probs)
    assert torch.equal(fused_out.indices, plain_out.indices)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b)


def test_sq_types_two_to_four_use_the_predicted_variance():
    torch.manual_seed(0)
    z = torch.randn(2, DIM, 3, 3)
    base = math.log(0.5)
    checks = {
        "gaussian_2": torch.randn(2),
        "gaussian_3": torch.randn(2, 1, 3, 3),
        "gaussian_4": torch.randn(2, DIM, 3, 3),
    }
    for kind, log_var in checks.items():
        q = StochasticQuantizer(DIM, K, variance=kind, init_variance=0.5)
        q.eval()
        out = q(z, log_var=log_var)
        rows = z.movedim(1, -1).reshape(-1, DIM)
        s2 = (log_var.reshape(2, *([1] * 3)) if kind == "gaussian_2" else log_var).exp() + math.exp(base)
        s2_rows = s2.expand(2, DIM if kind == "gaussian_4" else 1, 3, 3).movedim(1, -1).reshape(-1, s2.shape[1] if kind != "gaussian_2" else 1)
        dist = ((rows[:, None] - q.weight.detach()[None]) ** 2 / (2 * s2_rows[:, None])).sum(-1)
        log_p = torch.log_softmax(-dist, -1)
        idx = dist.argmin(-1)
        continuous = ((rows - q.weight.detach()[idx]) ** 2 / (2 * s2_rows)).sum() / 2
        assert torch.equal(out.indices.reshape(-1), idx), kind
        assert out.loss.item() == pytest.approx(float((log_p.exp() * log_p).sum() / 2 + continuous), rel=1e-5), kind


def test_vmf_loss_against_hand_computed_values():
    q = tiny_sq(variance="vmf", init_kappa=5.0)
    q.weight.data.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]))
    q.eval()
    z = torch.tensor([[[2.0, 0.5], [0.1, 3.0]]])
    out = q(z)
    x = F.normalize(z[0], dim=-1)
    codes = F.normalize(q.weight.detach(), dim=-1)
    log_p = torch.log_softmax(5.0 * x @ codes.t(), -1)
    idx = log_p.argmax(-1)
    expected = (log_p.exp() * log_p).sum() + 5.0 * (1 - (x * codes[idx]).sum(-1)).sum()
    assert out.loss.item() == pytest.approx(float(expected), rel=1e-5)
    assert float(out.stats["kappa"]) == pytest.approx(5.0, rel=1e-5)


# ----------------------------------------------------------------------------- residual stacks


def test_residual_sq_continuous_term_uses_the_summed_variances():
    torch.manual_seed(0)
    layers = [StochasticQuantizer(DIM, K, init_variance=v, channel_last=True) for v in (0.5, 2.0, 4.0)]
    rsq = ResidualQuantizer(layers)
    rsq.eval()
    z = torch.randn(2, 5, DIM)
    out = rsq(z)
    total = sum(layer.embed(out.indices[..., l]) for l, layer in enumerate(layers))
    continuous = ((z - total) ** 2).sum() / (2 * 6.5) / 2
    assert out.losses["continuous"].item() == pytest.approx(continuous.item(), rel=1e-5)
    discrete = sum(depth.losses["discrete"].item() for depth in out.depths)
    assert out.loss.item() == pytest.approx(discrete + continuous.item(), rel=1e-5)
    assert all("continuous" not in depth.losses for depth in out.depths)


@pytest.mark.parametrize("name", ["rq", "rsq"])
def test_residual_partial_sums_and_embedding(name):
    q, z = make(name, "bchw")
    q(z)
    q.eval()
    out = q(z, return_partial_sums=True)
    assert len(out.partial_sums) == q.depth
    for m in range(1, q.depth + 1):
        torch.testing.assert_close(out.partial_sums[m - 1], q.embed(out.indices, upto=m), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.partial_sums[-1], out.z_q)
    # each layer quantises what the layers before it left over
    residual = z
    for l, layer in enumerate(q.layers):
        assert torch.equal(layer(residual).indices, out.indices[..., l])
        residual = residual - layer.embed(out.indices[..., l])


def test_residual_vq_does_not_multiply_the_encoder_gradient_by_depth():
    q, z = make("rq", "bchw")
    z.requires_grad_(True)
    out = q(z)
    upstream = torch.randn_like(z)
    torch.testing.assert_close(torch.autograd.grad(out.z_q, z, upstream)[0], upstream)


def test_residual_stacks_reject_mixed_or_mismatched_layers():
    with pytest.raises(ValueError, match="one-layer quantizers of one kind"):
        ResidualQuantizer([VectorQuantizer(DIM, K), StochasticQuantizer(DIM, K)])
    with pytest.raises(ValueError, match="same dim"):
        ResidualQuantizer([VectorQuantizer(DIM, K), VectorQuantizer(DIM + 1, K)])


def test_shared_codebook_is_one_tensor():
    q, _ = make("rq_shared", "bchw")
    assert all(layer.weight is q.layers[0].weight for layer in q.layers)
    buffer = io.BytesIO()
    torch.save(q.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert torch.equal(state["layers.0.weight"], state["layers.2.weight"])


@pytest.mark.parametrize("variance", ["gaussian_1", "gaussian_3", "gaussian_4", "vmf"])
def test_sq_eval_without_gradients_is_chunked_and_equals_the_full_computation(variance, monkeypatch):
    torch.manual_seed(0)
    q = StochasticQuantizer(DIM, K, variance=variance, init_variance=0.5)
    q.eval()
    z = torch.randn(3, DIM, 5, 5)
    log_var = {"gaussian_3": torch.randn(3, 1, 5, 5), "gaussian_4": torch.randn(3, DIM, 5, 5)}.get(variance)
    full = q(z, log_var=log_var)  # gradients enabled: the one-matrix path
    monkeypatch.setattr("hqvae.quantizers.sq.DISTANCE_CHUNK_ELEMENTS", K * 7)  # 7 rows per chunk
    with torch.no_grad():
        chunked = q(z, log_var=log_var)
    assert torch.equal(chunked.indices, full.indices)
    torch.testing.assert_close(chunked.loss, full.loss.detach())
    torch.testing.assert_close(chunked.z_q, full.z_q.detach())


@pytest.mark.slow
def test_65536_codes_against_262144_vectors_fit_in_memory():
    """The full distance matrix would take 68 GB; chunking keeps it to 64 MB at a time."""
    torch.manual_seed(0)
    z = torch.randn(64, 4096, 64)  # 262,144 vectors, channel last
    for q in (VectorQuantizer(64, 65536, init="normal", channel_last=True),
              StochasticQuantizer(64, 65536, channel_last=True)):
        q.eval()
        with torch.no_grad():
            out = q(z)
        assert out.indices.shape == (64, 4096) and torch.isfinite(out.loss)
