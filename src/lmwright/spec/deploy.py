"""The `registry` section (what `lmwright run` does with a new version, the promotion gate) and the `deploy`
section (what `lmwright serve` routes each model id to: canary weights, shadow, and retired weights' fate)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from lmwright.spec.base import Section


class GateSpec(Section):
    """`lmwright promote --to champion`: a challenger may be worse than the champion on the frozen test set by at
    most `tolerance` bits per byte, at the upper end of the paired bootstrap interval (a non-inferiority test)."""

    tolerance: float = Field(0.02, ge=0)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    resamples: int = Field(1000, ge=100)


class RegistrySpec(Section):
    # what `lmwright run` does with a version that passes requirements.acceptance: make it the challenger (and the
    # champion when there is none yet), the champion (through the gate), or nothing
    on_pass: Literal["challenger", "champion", "none"] = "challenger"
    gate: GateSpec = Field(default_factory=GateSpec)


def _is_ref(v: str) -> str:
    name, at, what = v.partition("@")
    if not name or not at or not what:
        raise ValueError(f"{v!r}: name a version or an alias, e.g. '{name or 'my-model'}@champion', "
                         f"'{name or 'my-model'}@latest' or '{name or 'my-model'}@3'")
    return v


class RouteSpec(Section):
    model: str  # NAME@ALIAS (followed as the alias moves) or NAME@VERSION (pinned)
    weight: float = Field(100.0, ge=0)

    _ref = field_validator("model")(_is_ref)


class DeploymentSpec(Section):
    name: str  # the model id clients send
    routes: list[RouteSpec] = Field(min_length=1)
    route_by: Literal["user", "key"] = "user"  # a request's `user` field (else its key), or its API key alone
    shadow: str | None = None  # NAME@ALIAS or NAME@VERSION: mirrored every request; its answers logged, not returned

    @field_validator("shadow")
    @classmethod
    def _shadow(cls, v: str | None) -> str | None:
        return None if v is None else _is_ref(v)

    @model_validator(mode="after")
    def _weights(self) -> DeploymentSpec:
        if sum(r.weight for r in self.routes) <= 0:
            raise ValueError(f"deployment {self.name!r}: the routes' weights add up to 0; give one a weight")
        return self


class DeploySpec(Section):
    # what `lmwright serve` serves: empty = the project's assistant and base model, each at its @champion
    models: list[DeploymentSpec] = Field(default_factory=list)
    refresh_s: float = Field(1.0, gt=0)  # a running server re-reads aliases, retirements and this section so often
    retired_weights: Literal["archive", "delete", "keep"] = "archive"  # what retiring does with a version's weights

    @model_validator(mode="after")
    def _unique(self) -> DeploySpec:
        seen = [d.name for d in self.models]
        if len(seen) != len(set(seen)):
            raise ValueError(f"deploy.models: each name once (got {seen})")
        return self
