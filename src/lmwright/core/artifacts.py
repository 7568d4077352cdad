"""Content-addressed artifact store.

Every stage output is a directory. It is written to a temporary directory, hashed (SHA-256 over the sorted
list of relative paths and file digests), given a `MANIFEST.json`, and renamed into `artifacts/<digest>` in one
step, so a reader never sees half an artifact. `open()` checks each file against the manifest before handing
the path out (once per process), so silent corruption is caught where it would otherwise be read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from lmwright.errors import LmwrightError

MANIFEST = "MANIFEST.json"
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _manifest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): file_digest(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST
    }


def tree_digest(files: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


class ArtifactCorrupt(LmwrightError):
    pass


class ArtifactStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._verified: set[str] = set()

    def new_dir(self) -> Path:
        """A fresh temporary directory, inside the store so the final rename stays on one filesystem."""
        tmp = self.root / ".tmp"
        tmp.mkdir(exist_ok=True)
        return Path(tempfile.mkdtemp(dir=tmp))

    def commit(self, staging: Path) -> str:
        """Seal a staging directory as an artifact; returns its digest. Identical content is stored once."""
        files = _manifest(staging)
        digest = tree_digest(files)
        (staging / MANIFEST).write_text(json.dumps(files, indent=1, sort_keys=True))
        final = self.root / digest
        if final.exists():
            shutil.rmtree(staging)
        else:
            os.replace(staging, final)
        self._verified.add(digest)
        return digest

    def exists(self, digest: str) -> bool:
        return (self.root / digest / MANIFEST).exists()

    def open(self, digest: str, verify: bool = True) -> Path:
        path = self.root / digest
        if not (path / MANIFEST).exists():
            raise ArtifactCorrupt(f"artifact {digest[:12]} is missing from {self.root}; rerun with --force for its stage")
        if verify and digest not in self._verified:
            recorded = json.loads((path / MANIFEST).read_text())
            actual = _manifest(path)
            if actual != recorded or tree_digest(recorded) != digest:
                bad = sorted(k for k in set(recorded) | set(actual) if recorded.get(k) != actual.get(k))
                raise ArtifactCorrupt(
                    f"artifact {digest[:12]} at {path} failed its hash check ({', '.join(bad) or 'manifest'}); "
                    "it was changed after it was written. Delete it and rerun to rebuild it."
                )
            self._verified.add(digest)
        return path
