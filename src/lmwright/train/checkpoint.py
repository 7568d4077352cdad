"""Training checkpoints: written atomically, read back with a fallback.

A checkpoint is a directory `step-000050/` holding `model.safetensors`, `optim.safetensors` (optimizer tensors
and the torch RNG state) and `state.json` (step, history, optimizer groups, python and numpy RNG states). It is
written to a temporary directory and renamed into place, so a kill leaves either the old checkpoint or the new
one; the newest two are kept, and a checkpoint that fails to load is skipped with a warning for the one before.
No pickle: tensors go through safetensors, everything else through JSON.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

KEEP = 2


def save_checkpoint(work: Path, step: int, model, opt: torch.optim.Optimizer,
                    state: dict[str, Any]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=work, prefix=".tmp-"))
    save_file(model.weights(), str(tmp / "model.safetensors"))
    osd = opt.state_dict()
    tensors = {f"{idx}.{k}": v.contiguous().cpu() for idx, s in osd["state"].items() for k, v in s.items()
               if isinstance(v, torch.Tensor)}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optim.safetensors"))
    np_state = np.random.get_state()
    meta = {
        **state,
        "step": step,
        "param_groups": osd["param_groups"],
        "rng_python": _jsonable(random.getstate()),
        "rng_numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
    }
    (tmp / "state.json").write_text(json.dumps(meta))
    for f in tmp.iterdir():  # data on disk before the rename makes it visible
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    final = work / f"step-{step:06d}"
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in checkpoints(work)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def save_weights(model, out: Path) -> None:
    """A trained model as `model.safetensors` + `model_config.json` (the pretrain artifact)."""
    save_file(model.weights(), str(out / "model.safetensors"))
    (out / "model_config.json").write_text(json.dumps(model.cfg.to_dict(), indent=2))


def load_weights(path: Path):
    """The model saved by `save_weights`, in eval mode."""
    from lmwright.model.config import ModelConfig
    from lmwright.model.llama import LlamaLM

    model = LlamaLM(ModelConfig(**json.loads((path / "model_config.json").read_text())))
    model.load_weights(load_file(str(path / "model.safetensors")))
    return model.eval()


def save_best(work: Path, model) -> None:
    """The best weights so far (early stopping), replaced atomically."""
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / ".best.safetensors.tmp"
    save_file(model.weights(), str(tmp))
    os.replace(tmp, work / "best.safetensors")


def load_best(work: Path, model) -> None:
    model.load_weights(load_file(str(work / "best.safetensors")))


def checkpoints(work: Path) -> list[Path]:
    return sorted(p for p in work.glob("step-*") if p.is_dir()) if work.exists() else []


def load_latest(work: Path, model, opt: torch.optim.Optimizer) -> dict[str, Any] | None:
    """Restore the newest loadable checkpoint into model and optimizer; returns its state, or None."""
    for ckpt in reversed(checkpoints(work)):
        try:
            state = _load(ckpt, model, opt)
        except Exception as exc:  # noqa: BLE001 - any damage means: try the previous one
            warnings.warn(f"checkpoint {ckpt} is unreadable ({exc}); falling back to the previous one", stacklevel=2)
            continue
        return state
    return None


def _load(ckpt: Path, model, opt: torch.optim.Optimizer) -> dict[str, Any]:
    meta = json.loads((ckpt / "state.json").read_text())
    model.load_weights(load_file(str(ckpt / "model.safetensors")))
    tensors = load_file(str(ckpt / "optim.safetensors"))
    torch.set_rng_state(tensors.pop("rng.torch"))
    opt_state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        opt_state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": opt_state, "param_groups": meta.pop("param_groups")})
    random.setstate(_tupled(meta.pop("rng_python")))
    kind, keys, *rest = meta.pop("rng_numpy")
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
    return meta


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x
