"""What the CLI's one-call commands run (`zelo index`, `first-stage`, `refine`, `tune`, `slm`),
each importing its stage or workflow only when called, so `zelo --help` loads none of them,
and named here by import rather than by a ``module:function`` string the layering test cannot see."""

from __future__ import annotations

__all__ = ["run_first_stage", "run_index", "run_refine", "run_slm_loop", "run_tune"]


def run_index(cfg):
    from zelo_ray.retrieval.indexing import run_index as run
    return run(cfg)


def run_first_stage(cfg):
    from zelo_ray.workflows.first_stage import run_first_stage as run
    return run(cfg)


def run_refine(cfg):
    from zelo_ray.workflows.refine import run_refine as run
    return run(cfg)


def run_tune(cfg):
    from zelo_ray.workflows.tune import run_tune as run
    return run(cfg)


def run_slm_loop(cfg):
    from zelo_ray.workflows.slm_loop import run_slm_loop as run
    return run(cfg)
