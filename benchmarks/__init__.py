"""Benchmark and probe scripts that sit outside `zelo bench` (one-off probes, GPU checks, load
tests). Run them from the repository root as modules, e.g. ``python -m benchmarks.gpu_train``:
they import the zelo_ray package (installed by `make setup`, or the checkout itself on the GPU
machine, which has no install), never patch ``sys.path``. The recurring benchmarks are `zelo bench …`."""
