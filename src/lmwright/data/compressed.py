"""Compressed data files: corpora ship as `.jsonl.gz` or `.jsonl.zst` shards, so every reader of a user's file
goes through `read_bytes`, which undoes gzip, bzip2, xz and Zstandard by the file's last suffix.

gzip, bzip2 and xz come with Python; Zstandard comes with pyarrow (already a dependency), so nothing is added.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from pathlib import Path

COMPRESSIONS = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstd"}


def split_suffix(path: Path) -> tuple[str, str | None]:
    """(format suffix, compression or None): `a.jsonl.gz` -> ('.jsonl', 'gzip'); `a.txt` -> ('.txt', None)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        return (suffixes[-2] if len(suffixes) > 1 else ""), COMPRESSIONS[suffixes[-1]]
    return (suffixes[-1] if suffixes else ""), None


class CorruptFile(OSError):
    """A compressed file that cannot be decompressed (whatever the codec raised)."""


def read_bytes(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes, decompressed; with `limit`, at most limit + 1 of them (enough to tell it is too large).
    A compressed file that does not decompress raises `CorruptFile` saying why."""
    compression = split_suffix(path)[1]
    if compression is None:
        with open(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    try:
        if compression == "zstd":
            import pyarrow as pa

            with pa.input_stream(str(path), compression="zstd") as f:
                return f.read() if limit is None else f.read(limit + 1)
        opener = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[compression]
        with opener(path, "rb") as f:
            return f.read() if limit is None else f.read(limit + 1)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - gzip, bz2, lzma and Arrow each raise their own kinds
        raise CorruptFile(f"not a readable {compression} file ({type(exc).__name__}: {exc})") from None
