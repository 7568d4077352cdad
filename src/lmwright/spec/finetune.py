"""The `finetune` section: the shared training settings (`LoopSpec`, as `train` has them, with fine-tuning's
defaults), the method (LoRA or full, with freezing), and one sub-section per recipe (`sft`, `classify`,
`preference`), each of which may override the data, steps, learning rate and sequence length."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from lmwright.spec.base import Section
from lmwright.spec.train import LoopSpec, Optimizer, Schedule


class LoraSpec(Section):
    r: int = Field(8, ge=1)
    alpha: float = Field(16.0, gt=0)  # the update is scaled by alpha / r
    dropout: float = Field(0.0, ge=0, lt=1)  # on each adapter's input; 0.05 cost a quarter of the step (RESULTS.md)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                               "up_proj", "down_proj"])


class AugmentSpec(Section):
    """Noisy copies of the training rows (never the held-out ones): character typos, word dropout and swaps, and
    for instructions a template paraphrase (data/augment.py). Off by default (copies: 0): its measured effect on the
    default classifier is in benchmarks/RESULTS.md; turn it on where robustness to typos matters more."""
    copies: int = Field(0, ge=0, le=10)  # augmented copies per training row
    char_rate: float = Field(0.03, ge=0, le=0.5)  # share of characters hit by a typo
    word_dropout: float = Field(0.05, ge=0, le=0.5)
    word_swap: float = Field(0.05, ge=0, le=0.5)
    word_replace: float = Field(0.0, ge=0, le=0.5)  # words replaced by a neighbour from a small synonym list
    paraphrase: bool = True  # instructions (SFT user turns, preference prompts) reworded by a template


class RecipeSpec(Section):
    """One fine-tuning recipe. `data`: a JSONL or Parquet file, relative to the project directory (None = made from
    the documents: pydocs for instructions and pairs, the documents' labels for the classifier; with neither the
    recipe is skipped, saying what it needs: finetune/fit.py); `val_data`: its held-out rows (None = made from the
    validation split, or 10% of `data`)."""
    enabled: bool = True  # run it in `lmwright run`
    data: str | None = None
    val_data: str | None = None
    steps: int | None = Field(None, ge=1)  # None = finetune.steps
    lr: float | None = Field(None, gt=0)  # None = finetune.lr
    seq_len: int | None = Field(None, ge=8)  # None = finetune.seq_len
    augment: AugmentSpec = Field(default_factory=AugmentSpec)


class SftSpec(RecipeSpec):
    steps: int | None = Field(100, ge=1)  # None = finetune.steps; 100 keeps the default run in its time budget
    packing: bool = True  # conversations end to end in full rows (no padding)
    eval_examples: int = Field(64, ge=0)  # held-out instructions answered for ROUGE-L (0 = none)
    max_new_tokens: int = Field(48, ge=1)


class ClassifySpec(RecipeSpec):
    class_weights: Literal["balanced", "none"] = "balanced"  # balanced: n / (classes x count), for imbalance
    label: str | None = None  # data unset: the documents' label to learn; None = a source's first label_fields
    # entry (or label_columns), else pydocs' chapter
    # data unset: labels with fewer training examples are left out; None = 80 for pydocs' chapters (measured), 10
    # for a label of your own documents
    min_examples: int | None = Field(None, ge=1)
    labels: list[str] | None = None  # None = those in the training data
    lr: float | None = Field(2e-3, gt=0)


class PreferenceSpec(RecipeSpec):
    enabled: bool = False
    beta: float = Field(0.1, gt=0)  # DPO's temperature: how far the policy may move from the reference


class FinetuneSpec(LoopSpec):
    """Fine-tuning (`finetune/recipes.py`). The keys it shares with `train` are `LoopSpec`'s; those below with
    other defaults than pretraining's are restated. The optimizer's finer settings (betas, momentum, Muon's
    learning rate, WSD's decay share) are `train`'s."""

    _prefix: ClassVar[str] = "finetune."

    base: str | None = None  # a model directory, registered name, name@N or digest; None = the project's model
    method: Literal["lora", "full"] = "lora"
    lora: LoraSpec = Field(default_factory=LoraSpec)
    freeze_layers: int = Field(0, ge=0)  # the first N decoder blocks keep their weights (full fine-tuning)
    freeze_embeddings: bool = False
    steps: int = Field(150, ge=1)
    optimizer: Optimizer = "adamw"
    lr: float = Field(2e-3, gt=0)  # LoRA takes a larger learning rate than full fine-tuning (try 1e-4 there)
    schedule: Schedule = "cosine"  # after warmup
    min_lr_ratio: float = Field(0.1, ge=0, le=1)  # the decay ends at lr * min_lr_ratio
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    eval_every: int = Field(50, ge=1)
    sft: SftSpec = Field(default_factory=SftSpec)
    classify: ClassifySpec = Field(default_factory=ClassifySpec)
    preference: PreferenceSpec = Field(default_factory=lambda: PreferenceSpec(lr=2e-3))
