"""Deployment files are checked, not just written: the cluster-launcher YAMLs against Ray's own
schema, the KubeRay RayJob/RayService for the keys the operator needs (and the Serve config inside
the RayService against Serve's schema and our settings), and every pinned version against
constraints.txt."""

import copy
import re
import tomllib
from pathlib import Path

import pytest
import ray
import yaml

from zelo_ray.config import load_config
from zelo_ray.config.serve import ServeConfig

ROOT = Path(__file__).resolve().parents[1]


def _yaml(rel: str):
    return yaml.safe_load((ROOT / rel).read_text())


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.strip().split("==", 1)
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.parametrize("path, gpu_type", [("cluster/aws.yaml", "p5.48xlarge"), ("cluster/gcp.yaml", "a3-highgpu-8g")])
def test_launcher_yaml_passes_rays_schema(path, gpu_type):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = _yaml(path)
    validate_config(prepare_config(copy.deepcopy(raw)))
    types = raw["available_node_types"]
    assert raw["head_node_type"] == "head" and types["head"]["resources"] == {"CPU": 0}
    cfg = types["gpu_workers"]["node_config"]
    assert gpu_type in (cfg.get("InstanceType"), cfg.get("machineType"))
    for name in ("cpu_workers", "gpu_workers"):
        assert 0 <= types[name]["min_workers"] <= types[name]["max_workers"] <= raw["max_workers"]
    assert ray.__version__ in raw["docker"]["image"]
    assert any("constraints.txt" in c for c in raw["setup_commands"])
    assert all("RAY_AUTH_MODE=token" in c for c in raw["head_start_ray_commands"] + raw["worker_start_ray_commands"]
               if "ray start" in c)
    bad = copy.deepcopy(raw)
    bad["available_node_types"]["gpu_workers"]["min_workrs"] = 1      # a typo must not pass
    with pytest.raises(Exception):
        validate_config(prepare_config(bad))


def test_runtime_env_pins_match_constraints():
    env = _yaml("cluster/runtime_env.yaml")
    pins = _constraints()
    listed = {}
    for spec in env["pip"]["packages"]:
        name, version = spec.split("==")
        listed[name.lower().replace("_", "-")] = version
        assert pins[name.lower().replace("_", "-")] == version, spec
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for dep in deps:
        name = re.split(r"[\[=<>]", dep)[0].lower().replace("_", "-")
        assert name == "ray" or name in listed, f"{name} is a dependency but not in runtime_env.yaml"


def _containers(group: dict) -> list[dict]:
    return group["template"]["spec"]["containers"]


def _check_ray_cluster_spec(spec: dict) -> list[dict]:
    assert spec["rayVersion"] == ray.__version__
    head = spec["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    groups = spec["workerGroupSpecs"]
    images = {c["image"] for g in [head, *groups] for c in _containers(g)}
    assert len(images) == 1, f"one image for every pod, got {images}"
    for g in groups:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
        for c in _containers(g):
            res = c["resources"]
            assert res["requests"] == res["limits"], f"{g['groupName']}: requests must equal limits"
    text = yaml.safe_dump(spec)
    assert not re.search(r"sk-[A-Za-z0-9]{10,}|AKIA[0-9A-Z]{16}", text), "a secret is written into a manifest"
    return groups


def test_rayjob_runs_the_full_pipeline_with_a_gpu_group():
    job = _yaml("cluster/kuberay/rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    spec = job["spec"]
    assert "pipelines/full.py" in spec["entrypoint"] and spec["shutdownAfterJobFinishes"] is True
    config = spec["entrypoint"].split("--config")[1].split()[0].replace("/home/ray/zelo-ray/", "")
    load_config(str(ROOT / config))                        # the config it runs is valid
    yaml.safe_load(spec["runtimeEnvYAML"])
    groups = _check_ray_cluster_spec(spec["rayClusterSpec"])
    gpu = [g for g in groups if "nvidia.com/gpu" in _containers(g)[0]["resources"]["limits"]]
    assert gpu and gpu[0]["minReplicas"] == 0             # GPUs scale from zero


def test_rayservice_serve_config_is_valid_and_fits_the_gpu_group():
    from ray.serve.schema import ServeDeploySchema

    svc = _yaml("cluster/kuberay/rayservice.yaml")
    assert svc["apiVersion"] == "ray.io/v1" and svc["kind"] == "RayService"
    serve_cfg = ServeDeploySchema.model_validate(yaml.safe_load(svc["spec"]["serveConfigV2"]))
    app = serve_cfg.applications[0]
    assert app.import_path == "zelo_ray.serve.app:build_app"
    settings = ServeConfig(**app.args)
    dep = app.deployments[0]
    assert dep.name == "RerankServer" and dep.max_ongoing_requests >= 2
    groups = _check_ray_cluster_spec(svc["spec"]["rayClusterConfig"])
    gpus = sum(int(_containers(g)[0]["resources"]["limits"].get("nvidia.com/gpu", 0)) * g["maxReplicas"]
               for g in groups)
    per_replica = dep.ray_actor_options.num_gpus
    assert settings.device == "cuda" and per_replica == 1
    assert dep.autoscaling_config["max_replicas"] * per_replica <= gpus, "autoscaling asks for GPUs the cluster cannot have"
    env_from = [e["secretRef"]["name"] for g in groups for c in _containers(g) for e in c.get("envFrom", [])]
    assert "zelo-api-keys" in env_from                    # replicas read ZELO_API_KEYS from a Secret


def test_cluster_pipeline_config_is_valid():
    cfg = load_config(str(ROOT / "pipelines/configs/full-cluster.yaml"))
    assert cfg.output_uri().startswith("s3://") and "{dataset}" not in cfg.output_uri()
    assert cfg.train.use_gpu and all(j.api_key_env for j in cfg.annotate.judges)
