"""`ray job submit` entrypoint: convert a collection to Parquet and build its BM25 (Tantivy) and
dense (LanceDB) indexes; restartable. Same as `zelo index --config FILE [--set k=v …]`."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["index", *sys.argv[1:]]))
