"""pydocs: the English prose that installed Python distributions ship, one group per package.

Every distribution installed in the running environment (``importlib.metadata``) gives:

- its long description (the README shown on its PyPI page), one example per paragraph,
  in the group ``DIST (description)``;
- the docstrings of its modules, classes and functions, one example per docstring, in
  the group of the Python package (directory) the module is in: ``torch.nn.modules``,
  ``scipy.stats``; a top-level module ``six.py`` is its own group ``six``.

Modules are parsed with :mod:`ast`, never imported: building runs no code from them.
Test suites (``tests``, ``test``, ``testing`` directories) and vendored copies
(``_vendor``, ``vendored``, ``third_party``) are left out, as are docstrings shorter than
``min_chars`` and files Python cannot parse; the corpus is what ``pip list`` shows, so
the manifest records each distribution and its version. With ``group="distribution"``
a group is a whole distribution (description and docstrings together).

Columns: ``dist``, ``version``, ``package``, ``path`` (the file, relative to the
distribution's root; empty for a description), ``kind`` (``description`` or
``docstring``), ``text``, and ``group`` (the key).

>>> import fedgroups as fg
>>> source, key, kwargs = fg.recipes.get_recipe("pydocs").build_args(
...     distributions="packaging,pluggy")
>>> key
'field:group'
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pyarrow as pa

from fedgroups.errors import SettingError
from fedgroups.recipes.base import Recipe
from fedgroups.sources.base import Source

SCHEMA = pa.schema([("dist", pa.string()), ("version", pa.string()), ("package", pa.string()),
                    ("path", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                    ("group", pa.string())])
Grouping = Literal["package", "distribution"]
SKIP_DIRS = frozenset({"tests", "test", "testing", "_vendor", "vendored", "third_party",
                       "__pycache__"})
ITEMS_PER_UNIT = 32  # work items (a description or a file) read by one worker at a time


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True)
class Item:
    """One thing to read: a distribution's description (``file`` empty) or one module."""

    dist: str
    version: str
    file: str = ""  # path relative to the distribution's root (site-packages)
    root: str = ""
    description: str = ""  # the long description, read with the metadata


def installed(names: Sequence[str] | None, paths: Sequence[str] | None) -> list[md.Distribution]:
    """Installed distributions (first of each name on the path), sorted by name."""
    found: dict[str, md.Distribution] = {}
    for d in md.distributions(**({"path": list(paths)} if paths is not None else {})):
        name = d.metadata["Name"]
        if name and _norm(name) not in found:
            found[_norm(name)] = d
    if names is not None:
        missing = [n for n in names if _norm(n) not in found]
        if missing:
            raise SettingError(
                f"recipe 'pydocs': distribution(s) {missing} are not installed here "
                "(`pip list` shows what is); install them or leave them out of distributions")
        found = {k: v for k, v in found.items() if k in {_norm(n) for n in names}}
    return [found[k] for k in sorted(found)]


def package_of(parts: Sequence[str]) -> str | None:
    """Dotted package of a module path (``a/b/c.py`` -> ``a.b``), None if not importable
    or left out (tests, vendored copies)."""
    dirs = parts[:-1]
    if any(p in SKIP_DIRS or not p.isidentifier() for p in dirs):
        return None
    if not dirs:
        stem = parts[-1].removesuffix(".py")
        return stem if stem.isidentifier() else None
    return ".".join(dirs)


def work_items(dists: Sequence[md.Distribution]) -> list[Item]:
    items: list[Item] = []
    for d in dists:
        name, version = d.metadata["Name"], d.version or ""
        text = d.metadata.get_payload() or d.metadata.get("Description") or ""  # type: ignore[attr-defined]
        items.append(Item(dist=name, version=version, description=text))
        root = str(d.locate_file(""))
        for f in sorted(d.files or [], key=str):
            if f.suffix == ".py" and package_of(f.parts) is not None:
                items.append(Item(dist=name, version=version, file=str(f), root=root))
    return items


def docstrings(source: str) -> Iterator[str]:
    """Docstrings of a module and of its classes and functions, in source order."""
    def walk(node: ast.AST) -> Iterator[str]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc:
                yield doc
        for child in ast.iter_child_nodes(node):
            yield from walk(child)
    yield from walk(ast.parse(source))


def paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


@dataclass
class PydocsSource(Source):
    items: list[Item] = field(default_factory=list)
    grouping: Grouping = "package"
    min_chars: int = 40

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        cols: dict[str, list[str]] = {n: [] for n in SCHEMA.names}
        for item in self.items[unit * ITEMS_PER_UNIT:(unit + 1) * ITEMS_PER_UNIT]:
            for package, kind, text in self._examples(item):
                group = item.dist if self.grouping == "distribution" else package
                for name, value in (("dist", item.dist), ("version", item.version),
                                    ("package", package), ("path", item.file),
                                    ("kind", kind), ("text", text), ("group", group)):
                    cols[name].append(value)
        yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)

    def _examples(self, item: Item) -> Iterator[tuple[str, str, str]]:
        if not item.file:
            for p in paragraphs(item.description):
                yield f"{item.dist} (description)", "description", p
            return
        package = package_of(item.file.split("/"))
        assert package is not None  # work_items keeps importable modules only
        try:
            with open(os.path.join(item.root, item.file), encoding="utf-8",
                      errors="replace") as f:
                docs = list(docstrings(f.read()))
        except (OSError, SyntaxError, ValueError, RecursionError):
            return  # unreadable or not Python 3 syntax: documented as left out
        for doc in docs:
            if len(doc) >= self.min_chars:
                yield package, "docstring", doc

    def location(self, unit: int, row: int) -> str:
        first = unit * ITEMS_PER_UNIT
        names = sorted({i.dist for i in self.items[first:first + ITEMS_PER_UNIT]})
        return f"pydocs unit {unit} ({', '.join(names)}), example {row}"


def _names(value: str | Sequence[str] | None) -> list[str] | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value)


def prepare_pydocs(*, split: str, distributions: str | Sequence[str] | None = None,
                   paths: str | Sequence[str] | None = None, group: Grouping = "package",
                   min_chars: int | str = 40) -> tuple[Any, str, dict[str, Any]]:
    if split != "train":
        raise SettingError("recipe 'pydocs' has one split, train; split the grouped dataset "
                           "into train/test by group when reading")
    if group not in ("package", "distribution"):
        raise SettingError(f"recipe 'pydocs': group={group!r} is not one of: package, "
                           "distribution")
    try:
        min_chars = int(min_chars)
    except ValueError:
        raise SettingError(f"recipe 'pydocs': min_chars={min_chars!r} is not a whole "
                           "number") from None
    path_list = _names(paths)
    dists = installed(_names(distributions), path_list)
    if not dists:
        raise SettingError("recipe 'pydocs': no installed distribution found "
                           f"(paths={path_list or 'sys.path'})")
    items = work_items(dists)
    size = sum(os.path.getsize(os.path.join(i.root, i.file)) for i in items if i.file)
    src = PydocsSource(
        description={"kind": "pydocs", "group": group, "min_chars": min_chars,
                     "paths": path_list,
                     "distributions": {d.metadata["Name"]: d.version for d in dists}},
        num_units=-(-len(items) // ITEMS_PER_UNIT), schema=SCHEMA, estimated_bytes=size,
        items=items, grouping=group, min_chars=min_chars)
    return src, "field:group", {"text_column": "text"}


PYDOCS = Recipe(
    name="pydocs", prepare=prepare_pydocs,
    description="English documentation shipped by the installed Python distributions: "
                "docstrings grouped by package, long descriptions by distribution",
    base="the running environment's installed distributions (importlib.metadata), offline",
    group="Python package (directory), or a distribution's description",
    options={"distributions": "comma-separated names to include (default: all installed)",
             "paths": "comma-separated directories to look in (default: sys.path)",
             "group": "package (default) | distribution",
             "min_chars": "shortest docstring kept (default 40)"},
    expected="with fedgroups[all,dev] installed: ~115 distributions, 2,304 groups, "
             "103,320 examples, 7.4M words; sizes heavy-tailed (tensorflow, torch, scipy, "
             "sympy, pandas hold most of the text)")
