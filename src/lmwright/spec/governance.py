"""The `governance` section: the licence the project's models are published under (checked against each source's),
what `lmwright forget` does with the artifacts a taken-down document reached, and the risk register (NIST AI RMF's
map, measure, manage: each risk with its owner and the check that measures it)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from lmwright.spec.base import Section
from lmwright.spec.evaluate import _criterion


class RiskEntry(Section):
    risk: str  # what could go wrong, in the owner's words
    owner: str  # who answers for it
    check: Annotated[str, AfterValidator(_criterion)]  # the criterion that measures it: "risk.injection_rate <= 0.5"
    models: list[Literal["base", "assistant", "classifier"]] = Field(
        default_factory=lambda: ["base", "assistant", "classifier"])  # which of the project's models it concerns
    mitigation: str | None = None


class GovernanceSpec(Section):
    # the licence the project's models are published under (SPDX id, as the model card's `license:`); each source's
    # licence is checked against it (core/licenses.py) and a conflict blocks export and promotion
    license: str = "apache-2.0"
    unknown_license: Literal["warn", "block"] = "warn"  # a source whose licence is "unknown"
    # `lmwright forget`: artifacts a taken-down document reached are moved to .lmwright/quarantine (kept for an
    # investigation, out of every path a run reads) or deleted
    takedown: Literal["quarantine", "delete"] = "quarantine"
    risks: list[RiskEntry] = Field(default_factory=list)
