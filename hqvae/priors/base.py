"""What every autoregressive prior shares: its config (:class:`PriorConfig`, :class:`TransformerConfig`),
the transformer blocks with a KV cache (:class:`Block`, :class:`KVCache`), the base class (:class:`PriorBase`:
labels, NLL, generation order, files) and the registry of prior kinds (:func:`register_prior`,
:func:`build_prior`, :func:`load_prior`).

Shapes: tokens (B, T) long with T = layout.length; labels (B,) long in [0, num_classes] where
num_classes means "no class" (the only value of an unconditional prior); logits: one
(B, n_l, K_l) tensor per layer. Weights are saved as ``prior.safetensors`` + ``config.json``.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
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
PRIORS: dict[str, type["PriorBase"]] = {}  # kind -> class (register_prior)


@dataclass(kw_only=True)
class TransformerConfig:
    """The transformer of a prior, declared once (:class:`PriorConfig` and the ``model`` section of
    ``hqvae prior train`` extend it). kind: a :func:`register_prior` name ("flat": ``CodePrior``, one
    causal sequence over all tokens; "depth": ``DepthPrior``, a spatial transformer over positions and a
    ``depth_layers``-block depth transformer over each position's codes); d_model, n_layer, n_head:
    width, blocks and heads; dropout: on attention and residual branches."""

    kind: str = "flat"
    depth_layers: int = 1
    d_model: int = 128
    n_layer: int = 4
    n_head: int = 4
    dropout: float = 0.0

    extra_kinds = ()  # the kinds it takes besides the registered ones

    def validate(self) -> None:
        if self.d_model % self.n_head:
            raise ValueError(f"model.d_model={self.d_model} must be divisible by model.n_head={self.n_head}")
        for key in ("d_model", "n_layer", "n_head", "depth_layers"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key} must be ≥ 1, got {getattr(self, key)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must lie in [0, 1), got {self.dropout}")
        kinds = [*self.extra_kinds, *PRIORS]
        if self.kind not in kinds:
            raise ValueError(f"model.kind must be one of {', '.join(kinds)} (more: hqvae.priors.register_prior), "
                             f"got {self.kind!r}")


@dataclass
class PriorConfig(TransformerConfig):
    """A prior: its transformer, the layout of its codes (code_shapes / codebook_sizes, see
    ``hqvae.priors.layout``) and num_classes (0: unconditional, else the class labels it takes)."""

    code_shapes: list[list[int]]
    codebook_sizes: list[int]
    num_classes: int = field(default=0, kw_only=True)  # every field but the layout by keyword

    @property
    def layout(self) -> CodeLayout:
        return CodeLayout.of(self.code_shapes, self.codebook_sizes)


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

    def _init_weights(self, residual_layers: int) -> None:
        for module in self.modules():  # N(0, 0.02) weights of embeddings and linear layers, zero biases
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
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


def register_prior(kind: str):
    """Class decorator: ``PriorConfig(kind=kind)`` builds this :class:`PriorBase` subclass
    (``cls(config)``); ``hqvae prior train model.kind=<kind>`` trains one."""
    def register(cls: type[PriorBase]) -> type[PriorBase]:
        if kind in PRIORS or kind == "auto":
            raise ValueError(f"a prior kind {kind!r} is already registered ({', '.join(PRIORS)}, auto)")
        PRIORS[kind] = cls
        return cls
    return register


def build_prior(config: PriorConfig) -> PriorBase:
    """The prior of ``config.kind`` (see :func:`register_prior`)."""
    config.validate()
    return PRIORS[config.kind](config)


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
