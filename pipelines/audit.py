"""`ray job submit` entrypoint: a label-free audit of retrieval systems (sample a query log, pool the
systems' TREC runs or rerank endpoints, judge, Elo, per-system scores and failing queries; see
docs/audit.md). Same as `zelo audit`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["audit", *sys.argv[1:]]))
