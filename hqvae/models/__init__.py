"""Models: one HQ-VAE class (``HQVAE``) configured by a ``ModelConfig``, and the named registry.

* ``config.py``     ``ModelConfig`` / ``LayerConfig`` / ``PQConfig`` (serialisable)
* ``backbone.py``   ResNet encoder (features at several resolutions), decoder, up-sampling
* ``topdown.py``    injected / residual top-down layers grouped by resolution
* ``hierarchical.py`` the HQ-VAE model (class ``HQVAE``): forward (loss), encode, decode
* ``pretrained.py`` ``save_pretrained`` / ``from_pretrained``
* ``registry.py``   ``list_models`` / ``create_model`` and the per-size defaults
* ``base.py``       ``DiscreteAutoencoder``: the interface every registered model has; ``ModelOutput``;
                    the reconstruction terms
* ``batchnorm.py``  ``recalibrate_batchnorm``: BatchNorm statistics of the eval-mode (argmax) decode
* ``pqvae.py``      PQ-VAE (global token sequence; the quantizer in ``hqvae.quantizers.progressive``),
                    registered as ``pqvae`` and ``global_rvq`` by ``registry.py``
"""
from .base import DiscreteAutoencoder, ModelOutput, evaluating
from .batchnorm import recalibrate_batchnorm
from .config import LayerConfig, ModelConfig, PQConfig
from .hierarchical import HQVAE
from .pqvae import PQVAE
from .pretrained import from_pretrained
from .registry import create_model, list_models, model_config, register_model

__all__ = [
    "DiscreteAutoencoder",
    "HQVAE",
    "LayerConfig",
    "ModelConfig",
    "ModelOutput",
    "PQConfig",
    "PQVAE",
    "create_model",
    "evaluating",
    "from_pretrained",
    "list_models",
    "model_config",
    "recalibrate_batchnorm",
    "register_model",
]
