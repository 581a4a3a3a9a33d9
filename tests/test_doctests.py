"""The runnable examples in the package's docstrings run and give what they show."""

import doctest
import importlib
from pathlib import Path

import pytest

import zelo_ray

PACKAGE = Path(zelo_ray.__file__).parent
MODULES = sorted(".".join(f.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
                 for f in PACKAGE.rglob("*.py") if ">>>" in f.read_text())


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} examples failed"


def test_the_examples_are_found():
    assert {"zelo_ray.core.elo", "zelo_ray.judges.factory", "zelo_ray.config"} <= set(MODULES)
