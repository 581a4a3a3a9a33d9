"""`ray job submit` entrypoint: nDCG@10 / Recall@100 / MRR@10 with bootstrap CIs for BM25, dense,
hybrid and (with `--reranker DIR`) a trained reranker. Same as `zelo evaluate`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["evaluate", *sys.argv[1:]]))
