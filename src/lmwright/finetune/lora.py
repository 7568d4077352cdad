"""LoRA through `peft`, on lmwright's Llama, saved in PEFT's own format; and layer freezing.

`peft.inject_adapter_in_model` wraps the target `nn.Linear`s of any module. lmwright's parameter names are Hugging
Face's (`model.layers.0.self_attn.q_proj`), so the adapter's state dict, prefixed `base_model.model.` and saved as
`adapter_model.safetensors` beside `adapter_config.json`, is what `peft.PeftModel.from_pretrained` loads onto
the `transformers` model of the base (a test compares the logits). `merge` folds the adapters into the base
weights and returns plain `nn.Linear`s, so a merged model saves, serves and exports like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from lmwright.errors import LmwrightError

PREFIX = "base_model.model."


def add_lora(model: torch.nn.Module, r: int, alpha: float, dropout: float, targets: list[str]) -> torch.nn.Module:
    """Wrap `targets` (module names such as q_proj) with LoRA adapters; only the adapters train."""
    from peft import LoraConfig, inject_adapter_in_model

    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    if missing := sorted(set(targets) - names):
        raise LmwrightError(f"finetune.lora.target_modules: {', '.join(missing)} not in the model "
                            f"(its linear layers: {', '.join(sorted(names))})")
    cfg = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), bias="none")
    model = inject_adapter_in_model(cfg, model)
    model._lora_config = cfg
    return model


def lora_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    from peft.tuners.lora import LoraLayer

    return [(n, m) for n, m in model.named_modules() if isinstance(m, LoraLayer)]


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from peft import get_peft_model_state_dict

    return {PREFIX + k: v.detach().contiguous().cpu() for k, v in get_peft_model_state_dict(model).items()}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(model, {k.removeprefix(PREFIX): v for k, v in state.items()})
    if getattr(result, "unexpected_keys", None):
        raise LmwrightError(f"the adapter does not fit this model: {result.unexpected_keys[:3]}")


def save_adapter(model: torch.nn.Module, out_dir: Path, base: str,
                 trained_modules: dict[str, torch.Tensor] | None = None) -> None:
    """`adapter_config.json` + `adapter_model.safetensors`, PEFT's layout; `base` names the base model.
    `trained_modules` (e.g. a classifier's {"score.weight": ...}) are saved whole beside the adapters, as PEFT's
    `modules_to_save`, and make it a sequence-classification adapter."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = model._lora_config.to_dict()
    cfg.update(base_model_name_or_path=base, task_type="SEQ_CLS" if trained_modules else "CAUSAL_LM",
               peft_type="LORA")
    cfg["target_modules"] = sorted(cfg["target_modules"])
    state = adapter_state(model)
    if trained_modules:
        cfg["modules_to_save"] = sorted({k.rsplit(".", 1)[0] for k in trained_modules})
        state.update({PREFIX + k: v.detach().contiguous().cpu() for k, v in trained_modules.items()})
    (out_dir / "adapter_config.json").write_text(json.dumps(cfg, indent=2, default=str))
    save_file(state, str(out_dir / "adapter_model.safetensors"), metadata={"format": "pt"})


def merge(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every adapter into its base weight and put the plain `nn.Linear` back."""
    for name, layer in lora_layers(model):
        layer.merge()
        parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
        setattr(parent, name.rsplit(".", 1)[-1], layer.get_base_layer())
    for p in model.parameters():
        p.requires_grad_(True)
    if hasattr(model, "_lora_config"):
        del model._lora_config
    return model


def freeze(model: torch.nn.Module, layers: int, embeddings: bool) -> int:
    """Freeze the embedding (when asked) and the first `layers` decoder blocks; returns the parameters frozen."""
    frozen = 0
    parts = ([model.model.embed_tokens] if embeddings else []) + list(model.model.layers[:layers])
    if layers > len(model.model.layers):
        raise LmwrightError(f"finetune.freeze_layers is {layers} but the model has {len(model.model.layers)} layers")
    for part in parts:
        for p in part.parameters():
            if p.requires_grad:
                p.requires_grad_(False)
                frozen += p.numel()
    return frozen
