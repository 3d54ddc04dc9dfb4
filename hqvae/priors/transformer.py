"""The autoregressive prior: a small causal transformer over a :class:`CodeLayout`'s tokens
(nanoGPT style: pre-LayerNorm blocks, causal self-attention, GELU MLP, learnt embeddings).

Input at position t (predicting token t): the embedding of token t−1 (position 0: a start
vector, one per class when class-conditional, plus one for "no class"), plus a learnt position
embedding of t and a learnt embedding of the layer that token t belongs to. Token embeddings are
per layer (layer l's K_l codes have their own rows), and the output head of layer l predicts
only that layer's K_l codes, so each position's distribution is over its own codebook.

Shapes: tokens (B, T) long with T = layout.length; labels (B,) long in [0, num_classes] where
num_classes means "no class" (the only value of an unconditional prior); logits: one
(B, n_l, K_l) tensor per layer.

Weights are saved as ``prior.safetensors`` + ``config.json`` (``save_pretrained``).
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from hqvae.io import atomic_write, atomic_write_json, read_json
from hqvae.priors.layout import CodeLayout

WEIGHTS_NAME = "prior.safetensors"
CONFIG_NAME = "config.json"
MODEL_TYPE = "hqvae-prior"


@dataclass
class PriorConfig:
    """code_shapes / codebook_sizes: the layout of the codes (see ``hqvae.priors.layout``);
    num_classes: 0 for an unconditional prior, else the number of class labels it can be conditioned
    on; the others as in ``hqvae.priors.config.PriorModelConfig`` (kind "flat": :class:`CodePrior`,
    "depth": :class:`hqvae.priors.depth.DepthPrior`)."""

    code_shapes: list[list[int]]
    codebook_sizes: list[int]
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.0
    num_classes: int = 0
    kind: str = "flat"
    depth_layers: int = 1

    @property
    def layout(self) -> CodeLayout:
        return CodeLayout.of(self.code_shapes, self.codebook_sizes)

    def validate(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model={self.d_model} must be divisible by model.n_head={self.n_head}")
        for key in ("d_model", "n_layer", "n_head"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be ≥ 1, got {getattr(self, key)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        if self.kind not in ("flat", "depth"):
            raise ValueError(f"model.kind must be flat or depth, got {self.kind!r}")
        if self.depth_layers < 1:
            raise ValueError(f"model.depth_layers must be ≥ 1, got {self.depth_layers}")


class KVCache:
    """Keys and values of each of ``blocks`` blocks for incremental decoding: (B, H, T, d_head) each,
    filled up to ``length`` positions; dtype and device those of ``like``."""

    def __init__(self, config: PriorConfig, blocks: int, batch: int, length: int, like: Tensor):
        shape = (batch, config.n_head, length, config.d_model // config.n_head)
        self.keys = [like.new_zeros(shape) for _ in range(blocks)]
        self.values = [like.new_zeros(shape) for _ in range(blocks)]
        self.length = 0


class SelfAttention(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.heads = config.n_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.dropout = config.dropout

    def _split(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        shape = (batch, length, self.heads, width // self.heads)
        return tuple(t.view(shape).transpose(1, 2) for t in (q, k, v))

    def forward(self, x: Tensor) -> Tensor:
        """x (B, T, d) -> (B, T, d), causal."""
        q, k, v = self._split(x)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).reshape(x.shape))

    def step(self, x: Tensor, cache: KVCache, block: int) -> Tensor:
        """x (B, 1, d) at position cache.length -> (B, 1, d), attending to the cached positions and itself."""
        q, k, v = self._split(x)
        t = cache.length
        cache.keys[block][:, :, t:t + 1] = k
        cache.values[block][:, :, t:t + 1] = v
        y = F.scaled_dot_product_attention(q, cache.keys[block][:, :, :t + 1], cache.values[block][:, :, :t + 1])
        return self.proj(y.transpose(1, 2).reshape(x.shape))


class Block(nn.Module):
    def __init__(self, config: PriorConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(config.d_model)
        self.attn = SelfAttention(config)
        self.ln2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, 4 * config.d_model), nn.GELU(),
                                 nn.Linear(4 * config.d_model, config.d_model))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop(self.attn(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))

    def step(self, x: Tensor, cache: KVCache, block: int) -> Tensor:
        x = x + self.attn.step(self.ln1(x), cache, block)
        return x + self.mlp(self.ln2(x))


class PriorBase(nn.Module):
    """What every prior shares: labels, the NLL, the generation order and the files. A subclass
    sets ``config``, ``layout`` and ``start`` and implements ``forward`` (tokens (B, T), labels
    -> one (B, n_l, K_l) logits tensor per layer), ``new_cache`` and ``step``."""

    config: PriorConfig
    layout: CodeLayout

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, 0.0, 0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, 0.0, 0.02)

    def _init_weights(self, residual_layers: int) -> None:
        self.apply(self._init)
        for name, parameter in self.named_parameters():  # GPT-2's scaled init of residual projections
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(parameter, 0.0, 0.02 / math.sqrt(2 * residual_layers))

    @property
    def no_class(self) -> int:
        """The label that means "unconditional"."""
        return self.config.num_classes

    @property
    def order(self) -> Tensor:
        """(T,) long: ``order[t]`` is the index, in the layout's layer-major sequence, of the token
        that ``step`` predicts at its t-th call."""
        return torch.arange(self.layout.length)

    def check_labels(self, labels: Tensor | None, batch: int, device) -> Tensor:
        """(B,) labels, ``no_class`` where None; a ValueError for labels out of range."""
        if labels is None:
            return torch.full((batch,), self.no_class, dtype=torch.long, device=device)
        labels = labels.to(device=device, dtype=torch.long)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > self.no_class):
            if self.config.num_classes == 0:
                raise ValueError("this prior is unconditional: it takes no class; train one with "
                                 "model.class_conditional=true to condition on classes")
            raise ValueError(f"class labels must lie in [0, {self.config.num_classes - 1}] for this prior, got values "
                             f"in [{int(labels.min())}, {int(labels.max())}]")
        return labels

    def nll_bits(self, tokens: Tensor, labels: Tensor | None = None) -> Tensor:
        """tokens (B, T) -> −log2 p of every layer's tokens, summed over its positions: (B, L)."""
        logits = self.forward(tokens, labels)
        targets = tokens.split(self.layout.lengths, dim=1)
        per_layer = [F.cross_entropy(logit.float().transpose(1, 2), target, reduction="none").sum(1)
                     for logit, target in zip(logits, targets)]
        return torch.stack(per_layer, dim=1) / math.log(2)

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``prior.safetensors`` (atomically) into ``directory``."""
        directory = Path(directory)  # created by the atomic writes
        tensors = {name: tensor.detach().contiguous().cpu() for name, tensor in self.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp))
        atomic_write_json(directory / CONFIG_NAME, {"model_type": MODEL_TYPE, **asdict(self.config)})
        return directory


class CodePrior(PriorBase):
    """p(tokens | class) = Π_t p(token_t | tokens_<t, class) over a :class:`CodeLayout`, one
    causal sequence over all tokens (layers coarse to fine, raster order inside a layer)."""

    def __init__(self, config: PriorConfig):
        super().__init__()
        config.validate()
        self.config = config
        layout = config.layout
        self.layout = layout
        d = config.d_model
        self.token_embedding = nn.Embedding(sum(layout.codebook_sizes), d)
        self.start = nn.Embedding(config.num_classes + 1, d)  # row num_classes: no class
        self.position_embedding = nn.Embedding(layout.length, d)
        self.layer_embedding = nn.Embedding(layout.num_layers, d)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(d)
        self.heads = nn.ModuleList(nn.Linear(d, k) for k in layout.codebook_sizes)
        offsets = torch.tensor([0, *layout.codebook_sizes[:-1]]).cumsum(0)
        self.register_buffer("offsets", offsets[layout.layer_of()], persistent=False)  # (T,) per-token offset
        self.register_buffer("layer_ids", layout.layer_of(), persistent=False)  # (T,)
        self._init_weights(config.n_layer)

    # ------------------------------------------------------------------ training / scoring

    def forward(self, tokens: Tensor, labels: Tensor | None = None) -> list[Tensor]:
        """tokens (B, T) -> logits, one (B, n_l, K_l) tensor per layer."""
        labels = self.check_labels(labels, tokens.shape[0], tokens.device)
        length = tokens.shape[1]
        previous = self.token_embedding(tokens[:, :-1] + self.offsets[:-1])  # (B, T-1, d): inputs shifted by one
        x = torch.cat([self.start(labels)[:, None], previous], dim=1)
        x = self.drop(x + self.position_embedding.weight[:length] + self.layer_embedding(self.layer_ids[:length]))
        for block in self.blocks:
            x = block(x)
        x = self.ln_f(x)
        return [head(part) for head, part in zip(self.heads, x.split(self.layout.lengths, dim=1))]

    # ------------------------------------------------------------------ incremental decoding

    def new_cache(self, batch: int) -> KVCache:
        return KVCache(self.config, self.config.n_layer, batch, self.layout.length, self.token_embedding.weight)

    def step(self, previous: Tensor | None, labels: Tensor, cache: KVCache) -> Tensor:
        """Logits (B, K_l) of token t = cache.length given token t−1 (``previous`` (B,) long; None
        at t = 0) and the cache of tokens < t; advances the cache by one position."""
        t = cache.length
        if t >= self.layout.length:
            raise ValueError(f"the sequence is complete ({self.layout.length} tokens)")
        if t == 0:
            x = self.start(labels)
        else:
            x = self.token_embedding(previous + self.offsets[t - 1])
        x = (x + self.position_embedding.weight[t] + self.layer_embedding.weight[self.layer_ids[t]])[:, None]
        for index, block in enumerate(self.blocks):
            x = block.step(x, cache, index)
        cache.length = t + 1
        return self.heads[int(self.layer_ids[t])](self.ln_f(x[:, 0]))


def build_prior(config: PriorConfig) -> PriorBase:
    """The prior of ``config.kind``: :class:`CodePrior` (flat) or ``DepthPrior`` (depth)."""
    if config.kind == "depth":
        from hqvae.priors.depth import DepthPrior

        return DepthPrior(config)
    return CodePrior(config)


def load_prior(directory: str | os.PathLike, device: str | torch.device = "cpu") -> PriorBase:
    """The prior (:func:`build_prior`) from ``config.json`` + ``prior.safetensors`` in ``directory``."""
    directory = Path(directory)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not config_path.is_file() or not weights_path.is_file():
        raise FileNotFoundError(f"{directory} holds no prior checkpoint ({CONFIG_NAME} and {WEIGHTS_NAME}); "
                                f"train one with `hqvae prior train --run runs/<name> --out <prior folder>`")
    data = read_json(config_path, "restore the prior folder from a copy, or train the prior again")
    if data.pop("model_type", None) != MODEL_TYPE:
        raise ValueError(f"{config_path} does not describe an hqvae prior (model_type {MODEL_TYPE!r}); "
                         f"pass a folder made by `hqvae prior train`")
    prior = build_prior(PriorConfig(**data))
    state = load_file(str(weights_path))
    missing, unexpected = prior.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{weights_path} does not match its config.json (missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}); the prior folder is damaged, train it again")
    return prior.to(device).eval()
