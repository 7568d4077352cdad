"""Training checkpoints: written atomically, read back with a fallback.

A checkpoint is a directory `step-000050/` holding `model.safetensors`, `optim.safetensors` (the tensors of
each optimizer — Muon and its AdamW partner are two — and the torch RNG state) and `state.json` (step, history,
optimizer groups, python and numpy RNG states, the fp16 gradient scaler), and with weight averaging on
`average.safetensors` (the running average, `averaging.py`; its count is in `state.json`). It is
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from lmwright.train.optim import Optimizers, with_kernels_of

KEEP = 2


def save_checkpoint(work: Path, step: int, model, opt: Optimizers, state: dict[str, Any],
                    weights: dict[str, torch.Tensor] | None = None,
                    optim_states: list[dict] | None = None, average: dict[str, torch.Tensor] | None = None) -> Path:
    """`weights` and `optim_states` replace the model's and optimizers' own state dicts when given (a
    sharded model's full state, gathered by the caller); `average` is the weight average's tensors."""
    work.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=work, prefix=".tmp-"))
    save_file(weights if weights is not None else model.weights(), str(tmp / "model.safetensors"))
    osds = optim_states if optim_states is not None else [o.state_dict() for o in opt]
    tensors = {f"{k}.{idx}.{name}": v.contiguous().cpu() for k, osd in enumerate(osds)
               for idx, s in osd["state"].items() for name, v in s.items() if isinstance(v, torch.Tensor)}
    tensors["rng.torch"] = torch.get_rng_state()
    save_file(tensors, str(tmp / "optim.safetensors"))
    if average:
        save_file(average, str(tmp / "average.safetensors"))
    np_state = np.random.get_state()
    meta = {
        **state,
        "step": step,
        "param_groups": [osd["param_groups"] for osd in osds],
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


def save_best(work: Path, weights: dict[str, torch.Tensor]) -> None:
    """The best weights so far (early stopping), replaced atomically."""
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / ".best.safetensors.tmp"
    save_file(weights, str(tmp))
    os.replace(tmp, work / "best.safetensors")


def load_best(work: Path) -> dict[str, torch.Tensor]:
    return load_file(str(work / "best.safetensors"))


def checkpoints(work: Path) -> list[Path]:
    return sorted(p for p in work.glob("step-*") if p.is_dir()) if work.exists() else []


@dataclass
class Checkpoint:
    """A checkpoint read from disk, not yet applied: weights, index-keyed optimizer states, the rest."""

    path: Path
    weights: dict[str, torch.Tensor]
    optim_states: list[dict]
    meta: dict[str, Any]
    torch_rng: torch.Tensor
    average: dict[str, torch.Tensor] | None = None  # the weight average's tensors, when the run keeps one

    def restore(self, model, opt: Optimizers, load_optimizers=None) -> dict[str, Any]:
        """Load into model and optimizers (`load_optimizers(states)` for sharded ones) and restore the RNGs;
        returns the training state (step, history, ...)."""
        if model is not None:
            model.load_weights(self.weights)
        if load_optimizers is not None:
            load_optimizers(self.optim_states)
        else:
            if len(self.optim_states) != len(opt.optimizers):
                raise ValueError(f"{self.path} holds {len(self.optim_states)} optimizer(s); this run has "
                                 f"{len(opt.optimizers)} (was train.optimizer changed?)")
            for o, s in zip(opt.optimizers, self.optim_states, strict=True):
                o.load_state_dict(with_kernels_of(o, s))
        torch.set_rng_state(self.torch_rng)
        meta = dict(self.meta)
        random.setstate(_tupled(meta.pop("rng_python")))
        kind, keys, *rest = meta.pop("rng_numpy")
        np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), *rest))
        return meta


def read_latest(work: Path) -> Checkpoint | None:
    """The newest readable checkpoint; a damaged one is skipped, with a warning, for the one before."""
    for ckpt in reversed(checkpoints(work)):
        try:
            return _read(ckpt)
        except Exception as exc:  # noqa: BLE001 - any damage means: try the previous one
            warnings.warn(f"checkpoint {ckpt} is unreadable ({exc}); falling back to the previous one", stacklevel=2)
    return None


def load_latest(work: Path, model, opt: Optimizers) -> dict[str, Any] | None:
    """Restore the newest loadable checkpoint into model and optimizer; returns its state, or None."""
    ckpt = read_latest(work)
    return None if ckpt is None else ckpt.restore(model, opt)


def _read(ckpt: Path) -> Checkpoint:
    meta = json.loads((ckpt / "state.json").read_text())
    weights = load_file(str(ckpt / "model.safetensors"))
    tensors = load_file(str(ckpt / "optim.safetensors"))
    rng = tensors.pop("rng.torch")
    groups = meta.pop("param_groups")
    states: list[dict[int, dict[str, torch.Tensor]]] = [{} for _ in groups]
    for key, value in tensors.items():
        k, idx, name = key.split(".", 2)
        states[int(k)].setdefault(int(idx), {})[name] = value
    average = load_file(str(ckpt / "average.safetensors")) if (ckpt / "average.safetensors").exists() else None
    return Checkpoint(ckpt, weights, [{"state": s, "param_groups": g} for s, g in zip(states, groups, strict=True)],
                      meta, rng, average)


def _jsonable(x):
    return [_jsonable(v) for v in x] if isinstance(x, tuple | list) else x


def _tupled(x):
    return tuple(_tupled(v) for v in x) if isinstance(x, list) else x
