"""`ray job submit` entrypoint for training a reranker on the zELO targets (Ray Train).

    ray job submit --working-dir . -- python pipelines/train.py --config my.yaml \
        --set train.num_workers=8 --set train.use_gpu=true

Same as `zelo train --config my.yaml`; re-submitting the same config resumes from the last
checkpoint (the run is named by a fingerprint of the settings and the data).
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
