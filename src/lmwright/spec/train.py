"""The training sections: `LoopSpec`, the settings every training loop reads (`train/step.py`), which
pretraining's `train` and fine-tuning's `finetune` both extend (weight averaging, `average`, among them); `train`
itself; and the searches over it, `tune` (hyper-parameter search) and `cv` (cross-validation)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from lmwright.spec.base import Section, Toggle


class EarlyStoppingSpec(Toggle):
    enabled: bool = False
    patience: int = Field(3, ge=1)  # evaluations without an improvement of at least min_delta
    min_delta: float = Field(0.0, ge=0)  # in validation loss (nats/token)


class AverageSpec(Section):
    """Weight averaging (`train/averaging.py`): the weights validated, kept and saved are an average of the
    weights the optimizer visits after `start` x max_steps, not its last ones. `ema`: an exponential moving
    average (bias-corrected: the first sample counts fully); `tail`: the plain mean. A bare string is the kind:
    `average: tail`. Off by default: on the default project (benchmarks/RESULTS.md) the EMA over the decay phase
    gained 0.004-0.006 bits/byte, an interval clear of zero for one seed of two, and the tail mean nothing: the
    WSD decay already averages."""

    kind: Literal["none", "ema", "tail"] = "none"
    # the share of max_steps after which weights are sampled; None = where the WSD decay begins
    # (1 - train.decay_frac), or half-way with another schedule
    start: float | None = Field(None, ge=0, lt=1)
    ema_decay: float = Field(0.99, gt=0, lt=1)  # ema: per sample; 0.99 ~ the last 100 samples
    every: int = Field(1, ge=1)  # sample every N steps, counted back from the last (checkpoint_every: the checkpoints)

    @model_validator(mode="before")
    @classmethod
    def _bare_kind(cls, value: Any) -> Any:
        return {"kind": value} if isinstance(value, str) else value


Optimizer = Literal["adamw", "adam", "sgd", "adagrad", "adadelta", "rmsprop", "muon"]
Schedule = Literal["cosine", "linear", "constant", "wsd"]


class LoopSpec(Section):
    """What one training loop needs, whichever model it trains: the batch and its micro-batches, the optimizer
    and learning-rate schedule, precision and device, the evaluation and checkpoint cadence, early stopping and
    the process count. `train` and `finetune` extend it with their own keys (and some of their own defaults),
    so both read the same in YAML: `train.lr`, `finetune.lr`."""

    _prefix: ClassVar[str] = ""  # how error messages name the fields: "" for train, "finetune." for finetune

    batch_size: int = Field(8, ge=1)  # sequences per optimizer step
    grad_accum: int = Field(1, ge=1)  # the batch is computed in this many equal micro-batches (less memory)
    seq_len: int = Field(256, ge=8)
    # muon: Muon for the hidden matrices, AdamW (at `lr`) for embeddings, head and norms; see RESULTS.md
    optimizer: Optimizer = "muon"
    lr: float = Field(3e-3, gt=0)
    schedule: Schedule = "wsd"  # after warmup
    min_lr_ratio: float = Field(0.0, ge=0, le=1)  # the decay ends at lr * min_lr_ratio
    warmup_steps: int = Field(30, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float = Field(1.0, ge=0)  # 0 = off
    eval_every: int = Field(100, ge=1)
    checkpoint_every: int = Field(50, ge=1)
    early_stopping: EarlyStoppingSpec = Field(default_factory=EarlyStoppingSpec)
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"  # auto = cuda when there is one, else cpu
    # bf16/fp16 = autocast over fp32 master weights; auto = bf16 where its matmuls are fast (a CUDA GPU from Ampere
    # on, or a CPU with AVX512-BF16 or AMX: the default pretraining ~1/5 faster on a 2-core EPYC), else fp32
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    nproc: int = Field(1, ge=1)  # processes (one per GPU, or CPU processes with gloo) launched with torchrun
    average: AverageSpec = Field(default_factory=AverageSpec)  # weight averaging: none, ema or tail

    @model_validator(mode="after")
    def _accum_divides(self) -> LoopSpec:
        if self.batch_size % (self.grad_accum * self.nproc):
            p = self._prefix
            raise ValueError(f"{p}batch_size ({self.batch_size}) must be divisible by {p}grad_accum x {p}nproc "
                             f"({self.grad_accum} x {self.nproc})")
        return self


class TrainSpec(LoopSpec):
    """Pretraining (`train/loop.py`); the optimizer's finer settings here (betas, momentum, Muon's, WSD's decay)
    serve fine-tuning too."""

    max_steps: int = Field(700, ge=1)
    # continued pretraining: start from this model's weights, architecture and tokenizer, not a random init; a
    # registered NAME[@N|@ALIAS], a digest prefix or a Hugging Face Llama directory (the stages resolve it)
    init_from: str | None = Field(None, min_length=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    muon_lr: float = Field(0.02, gt=0)  # muon: the hidden matrices' peak lr (the rest use lr with AdamW)
    muon_momentum: float = Field(0.95, ge=0, lt=1)
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd and rmsprop
    nesterov: bool = False  # sgd
    decay_frac: float = Field(0.3, gt=0, le=1)  # wsd: the share of steps spent decaying at the end
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eval_batches: int = Field(8, ge=1)
    threads: int | None = Field(None, ge=1)  # torch intra-op threads; None = all cores
    compile: bool = False  # torch.compile the model for training
    activation_checkpointing: bool = False  # recompute each block in backward: less memory, ~1/3 more compute
    distributed: Literal["ddp", "fsdp"] = "ddp"  # with nproc > 1: replicate (DDP) or shard (FSDP2) the model
    log_to: list[Literal["tensorboard", "mlflow"]] = Field(default_factory=list)  # optional metric writers
    peak_tflops: float | None = Field(None, gt=0)  # MFU denominator per process; None = datasheet (known GPUs) or measured

    @model_validator(mode="after")
    def _average_unsharded(self) -> TrainSpec:
        if self.average.kind != "none" and self.distributed == "fsdp" and self.nproc > 1:
            raise ValueError(f"average.kind {self.average.kind} is not supported with distributed: fsdp (its "
                             "parameters are sharded across processes); use distributed: ddp, or average.kind: none")
        return self


class CVSpec(Section):
    folds: int = Field(5, ge=2)
    stratify_by: Literal["label", "source", "none"] = "label"  # label: when the documents have labels
    trial_overrides: list[str] = Field(default_factory=lambda: ["train.max_steps=200", "train.eval_every=50"])


class TuneParam(Section):
    """One search dimension: a range (`low`, `high`, optional `log` or `step`) or a list of `choices`."""

    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> TuneParam:
        if self.choices is None and (self.low is None or self.high is None):
            raise ValueError("give either choices: [...] or low and high")
        if self.choices is None and self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        return self


def _default_space() -> dict[str, TuneParam]:
    return {"train.lr": TuneParam(low=1e-3, high=1e-2, log=True),
            "train.muon_lr": TuneParam(low=0.005, high=0.05, log=True),
            "train.warmup_steps": TuneParam(low=0, high=100, step=10)}


class TuneSpec(Section):
    trials: int = Field(12, ge=1)  # completed + pruned trials in the study
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Literal["median", "hyperband", "none"] = "median"  # stops poor trials from their validation losses
    parallel: int = Field(1, ge=1)  # processes running trials at once, sharing the study in the metadata store
    metric: Literal["val_bpb", "val_loss"] = "val_bpb"  # minimised; never the test split
    trial_overrides: list[str] = Field(default_factory=lambda: ["train.max_steps=200", "train.eval_every=50"])
    space: dict[str, TuneParam] = Field(default_factory=_default_space)  # spec field -> range or choices


