"""`ray job submit` entrypoint for the judging stage (pairs → judges → Elo → targets).

    ray job submit --working-dir . -- python pipelines/annotate.py --config my.yaml

Same as `zelo annotate --config my.yaml`; re-submitting resumes from the stored votes. API keys
come from the environment variables the config names: pass them to the job with
``--runtime-env-json '{"env_vars": {"OPENAI_API_KEY": "..."}}'`` or set them on the cluster.
"""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["annotate", *sys.argv[1:]]))
