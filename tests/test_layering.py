"""The layering the package promises, checked on the import statements of its files: the math
core (`zelo_ray/core/`) imports only itself and numeric libraries — no Ray, no Arrow, no I/O
layer, no other package module — so any stage can use it anywhere."""

import ast
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
    assert {f.stem for f in files} >= {"graph", "elo", "_elo_kernels", "ensemble", "simulate", "calibration"}
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
        if f.name in ("layout.py", "config.py"):
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if ".workdir()" in line:
                offenders.append(f"{f.relative_to(PACKAGE)}:{i}: {line.strip()}")
    assert not offenders, "join run paths through zelo_ray.layout.layout(cfg):\n" + "\n".join(offenders)


STAGES = ("data", "retrieval", "judges", "annotate", "train", "eval", "serve")


def test_stages_never_import_workflows_benchmarks_or_the_cli():
    bad = []
    for stage in STAGES:
        for f in sorted((PACKAGE / stage).rglob("*.py")):
            for line, name in imports(f):
                if name.startswith(("zelo_ray.workflows", "zelo_ray.bench", "zelo_ray.cli")):
                    bad.append(f"{f.relative_to(PACKAGE)}:{line} imports {name}")
    assert not bad, "a stage may import only the core, config, layout and other stages:\n" + "\n".join(bad)
