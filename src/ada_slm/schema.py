"""The one base of every pydantic model that reads what a user wrote (a run config, a study, an audit table).

Ground floor: no imports of the package.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """A model of user input: an unknown key is an error (a typo is named, not silently ignored), and so is a
    non-finite number (`epochs: .inf` or `lr: .nan` is a mistake to name, not a value to train with).

    No validate_assignment: these models are built once from a file or the command line and then only read —
    nothing in the package assigns to their fields (a changed copy is `model_copy(update=...)`, which
    validate_assignment would not check anyway), so it would only cost every attribute write a validation."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
