"""The package version, in one place: ``hqvae.__version__`` and the packaging metadata
(``pyproject.toml`` reads it as ``hqvae._version.__version__``) both come from here."""
__version__ = "0.1.0"
