"""`ray job submit` entrypoint: the refinement pass (judge the pairs where the reranker fails a
human label, refit Elo, retrain). Same as `zelo refine --config FILE`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["refine", *sys.argv[1:]]))
