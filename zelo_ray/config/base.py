"""What every configuration section shares: strict models (unknown fields are errors)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["Backend", "Strict", "even_degree"]

Backend = Literal["torch", "onnx", "onnx-int8"]
"""How a model runs (serving, reranking, the dense index): :mod:`zelo_ray.runtime.backend`."""


def even_degree(v: int) -> int:
    # Both pair graphs are unions of k/2 Hamiltonian cycles.
    if v % 2:
        raise ValueError(f"k={v} must be even (k/2 Hamiltonian cycles)")
    return v


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)

