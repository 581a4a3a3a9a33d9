"""The layering the package promises, checked on the import statements of its files: the math
core (`zelo_ray/core/`) imports only itself and numeric libraries — no Ray, no Arrow, no I/O
layer, no other package module — so any stage can use it anywhere."""

import ast
import re
from pathlib import Path

import zelo_ray

PACKAGE = Path(zelo_ray.__file__).parent
CORE_MAY_IMPORT = {"numpy", "scipy", "numba", "math", "os", "warnings", "dataclasses", "typing", "__future__"}


def imports(path: Path) -> list[tuple[int, str]]:
    """Every module a file imports (top level or inside functions), with its line; relative
    imports resolved against the file's package."""
    tree = ast.parse(path.read_text(), filename=str(path))
    pkg = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                name = f"{base}.{node.module}" if node.module else base
            else:
                name = node.module or ""
            out.append((node.lineno, name))
            if name in ("zelo_ray", "zelo_ray.core"):  # `from zelo_ray.core import elo`
                out += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return out


def test_core_imports_nothing_above_it():
    files = sorted((PACKAGE / "core").glob("*.py"))
    assert {f.stem for f in files} >= {"graph", "elo", "_elo_kernels", "ensemble", "simulate", "calibration", "stats"}
    bad = []
    for f in files:
        for line, name in imports(f):
            top = name.split(".")[0]
            if top == "zelo_ray":
                if not (name == "zelo_ray.core" or name.startswith("zelo_ray.core.")):
                    bad.append(f"{f.name}:{line} imports {name}")
            elif top not in CORE_MAY_IMPORT:
                bad.append(f"{f.name}:{line} imports {name}")
    assert not bad, "the core must stay free of Ray, Arrow, I/O and the layers above it:\n" + "\n".join(bad)


def test_the_checker_sees_imports_inside_functions(tmp_path):
    f = PACKAGE / "core" / "elo.py"
    names = {n for _, n in imports(f)}
    assert "zelo_ray.core._elo_kernels" in names and "numba" in names  # both are function-local there


def test_run_paths_come_from_the_layout():
    """Stages ask ``layout(cfg)`` for run-directory paths instead of joining ``cfg.workdir()``
    themselves (the layout can then change, or become URIs, in one module)."""
    offenders = []
    for f in sorted(PACKAGE.rglob("*.py")):
        if f.name == "layout.py":
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if ".workdir()" in line:
                offenders.append(f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert not offenders, "join run paths through zelo_ray.layout.layout(cfg):\n" + "\n".join(offenders)


LAYOUT_NAMES = re.compile(r'/\s*"(data|index|annotate|train|tune|candidates\.parquet|metrics\.json|pairwise-slm)"')


def test_run_directory_folders_are_named_only_by_the_layout():
    """`<dir> / "annotate"` written by hand ignores ``annotate.output`` (the report once did):
    every run-directory folder comes from :func:`zelo_ray.layout.layout` or ``layout_at``."""
    bad = [f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}" for f in sorted(PACKAGE.rglob("*.py")) if f.name != "layout.py"
           for i, line in enumerate(f.read_text().splitlines(), 1) if LAYOUT_NAMES.search(line)]
    assert not bad, "name run folders through zelo_ray.layout:\n" + "\n".join(bad)


STAGES = ("data", "retrieval", "scoring", "judges", "annotate", "train", "eval", "serve")


def test_stages_never_import_workflows_benchmarks_or_the_cli():
    bad = []
    for stage in STAGES:
        for f in sorted((PACKAGE / stage).rglob("*.py")):
            for line, name in imports(f):
                if name.startswith(("zelo_ray.workflows", "zelo_ray.bench", "zelo_ray.cli")):
                    bad.append(f"{f.relative_to(PACKAGE)}:{line} imports {name}")
    assert not bad, "a stage may import only the core, config, layout and other stages:\n" + "\n".join(bad)


# Lowest first. A module may import its own unit and any unit of a lower rank, never a higher or
# an equal-ranked other unit. `pipelines/` and `benchmarks/` scripts sit above all of it.
LAYERS = [
    ("core",),                                  # math: numpy/scipy/numba only (test above)
    ("config",),                                # typed configuration
    ("retry",),                                 # backoff delays and Retry-After (pure)
    ("storage", "faults", "reuse"),             # plain I/O helpers: copying run dirs, errors tables, reuse-if-unchanged
    ("raysession",),                            # joining Ray; where the driver's helper actors live
    ("layout", "relay", "ticker"),              # run paths; workers' lines to the driver; progress cadence
    ("runlog",),                                # a command's log file, and the link to Ray's session logs
    ("reach",),                                 # where workers on any node find the run's files
    ("runtime",),                               # how a model folder runs: torch, or its ONNX export
    ("data",), ("retrieval",),                  # stages: the collection, first-stage retrieval
    ("scoring",),                               # scoring a (query, document) with a checkpoint
    ("eval",), ("judges",), ("annotate",), ("train",), ("serve",),  # stages
    ("workflows",),                             # multi-stage flows
    ("bench",),                                 # benchmarks
    ("cli_handlers",),                          # what each subcommand does with its arguments
    ("cli",),                                   # the command line
]
RANK = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "zelo_ray" and len(parts) > 1 else None


