"""archspec's version: in the generated files' headers and the package metadata."""

__version__ = "0.1.0"
