"""Where a run's files live: the one place that knows the run directory's layout.

Stages ask ``layout(cfg)`` for their inputs and outputs instead of joining paths themselves, so
the layout can change (or become object-store URIs) in one module.

    <workdir>/                      data.workdir, "{dataset}" expanded
      data/                         the prepared collection (corpus, queries, qrels)
      index/bm25/                   Tantivy BM25
      index/dense/                  LanceDB vectors (or index.uri)
      candidates.parquet/           retrieve's candidates (or retrieve.output)
      candidates.errors.parquet     queries retrieve could not serve
      annotate/                     pairs, votes, Elo, zELO targets (or annotate.output)
      train/                        examples, Ray Train runs, model/ (or train.output)
      tune/                         Ray Tune trials (or tune.output)
      pairwise-slm/                 `zelo distill`'s default output
      metrics.json, report.json     `zelo demo`'s results

Example::

    >>> from zelo_ray.config import load_config
    >>> from zelo_ray.layout import layout
    >>> run = layout(load_config(None, ["data.workdir=/tmp/run"]))
    >>> str(run.candidates), str(run.annotate), run.retrieve_errors.name
    ('/tmp/run/candidates.parquet', '/tmp/run/annotate', 'candidates.errors.parquet')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zelo_ray.config import ZeloConfig

__all__ = ["RunLayout", "layout"]


@dataclass(frozen=True)
class RunLayout:
    workdir: Path
    data: Path
    bm25: Path
    dense: str
    candidates: Path
    annotate: Path
    train: Path
    tune: Path

    @property
    def pairwise(self) -> Path:
        return self.workdir / "pairwise-slm"

    @property
    def metrics(self) -> Path:
        return self.workdir / "metrics.json"

    @property
    def report(self) -> Path:
        return self.workdir / "report.json"

    @property
    def retrieve_errors(self) -> Path:
        """Retrieve's errors table: one row per failed query, next to the candidates."""
        return self.candidates.with_name(self.candidates.name.removesuffix(".parquet") + ".errors.parquet")


def layout(cfg: "ZeloConfig") -> RunLayout:
    """The run directory of ``cfg``, with each stage's ``output`` override applied."""
    work = Path(cfg.workdir())
    return RunLayout(workdir=work, data=work / "data", bm25=work / "index" / "bm25",
                     dense=cfg.index.uri or str(work / "index" / "dense"),
                     candidates=Path(cfg.retrieve.output or work / "candidates.parquet"),
                     annotate=Path(cfg.annotate.output or work / "annotate"),
                     train=Path(cfg.train.output or work / "train"),
                     tune=Path(cfg.tune.output or work / "tune"))