def _module_name(f: Path) -> str:
    return ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")


def test_serving_and_evaluation_never_import_training():
    """Scoring a pair is :mod:`zelo_ray.scoring`'s; `serve/` and `eval/` use it, never `train/`
    (which only trains), whatever their ranks allow."""
    bad = []
    for unit in ("serve", "eval"):
        for f in sorted((PACKAGE / unit).rglob("*.py")):
            bad += [f"{f.relative_to(PACKAGE)}:{line} imports {name}" for line, name in imports(f)
                    if name.startswith("zelo_ray.train")]
    assert not bad, "\n".join(bad)


def test_every_unit_has_a_layer():
    units = {f.stem if f.suffix == ".py" else f.name for f in PACKAGE.iterdir()
             if (f.suffix == ".py" and f.stem != "__init__") or (f / "__init__.py").exists()}
    assert units <= set(RANK), f"place these in LAYERS: {sorted(units - set(RANK))}"


def test_no_import_runs_uphill():
    bad = []
    for f in sorted(PACKAGE.rglob("*.py")):
        src = _unit(_module_name(f))
        if src is not None:
            bad += [f"{f.relative_to(PACKAGE)}:{v}" for v in _uphill(src, imports(f))]
    assert not bad, ("imports must run down the layers (core → config → storage/faults → layout → runtime → data → "
                     "retrieval → scoring → eval → judges → annotate → train → serve → workflows → bench → cli):\n"
                     + "\n".join(bad))


def _uphill(src: str, names: list[tuple[int, str]]) -> list[str]:
    out = []
    for line, name in names:
        dst = _unit(name)
        if dst is not None and dst != src and dst in RANK and RANK[dst] >= RANK[src]:
            out.append(f"{line}: ({src}) imports {name} ({dst})")
    return out


def test_the_checkers_catch_planted_faults():
    planted = [(1, "zelo_ray.config"), (2, "zelo_ray.judges.factory"), (3, "zelo_ray.workflows.demo"),
               (4, "zelo_ray.serve.app"), (5, "numpy")]
    assert _uphill("annotate", planted) == ["3: (annotate) imports zelo_ray.workflows.demo (workflows)",
                                            "4: (annotate) imports zelo_ray.serve.app (serve)"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _module_edges(f: Path, modules) -> set[str]:
    """The package modules ``f`` makes Python execute. `from pkg import sub` runs ``pkg.sub`` (its
    parent package is already initialising: not an edge), `from pkg import name` runs ``pkg``."""
    tree = ast.parse(f.read_text(), filename=str(f))
    pkg = ".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts[:-1])
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name in modules}
        elif isinstance(node, ast.ImportFrom):
            base = (pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg) if node.level else ""
            base = f"{base}.{node.module}" if base and node.module else (node.module or base)
            for a in node.names:
                if f"{base}.{a.name}" in modules:
                    out.add(f"{base}.{a.name}")
                elif base in modules:
                    out.add(base)
    return out


def test_no_circular_imports():
    """No cycle among the package's modules (imports inside functions count too)."""
    modules = {_module_name(f): f for f in PACKAGE.rglob("*.py")}
    graph = {name: _module_edges(f, modules) - {name} for name, f in modules.items()}
    cycles = _cycles(graph)
    assert not cycles, "circular imports:\n" + "\n".join(" → ".join(c) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_is_too_long():
    long = [f"{f.relative_to(PACKAGE)}: {n} lines" for f in sorted(PACKAGE.rglob("*.py"))
            if f.name != "_elo_kernels.py" and (n := len(f.read_text().splitlines())) > 400]
    assert not long, "split modules over 400 lines by concept:\n" + "\n".join(long)
    assert len((PACKAGE / "cli.py").read_text().splitlines()) < 250, "cli.py must stay thin"


# The Elo kernel's compiled Newton solve of one group is long by nature (numba: one loop nest,
# no calls worth their overhead); nothing else may be.
LONG_FUNCTIONS = {("core/_elo_kernels.py", "_fit_one")}


def test_functions_read_as_named_steps():
    """Past ~60 lines a function is several functions (the house style); no new long one."""
    long = set()
    for f in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 60:
                long.add((str(f.relative_to(PACKAGE)), node.name))
    assert long <= LONG_FUNCTIONS, f"split into named steps: {sorted(long - LONG_FUNCTIONS)}"
    assert not LONG_FUNCTIONS - long, f"no longer long, remove from LONG_FUNCTIONS: {sorted(LONG_FUNCTIONS - long)}"

