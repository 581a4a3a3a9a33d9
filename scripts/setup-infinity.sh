#!/usr/bin/env bash
# Create or update .venv-infinity: Infinity (infinity-emb, a REST server for embeddings and
# reranking) with its ONNX (optimum) and torch engines, the peer `zelo bench serve-peers`
# measures `zelo serve` against. A separate venv because Infinity's optimum pins transformers 4.x
# (the main environment has 5.x). torch==2.13.0 is the local CPU wheel (unpinned, pip would
# take a multi-GB CUDA build).
# Idempotent: a stamp of this script skips work already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
V="$PWD/.venv-infinity"
if [ ! -x $V/bin/python ]; then
  echo "setup-infinity: creating $V"
  "$PY" -m venv $V
fi
stamp="$V/.zelo-install-stamp"
want=$(sha256sum scripts/setup-infinity.sh | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup-infinity: installing infinity-emb into $V (first run takes a few minutes)"
  $V/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0
  $V/bin/python -m pip install --quiet --disable-pip-version-check torch==2.13.0 \
      "infinity-emb[server,optimum,torch]==0.0.78" "optimum==2.1.0" "optimum-onnx==0.1.0" \
      "onnxruntime==1.32.0" "transformers==4.57.6" "sentence-transformers==3.4.1"
  echo "$want" > "$stamp"
fi
