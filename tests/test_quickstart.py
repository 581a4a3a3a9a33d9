"""The `ray job submit` entrypoints parse their arguments (the stages themselves are tested in
test_retrieval_pipeline.py and test_annotate.py; `zelo demo` chains them)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("script", ["pipelines/retrieve.py", "pipelines/annotate.py", "pipelines/slm.py"])
def test_pipeline_entrypoint_help(script):
    out = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, check=True)
    assert "--config" in out.stdout and "--set" in out.stdout
