"""`ray job submit` entrypoint: distil the judge ensemble into a pairwise small LM (the vLLM
pairwise judge). Same as `zelo distill --config FILE`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
