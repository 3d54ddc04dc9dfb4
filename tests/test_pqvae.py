"""Tests of the PQ-VAE (SPEC §4): the model contract, prefix decoding, bit accounting, the
entropy terms against hand-computed values, the loss switches, and the analysis functions."""
from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import hqvae
from hqvae.metrics.linear_probe import fit_linear_probe
from hqvae.models import PQConfig, PQVAE, model_config
from hqvae.models.pqvae import entropy_terms
from hqvae.evaluate import evaluate
from hqvae.metrics.progressive import linear_probe, prefix_bits, token_statistics
from hqvae.report.plots import plot_probe, plot_rate_distortion

SIZE = 16  # ÷4 -> 4×4 grid; dim 8 -> z ∈ R^128
TINY = dict(hidden=16, dim=8, depth=3, groups=2, codebook_size=8, code_dim=4)
BATCH = 4
VARIANTS = {
    "pqvae": ("pqvae", {}),
    "pqvae-raw": ("pqvae", {"code_dim": None, "groups": 1}),
    "pqvae-elbo-arelbo": ("pqvae", {"entropy_sign": "elbo", "recon_loss": "arelbo"}),
    "global_rvq": ("global_rvq", {}),
}


def tiny(name: str = "pqvae", in_channels: int = 3, **overrides) -> PQVAE:
    torch.manual_seed(0)
    return hqvae.create_model(name, in_channels=in_channels, image_size=SIZE, **{**TINY, **overrides})


def variant(key: str) -> PQVAE:
    name, overrides = VARIANTS[key]
    return tiny(name, **overrides)


def batch(channels: int = 3, height: int = SIZE, width: int = SIZE, seed: int = 1, size: int = BATCH) -> torch.Tensor:
    return torch.rand(size, channels, height, width, generator=torch.Generator().manual_seed(seed))


def trained_step(model: PQVAE, x: torch.Tensor) -> None:
    """One training forward, so that BatchNorm statistics move off their initial values."""
    model.train()
    model(x)


def same_weights(model: PQVAE, **changes) -> PQVAE:
    """A model with ``changes`` applied to the config and ``model``'s weights, in eval mode."""
    other = PQVAE(replace(model.config, **changes))
    other.load_state_dict(model.state_dict())
    return other.eval()


def sum_of_terms(terms: dict[str, torch.Tensor]) -> torch.Tensor:
    return sum(value for key, value in terms.items() if key != "mse")


