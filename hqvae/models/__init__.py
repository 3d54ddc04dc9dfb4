"""Models: one HQ-VAE class (``HQVAE``) configured by a ``ModelConfig``, and the named registry.

* ``config.py``     ``ModelConfig`` / ``LayerConfig`` (serialisable)
* ``backbone.py``   ResNet encoder (features at several resolutions), decoder, up-sampling
* ``topdown.py``    injected / residual top-down layers grouped by resolution
* ``hqvae.py``      the model: forward (loss), encode, decode
* ``output.py``     ``ModelOutput``
* ``pretrained.py`` ``save_pretrained`` / ``from_pretrained``
* ``registry.py``   ``list_models`` / ``create_model`` and the per-size defaults
"""
from .config import LayerConfig, ModelConfig
from .hqvae import HQVAE
from .output import ModelOutput
from .pretrained import from_pretrained
from .registry import create_model, list_models, model_config, register_model

__all__ = [
    "HQVAE",
    "LayerConfig",
    "ModelConfig",
    "ModelOutput",
    "create_model",
    "from_pretrained",
    "list_models",
    "model_config",
    "register_model",
]
