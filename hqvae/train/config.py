"""The training configuration: typed sections (data, model, optim, train, temperature, logging), loaded
from YAML with dotted ``key=value`` overrides.

Each section is a dataclass below; its docstring says what every key means. Values come from,
lowest precedence first: the dataclass defaults, the YAML file, its per-model section
(``models: {<name>: {<section>: ...}}`` of a data set's file ``configs/<dataset>.yaml``: the
section of the chosen ``model.name``, merged key by key; a null section means its defaults), the overrides
(``optim.lr=3e-4 model.overrides.codebook_size=256``, each value read as a YAML scalar, so
``train.steps=1000``, ``logging.progress=false``, ``data.root=null``). Keys left ``null``
that the model has an opinion on (``optim.lr``, ``optim.codebook_lr_scale``, ``train.batch_size``,
``train.epochs``, ``temperature.*``) are filled by :meth:`TrainConfig.with_model_defaults` from the model's
``train_defaults``, then from ``FALLBACKS``; run.json records the resolved values.

Unknown keys and values of the wrong type are rejected with a ValueError that lists the valid
keys of the section, or names the expected type.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml

# used where neither the config nor the model's train_defaults set a value (SQ-VAE's settings)
FALLBACKS = {"lr": 1e-3, "batch_size": 32, "temperature_init": 1.0, "temperature_min": 0.0, "codebook_lr_scale": 1.0}

# the range rules of a section's keys, its class attribute ``ranges`` = {key: (ok, rule)}: the key's
# value must pass ``ok`` ("<key> must be <rule>" otherwise); null passes where the key may be null
POSITIVE = (lambda v: v > 0, "> 0")
NON_NEGATIVE = (lambda v: v >= 0, "≥ 0")
AT_LEAST_ONE = (lambda v: v >= 1, "≥ 1")


@dataclass
class DataConfig:
    """``data``: what to train on.

    name: a ``hqvae.data.load_dataset`` name (fashion_mnist, cifar10_folder, cifar10, fsdd,
        image_folder, audio_folder, mnist).
    root: the local copy (folder or archive); null lets the loader search its default places.
    options: keyword options of the loader, e.g. ``{size: 64}`` for image_folder.
    limit: train on this many items of the train split, evenly spaced over it (so every class
        stays represented); null: all of them.
    """

    name: str = "fashion_mnist"
    root: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    limit: int | None = None

    ranges = {"limit": AT_LEAST_ONE}


@dataclass
class ModelSpec:
    """``model``: which network.

    name: a ``hqvae.list_models()`` name. overrides: its keyword overrides
    (``hqvae.create_model(name, in_channels, image_size, **overrides)``), e.g.
    ``{codebook_size: 256, hidden: 128}``; channels and size come from the data.
    """

    name: str = "sqvae"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    """``optim``: optimiser and learning-rate schedule.

    name: adam | adamw. lr: peak learning rate (null: the model's ``train_defaults``).
    betas, weight_decay: Adam's; weight decay applies to weight matrices, convolution kernels
        and codebooks, not to biases, normalisation parameters or SQ variances (1-D or scalar).
    codebook_lr_scale, codebook_beta2: the learning rate of the gradient-trained codebooks (the
        quantizers' code matrices) is ``codebook_lr_scale`` × the network's (under the same
        schedule; null: the model's ``train_defaults``, 1 where it has none), and their Adam β2
        ``codebook_beta2`` (null: ``betas[1]``); at 1 and null the codebooks are trained like every
        other weight.
    grad_clip: clip the global gradient norm to this value; null: no clipping.
    schedule: constant | cosine (from lr down to min_lr at the last step), after
        ``warmup_steps`` of linear warm-up from 0 (either schedule).
    """

    name: Literal["adam", "adamw"] = "adam"
    lr: float | None = None
    betas: tuple[float, float] = (0.9, 0.999)
    codebook_lr_scale: float | None = None
    codebook_beta2: float | None = None
    weight_decay: float = 0.0
    grad_clip: float | None = None
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = 0
    min_lr: float = 0.0

    ranges = {"lr": POSITIVE, "betas": (lambda v: all(0 <= beta < 1 for beta in v), "two numbers in [0, 1)"),
              "codebook_lr_scale": POSITIVE, "codebook_beta2": (lambda v: 0 <= v < 1, "in [0, 1)"),
              "weight_decay": NON_NEGATIVE, "grad_clip": POSITIVE, "warmup_steps": NON_NEGATIVE,
              "min_lr": NON_NEGATIVE}


@dataclass
class LoopConfig:
    """``train``: the length and the rhythm of the run.

    steps: optimiser steps; null: ``epochs`` × steps per epoch (steps wins when both are set).
    epochs: used only when steps is null (null: the model's ``train_defaults``).
    batch_size: images per optimiser step, over all processes (each of W processes takes
        batch_size / W); null: the model's ``train_defaults``.
    seed: seeds the initialisation, the data order and the Gumbel noise.
    device: auto (CUDA when available) | cpu | cuda. dtype: fp32 | bf16 (autocast, CUDA only;
        on a CPU run bf16 falls back to fp32 with a warning).
    channels_last: train with NHWC weights and batches (faster convolutions on CPU and GPU,
        see ``hqvae.train.performance``); the results are the same up to rounding.
    log_every: write a train record (means over the steps since the last one) every this many
        steps, and before every validation and checkpoint.
    val_every: validate every this many steps and at the end; 0: never (no best checkpoint).
    val_batches: validate on this many batches of evenly spaced items of the val split;
        null: the whole split.
    checkpoint_every: save ``checkpoints/last`` every this many steps and at the end.
    recalibrate_batchnorm: after the last step, replace every BatchNorm layer's running statistics
        by their average over this many random training batches (of batch_size items) forwarded
        in eval mode, each quantizer decoding its argmax code (``hqvae.models.recalibrate_batchnorm``:
        an SQ layer's training forwards decode relaxed samples, which its evaluation does not);
        0: keep the running averages of the training forwards. The final validation sees the new
        statistics; a checkpoints/best of an earlier validation keeps the ones it was validated with.
    """

    steps: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["fp32", "bf16"] = "fp32"
    channels_last: bool = True
    log_every: int = 100
    val_every: int = 1000
    val_batches: int | None = None
    checkpoint_every: int = 1000
    recalibrate_batchnorm: int = 200

    ranges = {"steps": AT_LEAST_ONE, "epochs": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "log_every": AT_LEAST_ONE,
              "val_every": (lambda v: v >= 0, "≥ 0 (0: no validation)"), "val_batches": AT_LEAST_ONE,
              "checkpoint_every": AT_LEAST_ONE, "recalibrate_batchnorm": NON_NEGATIVE}


@dataclass
class TemperatureConfig:
    """``temperature``: the Gumbel-softmax temperature of SQ layers (SPEC §1.2),
    τ(step) = max(init · exp(−decay · step), min); null: the model's ``train_defaults`` (init 1,
    min 0), and for decay the budget's (``hqvae.train.schedules.default_temperature_decay``: the
    official schedule compressed to short runs, the official 1e-5 per step from 15,000 steps).
    Ignored by VQ-only models. hard_from: from this step on, SQ layers decode the argmax code in
    training, straight through the relaxed sample (a named variant, not SQ-VAE's estimator; null: never).
    """

    init: float | None = None
    decay: float | None = None
    min: float | None = None
    hard_from: int | None = None

    ranges = {"init": POSITIVE, "decay": NON_NEGATIVE, "min": NON_NEGATIVE, "hard_from": NON_NEGATIVE}


@dataclass
class LoggingConfig:
    """``logging``: tensorboard: also write TensorBoard event files to ``tensorboard/`` (needs the
    tensorboard package; skipped with a message otherwise). progress: a tqdm progress bar."""

    tensorboard: bool = False
    progress: bool = True


class SectionedConfig:
    """What ``TrainConfig`` and ``hqvae.priors.config.PriorTrainConfig`` share: a dataclass of section
    dataclasses, built from nested dicts and checked by ``validate``."""

    what = "config"  # the config's name in error messages

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-ready dict (tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        """Build from nested dicts; missing keys keep their defaults; unknown sections or keys and wrong
        types raise a ValueError naming the valid ones."""
        if not isinstance(data, dict):
            raise ValueError(f"a {cls.what} must be a mapping of sections, got {type(data).__name__}")
        sections = typing.get_type_hints(cls)  # the section dataclass of each field
        unknown = sorted(set(data) - set(sections))
        if unknown:
            raise ValueError(f"unknown {cls.what} section(s) {unknown}; valid sections: {', '.join(sections)}")
        built = {}
        for name, section_cls in sections.items():
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ValueError(f"{cls.what} section {name!r} must be a mapping of keys, got {values!r}")
            hints = typing.get_type_hints(section_cls)
            unknown = sorted(set(values) - set(hints))
            if unknown:
                raise ValueError(f"unknown key(s) {unknown} in section {name!r}; "
                                 f"valid keys: {', '.join(hints)}")
            built[name] = section_cls(**{key: _coerce(value, hints[key], f"{name}.{key}")
                                         for key, value in values.items()})
        config = cls(**built)
        config.validate()
        return config

    def validate(self) -> None:
        """Each section's own ``validate`` where it has one, then its ``ranges`` (see ``POSITIVE``);
        a ValueError names the first key out of range."""
        for name, section in vars(self).items():
            if hasattr(section, "validate"):
                section.validate()
            ranges = getattr(section, "ranges", {})
            for key, hint in typing.get_type_hints(type(section)).items():
                if key not in ranges:
                    continue
                (ok, rule), value = ranges[key], getattr(section, key)
                nullable = type(None) in typing.get_args(hint)
                if not (nullable if value is None else ok(value)):
                    raise ValueError(f"{name}.{key} must be {rule}{' or null' if nullable else ''}, got {value!r}")


@dataclass
class TrainConfig(SectionedConfig):
    """Everything ``hqvae train`` needs besides the output folder."""

    what = "training config"

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: LoopConfig = field(default_factory=LoopConfig)
    temperature: TemperatureConfig = field(default_factory=TemperatureConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def with_model_defaults(self, train_defaults: dict[str, Any]) -> "TrainConfig":
        """A copy with lr, codebook_lr_scale, batch_size, epochs and temperature filled from ``train_defaults``
        (then ``FALLBACKS``) where this config leaves them null."""

        def pick(current, key):
            return current if current is not None else train_defaults.get(key, FALLBACKS.get(key))

        resolved = copy.deepcopy(self)
        resolved.optim.lr = float(pick(self.optim.lr, "lr"))
        resolved.optim.codebook_lr_scale = float(pick(self.optim.codebook_lr_scale, "codebook_lr_scale"))
        resolved.train.batch_size = int(pick(self.train.batch_size, "batch_size"))
        resolved.train.epochs = pick(self.train.epochs, "epochs")
        resolved.temperature.init = float(pick(self.temperature.init, "temperature_init"))
        decay = pick(self.temperature.decay, "temperature_decay")  # null: set from the budget by the trainer
        resolved.temperature.decay = None if decay is None else float(decay)
        resolved.temperature.min = float(pick(self.temperature.min, "temperature_min"))
        if resolved.train.steps is None and resolved.train.epochs is None:
            raise ValueError("set train.steps or train.epochs (the model's train_defaults has no 'epochs')")
        resolved.validate()
        return resolved


# ---------------------------------------------------------------------------------------- loading


def missing_config_fix(path: str | Path) -> str:
    """What to give instead of a config file that is not there (a ``configs/<dataset>/<model>.yaml``
    of before the per-model files were merged: the merged file and ``model.name``)."""
    path = Path(path)
    old_style = path.parent.with_suffix(".yaml") if path.parent.name else None
    if old_style is not None and old_style.is_file():
        return (f"the per-model files were merged into one file per data set: use --config {old_style} "
                f"model.name={path.stem}")
    return "give one of configs/<dataset>.yaml, e.g. configs/fashion_mnist.yaml"


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> TrainConfig:
    """The config in YAML file ``path`` (None: the defaults), with ``key=value`` overrides applied."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found; {missing_config_fix(path)}")
        try:
            data = yaml.load(path.read_text(), Loader=ConfigLoader) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {error}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of sections (data:, model:, ...), got {type(data).__name__}")
    try:
        return TrainConfig.from_dict(apply_overrides(select_model(data, overrides), overrides))
    except ValueError as error:
        raise ValueError(f"{path}: {error}" if path is not None else str(error)) from None


def select_model(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``data`` without its ``models:`` table, with the section of the chosen ``model.name`` merged in;
    a ValueError when the table is there and no model is chosen, or the name is not registered."""
    from hqvae.models import list_models

    data = dict(data)
    models = data.pop("models", None) or {}
    name = (apply_overrides(data, overrides).get("model") or {}).get("name")
    registered = list_models()
    valid = ", ".join(registered)
    if not isinstance(models, dict) or not all(isinstance(section, (dict, type(None))) for section in models.values()):
        raise ValueError(f"models: must map model names to sections (e.g. models: {{sqvae: {{train: ...}}}}), got {models!r}")
    unknown = sorted(set(models) - set(registered))
    if unknown:
        raise ValueError(f"models: has sections for unknown model(s) {unknown}; valid names: {valid}")
    if name is None and models:
        raise ValueError(f"choose the model with model.name=<name> (e.g. model.name=sqvae); valid names: {valid}")
    if name is not None and name not in registered:
        raise ValueError(f"unknown model.name {name!r}; valid names: {valid}")
    return _merge(data, models.get(name) or {})


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in: mappings key by key, any other value (null too) replaces."""
    merged = dict(base)
    for key, value in extra.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def apply_overrides(data: dict[str, Any], overrides: Sequence[str], config_class: type = TrainConfig,
                    example: str = "optim.lr=3e-4") -> dict[str, Any]:
    """A copy of the nested dict ``data`` with each ``section.key[.subkey...]=value`` set.

    ``section.key`` must name a key of ``config_class``; deeper parts index into dict-valued keys
    (``model.overrides.codebook_size=256``, ``data.options.size=64``). ``example`` goes into the
    message for an override of the wrong form.
    """
    data = copy.deepcopy(data)
    sections = typing.get_type_hints(config_class)
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        bad = f"bad override {override!r}:"
        if not sep or len(parts) < 2 or not all(parts):
            raise ValueError(f"{bad} expected section.key=value (e.g. {example}); "
                             f"sections: {', '.join(sections)}")
        section, name = parts[:2]
        if section not in sections:
            raise ValueError(f"{bad} unknown section {section!r}; valid sections: {', '.join(sections)}")
        hints = typing.get_type_hints(sections[section])
        if name not in hints:
            raise ValueError(f"{bad} unknown key {name!r} in section {section!r}; "
                             f"valid keys: {', '.join(hints)}")
        if len(parts) > 2 and typing.get_origin(hints[name]) is not dict:
            raise ValueError(f"{bad} {section}.{name} is not a mapping, so it has no sub-keys")
        try:
            value = yaml.load(text, Loader=ConfigLoader)
        except yaml.YAMLError as error:
            raise ValueError(f"{bad} the value is not a YAML scalar ({error})") from None
        node = data
        for depth, part in enumerate(parts[:-1], start=1):
            if node.get(part) is None:  # a missing or null level becomes a mapping
                node[part] = {}
            node = node[part]
            if not isinstance(node, dict):
                raise ValueError(f"{bad} {'.'.join(parts[:depth])} holds {node!r}, not a mapping")
        node[parts[-1]] = value
    return data


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with YAML 1.2 floats: ``1e-3`` and ``1.0e3`` are floats (plain PyYAML reads
    strings, as YAML 1.1 wants a dot and a signed exponent, ``1.0e-3``)."""


# the forms YAML 1.1 lacks: tried after PyYAML's own float and int resolvers
YAML12_FLOAT = re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$")
ConfigLoader.add_implicit_resolver("tag:yaml.org,2002:float", YAML12_FLOAT, list("-+0123456789"))


# ---------------------------------------------------------------------------------------- typing


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """``value`` checked against ``annotation`` (ints are accepted for floats); ValueError if it does not fit."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):  # X | None: every union of the configs
        return None if value is None else _coerce(value, args[0], key)
    if origin is Literal:
        if value not in args:
            raise ValueError(f"{key} must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ValueError(f"{key} must be a mapping with string keys, got {value!r}")
        return copy.deepcopy(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key} must be a list of {len(args)} numbers, got {value!r}")
        return tuple(_coerce(item, arg, key) for item, arg in zip(value, args))
    scalars = {float: "a number", int: "an integer", bool: "true or false", str: "a string"}
    # a bool is an int to Python, but not a number or an integer to a config
    if not isinstance(value, (int, float) if annotation is float else annotation) or \
            (isinstance(value, bool) and annotation is not bool):
        raise ValueError(f"{key} must be {scalars[annotation]}, got {value!r} ({type(value).__name__})")
    if annotation is float and not math.isfinite(value):
        raise ValueError(f"{key} must be finite, got {value!r}")
    return float(value) if annotation is float else value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
