"""The build's own failure: a model whose artifacts miss a verification figure."""

from __future__ import annotations


class BuildError(Exception):
    """A model failed its verification; the message names the model and the figure."""
