"""`ray job submit` entrypoint for the simulated end-to-end of the zELO core.

    ray job submit --working-dir . -- python pipelines/simulate.py --config my.yaml

Arguments are those of `zelo simulate`. Real stages (index, retrieve, judge, elo, train) get
their own entrypoints here as they land.
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["simulate", *sys.argv[1:]]))
