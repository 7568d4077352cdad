"""lmwright: one tool, one project file, one lineage from a source document to a served answer."""

from __future__ import annotations

from lmwright.api import generate, load_model, load_tokenizer, run
from lmwright.version import __version__

__all__ = ["__version__", "generate", "load_model", "load_tokenizer", "run"]
