"""`ray job submit` entrypoint for the Ray Tune search (ASHA on validation nDCG@10).

    ray job submit --working-dir . -- python pipelines/tune.py --config my.yaml
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["tune", *sys.argv[1:]]))
