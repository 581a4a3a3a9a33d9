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

__all__ = ["RunLayout", "layout", "layout_at"]


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
    def index(self) -> Path:
        """The folder of the run's own indexes (BM25 and, unless ``index.uri`` moves it, dense)."""
        return self.bm25.parent

    @property
    def zelo(self) -> Path:
        """The annotation stage's zELO table (one row per judged candidate)."""
        return self.annotate / "zelo.parquet"

    @property
    def annotate_report(self) -> Path:
        return self.annotate / "report.json"

    @property
    def slm(self) -> Path:
        """The pairwise-SLM loop's outputs inside the annotation folder."""
        return self.annotate / "slm"

    @property
    def model(self) -> Path:
        """The trained checkpoint (what `zelo serve` and the evaluation load)."""
        return self.train / "model"

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


def layout_at(workdir: str | Path) -> RunLayout:
    """The default layout of a run directory (no stage ``output`` overrides): what a reader
    given only a folder — `zelo report DIR`, an audit's or a Tune trial's own folder — uses."""
    work = Path(workdir)
    return RunLayout(workdir=work, data=work / "data", bm25=work / "index" / "bm25", dense=str(work / "index" / "dense"),
                     candidates=work / "candidates.parquet", annotate=work / "annotate", train=work / "train",
                     tune=work / "tune")


def layout(cfg: "ZeloConfig") -> RunLayout:
    """The run directory of ``cfg``, with each stage's ``output`` override applied."""
    from dataclasses import replace

    base = layout_at(cfg.workdir())
    return replace(base, dense=cfg.index.uri or base.dense,
                   candidates=Path(cfg.retrieve.output or base.candidates),
                   annotate=Path(cfg.annotate.output or base.annotate),
                   train=Path(cfg.train.output or base.train), tune=Path(cfg.tune.output or base.tune))
