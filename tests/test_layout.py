"""Layout rules: no function in src/ over 60 lines, and public APIs only in src/ and benchmarks/:
no private JAX API, and no private API of Kedro, kedro-datasets, kedro-viz, kedro-mlflow or
MLflow (issue 20, point 5).

The private-API rule, checked on the syntax tree of every module:

* **imports**: no ``from <framework module> import _name``, no ``import`` or ``from`` of a
  framework's private module (``kedro._x``, ``kedro.io._y``). The one exception is
  kedro-viz's documented preview types, :data:`PREVIEW_TYPES` from ``kedro_datasets._typing``.
  The project's own underscored names follow Python's convention, private to their package:
  ``bnstudy.core.config`` may import ``bnstudy.core.validation._plain``, but nothing outside
  ``bnstudy.core`` (another package, benchmarks/) may.
* **other objects' private members**: no ``x._name`` (read, call or write, and no
  ``getattr(x, "_name")``) where ``x`` is not ``self``, ``cls`` or ``super()``, whatever ``x``
  is: another dataset, a framework module, a project module. Dunder names are public, and so
  are ``os._exit`` and a named tuple's documented ``_asdict``, ``_replace``, ``_fields``...
* **subclasses of framework classes**: no ``def _name`` (or class attribute ``_name``) in a
  class deriving, directly or through project classes, from a framework class that has
  ``_name``: that overrides a private method; and no ``self._name`` / ``super()._name`` there
  that the project's own classes do not define: that uses the framework's private state.
  Custom datasets (deriving from Kedro's ``AbstractDataset``) are Kedro's documented extension
  point: they may override :data:`DATASET_HOOKS` and use every member they inherit through
  ``self`` and ``super()`` (``self._get_load_path()``, ``self._filepath``, ``self._protocol``).
  A custom runner (deriving from Kedro's ``AbstractRunner``) is the extension point of Kedro's
  deployment guide: it may define the two abstract methods :data:`RUNNER_METHODS`, and
  nothing else private of the framework.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import PROJECT_ROOT

SOURCES = sorted((PROJECT_ROOT / "src").rglob("*.py"))
CHECKED = [*SOURCES, *sorted((PROJECT_ROOT / "benchmarks").rglob("*.py"))]

FRAMEWORKS = frozenset({"kedro", "kedro_datasets", "kedro_viz", "kedro_mlflow", "mlflow"})
PROJECT = "bnstudy"
PREVIEW_TYPES = {"kedro_datasets._typing": frozenset(
    {"ImagePreview", "HTMLPreview", "JSONPreview", "TablePreview", "PlotlyPreview", "MermaidPreview"})}
"""Private modules whose names kedro-viz's documentation imports (dataset previews)."""
DATASET_HOOKS = frozenset({"_load", "_save", "_describe", "_exists", "_release", "_invalidate_cache"})
"""The underscored methods Kedro's custom-dataset guide has a dataset implement."""
RUNNER_METHODS = frozenset({"_run", "_get_executor"})
"""The abstract methods of ``kedro.runner.AbstractRunner`` that the ``DaskRunner`` of Kedro's
deployment guide "Distributed deployment with Dask" (docs.kedro.org, deploy/supported-platforms/
dask.md) defines in its subclass: Kedro's documented way to write a runner (in Kedro 1.x both
are abstract, so a runner cannot be made without them)."""
PUBLIC_UNDERSCORED = {("os", "_exit")}
"""``module._name`` pairs that are documented public API despite the underscore."""
NAMED_TUPLE_API = frozenset({"_asdict", "_replace", "_fields", "_field_defaults", "_make"})
"""``collections.namedtuple``'s public methods, underscored so as not to clash with fields."""


