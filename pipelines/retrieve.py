"""`ray job submit` entrypoint for first-stage retrieval: index (restartable) → retrieve →
evaluate when the collection has qrels for the configured split.

    ray job submit --working-dir . -- python pipelines/retrieve.py --config my.yaml \
        --set data.dataset=/data/my-beir-folder

Arguments: --config FILE and any number of --set key=value overrides (see
docs/configuration.md). Inside a job, Ray connects to the job's cluster automatically.
"""

import argparse
import json
import sys

from zelo_ray.config import load_config
from zelo_ray.data import open_collection
from zelo_ray.eval.evaluate import evaluate_with_config
from zelo_ray.retrieval.indexing import run_index
from zelo_ray.retrieval.pipeline import run_retrieve
from zelo_ray.layout import layout


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    report = {"index": run_index(cfg), "retrieve": run_retrieve(cfg)}
    col = open_collection(layout(cfg).data)
    if cfg.data.split in col.splits:
        report["metrics"] = evaluate_with_config(col, cfg.data.split, report["retrieve"]["candidates"],
                                                 cfg.evaluate)
    print(json.dumps(report, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
