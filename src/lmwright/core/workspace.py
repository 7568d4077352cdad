"""Where a project's files live.

A workspace is a directory: `lmwright.yaml` (optional; without it the built-in default project is used), the
hidden `.lmwright/` (metadata database, content-addressed artifacts, work directories of running stages) and the
published outputs (`lmwright-out/` by default: the model, the report, the metrics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmwright.spec import SPEC_FILENAME, Spec, load_spec


@dataclass
class Workspace:
    root: Path
    spec: Spec
    spec_path: Path | None  # None: the built-in default project

    @classmethod
    def open(cls, root: Path | str = ".", overrides: list[str] | tuple[str, ...] = (), spec_path: Path | None = None):
        root = Path(root).resolve()
        if spec_path is None and (root / SPEC_FILENAME).exists():
            spec_path = root / SPEC_FILENAME
        return cls(root=root, spec=load_spec(spec_path, overrides), spec_path=spec_path)

    @property
    def internal(self) -> Path:
        return self.root / ".lmwright"

    @property
    def artifacts_dir(self) -> Path:
        return self.internal / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.internal / "work"

    @property
    def out_dir(self) -> Path:
        return self.root / self.spec.project.output_dir

    def sketch_key(self) -> bytes:
        """The secret the prompt sketches are keyed with (data/sketch.py), made on first use: someone who holds the
        store but not this file cannot test guessed words against them. Servers of one project share it."""
        path = self.internal / "sketch.key"
        if not path.is_file():
            import os
            import secrets

            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
            except FileExistsError:  # another process made it meanwhile: use theirs
                return path.read_bytes()
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(32))
        return path.read_bytes()

    @property
    def store_url(self) -> str:
        return self.spec.project.store_url or f"sqlite:///{self.internal / 'lmwright.db'}"
