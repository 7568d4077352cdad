"""The `monitor` section (what `lmwright monitor` and a running server measure, the drift tests' settings, the alert
rules and where alerts go) and the `lifecycle` section (when and how `lmwright retrain` makes a new version)."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BeforeValidator, ConfigDict, Field, field_validator, model_validator

from lmwright.spec.base import Section

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(v: object) -> float:
    """A duration: a number of seconds, or a string such as "90s", "5m", "1h", "2d"."""
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", str(v))
    if not m:
        raise ValueError(f"{v!r} is not a duration; write seconds or e.g. '30s', '5m', '1h', '2d'")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


Duration = Annotated[float, BeforeValidator(seconds), Field(ge=0)]

# what a rule may watch: the figures of one model version in `lmwright monitor`'s report
METRICS = {
    "requests": ("performance", "requests"),
    "error_rate": ("performance", "error_rate"),
    "latency_p50_s": ("performance", "latency_p50_s"),
    "latency_p95_s": ("performance", "latency_p95_s"),
    "latency_p99_s": ("performance", "latency_p99_s"),
    "ttft_p95_s": ("performance", "ttft_p95_s"),
    "tokens_per_s": ("performance", "tokens_per_s"),
    "pii_rate": ("performance", "safety", "pii_rate"),
    "blocklist_rate": ("performance", "safety", "blocklist_rate"),
    "feedback_rate": ("performance", "feedback", "rate"),
    "mean_rating": ("performance", "feedback", "mean_rating"),
    "drift": ("drift", "detected"),  # 1 when the text test or at least drift_share of the feature tests drift
    "drift_auc": ("drift", "text", "auc"),
    "drift_share": ("drift", "share_drifted"),
}


class AlertRule(Section):
    """Raise an alert for a model version while `metric op threshold` holds over the last `window`, once it has
    held for `for` (as a Prometheus alerting rule); it resolves when it stops holding."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)

    name: str
    metric: Literal[tuple(METRICS)]  # type: ignore[valid-type]
    op: Literal[">", ">=", "<", "<="] = ">"
    threshold: float
    window: Duration = Field(900.0, gt=0)
    for_: Duration = Field(0.0, alias="for")
    model: str | None = None  # a model name; None = every version that served in the window
    severity: Literal["warning", "critical"] = "warning"


class WebhookSpec(Section):
    url: str | None = None  # alerts are POSTed here as JSON (Alertmanager's webhook shape) when they fire/resolve
    timeout_s: float = Field(5.0, gt=0)
    retry_for: Duration = 86400.0  # a failed delivery is retried at each evaluation for this long, then dropped

    @field_validator("url")
    @classmethod
    def _http(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError(f"{v!r}: give an http:// or https:// URL, e.g. http://127.0.0.1:9093/api/v2/alerts")
        return v


class DriftSpec(Section):
    min_requests: int = Field(50, ge=10)  # fewer production prompts in the window: no verdict ("insufficient")
    max_requests: int = Field(300, ge=10)  # the most recent prompts in the window that are compared
    # what production is compared with: a sample of the version's training data ("training"), or its own first
    # reference_rows production prompts ("first": a baseline window, where training text is unlike prompts)
    reference: Literal["training", "first"] = "training"
    reference_rows: int = Field(1000, ge=50)  # rows in the reference
    drift_share: float = Field(0.5, gt=0, le=1)  # dataset drift: at least this share of the feature tests drift
    text: bool = True  # the domain-classifier text test (needs serve.features_sketch)

    @model_validator(mode="after")
    def _sizes(self) -> DriftSpec:
        if self.max_requests < self.min_requests:
            raise ValueError(f"monitor.drift.max_requests ({self.max_requests}) is below min_requests "
                             f"({self.min_requests}): no window could ever be judged")
        return self


def _default_rules() -> list[AlertRule]:
    return [AlertRule(name="prompt-drift", metric="drift", op=">=", threshold=1, window=3600),
            AlertRule(name="error-rate", metric="error_rate", op=">", threshold=0.05, window=900, for_=300,
                      severity="critical"),
            AlertRule(name="slow-responses", metric="latency_p95_s", op=">", threshold=10, window=900, for_=300)]


class MonitorSpec(Section):
    window: Duration = 3600.0  # the report's window (lmwright monitor --window overrides)
    bucket: Duration = Field(300.0, gt=0)  # the report's time series: one point per bucket
    interval: Duration = 30.0  # a running server evaluates the alert rules this often; 0 = only `lmwright monitor`
    drift: DriftSpec = Field(default_factory=DriftSpec)
    alerts: list[AlertRule] = Field(default_factory=_default_rules)
    webhook: WebhookSpec = Field(default_factory=WebhookSpec)

    @field_validator("alerts")
    @classmethod
    def _unique(cls, v: list[AlertRule]) -> list[AlertRule]:
        names = [r.name for r in v]
        if len(names) != len(set(names)):
            raise ValueError(f"each alert rule needs a name of its own (got {names}): events are kept per name")
        return v


class RetrainSpec(Section):
    method: Literal["finetune", "pretrain"] = "finetune"  # finetune: SFT from the assistant's champion with the new
    # rows; pretrain: continued pretraining from the base model's champion (train.init_from) on new source snapshots
    # a gentler step than the first fine-tuning: on the default project lr 0.001, 60 steps and 3 replayed rows per
    # new one learnt the shifted answers (-0.16 bits/byte) and lost nothing in distribution; finetune.lr (0.002),
    # 100 steps and 1 replayed row learnt more and were 0.11 bits/byte worse on the frozen test split
    steps: int = Field(60, ge=1)
    lr: float | None = Field(0.001, gt=0)  # None = finetune.lr (finetune) or train.lr (pretrain)
    holdout: float = Field(0.25, gt=0, lt=1)  # share of the new rows kept out of training to judge the challenger
    min_held_out: int = Field(10, ge=1)  # fewer held-out new rows than this: too few to judge "better" on
    # corrections are training data: None = from anyone who can call /v1/feedback; a list = only from these API
    # keys' names (reviewers), the rest counted as "from a key not in trusted_keys"
    trusted_keys: list[str] | None = None
    replay: float = Field(3.0, ge=0)  # old training rows mixed in per new row (guards against forgetting)
    on_drift: bool = False  # a firing drift alert starts a retraining (from lmwright monitor or the server)
    feedback_rows: int = Field(0, ge=0)  # this many new corrections since the last retraining start one; 0 = off
    promote: bool = True  # promote the challenger to champion through the registry's gate
    require_improvement: bool = True  # ... and only when it is better on the held-out new rows (its interval < 0)


class LifecycleSpec(Section):
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
