"""Training: the config (``config.py``), the one loop (``engine.py``) and the run folder it writes (``run_dir.py``).

* ``config.py``      ``TrainConfig`` sections, YAML loading, ``key=value`` overrides
* ``resume.py``      which config a run starts or continues with (``hqvae train``, ``hqvae prior train``)
* ``engine.py``      ``fit(task, out, resume=..., force=...)``: the training loop (DDP-aware, stop signals,
                     non-finite stop, checkpoints, resume, run status, metrics.jsonl and optional
                     TensorBoard) of every task
* ``tokenizer.py``   the tokenizer's task and ``train(config, out, resume=..., force=...)``
* ``signals.py``     stopping cleanly on SIGTERM / SIGINT / SIGUSR1
* ``sampler.py``     the data order as a function of (seed, step)
* ``schedules.py``   learning rate and Gumbel temperature as functions of the step
* ``checkpoint.py``  crash-safe ``checkpoints/{best,last}`` and ``train_state.pt``
* ``rng.py``         RNG states in a ``weights_only``-loadable form
* ``run_dir.py``     ``RunDir``: the run folder layout every command reads
* ``run_info.py``    ``RunInfo``: run.json, versioned
"""
from .config import TrainConfig, load_config
from .tokenizer import train
from .run_dir import RunDir

__all__ = ["RunDir", "TrainConfig", "load_config", "train"]
