"""``hqvae`` with the plug-ins of this folder imported, as a user's own entry point would do it:
``python tests/plugins/run.py train ...``."""
import sys

import blobs_dataset  # noqa: F401 (each module registers one extension)
import independent_prior  # noqa: F401
import sign_quantizer  # noqa: F401

from hqvae.cli import main

sys.exit(main())
