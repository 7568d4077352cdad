"""lmwright: one tool, one project file, one lineage from a source document to a served answer."""

from __future__ import annotations

__version__ = "0.1.0"

from lmwright.api import generate, load_model, load_tokenizer, run  # noqa: E402

__all__ = ["__version__", "generate", "load_model", "load_tokenizer", "run"]
