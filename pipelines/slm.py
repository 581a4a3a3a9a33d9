"""`ray job submit` entrypoint: the pairwise-SLM loop — the ensemble judges a share of the pairs,
the SLM distilled from them judges the rest through ray.data.llm. Same as `zelo slm --config FILE`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["slm", *sys.argv[1:]]))