def test_no_function_is_longer_than_60_lines():
    long = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{path.relative_to(PROJECT_ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_no_private_jax_api():
    assert [p.name for p in CHECKED if "jax._src" in p.read_text()] == []


def test_no_private_api_of_the_frameworks_and_no_other_objects_private_members():
    offenders = private_api_uses({str(p.relative_to(PROJECT_ROOT)): p.read_text() for p in CHECKED})
    assert not offenders, "private API used:\n" + "\n".join(offenders)


# ----------------------------------------------------------------------------- the checker


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _top(module: str) -> str:
    return module.partition(".")[0]


def _dotted(node: ast.expr) -> str | None:
    """``a.b.C`` of a base class expression (``Generic[...]`` subscripts looked through)."""
    if isinstance(node, ast.Subscript):
        return _dotted(node.value)
    if isinstance(node, ast.Attribute):
        head = _dotted(node.value)
        return f"{head}.{node.attr}" if head else None
    return node.id if isinstance(node, ast.Name) else None


@dataclass(eq=False)
class _Class:
    """One class of the project: where it is, its bases as written, the members it defines."""

    path: str
    node: ast.ClassDef
    bases: list[str]
    imports: dict[str, str]
    members: set[str] = field(default_factory=set)


def _imports(tree: ast.Module, module: str) -> dict[str, str]:
    """Local name -> qualified name, for the module's imports (relative ones resolved)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names[alias.asname or _top(alias.name)] = alias.name if alias.asname else _top(alias.name)
        elif isinstance(node, ast.ImportFrom):
            source = _absolute(node, module)
            for alias in node.names:
                names[alias.asname or alias.name] = f"{source}.{alias.name}"
    return names


def _absolute(node: ast.ImportFrom, module: str) -> str:
    if not node.level:
        return node.module or ""
    package = module.split(".")[: -node.level]
    return ".".join([*package, *([node.module] if node.module else [])])


def _module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    parts = parts[1:] if parts[0] == "src" else parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _members(node: ast.ClassDef) -> set[str]:
    """The names a class itself defines: methods, class attributes, ``self.<name> = ...``."""
    members = set()
    for statement in node.body:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            members.add(statement.name)
        for target in getattr(statement, "targets", [getattr(statement, "target", None)]):
            if isinstance(target, ast.Name):
                members.add(target.id)
    for inner in ast.walk(node):
        if (isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store)
                and isinstance(inner.value, ast.Name) and inner.value.id in ("self", "cls")):
            members.add(inner.attr)
    return members


class _Project:
    """The classes of all checked modules, to follow each class up to the framework classes it
    derives from (through project classes in any module)."""

    def __init__(self, trees: Mapping[str, ast.Module]) -> None:
        self.of_node: dict[ast.ClassDef, _Class] = {}
        for path, tree in trees.items():
            imports = _imports(tree, _module_name(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef):
                    bases = [name for base in node.bases if (name := _dotted(base))]
                    self.of_node[node] = _Class(path, node, bases, imports, _members(node))

    def _resolve(self, cls: _Class, base: str) -> tuple[_Class | None, Any]:
        """A base as written -> (the project class, None) or (None, the framework class)."""
        head, _, rest = base.partition(".")
        qualified = f"{cls.imports[head]}{'.' + rest if rest else ''}" if head in cls.imports else base
        if _top(qualified) in FRAMEWORKS:
            module, _, name = qualified.rpartition(".")
            try:
                return None, getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError):
                return None, None
        if head in cls.imports and _top(qualified) != PROJECT:
            return None, None  # another library's class (pydantic, click...)
        module, _, name = qualified.rpartition(".")
        candidates = [c for c in self.of_node.values() if c.node.name == name]
        if head not in cls.imports:  # a class of the same module (or a builtin: none)
            return next((c for c in candidates if c.path == cls.path), None), None
        in_module = (c for c in candidates if _module_name(c.path) == module)  # else re-exported
        return next(in_module, candidates[0] if candidates else None), None

    def ancestors(self, cls: _Class) -> tuple[list[_Class], list[type]]:
        """The project classes above ``cls`` (not itself) and the framework classes they reach."""
        project: list[_Class] = []
        frameworks: list[type] = []
        pending = [(cls, base) for base in cls.bases]
        while pending:
            owner, base = pending.pop()
            parent, framework = self._resolve(owner, base)
            if parent is not None and parent not in project and parent is not cls:
                project.append(parent)
                pending += [(parent, grand) for grand in parent.bases]
            elif isinstance(framework, type):
                frameworks.append(framework)
        return project, frameworks


def _is_dataset(frameworks: list[type]) -> bool:
    from kedro.io import AbstractDataset

    return any(issubclass(framework, AbstractDataset) for framework in frameworks)


def _is_runner(frameworks: list[type]) -> bool:
    from kedro.runner import AbstractRunner

    return any(issubclass(framework, AbstractRunner) for framework in frameworks)


class _Checker(ast.NodeVisitor):
    """Collects one module's private-API uses as ``path:line message`` lines."""

    def __init__(self, path: str, project: _Project) -> None:
        self.path = path
        self.module = _module_name(path)
        self.project = project
        self.found: list[str] = []
        self.scope: list[tuple[_Class, list[_Class], list[type]]] = []  # enclosing classes

    def _flag(self, node: ast.AST, message: str) -> None:
        self.found.append(f"{self.path}:{node.lineno} {message}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if _top(alias.name) in FRAMEWORKS and any(map(_private, alias.name.split("."))):
                self._flag(node, f"imports the private module `{alias.name}`")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        source = _absolute(node, self.module)
        for alias in node.names:
            if _top(source) in FRAMEWORKS and any(map(_private, source.split("."))):
                if alias.name not in PREVIEW_TYPES.get(source, ()):
                    self._flag(node, f"imports `{alias.name}` from the private module `{source}`")
            elif _top(source) in FRAMEWORKS and _private(alias.name):
                self._flag(node, f"imports `{alias.name}`, private to `{source}`")
            elif _top(source) == PROJECT and _private(alias.name):
                package = source.rpartition(".")[0]
                if self.module != package and not self.module.startswith(package + "."):
                    self._flag(node, f"imports `{alias.name}`, private to `{source}`, from outside `{package}`")

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        cls = self.project.of_node[node]
        project, frameworks = self.project.ancestors(cls)
        dataset, runner = _is_dataset(frameworks), _is_runner(frameworks)
        if frameworks:
            for statement in node.body:
                for name in self._defined_names(statement):
                    owner = next((f for f in frameworks if _private(name) and hasattr(f, name)), None)
                    if owner is not None and not (dataset and name in DATASET_HOOKS) and not (
                            runner and name in RUNNER_METHODS):
                        self._flag(statement, f"overrides `{owner.__module__}.{owner.__name__}.{name}`, "
                                              f"private to {_top(owner.__module__)}")
        self.scope.append((cls, project, frameworks))
        self.generic_visit(node)
        self.scope.pop()

    @staticmethod
    def _defined_names(statement: ast.stmt) -> Iterator[str]:
        if isinstance(statement, ast.FunctionDef | ast.AsyncFunctionDef):
            yield statement.name
        for target in getattr(statement, "targets", [getattr(statement, "target", None)]):
            if isinstance(target, ast.Name):
                yield target.id

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self._member(node, node.value, node.attr)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr", "delattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)):
            self._member(node, node.args[0], node.args[1].value)
        self.generic_visit(node)

    def _member(self, node: ast.AST, owner: ast.expr, name: str) -> None:
        """``owner.name``: fine unless private, and on self/cls/super() only in a framework
        subclass other than a dataset, where the project must define it."""
        if not _private(name) or name in NAMED_TUPLE_API:
            return
        is_self = isinstance(owner, ast.Name) and owner.id in ("self", "cls")
        is_super = isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super"
        if not (is_self or is_super):
            if not (isinstance(owner, ast.Name) and (owner.id, name) in PUBLIC_UNDERSCORED):
                self._flag(node, f"accesses `{ast.unparse(owner)}.{name}`, "
                                 "a private member of an object other than self/cls")
            return
        if not self.scope:
            return
        cls, project, frameworks = self.scope[-1]
        if not frameworks or _is_dataset(frameworks):
            return
        own = set().union(*(c.members for c in project), set() if is_super else cls.members)
        owner_class = next((f for f in frameworks if hasattr(f, name)), frameworks[0])
        if name not in own:
            self._flag(node, f"uses `{ast.unparse(owner)}.{name}`, private to "
                             f"`{owner_class.__module__}.{owner_class.__name__}`")


def private_api_uses(files: Mapping[str, str]) -> list[str]:
    """``path:line message`` for every private-API use in ``files`` ({path: source})."""
    trees = {path: ast.parse(source, filename=path) for path, source in files.items()}
    project = _Project(trees)
    found = []
    for path, tree in trees.items():
        checker = _Checker(path, project)
        checker.visit(tree)
        found += checker.found
    return found


# ----------------------------------------------------------------------------- the checker's tests

_OVERRIDE = '''
from kedro.config import OmegaConfigLoader

class Loader(OmegaConfigLoader):
    def _merge_and_resolve(self, key, config_per_file):
        return super()._merge_and_resolve(key, config_per_file)
'''

_DATASET = '''
from kedro.io import AbstractVersionedDataset
from kedro_datasets._typing import ImagePreview

class FileDataset(AbstractVersionedDataset):
    def __init__(self, filepath, version=None):
        self._cache = None
        super().__init__(filepath, version)

    def load(self):
        return open(self._get_load_path()).read()

    def save(self, data):
        open(self._get_save_path(), "w").write(data)

    def _describe(self):
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}

    def _exists(self):
        return True

    def _release(self):
        super()._release()

    def _read(self):
        return self.__class__.__name__

    def preview(self):
        return ImagePreview(self._read())
'''


_RUNNER = '''
from kedro.runner import AbstractRunner

class Runner(AbstractRunner):
    def _get_executor(self, max_workers):
        return None
    def _run(self, pipeline, catalog, hook_manager=None, run_id=None):
        pass
'''


@pytest.mark.parametrize(("source", "expected"), [
    (_OVERRIDE, ["5 overrides `kedro.config.omegaconf_config.OmegaConfigLoader._merge_and_resolve`",
                 "6 uses `super()._merge_and_resolve`"]),
    ("import bnstudy\nfoo = bnstudy.x\nfoo._bar()\n", ["3 accesses `foo._bar`"]),
    ("from kedro.framework.cli.utils import _split_params\n", ["1 imports `_split_params`, private to"]),
    ("import kedro.io.core as core\ncore._parse_filepath('x')\n", ["2 accesses `core._parse_filepath`"]),
    ("from kedro_datasets._typing import NewType\nimport kedro._private\n",
     ["1 imports `NewType` from the private module `kedro_datasets._typing`",
      "2 imports the private module `kedro._private`"]),
    ("def size(dataset):\n    return getattr(dataset, '_version', None)\n", ["2 accesses `dataset._version`"]),
    ("from bnstudy.core.checkpoint import _packed\n",
     ["1 imports `_packed`, private to `bnstudy.core.checkpoint`, from outside `bnstudy.core`"]),
    ("from kedro.runner import SequentialRunner\nclass R(SequentialRunner):\n"
     "    def run(self, *a):\n        return self._run(*a)\n", ["4 uses `self._run`, private to"]),
    (_RUNNER + "    def _suggest_resume_scenario(self, pipeline, done, catalog):\n        pass\n"
     "    def label(self):\n        return self._is_async\n",
     ["9 overrides `kedro.runner.runner.AbstractRunner._suggest_resume_scenario`",
      "12 uses `self._is_async`, private to"]),
    (_DATASET + "\nclass Pinned(FileDataset):\n    def _fetch_latest_load_version(self):\n        return 'v'\n",
     ["32 overrides `kedro.io.core.AbstractVersionedDataset._fetch_latest_load_version`"]),
])
def test_the_checker_flags_private_api(source, expected):
    found = private_api_uses({"src/bnstudy/snippet.py": source})
    assert len(found) == len(expected), found
    for line, start in zip(found, expected, strict=True):
        assert line.startswith(f"src/bnstudy/snippet.py:{start}"), (line, start)


@pytest.mark.parametrize("source", [
    _DATASET,
    _RUNNER,
    "import os\nclass Cache:\n    def __init__(self):\n        self._items = {}\n"
    "    def get(self, key):\n        return self._items.get(key) or self.__dict__\nos._exit(0)\n",
    "from bnstudy.core import checkpoint\nfrom kedro.io import DataCatalog\nDataCatalog().config_resolver.config\n",
    "from collections import namedtuple\nPair = namedtuple('Pair', 'a b')\nPair(1, 2)._asdict()\n",
])
def test_the_checker_allows_datasets_own_members_dunders_and_public_api(source):
    assert private_api_uses({"src/bnstudy/snippet.py": source}) == []


def test_the_checker_allows_a_packages_private_names_inside_the_package_only():
    source = "from bnstudy.core.validation import _plain\n"
    assert private_api_uses({"src/bnstudy/core/config.py": source}) == []
    assert private_api_uses({"benchmarks/bench.py": source}) == [
        "benchmarks/bench.py:1 imports `_plain`, private to `bnstudy.core.validation`, from outside `bnstudy.core`"]


def test_the_checker_follows_a_class_through_project_modules():
    files = {"src/bnstudy/base.py": "from kedro.config import OmegaConfigLoader\nclass Base(OmegaConfigLoader):\n"
                                    "    pass\n",
             "src/bnstudy/child.py": "from bnstudy.base import Base\nclass Child(Base):\n"
                                     "    def _merge_and_resolve(self, key, config):\n        return {}\n"}
    assert private_api_uses(files) == [
        "src/bnstudy/child.py:3 overrides `kedro.config.omegaconf_config.OmegaConfigLoader._merge_and_resolve`, "
        "private to kedro"]
