"""The cost model (`zelo bench cost`) reads measured rates from docs/bench and projects the paper's
run; the teacher-share split (issue #20) is arithmetic on those rates; the GPU SLM-judge check
runs end to end on CPU in its dry mode before device time is spent on it."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from zelo_ray.bench.cost import project, teacher_share_cost

ROOT = Path(__file__).resolve().parents[1]


def test_teacher_shares_split_the_pairs_between_the_ensemble_and_the_slm():
    kw = dict(pairs=1000.0, judges=3, api_rate=10.0, tokens_per_call=100, slm_rate=2.0, base_gpu_hours=5.0)
    none, half, all_ = (teacher_share_cost(s, **kw) for s in (0.0, 0.5, 1.0))
    assert none["ensemble_calls"] == 0 and none["slm_pairs"] == 1000
    assert half["ensemble_calls"] == 1500 and half["llm_tokens"] == 150_000 and half["slm_pairs"] == 500
    assert half["endpoint_wall_hours"] == round(1500 / 10 / 3600, 2)
    assert half["slm_gpu_hours"] == round(500 / 2 / 3600, 2) and half["calls_saved_vs_ensemble_only"] == 1500
    assert all_["slm_pairs"] == 0 and all_["total_gpu_hours_4b_reranker"] == 5.0
    with pytest.raises(ValueError, match="teacher share"):
        teacher_share_cost(1.5, **kw)


def test_projection_uses_the_measured_gpu_rates():
    r = project(bench=str(ROOT / "docs" / "bench"))
    slm = json.loads((ROOT / "docs/bench/gpu_slm_h200.json").read_text())
    best = max(x["pairs_per_s"] for x in slm["runs"] if x["model"] == "qwen3-0.6b" and "pairs_per_s" in x)
    stage = next(s for s in r["stages"] if "pairwise SLM" in s["stage"])
    assert stage["rate_per_s"] == best and stage["units"] == r["scale"]["pairs"]
    big = next(s for s in r["stages"] if s["stage"].startswith("train 4B"))
    assert "gpu_deepspeed_h200.json" in big["rate_source"] and "extrapolated" not in big["rate_source"]
    shares = {s["teacher_share"]: s for s in r["teacher_shares"]}
    assert set(shares) == {0.1, 0.25, 0.5}
    assert shares[0.1]["ensemble_calls"] < shares[0.25]["ensemble_calls"] < shares[0.5]["ensemble_calls"]
    assert shares[0.5]["ensemble_calls"] == round(0.5 * r["scale"]["judge_calls"])
    with pytest.raises(ValueError, match="no measurement"):
        project(bench=str(ROOT / "docs" / "bench"), slm_model="no-such-model")


def test_the_gpu_slm_judge_check_runs_end_to_end_dry_on_cpu(tmp_path):
    out = tmp_path / "gpu_slm.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_slm_judge", "--dry", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["dry"] is True and res["runs"] and all(x["pairs_per_s"] > 0 for x in res["runs"])
    assert all(0.0 <= x["padding_share"] < 1.0 for x in res["runs"])