def hand_steps(model: PQVAE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eval-mode steps recomputed in float64 from the weights (factorised codes):
    r_0 = z; u = normalize(W_in r); logits = κ·⟨u, ê⟩; k* = argmax; r −= W_out ê_k*.
    Returns (tokens (B, L, G), log q (B, L, G, K), code images (B, L, G, D_g))."""
    quantizer = model.quantizer
    with torch.no_grad():
        model.eval()
        residual = model.global_vectors(x).double()
        tokens, log_probs, images = [], [], []
        for step in range(model.config.depth):
            u = F.normalize(torch.einsum("bgn,gnd->bgd", residual, quantizer.project_in[step].double()), dim=-1)
            codes = F.normalize(quantizer.weight[step].double(), dim=-1)  # (G, K, d)
            logits = torch.einsum("bgd,gkd->bgk", u, codes)
            if model.stochastic:
                logits = logits * quantizer.log_scale[step].double().exp()
            chosen = logits.argmax(-1)
            image = torch.einsum("bgd,gdn->bgn", codes[torch.arange(codes.shape[0]), chosen],
                                 quantizer.project_out[step].double())
            tokens.append(chosen)
            log_probs.append(logits.log_softmax(-1))
            images.append(image)
            residual = residual - image
    return torch.stack(tokens, 1), torch.stack(log_probs, 1), torch.stack(images, 1)


def reference_entropies(log_probs: torch.Tensor) -> tuple[float, float]:
    """Σ_l Σ_g mean_b H(q) and Σ_l Σ_g H(mean_b q), with explicit loops."""
    batch_size, depth, groups, _ = log_probs.shape
    conditional = marginal = 0.0
    for step in range(depth):
        for group in range(groups):
            q = log_probs[:, step, group].exp().double()
            conditional += sum(float(-(q[b] * q[b].log()).sum()) for b in range(batch_size)) / batch_size
            mean = q.mean(0)
            marginal += float(-(mean * mean.log()).sum())
    return conditional, marginal


# ----------------------------------------------------------------------------- registry and contract


def test_registered_and_configured():
    assert {"pqvae", "global_rvq"} <= set(hqvae.list_models())
    config = model_config("pqvae", 1, 28)
    assert isinstance(config, PQConfig) and config.grid == (7, 7) and config.hidden == 64
    assert (config.lambda_h, config.gamma, config.lambda_prefix, config.entropy_sign) == (0.05, 1.0, 1.0, "pq")
    assert config.train_defaults["temperature_init"] == 1.0
    control = model_config("global_rvq", 3, 32)
    assert (control.quantizer, control.lambda_h, control.lambda_prefix) == ("vq", 0.0, 0.0)
    assert "temperature_init" not in control.train_defaults


@pytest.mark.parametrize("key", VARIANTS)
def test_forward_shapes_and_loss(key):
    model = variant(key)
    x = batch()
    out = model(x)
    groups, depth = model.config.groups, model.config.depth
    assert out.x_hat.shape == x.shape and torch.isfinite(out.x_hat).all()
    assert len(out.codes) == model.num_layers == depth == len(model.config.layers)
    assert [tuple(code.shape) for code in out.codes] == [(BATCH, *shape) for shape in model.code_shapes()]
    assert all(code.dtype == torch.long and code.max() < model.config.codebook_size for code in out.codes)
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    torch.testing.assert_close(out.loss.detach(), sum_of_terms(out.terms), rtol=1e-5, atol=1e-4)
    expected_terms = {"recon", "prefix_recon", "mse"}
    expected_terms |= {"cond_entropy", "marginal_entropy"} if model.stochastic else {"commitment", "codebook"}
    assert set(out.terms) == expected_terms
    assert all(f"perplexity/{step}" in out.logs for step in range(depth))
    if model.stochastic:
        assert {"cond_entropy", "marginal_entropy", "mi", "kappa"} <= set(out.logs)
    assert [tuple(code.shape) for code in model.encode(x)] == [(BATCH, groups)] * depth


@pytest.mark.parametrize("key", VARIANTS)
def test_every_parameter_gets_a_gradient(key):
    model = variant(key)
    model(batch()).loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{name} has a non-finite gradient"
        assert param.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("key", VARIANTS)
def test_eval_is_deterministic_and_encode_decode_matches_forward(key):
    model = variant(key)
    x = batch()
    trained_step(model, x)
    model.eval()
    first, second = model(x), model(x)
    assert torch.equal(first.x_hat, second.x_hat) and torch.equal(first.loss, second.loss)
    tokens = model.encode(x)
    assert all(torch.equal(a, b) for a, b in zip(tokens, first.codes, strict=True))
    assert torch.equal(model.decode(tokens), first.x_hat)


def test_from_pretrained_tells_models_apart(tmp_path):
    hqvae.create_model("rsqvae", 3, SIZE, hidden=16, codebook_size=8, dim=8).save_pretrained(tmp_path / "rsq")
    with pytest.raises(ValueError, match="not a PQVAE"):
        PQVAE.from_pretrained(tmp_path / "rsq")
    tiny().save_pretrained(tmp_path / "pq")
    tiny(depth=2).save_pretrained(tmp_path / "other")
    (tmp_path / "other" / "model.safetensors").replace(tmp_path / "pq" / "model.safetensors")
    with pytest.raises(ValueError, match="do not belong.*model_type 'pqvae'"):
        hqvae.from_pretrained(tmp_path / "pq")


def test_bad_inputs_raise_with_the_fix():
    model = tiny()
    with pytest.raises(ValueError, match=r"expected 3 input channel.*in_channels=1"):
        model(batch(channels=1))
    with pytest.raises(ValueError, match=r"differs from the model's 16×16.*image_size=\(20, 16\)"):
        model(batch(height=20))
    with pytest.raises(ValueError, match=r"differs"):
        model.encode(batch(width=12))
    with pytest.raises(ValueError, match=r"4-D batch.*unsqueeze"):
        model(batch()[0])
    with pytest.raises(ValueError, match=r"floating-point"):
        model((batch() * 255).long())
    tokens = model.encode(batch())
    with pytest.raises(ValueError, match=r"codes\[1\] must be long tokens of shape \(B, 2\)"):
        model.decode([tokens[0], tokens[1][:, :1]])
    with pytest.raises(ValueError, match="one long tensor per layer"):
        model.decode(torch.cat(tokens, 1))
    with pytest.raises(ValueError, match="upto"):
        model.decode(tokens[:2], upto=3)
    with pytest.raises(ValueError, match=r"lie in \[0, 8\)"):
        model.decode([code + 8 for code in tokens])
    with pytest.raises(ValueError, match="long tokens"):
        model.decode([code.float() for code in tokens])
    with pytest.raises(ValueError, match=r"unknown override.*'no_such_key'.*valid keys:.*codebook_size"):
        hqvae.create_model("pqvae", no_such_key=1)


def test_config_checks_and_round_trip():
    config = model_config("pqvae", 1, 28, **TINY)
    assert PQConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match=r"unknown PQConfig key.*'colour'"):
        PQConfig.from_dict({**config.to_dict(), "colour": 1})
    with pytest.raises(ValueError, match="groups=3 must divide dim=8"):
        model_config("pqvae", 1, 28, dim=8, groups=3)
    with pytest.raises(ValueError, match="set lambda_h=0"):
        model_config("global_rvq", 1, 28, lambda_h=0.1)
    with pytest.raises(ValueError, match="code_dim"):
        model_config("global_rvq", 1, 28, code_dim=None)
    with pytest.raises(ValueError, match="entropy_sign"):
        model_config("pqvae", 1, 28, entropy_sign="up")
    with pytest.raises(ValueError, match="not divisible by downsample=4"):
        model_config("pqvae", 1, 30)


def test_set_temperature():
    model = tiny()
    model.set_temperature(0.25)
    assert model.quantizer.temperature == 0.25
    with pytest.raises(ValueError):
        model.set_temperature(0.0)


# ----------------------------------------------------------------------------- token math and prefixes


@pytest.mark.parametrize("key", ["pqvae", "global_rvq"])
def test_tokens_are_the_hand_computed_residual_steps(key):
    model = variant(key)
    x = batch()
    trained_step(model, x)
    tokens, log_probs, _ = hand_steps(model, x)
    assert torch.equal(torch.stack(model.encode(x), 1), tokens)
    if model.stochastic:
        got = model.token_posteriors(x).log_probs
        torch.testing.assert_close(got.double(), log_probs, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("key", ["pqvae", "pqvae-raw", "global_rvq"])
def test_prefix_decoding_equals_decoding_the_partial_sum(key):
    model = variant(key)
    x = batch()
    trained_step(model, x)
    model.eval()
    tokens = model.encode(x)
    groups, depth = model.config.groups, model.config.depth
    steps = torch.stack(tokens, 1)  # (B, L, G)
    quantizer = model.quantizer
    partial = torch.zeros(BATCH, model.config.latent_size)
    for m in range(1, depth + 1):
        codes = quantizer.weight[m - 1].detach()[torch.arange(groups), steps[:, m - 1]]  # (B, G, d)
        if model.config.factorised:
            image = torch.einsum("bgd,gdn->bgn", F.normalize(codes, dim=-1), quantizer.project_out[m - 1].detach())
        else:
            image = codes
        partial = partial + image.reshape(BATCH, -1)
        with torch.no_grad():
            expected = model.decode_latents(partial.reshape(BATCH, model.config.dim, *model.config.grid))
        torch.testing.assert_close(model.decode(tokens, upto=m), expected, rtol=0, atol=1e-6)
        assert torch.equal(model.decode(tokens, upto=m), model.decode(tokens[:m]))
    progressive = model.decode_progressive(tokens)
    assert len(progressive) == depth and torch.equal(progressive[-1], model.decode(tokens))


def test_eval_prefix_term_is_the_stratified_prefix_reconstruction():
    """In eval mode item b is reconstructed from m_b = 1 + (b mod L) steps."""
    model = tiny(lambda_prefix=0.7)
    x = batch(size=5)
    trained_step(model, x)
    model.eval()
    out = model(x)
    tokens = model.encode(x)
    depth = model.config.depth
    x_prefix = torch.cat([model.decode([code[b : b + 1] for code in tokens], upto=b % depth + 1) for b in range(5)])
    expected = 0.7 * (x_prefix - x).pow(2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(out.terms["prefix_recon"], expected, rtol=1e-5, atol=1e-5)


def test_training_prefix_lengths_are_uniform():
    model = tiny(depth=4)
    model.train()
    torch.manual_seed(3)
    lengths = torch.cat([model._prefix_mask(1000, torch.device("cpu")).sum(1) for _ in range(8)])
    counts = torch.bincount(lengths.long(), minlength=5)[1:].float() / lengths.numel()
    assert counts.min() > 0.22 and counts.max() < 0.28


# ----------------------------------------------------------------------------- bits


def test_bit_accounting():
    model = tiny()  # L = 3, G = 2, K = 8: 6 bits per step
    assert [model.bits(m) for m in (1, 2, 3)] == [6.0, 12.0, 18.0] and model.bits() == 18.0
    assert model.bits() == 3 * 2 * math.log2(8)  # DiscreteAutoencoder.bits: Σ_l G·log2 K
    x = batch()
    points = evaluate(model, [(x, None)])["coarse_to_fine"]
    assert [p["layers"] for p in points] == [1, 2, 3] and [p["bits_per_item"] for p in points] == [6.0, 12.0, 18.0]
    assert prefix_bits(model, 2, model.encode(x)) == 12.0
    rsq = hqvae.create_model("rsqvae", 3, SIZE, hidden=16, codebook_size=16, dim=8, depth=3)  # 4×4 grid, 4 bits
    codes = rsq.encode(x)
    assert [prefix_bits(rsq, m, codes) for m in (1, 2, 3)] == [64.0, 128.0, 192.0]
    assert [p["bits_per_item"] for p in evaluate(rsq, [x])["coarse_to_fine"]] == [64.0, 128.0, 192.0]


# ----------------------------------------------------------------------------- entropy terms


def test_entropy_terms_on_hand_made_posteriors():
    # B = 2 items, L = 2 steps, G = 1, K = 2:
    # step 0: q = [1, 0] and [0, 1] -> E H = 0, H(E q) = log 2 (one bit of MI)
    # step 1: q = [½, ½] twice      -> E H = log 2, H(E q) = log 2 (no MI)
    probs = torch.tensor([[[[1.0, 0.0]], [[0.5, 0.5]]], [[[0.0, 1.0]], [[0.5, 0.5]]]])
    conditional, marginal = entropy_terms(probs.log().clamp_min(-1e3))  # finite, as log_softmax gives
    torch.testing.assert_close(conditional, torch.tensor([0.0, math.log(2)]))
    torch.testing.assert_close(marginal, torch.tensor([math.log(2), math.log(2)]))
    # uneven: q = [0.9, 0.1] and [0.5, 0.5]
    probs = torch.tensor([[[[0.9, 0.1]]], [[[0.5, 0.5]]]])
    conditional, marginal = entropy_terms(probs.log())
    h = lambda p: -sum(v * math.log(v) for v in p)  # noqa: E731
    torch.testing.assert_close(conditional, torch.tensor([(h([0.9, 0.1]) + h([0.5, 0.5])) / 2]))
    torch.testing.assert_close(marginal, torch.tensor([h([0.7, 0.3])]))


def test_entropy_terms_have_finite_gradients_when_a_code_is_out_of_reach():
    logits = torch.tensor([[[[0.0, -200.0, 1.0]]], [[[0.5, -200.0, 0.0]]]], requires_grad=True)  # code 1: q = 0
    conditional, marginal = entropy_terms(logits.log_softmax(-1))
    (conditional.sum() - marginal.sum()).backward()
    assert torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("sign", ["pq", "elbo"])
def test_entropy_terms_of_the_model_match_the_hand_computed_posterior(sign):
    model = tiny(lambda_h=0.3, gamma=2.0, entropy_sign=sign)
    x = batch()
    trained_step(model, x)
    model.eval()
    out = model(x)
    _, log_probs, _ = hand_steps(model, x)
    conditional, marginal = reference_entropies(log_probs)
    assert out.logs["cond_entropy"].item() == pytest.approx(conditional, rel=1e-4)
    assert out.logs["marginal_entropy"].item() == pytest.approx(marginal, rel=1e-4)
    assert out.logs["mi"].item() == pytest.approx(marginal - conditional, rel=1e-3, abs=1e-4)
    factor = 1.0 if sign == "pq" else -1.0
    assert out.terms["cond_entropy"].item() == pytest.approx(0.3 * factor * conditional, rel=1e-4)
    assert out.terms["marginal_entropy"].item() == pytest.approx(-0.3 * 2.0 * marginal, rel=1e-4)
    per_step = sum(out.logs[f"cond_entropy/{step}"] for step in range(model.config.depth))
    torch.testing.assert_close(per_step, out.logs["cond_entropy"])


def test_token_statistics_match_the_hand_computed_posterior():
    model = tiny()
    x = batch(size=6)
    trained_step(model, x)
    stats = token_statistics(model, [(x[:4], None), (x[4:], None)])  # two batches pooled
    tokens, log_probs, _ = hand_steps(model, x)
    conditional, marginal = reference_entropies(log_probs)
    assert stats["items"] == 6 and stats["nominal_bits"] == 18.0
    assert stats["total"]["cond_entropy_bits"] == pytest.approx(conditional / math.log(2), rel=1e-4)
    assert stats["total"]["marginal_entropy_bits"] == pytest.approx(marginal / math.log(2), rel=1e-4)
    for entry in stats["tokens"]:
        counts = torch.bincount(tokens[:, entry["step"], entry["group"]], minlength=8).double() / 6
        entropy_nats = float(-(counts[counts > 0] * counts[counts > 0].log()).sum())
        assert entry["perplexity"] == pytest.approx(math.exp(entropy_nats), rel=1e-6)
        assert entry["usage"] == pytest.approx(float((counts > 0).double().mean()))
        assert entry["mi_bits"] == pytest.approx(entry["marginal_entropy_bits"] - entry["cond_entropy_bits"])
    assert len(stats["tokens"]) == 6 and len(stats["steps"]) == 3


def test_vq_terms_are_the_hand_computed_commitment_and_codebook_losses():
    model = tiny("global_rvq", beta=0.4)
    x = batch()
    trained_step(model, x)
    model.eval()
    out = model(x)
    quantizer = model.quantizer
    with torch.no_grad():
        residual = model.global_vectors(x).double()
        commitment = 0.0
        for step in range(model.config.depth):
            u = F.normalize(torch.einsum("bgn,gnd->bgd", residual, quantizer.project_in[step].double()), dim=-1)
            codes = F.normalize(quantizer.weight[step].double(), dim=-1)
            chosen = codes[torch.arange(2), torch.einsum("bgd,gkd->bgk", u, codes).argmax(-1)]
            commitment += float((u - chosen).pow(2).sum()) / BATCH
            residual = residual - torch.einsum("bgd,gdn->bgn", chosen, quantizer.project_out[step].double())
    assert out.terms["commitment"].item() == pytest.approx(0.4 * commitment, rel=1e-4)
    assert out.terms["codebook"].item() == pytest.approx(commitment, rel=1e-4)


# ----------------------------------------------------------------------------- loss switches


@pytest.mark.parametrize("kind", ["sse", "arelbo", "mse"])
def test_reconstruction_term(kind):
    model = tiny(recon_loss=kind, lambda_prefix=0.0).eval()
    x = batch()
    out = model(x)
    squared = (out.x_hat.detach().double() - x.double()).pow(2)
    sse = squared.sum((1, 2, 3)).mean()
    expected = {"sse": sse, "arelbo": 0.5 * x[0].numel() * sse.log(), "mse": squared.mean()}[kind]
    torch.testing.assert_close(out.terms["recon"].double(), expected, rtol=1e-5, atol=1e-5)


def switched_terms(**changes) -> tuple[dict, dict, torch.Tensor, torch.Tensor]:
    """(terms of the base model, terms with ``changes``, both losses), same weights and input."""
    base = tiny(lambda_h=0.2, gamma=1.5, lambda_prefix=1.0)
    x = batch()
    trained_step(base, x)
    base.eval()
    out = base(x)
    other = same_weights(base, **changes)(x)
    return out.terms, other.terms, out.loss.detach(), other.loss.detach()


def test_lambda_h_zero_leaves_reconstruction_only():
    base, other, _, loss = switched_terms(lambda_h=0.0)
    assert other["cond_entropy"] == 0 and other["marginal_entropy"] == 0
    assert base["cond_entropy"] != 0 and base["marginal_entropy"] != 0
    for key in ("recon", "prefix_recon", "mse"):
        assert torch.equal(base[key], other[key]), key
    torch.testing.assert_close(loss, other["recon"] + other["prefix_recon"])


def test_lambda_h_scales_both_entropy_terms_only():
    base, other, _, _ = switched_terms(lambda_h=0.6)
    torch.testing.assert_close(other["cond_entropy"], 3 * base["cond_entropy"])
    torch.testing.assert_close(other["marginal_entropy"], 3 * base["marginal_entropy"])
    for key in ("recon", "prefix_recon"):
        assert torch.equal(base[key], other[key]), key


def test_gamma_changes_the_marginal_term_only():
    base, other, _, _ = switched_terms(gamma=0.0)
    assert other["marginal_entropy"] == 0
    for key in ("recon", "prefix_recon", "cond_entropy"):
        assert torch.equal(base[key], other[key]), key


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_lambda_prefix_changes_the_prefix_term_only(weight):
    base, other, base_loss, loss = switched_terms(lambda_prefix=weight)
    torch.testing.assert_close(other["prefix_recon"], weight * base["prefix_recon"])
    for key in ("recon", "cond_entropy", "marginal_entropy"):
        assert torch.equal(base[key], other[key]), key
    torch.testing.assert_close(loss - base_loss, (weight - 1.0) * base["prefix_recon"])


def test_entropy_sign_flips_the_conditional_term_only():
    base, other, base_loss, loss = switched_terms(entropy_sign="elbo")
    torch.testing.assert_close(other["cond_entropy"], -base["cond_entropy"])
    for key in ("recon", "prefix_recon", "marginal_entropy"):
        assert torch.equal(base[key], other[key]), key
    torch.testing.assert_close(loss, base_loss - 2 * base["cond_entropy"])


def test_entropy_sign_sets_the_direction_of_the_posterior_gradient():
    """The two signs' gradients on κ differ by exactly 2·λ_h·∂E H(q)/∂κ, and that derivative is
    negative (a larger κ sharpens q): "pq" pushes the posteriors towards certainty, "elbo" away."""
    x = batch()
    grads = {}
    for sign in ("pq", "elbo"):
        model = tiny(lambda_h=0.5, entropy_sign=sign).eval()
        model(x).loss.backward()
        grads[sign] = model.quantizer.log_scale.grad.clone()
    model = tiny().eval()
    conditional, _ = entropy_terms(model.quantizer(model.global_vectors(x)).log_probs)
    conditional.sum().backward()
    entropy_grad = model.quantizer.log_scale.grad
    assert torch.all(entropy_grad < 0)
    torch.testing.assert_close(grads["pq"] - grads["elbo"], 2 * 0.5 * entropy_grad, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- probe and plots


def test_fit_linear_probe_separates_separable_classes_and_ignores_constant_features():
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(300) % 3
    centres = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    features = centres[labels] + 0.3 * torch.randn(300, 2, generator=generator)
    features = torch.cat([features, torch.full((300, 1), 5.0)], dim=1)  # a constant column
    probe = fit_linear_probe(features, labels)
    assert probe.accuracy(features, labels) == 1.0
    assert torch.isfinite(probe.weight).all()


def test_linear_probe_and_plots(tmp_path):
    model = tiny()
    generator = torch.Generator().manual_seed(2)
    x = torch.rand(16, 3, SIZE, SIZE, generator=generator)
    y = torch.arange(16) % 2
    x[y == 1] *= 0.2  # dark class
    trained_step(model, x[:8])
    data = [(x[:8], y[:8]), (x[8:], y[8:])]
    results = linear_probe(model, data, data, prefix_lengths=[1, 3])
    assert [r["prefix_len"] for r in results] == [1, 3] and [r["bits"] for r in results] == [6.0, 18.0]
    assert all(0.0 <= r["test_accuracy"] <= 1.0 and r["chance"] == 0.5 for r in results)
    with pytest.raises(ValueError, match="labelled"):
        linear_probe(model, [x], [x], [1])
    with pytest.raises(ValueError, match="prefix lengths"):
        linear_probe(model, data, data, [4])
    curve = [{**p, "bits": p["bits_per_item"]} for p in evaluate(model, data)["coarse_to_fine"]]
    assert all({"rmse", "psnr", "ssim", "bits"} <= set(p) for p in curve)
    rd_png = plot_rate_distortion({"pqvae": curve}, tmp_path / "rd.png")
    probe_png = plot_probe({"pqvae": results}, tmp_path / "probe.png")
    assert rd_png.read_bytes()[:4] == probe_png.read_bytes()[:4] == b"\x89PNG"
