"""The package's layering, read from the source with ``ast`` (nothing is imported):

- ``visrec.core`` is plain Python over torch and timm: it imports neither Kedro nor the
  parameter models, the pipelines or the Kedro datasets (those convert into core types);
- a pipeline package imports no other pipeline package (what two share is core code);
- a core package's private modules (``_name.py``) are imported only from inside it;
- modules stay short enough to read (at most 350 lines);
- nothing under ``src/`` is named like a test, which pytest would collect.

Each failure names the file and line, and what is accepted instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.conftest import PROJECT_ROOT

SRC = PROJECT_ROOT / "src"
PACKAGE = "visrec"
CORE = "visrec.core"
PIPELINES = "visrec.pipelines"
# What visrec.core must not import: its callers' layers, and Kedro (any kedro_* too).
CORE_FORBIDDEN = ("visrec.params", "visrec.pipelines", "visrec.datasets", "kedro")
MAX_LINES = 350


@dataclass(frozen=True)
class Module:
    """One source file of the package."""

    path: Path
    name: str  # dotted: visrec.core.data.cache
    is_package: bool  # an __init__.py
    tree: ast.Module
    lines: int

    @property
    def where(self) -> str:
        return self.path.relative_to(PROJECT_ROOT).as_posix()

    def within(self, package: str) -> bool:
        """Whether this module is ``package`` or one of its modules."""
        return self.name == package or self.name.startswith(package + ".")


@dataclass(frozen=True)
class Import:
    """A dotted name a module imports: a module, or a name from one (``a.b.name``)."""

    module: Module
    line: int
    target: str

    @property
    def where(self) -> str:
        return f"{self.module.where}:{self.line}"


@cache
def modules() -> tuple[Module, ...]:
    """Every module under src/visrec, parsed."""
    found = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        text = path.read_text(encoding="utf-8")
        found.append(Module(path, name, is_package, ast.parse(text, filename=str(path)),
                            len(text.splitlines())))
    assert found, f"no modules under {SRC / PACKAGE}"
    return tuple(found)


def _absolute(module: Module, name: str | None, level: int) -> str:
    """The absolute name of ``from <level dots><name> import ...`` in ``module``."""
    if level == 0:
        return name or ""
    package = module.name.split(".") if module.is_package else module.name.split(".")[:-1]
    base = package[:len(package) - (level - 1)]
    return ".".join([*base, name] if name else base)


def imports(module: Module) -> Iterator[Import]:
    """Everything ``module`` imports, at any depth (functions, ``TYPE_CHECKING`` blocks),
    and ``importlib.import_module("...")`` calls with a literal name."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(module, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, node.module, node.level)
            yield Import(module, node.lineno, base)
            for alias in node.names:
                if alias.name != "*":
                    yield Import(module, node.lineno, f"{base}.{alias.name}")
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and (getattr(node.func, "attr", None) == "import_module"
                   or getattr(node.func, "id", None) == "import_module")):
            yield Import(module, node.lineno, node.args[0].value)


def _is_under(target: str, package: str) -> bool:
    """Whether dotted ``target`` is ``package`` or inside it; ``kedro`` covers kedro_*."""
    if package == "kedro":
        return target.split(".", maxsplit=1)[0] == "kedro" or target.startswith("kedro_")
    return target == package or target.startswith(package + ".")


def _private_module(target: str, known: set[str]) -> str | None:
    """The private module (``_name``, not ``__dunder__``) that ``target`` is or lies in,
    when ``known`` (the modules' dotted names) has it; a private function is not one."""
    parts = target.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            candidate = ".".join(parts[:index + 1])
            return candidate if candidate in known else None
    return None


# The rules, each over a set of modules: the offences, one line each.

def core_offences(found: tuple[Module, ...]) -> list[str]:
    """Modules of visrec.core importing Kedro, the parameters, pipelines or datasets."""
    return [f"{i.where} imports {i.target}" for m in found if m.within(CORE)
            for i in imports(m) if any(_is_under(i.target, f) for f in CORE_FORBIDDEN)]


