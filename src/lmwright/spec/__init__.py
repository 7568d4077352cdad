"""The `lmwright.yaml` schema: every knob of a project, with a default that works on a laptop CPU.

One module per part of the file, each a set of pydantic sections:

- `base`: `Section` and `Toggle`, what every section is made of
- `project`: `ProjectSpec` and `Spec`, the whole file
- `data`: sources, cleaning, filter profiles, PII, deduplication, executors, `split`
- `model`: `tokenizer` and `model`
- `train`: `LoopSpec` (the settings any training loop reads), `train`, `tune` and `cv`
- `finetune`: `finetune`, `LoopSpec` plus the method and the recipes
- `evaluate`: `eval`, `risk` and `requirements`
- `serve`: `serve`
- `deploy`: `registry` (promotion) and `deploy` (routes, canary, shadow, retirement)
- `governance`: the models' licence, what a takedown does, the risk register
- `annotate`: the annotation tasks (kind, labels, items, guidelines, overlap, reviewers, queue order)
- `monitor`: `monitor` (windows, drift tests, alert rules, webhook) and `lifecycle` (retraining)
- `load`: `load_spec`, `apply_override`, `dump_spec`, the default text and the errors that name file, line and field

Import from here (`from lmwright.spec import Spec, load_spec`); the modules are the layout, not the interface.
This package is on the lowest floor: it imports only `lmwright.errors` and third-party packages.
"""

from __future__ import annotations

from lmwright.errors import SpecError
from lmwright.spec.annotate import AnnotateSpec, ItemsSpec, TaskSpec
from lmwright.spec.base import Section, Toggle
from lmwright.spec.data import (
    BUILTIN_PROFILES,
    PII_TYPES,
    BasicSpec,
    BlocklistSpec,
    C4Spec,
    CleanSpec,
    CrawlSource,
    DataSpec,
    DedupSpec,
    ExecutorSpec,
    FilesSource,
    FilterProfile,
    FineWebSpec,
    GopherQualitySpec,
    GopherRepetitionSpec,
    LanguageSpec,
    NearDedupSpec,
    PiiSpec,
    PydocsSource,
    Source,
    SplitSpec,
    SqlSource,
)
from lmwright.spec.deploy import DeploymentSpec, DeploySpec, GateSpec, RegistrySpec, RouteSpec
from lmwright.spec.evaluate import (
    BiasSpec,
    BiasTemplate,
    CanarySpec,
    ContinuationSpec,
    EvalSet,
    EvalSpec,
    RequirementsSpec,
    RiskSpec,
    VerbatimSpec,
)
from lmwright.spec.finetune import ClassifySpec, FinetuneSpec, LoraSpec, PreferenceSpec, RecipeSpec, SftSpec
from lmwright.spec.governance import GovernanceSpec, RiskEntry
from lmwright.spec.load import DEFAULT_SPEC_TEXT, SPEC_FILENAME, apply_override, dump_spec, load_spec
from lmwright.spec.model import ModelSpec, TokenizerSpec
from lmwright.spec.monitor import (
    METRICS,
    AlertRule,
    DriftSpec,
    LifecycleSpec,
    MonitorSpec,
    RetrainSpec,
    WebhookSpec,
)
from lmwright.spec.project import ProjectSpec, Spec
from lmwright.spec.serve import SafetySpec, ServeSpec
from lmwright.spec.train import CVSpec, EarlyStoppingSpec, LoopSpec, TrainSpec, TuneParam, TuneSpec

__all__ = [
    "AnnotateSpec", "ItemsSpec", "TaskSpec", "BUILTIN_PROFILES", "DEFAULT_SPEC_TEXT", "PII_TYPES", "SPEC_FILENAME", "BasicSpec", "BiasSpec", "BiasTemplate",
    "BlocklistSpec", "C4Spec", "CVSpec", "CanarySpec", "ClassifySpec", "CleanSpec", "ContinuationSpec", "CrawlSource",
    "DataSpec", "DedupSpec", "DeploySpec", "DeploymentSpec", "GateSpec", "RegistrySpec", "RouteSpec", "EarlyStoppingSpec", "EvalSet", "EvalSpec", "ExecutorSpec", "FilesSource", "GovernanceSpec", "RiskEntry",
    "FilterProfile", "FineWebSpec", "FinetuneSpec", "GopherQualitySpec", "GopherRepetitionSpec", "LanguageSpec",
    "LoopSpec", "LoraSpec", "ModelSpec", "NearDedupSpec", "PiiSpec", "PreferenceSpec", "ProjectSpec", "PydocsSource",
    "RecipeSpec", "RequirementsSpec", "RiskSpec", "SafetySpec", "Section", "ServeSpec", "SftSpec", "Source", "Spec",
    "SpecError", "SplitSpec", "SqlSource", "Toggle", "TokenizerSpec", "TrainSpec", "TuneParam", "TuneSpec",
    "VerbatimSpec", "apply_override", "dump_spec", "load_spec", "METRICS", "AlertRule", "DriftSpec", "LifecycleSpec",
    "MonitorSpec", "RetrainSpec", "WebhookSpec",
]
