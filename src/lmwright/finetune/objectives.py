"""What each recipe trains: the next-token loss on assistant tokens (SFT), a classification head, and DPO.

The losses and the classifier run on the device of the module they are given (`device_of`): fine-tuning trains
and validates on the GPU when there is one, compares the base and the tuned model on the CPU, and the recipes'
rows start on the CPU either way.

The classifier is Hugging Face's `LlamaForSequenceClassification` in layout: the decoder, then a bias-free
`score` matrix read at each sequence's last non-pad token, so it saves as that architecture and `transformers`
loads it (a test compares the logits).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from lmwright.model.llama import LlamaLM


def device_of(module: torch.nn.Module) -> torch.device:
    """Where a module's parameters (and so its inputs) are; a DDP wrapper answers for the model inside."""
    return next(module.parameters()).device


class Classifier(torch.nn.Module):
    def __init__(self, lm: LlamaLM, labels: list[str], pad_id: int):
        super().__init__()
        self.lm, self.labels, self.pad_id = lm, list(labels), pad_id
        self.score = torch.nn.Linear(lm.cfg.d_model, len(labels), bias=False)
        torch.nn.init.normal_(self.score.weight, std=lm.cfg.init_std)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Class logits (batch, labels) at each row's last non-pad token (rows are right-padded)."""
        ids = ids.to(self.score.weight.device)
        h = self.lm.hidden(ids)
        positions = torch.arange(ids.shape[1], device=ids.device)
        last = ((ids != self.pad_id) * positions).argmax(-1)  # as transformers finds it
        return self.score(h[torch.arange(ids.shape[0], device=ids.device), last])

    def weights(self) -> dict[str, torch.Tensor]:
        state = {k: v for k, v in self.lm.weights().items() if not k.startswith("lm_head")}
        return {**state, "score.weight": self.score.weight.detach().contiguous().cpu()}

    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        self.load_state_dict({("lm." + k if not k.startswith("score.") else k): v for k, v in state.items()},
                             strict=False)

    def save_hf(self, base_dir: Path, out: Path) -> None:
        """A `LlamaForSequenceClassification` directory: the base's config with the labels, and its tokenizer."""
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        cfg = json.loads((Path(base_dir) / "config.json").read_text())
        arch = cfg["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")
        cfg.update(architectures=[arch], num_labels=len(self.labels), pad_token_id=self.pad_id,
                   id2label={str(i): x for i, x in enumerate(self.labels)},
                   label2id={x: i for i, x in enumerate(self.labels)}, problem_type="single_label_classification")
        (out / "config.json").write_text(json.dumps(cfg, indent=2))
        save_file(self.weights(), str(out / "model.safetensors"), metadata={"format": "pt"})
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            if (Path(base_dir) / name).exists():
                shutil.copyfile(Path(base_dir) / name, out / name)


def class_weights(labels: list[int], k: int, mode: str) -> torch.Tensor | None:
    """balanced: n / (k * count) per class (scikit-learn's 'balanced'); none: None."""
    if mode == "none":
        return None
    counts = torch.bincount(torch.tensor(labels), minlength=k).float()
    return len(labels) / (k * counts.clamp(min=1))


def sft_loss(model: LlamaLM, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss over the labelled (assistant) tokens of a batch of rows (seq_len + 1 wide)."""
    dev = device_of(model)
    return model(ids[:, :-1].to(dev), labels[:, 1:].to(dev))


def sequence_logprob(model: LlamaLM, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per row: the summed log-probability of its labelled tokens (the answer), rows seq_len + 1 wide."""
    dev = device_of(model)
    ids, labels = ids.to(dev), labels.to(dev)
    logits = model(ids[:, :-1]).float()
    target = labels[:, 1:]
    mask = target != -100
    logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0)[..., None])[..., 0]
    return (logp * mask).sum(-1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """DPO (Rafailov et al. 2023): -log sigmoid(beta * (policy margin - reference margin)); also the per-pair
    preference (1 where the policy's implicit reward ranks the chosen answer first)."""
    logits = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    return -F.logsigmoid(logits).mean(), (logits > 0).float()