def pipeline_offences(found: tuple[Module, ...]) -> list[str]:
    """Modules of one pipeline package importing another pipeline package."""
    offences = []
    for module in found:
        parts = module.name.split(".")
        if not module.within(PIPELINES) or len(parts) < 3:
            continue  # visrec.pipelines itself holds no pipeline
        own = f"{PIPELINES}.{parts[2]}"
        offences += [f"{i.where} (in {own}) imports {i.target}" for i in imports(module)
                     if _is_under(i.target, PIPELINES) and i.target != PIPELINES
                     and not _is_under(i.target, own)]
    return offences


def private_offences(found: tuple[Module, ...]) -> list[str]:
    """Modules importing a private module of a core package they are not in."""
    known = {module.name for module in found}
    offences = []
    for module in found:
        for item in imports(module):
            private = _private_module(item.target, known) if _is_under(item.target, CORE) \
                else None
            owner = None if private is None else private.rsplit(".", 1)[0]
            if owner is not None and not module.within(owner):
                offences.append(f"{item.where} imports {item.target} (private to {owner})")
    return offences


def length_offences(found: tuple[Module, ...]) -> list[str]:
    """Modules longer than :data:`MAX_LINES`, with their line counts."""
    return [f"{m.where}: {m.lines} lines" for m in found if m.lines > MAX_LINES]


