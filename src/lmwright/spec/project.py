"""The whole project file: `Spec`, its sections in the order `lmwright.yaml` lists them, the rules that span
sections, and `slice`, the plain-data view of some of its keys that stage fingerprints hash."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from lmwright.spec.annotate import AnnotateSpec
from lmwright.spec.base import Section
from lmwright.spec.data import DataSpec, SplitSpec
from lmwright.spec.deploy import DeploySpec, RegistrySpec
from lmwright.spec.evaluate import EvalSpec, RequirementsSpec, RiskSpec
from lmwright.spec.finetune import FinetuneSpec
from lmwright.spec.governance import GovernanceSpec
from lmwright.spec.model import ModelSpec, TokenizerSpec
from lmwright.spec.monitor import LifecycleSpec, MonitorSpec
from lmwright.spec.serve import ServeSpec
from lmwright.spec.train import CVSpec, TrainSpec, TuneSpec


class ProjectSpec(Section):
    name: str = "stdlib-docs"
    seed: int = 1337
    output_dir: str = "lmwright-out"
    store_url: str | None = None  # any SQLAlchemy URL; None = SQLite file inside the workspace


class Spec(Section):
    version: Literal[1] = 1
    project: ProjectSpec = Field(default_factory=ProjectSpec)
    requirements: RequirementsSpec = Field(default_factory=RequirementsSpec)
    data: DataSpec = Field(default_factory=DataSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    train: TrainSpec = Field(default_factory=TrainSpec)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    tune: TuneSpec = Field(default_factory=TuneSpec)
    cv: CVSpec = Field(default_factory=CVSpec)
    risk: RiskSpec = Field(default_factory=RiskSpec)
    serve: ServeSpec = Field(default_factory=ServeSpec)
    registry: RegistrySpec = Field(default_factory=RegistrySpec)
    deploy: DeploySpec = Field(default_factory=DeploySpec)
    finetune: FinetuneSpec = Field(default_factory=FinetuneSpec)
    monitor: MonitorSpec = Field(default_factory=MonitorSpec)
    lifecycle: LifecycleSpec = Field(default_factory=LifecycleSpec)
    governance: GovernanceSpec = Field(default_factory=GovernanceSpec)
    annotate: AnnotateSpec = Field(default_factory=AnnotateSpec)

    @model_validator(mode="after")
    def _context_fits(self) -> Spec:
        if self.train.seq_len > self.model.max_seq_len:
            raise ValueError(
                f"train.seq_len ({self.train.seq_len}) exceeds model.max_seq_len ({self.model.max_seq_len})"
            )
        return self

    def slice(self, *keys: str) -> dict[str, Any]:
        """The parts of the spec named by dotted keys, as plain data (used in stage fingerprints)."""
        data = self.model_dump(mode="json")
        out: dict[str, Any] = {}
        for key in keys:
            if key == "*":
                out[key] = data
                continue
            node: Any = data
            for part in key.split("."):
                node = node[part]
            out[key] = node
        return out
