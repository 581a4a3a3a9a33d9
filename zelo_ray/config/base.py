"""What every configuration section shares: strict models (unknown fields are errors)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["Strict", "even_degree"]


def even_degree(v: int) -> int:
    # Both pair graphs are unions of k/2 Hamiltonian cycles.
    if v % 2:
        raise ValueError(f"k={v} must be even (k/2 Hamiltonian cycles)")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

