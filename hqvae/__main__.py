import sys

from hqvae.cli import main

sys.exit(main())
