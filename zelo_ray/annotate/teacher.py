"""Which judges judge which pairs in the pairwise-SLM loop (issue #20): the ensemble judges a
share of each query's pairs (the teacher pairs) and every cross-query pair; the distilled SLM
judges the other within-query pairs. Pure functions of the pair ids and the run seed, so a
re-run routes exactly as the first one did and reuses its stored votes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from zelo_ray.judges.keys import uniforms

__all__ = ["clamp_mask", "judge_rows", "pair_sources", "teacher_mask"]

_SALT = 0x7EAC4E  # its own stream: independent of A/B orders and swap probes


def teacher_mask(pair_id: np.ndarray, share: float, seed: int) -> np.ndarray:
    """(n,) bool: the pairs the ensemble judges, about ``share`` of them.

    >>> m = teacher_mask(np.arange(10_000, dtype=np.int64), 0.25, seed=0)
    >>> bool(0.23 < m.mean() < 0.27), bool((m == teacher_mask(np.arange(10_000, dtype=np.int64), 0.25, 0)).all())
    (True, True)
    """
    if not 0.0 < share <= 1.0:
        raise ValueError(f"teacher_share must be in (0, 1], got {share}")
    return uniforms(np.asarray(pair_id), _SALT + int(seed)) < share


def judge_rows(items: pa.Table, acfg, *, teacher_only: bool) -> dict[str, np.ndarray] | None:
    """Rows of ``items`` (pairs and cross pairs, as :func:`~zelo_ray.annotate.tasks.calls_table`
    lays them out) each judge is asked about in the SLM loop: the ensemble's judges the teacher
    pairs and every cross pair, the SLM the other within-query pairs (none when ``teacher_only``:
    it is not distilled yet). None outside the loop: every judge asks about every row. Choosing
    rows before the calls are built keeps the loop's cost that of the calls it makes (building
    every judge's calls and filtering afterwards made a 112k-query teacher pass's task step 1.8×
    that of plain annotation with a quarter of the calls)."""
    slm = acfg.slm
    if slm.judge is None:
        return None
    within = ~pc.equal(items["kind"], "cross").to_numpy(zero_copy_only=False)
    teacher = teacher_mask(items["pair_id"].to_numpy(), slm.teacher_share, acfg.seed)
    ensemble_rows = np.flatnonzero(~within | teacher)
    slm_rows = np.empty(0, np.int64) if teacher_only else np.flatnonzero(within & ~teacher)
    return {j.name: slm_rows if j.name == slm.judge else ensemble_rows for j in acfg.judges}


def pair_sources(pair_id: np.ndarray, slm_judge: str | None, share: float, seed: int) -> pa.Array:
    """Which side judged each within-query pair: 'ensemble', or 'slm' in the loop's bulk."""
    source = np.full(len(pair_id), "ensemble", dtype=object)
    if slm_judge is not None:
        source[~teacher_mask(pair_id, share, seed)] = "slm"
    return pa.array(source, pa.string())


def clamp_mask(acfg) -> np.ndarray:
    """Per judge of ``acfg.judges``: round its scores to {-1, 0, 1} before averaging? The paper's
    rule (``annotate.clamp``) is for rated answers; a pairwise model's score is 1 − 2·P(first),
    a probability already, which rounding would turn into a tie whenever 0.25 < P < 0.75."""
    return np.array([acfg.clamp and j.kind != "vllm_pairwise" for j in acfg.judges], dtype=bool)
