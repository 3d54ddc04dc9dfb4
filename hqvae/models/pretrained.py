"""Save and load models in a Hugging Face-compatible directory layout.

    <dir>/model.safetensors   every parameter and buffer (BatchNorm statistics, EMA codebooks,
                              ``initialized`` flags); tensors shared between layers stored once
    <dir>/config.json         {"model_type": name, "hqvae_version": ..., "config": config.to_dict()}

Both files are written atomically (a temporary file in the same directory, then ``os.replace``).
``huggingface_hub`` is optional: ``from_pretrained`` downloads a Hub repository only when the
path is not a local directory and the package is installed.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_model
from torch import nn

from ..io import atomic_write, atomic_write_json, read_json
from .._version import __version__

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


MODEL_CLASSES: dict[str, type[nn.Module]] = {}  # model_type -> class; filled by registry.register_model


def model_class_for(model_type: str) -> type[nn.Module]:
    """The class that builds ``model_type`` (that of "hqvae", HQVAE, for names not registered)."""
    return MODEL_CLASSES.get(model_type, MODEL_CLASSES["hqvae"])


class PretrainedMixin:
    """``save_pretrained`` / ``from_pretrained`` for an ``nn.Module`` with a ``config`` attribute
    that has ``name``, ``to_dict()`` and a ``config_class.from_dict`` on the model class."""

    def save_pretrained(self, directory: str | os.PathLike) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)  # created by the atomic writes
        document = {"model_type": self.config.name, "hqvae_version": __version__, "config": self.config.to_dict()}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_model(self, tmp, metadata={"format": "pt"}))
        atomic_write_json(directory / CONFIG_NAME, document)
        return directory

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
        """Restore a model saved by ``save_pretrained`` (see ``hqvae.from_pretrained``)."""
        model = from_pretrained(path, device=device)
        if not isinstance(model, cls):
            raise ValueError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}; use hqvae.from_pretrained")
        return model


def _resolve(path: str | os.PathLike) -> Path:
    local = Path(path)
    if local.is_dir():
        return local
    if local.exists():
        raise ValueError(f"{local} is a file; pass the directory that holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    missing = f"no directory {local}; pass a directory written by model.save_pretrained(...)"
    if local.is_absolute() or len(local.parts) > 2 or str(path).startswith("."):
        raise FileNotFoundError(missing)  # a local path, not a Hub repository id ("name" or "owner/name")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{missing} (or install huggingface_hub to download a Hub repository id)") from None
    return Path(snapshot_download(repo_id=str(path)))


def _listing(items: list[str], limit: int = 8) -> str:
    shown = "; ".join(items[:limit])
    return f"[{shown}; ... {len(items) - limit} more]" if len(items) > limit else f"[{shown}]"


def _check_weights(model: nn.Module, weights_path: Path, model_type: str) -> None:
    """Compare the file's names and shapes with the model's before loading, for a clear error."""
    try:
        with safe_open(str(weights_path), framework="pt") as handle:
            stored = {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{weights_path} is not a readable safetensors file ({err}): it is damaged or not a "
                         f"model file; re-save the model, or use another copy") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    # save_model stores one name per group of tied tensors (e.g. a shared codebook)
    aliases: dict[tuple, list[str]] = {}
    for name, tensor in model.state_dict().items():  # tied: the same storage, offset and shape
        key = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        aliases.setdefault(key, []).append(name)
    missing = [names[0] for names in aliases.values() if not stored.keys() & set(names)]
    unexpected = sorted(stored.keys() - expected.keys())
    mismatched = [f"{name}: file {stored[name]} vs model {expected[name]}"
                  for name in sorted(stored.keys() & expected.keys()) if stored[name] != expected[name]]
    problems = [f"{what} {_listing(items)}" for what, items in
                (("missing keys", sorted(missing)), ("unexpected keys", unexpected), ("shape mismatches", mismatched))
                if items]
    if problems:
        raise ValueError(
            f"the weights in {weights_path} do not belong to the model described by config.json "
            f"(model_type {model_type!r}): " + ", ".join(problems)
        )


def from_pretrained(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a model from ``config.json`` and load ``model.safetensors`` (strict), in eval mode.

    ``path``: a directory written by ``save_pretrained``; otherwise, when ``huggingface_hub``
    is installed, a Hub repository id to download.
    """
    directory = _resolve(path)
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for file in (config_path, weights_path):
        if not file.is_file():
            raise FileNotFoundError(f"{file} is missing; a saved model directory holds {CONFIG_NAME} and "
                                    f"{WEIGHTS_NAME}")
    document = read_json(config_path, "re-save the model with save_pretrained")
    if not isinstance(document, dict) or "model_type" not in document or "config" not in document:
        raise ValueError(f"{config_path} must hold {{'model_type': ..., 'config': {{...}}}}; re-save the model")
    model_type = document["model_type"]
    try:
        model_class = model_class_for(model_type)
        model = model_class(model_class.config_class.from_dict(document["config"]))
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{config_path} does not describe a model this version of hqvae can build "
                         f"({err}); re-save the model, or load it with the hqvae version that saved it") from None
    _check_weights(model, weights_path, model_type)
    load_model(model, str(weights_path), strict=True)
    return model.to(device).eval()
