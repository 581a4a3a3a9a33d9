import json

import pyarrow.parquet as pq
import pytest

from zelo_ray.cli import main
from zelo_ray.config import (ConfigError, OpenAIJudgeConfig, SimulatedJudgeConfig, VLLMPairwiseJudgeConfig,
                             ZeloConfig, default_config_path, load_config)


def test_default_config_matches_model_defaults():
    assert load_config(None) == ZeloConfig()
    assert default_config_path().exists()


def test_every_field_has_a_description():
    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and issubclass(ann, ZeloConfig.__base__):
                walk(ann)

    walk(ZeloConfig)
    for judge in (OpenAIJudgeConfig, VLLMPairwiseJudgeConfig, SimulatedJudgeConfig):
        walk(judge)   # inside a list of a union, so the walk above does not reach them


def test_judge_entries_pick_their_class_by_kind(tmp_path):
    f = tmp_path / "judges.yaml"
    f.write_text("annotate:\n  judges:\n    - {name: a, model: m, base_url: 'http://127.0.0.1:1/v1'}\n"
                 "    - {name: s, kind: simulated, noise_sd: 0.5}\n"
                 "    - {name: v, kind: vllm_pairwise, model: /m, replicas: 2}\n")
    judges = load_config(f).annotate.judges
    assert [type(j) for j in judges] == [OpenAIJudgeConfig, SimulatedJudgeConfig, VLLMPairwiseJudgeConfig]
    assert [j.kind for j in judges] == ["openai", "simulated", "vllm_pairwise"]   # no kind: openai
    assert judges[1].noise_sd == 0.5 and judges[2].replicas == 2
    assert [j.simulated for j in judges] == [False, True, False]
    assert [j.runner for j in judges] == ["caller", "caller", "vllm"]


def test_a_field_of_another_judge_kind_names_the_kind_and_line(tmp_path):
    f = tmp_path / "judges.yaml"
    f.write_text("annotate:\n  judges:\n    - name: a\n      model: m\n      replicas: 4\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    msg = str(exc.value)
    assert f"{f}:5: annotate.judges.0.replicas" in msg and "vllm_pairwise" in msg
    f.write_text("annotate:\n  judges:\n    - name: a\n      kind: gpt\n")
    with pytest.raises(ConfigError) as exc:
        load_config(f)
    assert f"{f}:3: annotate.judges.0" in str(exc.value) and "'openai', 'vllm_pairwise', 'simulated'" in str(exc.value)


def test_the_old_top_level_judges_section_names_its_new_place(tmp_path):
    f = tmp_path / "old.yaml"
    f.write_text("graph:\n  k: 8\njudges:\n  n_judges: 5\n")
    with pytest.raises(ConfigError, match=r"old.yaml:3: .*`judges:`.*`simulate.ensemble`.*annotate.judges"):
        load_config(f)
    with pytest.raises(ConfigError, match="simulate.ensemble"):
        load_config(None, ["judges.n_judges=5"])
    with pytest.raises(ValueError, match="simulate.ensemble"):
        ZeloConfig.model_validate({"judges": {"n_judges": 5}})
    assert load_config(None, ["simulate.ensemble.n_judges=5"]).simulate.ensemble.n_judges == 5


def test_judge_errors_name_the_line(tmp_path):
    bad = tmp_path / "judges.yaml"
    bad.write_text("annotate:\n  judges:\n    - name: a\n      model: m\n    - name: b\n"
                   "      max_concurrency: 0\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    assert f"{bad}:6: annotate.judges.1.max_concurrency" in str(exc.value)


def test_errors_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("graph:\n  k: 7\nelo:\n  model: elo\n  bogus: 1\n")
    with pytest.raises(ConfigError) as exc:
        load_config(bad)
    msg = str(exc.value)
    assert f"{bad}:2: graph.k" in msg and "even" in msg
    assert f"{bad}:4: elo.model" in msg
    assert "elo.bogus" in msg


def test_invalid_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("graph:\n  k: [1,\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_overrides():
    cfg = load_config(None, ["elo.model=bradley_terry", "simulate.n_queries=7"])
    assert cfg.elo.model == "bradley_terry" and cfg.simulate.n_queries == 7
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["elo.model"])


def test_cli_simulate_end_to_end(tmp_path, capsys):
    out = tmp_path / "sim"
    rc = main(["simulate", "--set", "simulate.n_queries=20", "--set", "simulate.n_docs=40",
               "--output", str(out)])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    assert report["label"] == "SIMULATION"
    assert report["converged"] == 20
    assert report["kendall_tau_vs_truth"]["mean"] > 0.7
    table = pq.read_table(out / "zelo.parquet")
    assert table.num_rows == 800
    assert set(table.column("label").to_pylist()) == {"SIMULATION"}
    assert (out / "scores_hist.png").stat().st_size > 1000
    assert "Kendall tau" in capsys.readouterr().out


def test_cli_reports_config_errors(capsys):
    assert main(["simulate", "--set", "graph.k=3"]) == 2
    assert "graph.k" in capsys.readouterr().err


def test_cli_benchmarks_run_small(tmp_path):
    assert main(["bench", "elo", "--queries", "300", "--chunk", "128", "--choix-sample", "3",
                 "--models", "bradley_terry", "--quiet", "--json", str(tmp_path / "e.json")]) == 0
    r = json.loads((tmp_path / "e.json").read_text())["results"][0]
    assert r["queries"] == 300 and r["not_converged"] == 0 and r["edges"] == 300 * 400
    assert main(["bench", "sampling", "--queries", "4", "--budgets", "100", "400", "--quiet",
                 "--json", str(tmp_path / "s.json"), "--plot", str(tmp_path / "s.png")]) == 0
    rows = json.loads((tmp_path / "s.json").read_text())["rows"]
    assert {(r["strategy"], r["budget"]) for r in rows} >= {("cycles", 400), ("random", 100)}
    assert (tmp_path / "s.png").exists()
    assert main(["bench", "model-fit", "--queries", "5", "--votes", "3",
                 "--json", str(tmp_path / "m.json")]) == 0
    assert len(json.loads((tmp_path / "m.json").read_text())["rows"]) == 2


def test_the_configuration_reference_is_current():
    from pathlib import Path

    from zelo_ray.config import reference_markdown

    doc = Path(__file__).parent.parent / "docs" / "configuration.md"
    assert doc.read_text().rstrip("\n") == reference_markdown().rstrip("\n"), \
        "docs/configuration.md is stale: regenerate it with `zelo config --markdown > docs/configuration.md`"
