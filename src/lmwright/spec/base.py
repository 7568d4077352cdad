"""The building blocks every section of the spec is made of: `Section` (unknown keys are errors, assignments
are validated) and `Toggle` (a section with an `enabled` switch)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Toggle(Section):
    enabled: bool = True
