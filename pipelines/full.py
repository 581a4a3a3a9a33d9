"""`ray job submit` entrypoint for the whole pipeline from one config file: index → retrieve →
split the queries → annotate (pairs → judges → Elo → calibration → targets) → train (Ray Train)
→ rerank and evaluate the held-out queries → `metrics.json`, `report.json`.

    ray job submit --working-dir . -- python pipelines/full.py --config pipelines/configs/full-cluster.yaml

Safe to re-run: every stage resumes (indexes, stored votes, the training checkpoint). With
`data.output_uri: s3://bucket/run` the run directory is pulled from there first and pushed back
after every stage, so a new cluster picks up where the last one stopped.
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["full", *sys.argv[1:]]))
