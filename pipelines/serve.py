"""`ray job submit` entrypoint: deploy the reranker with Ray Serve and keep it running
(`zelo serve --config FILE --checkpoint DIR`). For a long-lived service prefer
`serve deploy pipelines/configs/serve.yaml` or the KubeRay RayService in cluster/kuberay/."""

import sys

from zelo_ray.cli import main

if __name__ == "__main__":
    sys.exit(main(["serve", *sys.argv[1:]]))
