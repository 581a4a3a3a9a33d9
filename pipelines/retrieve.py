"""`ray job submit` entrypoint for first-stage retrieval: index (restartable) → retrieve →
evaluate when the collection has qrels for the configured split.

    ray job submit --working-dir . -- python pipelines/retrieve.py --config my.yaml \
        --set data.dataset=/data/my-beir-folder

Same as `zelo first-stage --config FILE [--set k=v …]` (docs/configuration.md lists the fields).
Inside a job, Ray connects to the job's cluster automatically.
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["first-stage", *sys.argv[1:]]))