def collected_name_offences(found: tuple[Module, ...]) -> list[str]:
    """Functions and classes named as pytest collects tests."""
    return [f"{m.where}:{node.lineno} {type(node).__name__} {node.name}"
            for m in found for node in ast.walk(m.tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and (node.name.startswith("test_") or node.name.startswith("Test"))]


def _report(offences: list[str], rule: str) -> str:
    return f"{len(offences)} offence(s) of: {rule}\n" + "\n".join(f"  {o}" for o in offences)


def test_the_modules_are_found():
    """The walk sees the layers the rules are about (a moved src/ fails here, not silently)."""
    names = {module.name for module in modules()}
    assert {CORE, "visrec.core.train", "visrec.params", PIPELINES,
            "visrec.pipelines.training.nodes", "visrec.datasets"} <= names
    launcher = next(m for m in modules() if m.name == "visrec.core.train.launcher")
    assert any(i.target == "visrec.core.data" for i in imports(launcher))


def test_core_imports_no_kedro_params_pipelines_or_datasets():
    offences = core_offences(modules())
    assert not offences, _report(offences, (
        f"a module under src/visrec/core imports one of {list(CORE_FORBIDDEN)}. Accepted: "
        "visrec.core itself, the standard library and third-party libraries other than Kedro; "
        "parameters reach the core as core types (TrainingParams.fit_config(...), "
        "ClassBalanceParams.settings(), ...), and Kedro datasets wrap core functions"))


def test_no_pipeline_imports_another_pipeline():
    offences = pipeline_offences(modules())
    assert not offences, _report(offences, (
        "a module under src/visrec/pipelines/<a>/ imports visrec.pipelines.<b>. Accepted: "
        "its own package's modules, visrec.core, visrec.params and visrec.datasets; what "
        "two pipelines share belongs in visrec.core (pipelines are composed only in "
        "visrec.pipeline_registry)"))


def test_private_core_modules_are_imported_only_inside_their_package():
    offences = private_offences(modules())
    assert not offences, _report(offences, (
        "a module outside a core package imports one of its private modules (_name.py). "
        "Accepted: the package's public API, as its __init__ exports it "
        "(from visrec.core.data import make_loader), or a public module of it"))


def test_modules_are_at_most_350_lines():
    offences = length_offences(modules())
    assert not offences, _report(offences, (
        f"a module under src/ has more than {MAX_LINES} lines. Accepted: at most "
        f"{MAX_LINES}; split the module along its responsibilities into a package"))


def test_nothing_under_src_is_named_like_a_test():
    offences = collected_name_offences(modules())
    assert not offences, _report(offences, (
        "a function or class under src/ is named test_* or Test*, which pytest collects as "
        "a test. Accepted: any other name (check_*, Trial*, ...)"))


# The rules themselves, on made-up modules: each catches what it is about.

def _module(name: str, source: str, is_package: bool = False) -> Module:
    folder = SRC.joinpath(*name.split("."))
    path = folder / "__init__.py" if is_package else folder.with_suffix(".py")
    return Module(path, name, is_package, ast.parse(source), len(source.splitlines()))


def test_the_import_walk_resolves_relative_and_dynamic_imports():
    nodes = _module("visrec.pipelines.evaluation.nodes",
                    "from .pipeline import create_pipeline\n"
                    "from ..training import nodes\n"
                    "from visrec import params\n"
                    "def f():\n    import kedro.io\n"
                    "importlib.import_module('visrec.pipelines.export')\n")
    assert sorted(i.target for i in imports(nodes)) == [
        "kedro.io", "visrec", "visrec.params", "visrec.pipelines.evaluation.pipeline",
        "visrec.pipelines.evaluation.pipeline.create_pipeline", "visrec.pipelines.export",
        "visrec.pipelines.training", "visrec.pipelines.training.nodes"]
    assert [i.line for i in imports(nodes) if i.target == "kedro.io"] == [5]
    package = _module("visrec.core.augment", "from . import spec\n", is_package=True)
    assert [i.target for i in imports(package)] == ["visrec.core.augment",
                                                    "visrec.core.augment.spec"]


def test_each_rule_catches_its_offence():
    found = (
        _module("visrec.core.data._cache", "import numpy\n"),
        _module("visrec.core.data.loaders", "from ._cache import read\n"),  # its own: fine
        _module("visrec.core.train.loop",
                "from visrec.core.data._cache import read\n"  # private to core.data
                "from visrec.core.data import _helper\n"  # a private name, not a module
                "from visrec.params import TrainingParams\n"
                "from kedro_datasets.pandas import CSVDataset\n"),
        _module("visrec.pipelines.training.nodes",
                "from visrec.pipelines.evaluation.nodes import score\n"
                "from visrec.pipelines.training import pipeline\n"
                "from visrec.core.data import loaders\n"
                "def test_run():\n    pass\n"
                "class TestData:\n    pass\n"
                "def tested():\n    pass\n"),
        _module("visrec.pipeline_registry", "from visrec.pipelines import training\n"
                + "x = 1\n" * MAX_LINES),
    )
    assert core_offences(found) == [
        "src/visrec/core/train/loop.py:3 imports visrec.params",
        "src/visrec/core/train/loop.py:3 imports visrec.params.TrainingParams",
        "src/visrec/core/train/loop.py:4 imports kedro_datasets.pandas",
        "src/visrec/core/train/loop.py:4 imports kedro_datasets.pandas.CSVDataset"]
    assert pipeline_offences(found) == [
        "src/visrec/pipelines/training/nodes.py:1 (in visrec.pipelines.training) imports "
        "visrec.pipelines.evaluation.nodes",
        "src/visrec/pipelines/training/nodes.py:1 (in visrec.pipelines.training) imports "
        "visrec.pipelines.evaluation.nodes.score"]
    assert private_offences(found) == [
        "src/visrec/core/train/loop.py:1 imports visrec.core.data._cache "
        "(private to visrec.core.data)",
        "src/visrec/core/train/loop.py:1 imports visrec.core.data._cache.read "
        "(private to visrec.core.data)"]
    assert length_offences(found) == [f"src/visrec/pipeline_registry.py: {MAX_LINES + 1} lines"]
    assert collected_name_offences(found) == [
        "src/visrec/pipelines/training/nodes.py:4 FunctionDef test_run",
        "src/visrec/pipelines/training/nodes.py:6 ClassDef TestData"]
