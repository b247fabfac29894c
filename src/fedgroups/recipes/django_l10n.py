"""Django's translations: a naturally multilingual corpus that ships with a package.

Django carries human translations of its interface (made by its translation teams) as gettext
catalogs, ``<app>/locale/<lang>/LC_MESSAGES/{django,djangojs}.po``, for about 100 languages:
the same ~900 messages (form errors, admin pages, e-mails, dates) in every language, so the
languages differ and the content does not. Installed with ``pip install 'fedgroups[world]'``,
it is read from the installed package: no network.

- **example**: one translated string, a ``msgstr`` (each plural form of it its own example);
  untranslated and fuzzy entries are not translations and are skipped (counted in the
  source's description as ``untranslated``).
- **document** (the group): the source file the message comes from, per language
  (``fr/contrib/admin/templates/admin/login.html``). Django strips the ``#:`` location
  comments from its catalogs, so the file is found again in the installed source: the first
  file, in path order, among the catalog's own files (``.js`` for ``djangojs``; ``.py``,
  ``.html``, ``.txt`` otherwise; ``conf/locale`` = everything outside ``contrib``) whose text
  holds the English ``msgid`` quoted, else holds it at all. Messages found nowhere (about 1 in
  10: template blocks whose placeholders are rewritten) form one document per catalog,
  ``<catalog> (unlocated)``. The same file gives the same document in every language.
- **tree**: ``family`` comes from the small table ``FAMILIES`` below; the recipe records
  ``family`` and ``lang`` as group columns, for the tree root → family → language → document.

Columns: ``text``, ``doc`` (the key), ``lang``, ``family``, ``source`` (the file, without the
language), ``catalog`` (``contrib/admin/django``), ``msgid`` (the English original) and
``form`` (the plural form, 0 for the singular).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.keys.functions import FieldKey
from fedgroups.recipes.base import Recipe
from fedgroups.sources.base import Source

# Language families of the languages used by default. Variants of one language (es_AR,
# es_MX, pt next to pt_BR, sr_Latn next to sr) are left out so that a language is one
# federation; pass languages= with any of these to choose.
FAMILIES: dict[str, tuple[str, ...]] = {
    "romance": ("es", "fr", "it", "pt_BR", "ca", "ro", "gl", "ast"),
    "germanic": ("de", "nl", "sv", "da", "nb", "nn", "af", "is"),
    "slavic": ("ru", "pl", "cs", "uk", "sk", "bg", "sr", "hr", "sl", "mk", "be", "hsb", "dsb"),
    "baltic": ("lt", "lv"),
    "celtic": ("ga", "gd", "cy", "br"),
    "uralic": ("fi", "et", "hu"),
    "turkic": ("tr", "az", "kk", "ky", "uz", "tk", "tt"),
    "semitic": ("ar", "he"),
    "indo-iranian": ("fa", "hi", "bn", "mr", "ur", "ne", "pa", "tg"),
}
FAMILY_OF: dict[str, str] = {lang: fam for fam, langs in FAMILIES.items() for lang in langs}

SCHEMA = pa.schema([("text", pa.string()), ("doc", pa.string()), ("lang", pa.string()),
                    ("family", pa.string()), ("source", pa.string()), ("catalog", pa.string()),
                    ("msgid", pa.string()), ("form", pa.int32())])
UNLOCATED = "(unlocated)"
_SOURCE_SUFFIXES = {"django": (".py", ".html", ".txt"), "djangojs": (".js",)}


# --- gettext catalogs -------------------------------------------------------------------

@dataclass
class Entry:
    msgid: str = ""
    msgstr: dict[int, str] = field(default_factory=dict)  # plural form -> text
    fuzzy: bool = False


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b",
            "f": "\f", "v": "\v"}


def _unquote(s: str, where: str) -> str:
    s = s.strip()
    if len(s) < 2 or s[0] != '"' or s[-1] != '"':
        raise SourceError(f"{where}: expected a quoted string, got {s[:60]!r}")
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), s[1:-1])


def parse_po(text: str, where: str) -> list[Entry]:
    """The entries of a ``.po`` file, header and obsolete (``#~``) entries left out."""
    entries: list[Entry] = []
    cur, target = Entry(), None  # target: ("id", 0) or ("str", form) or ("skip", 0)

    def finish() -> None:
        nonlocal cur, target
        if cur.msgid or cur.msgstr:
            entries.append(cur)
        cur, target = Entry(), None

    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            if target is not None and target[0] == "str":
                finish()
            if line.startswith("#,") and "fuzzy" in line:
                cur.fuzzy = True
            continue
        if line.startswith(('msgid ', 'msgctxt ')) and target is not None \
                and target[0] == "str":
            finish()
        keyword, _, rest = line.partition(" ")
        at = f"{where}:{n}"
        if keyword == "msgid":
            target, cur.msgid = ("id", 0), _unquote(rest, at)
        elif keyword in ("msgctxt", "msgid_plural"):
            target = ("skip", 0)
            _unquote(rest, at)
        elif keyword == "msgstr":
            target, cur.msgstr[0] = ("str", 0), _unquote(rest, at)
        elif m := re.fullmatch(r"msgstr\[(\d+)\]", keyword):
            target = ("str", int(m[1]))
            cur.msgstr[target[1]] = _unquote(rest, at)
        elif line.startswith('"') and target is not None:
            piece = _unquote(line, at)
            if target[0] == "id":
                cur.msgid += piece
            elif target[0] == "str":
                cur.msgstr[target[1]] += piece
        else:
            raise SourceError(f"{at}: not a gettext line: {line[:60]!r}")
    finish()
    return [e for e in entries if e.msgid]  # the header has an empty msgid


# --- where a message comes from -----------------------------------------------------------

def catalog_paths(root: str, lang: str) -> list[tuple[str, str]]:
    """(catalog name, .po path) of every catalog of ``lang`` under ``root``, in path order;
    the name is the app folder and domain, ``conf/django`` or ``contrib/admin/djangojs``."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root).replace(os.sep, "/")
        app, marker, rest = rel.partition("/locale/")
        if not marker or rest != f"{lang}/LC_MESSAGES":
            continue
        for name in sorted(filenames):
            domain, ext = os.path.splitext(name)
            if ext == ".po" and domain in _SOURCE_SUFFIXES:
                found.append((f"{app}/{domain}", os.path.join(dirpath, name)))
    return found


def _source_files(root: str, catalog: str) -> list[tuple[str, str]]:
    """(relative path, text) of the files whose messages a catalog holds, in path order."""
    app, _, domain = catalog.rpartition("/")
    top = root if app == "conf" else os.path.join(root, app)
    files = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d != "locale" and d != "__pycache__"
                             and not (app == "conf" and dirpath == root and d == "contrib"))
        for name in sorted(filenames):
            if name.endswith(_SOURCE_SUFFIXES[domain]):
                path = os.path.join(dirpath, name)
                try:
                    with open(path, encoding="utf-8") as f:
                        files.append((os.path.relpath(path, root).replace(os.sep, "/"), f.read()))
                except UnicodeDecodeError:
                    continue  # not source text
    return files


def locate(root: str, catalog: str, msgids: Sequence[str]) -> dict[str, str]:
    """msgid -> the source file it comes from (see the module docstring), for one catalog."""
    files = _source_files(root, catalog)
    where: dict[str, str] = {}
    for msgid in msgids:
        quoted = (f'"{msgid}"', f"'{msgid}'")
        hit = next((p for p, t in files if quoted[0] in t or quoted[1] in t), None)
        if hit is None:
            hit = next((p for p, t in files if msgid in t), None)
        where[msgid] = hit or f"{catalog} {UNLOCATED}"
    return where


def locations(root: str, reference: str = "en") -> dict[str, dict[str, str]]:
    """catalog -> msgid -> source file, from the ``reference`` language's catalogs (English:
    every msgid with empty translations), computed once for all languages."""
    out = {}
    for catalog, path in catalog_paths(root, reference):
        with open(path, encoding="utf-8") as f:
            entries = parse_po(f.read(), path)
        out[catalog] = locate(root, catalog, [e.msgid for e in entries])
    return out


# --- the source -----------------------------------------------------------------------------

@dataclass
class DjangoL10nSource(Source):
    """One unit per language: its catalogs' translated strings, in catalog and file order."""

    root: str = ""
    languages: tuple[str, ...] = ()
    located_in: dict[str, dict[str, str]] = field(default_factory=dict)

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        lang = self.languages[unit]
        cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        for catalog, path in catalog_paths(self.root, lang):
            with open(path, encoding="utf-8") as f:
                entries = parse_po(f.read(), path)
            located = self.located_in.get(catalog, {})
            for e in entries:
                if e.fuzzy:
                    continue
                source = located.get(e.msgid, f"{catalog} {UNLOCATED}")
                for form, text in sorted(e.msgstr.items()):
                    if not text.strip():
                        continue
                    cols["text"].append(text)
                    cols["doc"].append(f"{lang}/{source}")
                    cols["lang"].append(lang)
                    cols["family"].append(FAMILY_OF[lang])
                    cols["source"].append(source)
                    cols["catalog"].append(catalog)
                    cols["msgid"].append(e.msgid)
                    cols["form"].append(form)
        if not cols["text"]:
            raise SourceError(f"{self.root}: no translated strings for language {lang!r} "
                              f"(looked for */locale/{lang}/LC_MESSAGES/*.po)")
        yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)

    def location(self, unit: int, row: int) -> str:
        return f"{self.root}, language {self.languages[unit]}, string {row}"


def installed_root() -> str:
    try:
        import django
    except ImportError as e:
        raise SettingError("recipe 'django_l10n' reads the catalogs of the installed Django: "
                           "pip install 'fedgroups[world]' (or pass root= to a copy)") from e
    return os.path.dirname(os.path.abspath(django.__file__))


def _languages(value: str | Sequence[str] | None, families: str | Sequence[str] | None,
               ) -> tuple[str, ...]:
    def as_list(v: str | Sequence[str]) -> list[str]:
        return [x.strip() for x in (v.split(",") if isinstance(v, str) else v) if x.strip()]

    if families is not None:
        fams = as_list(families)
        bad = [f for f in fams if f not in FAMILIES]
        if bad:
            raise SettingError(f"families {bad} are not in the table; families are: "
                               f"{', '.join(FAMILIES)}")
        picked = [lang for f in fams for lang in FAMILIES[f]]
    else:
        picked = list(FAMILY_OF)
    if value is not None and value != "all":
        wanted = as_list(value)
        bad = [lang for lang in wanted if lang not in FAMILY_OF]
        if bad:
            raise SettingError(f"languages {bad} have no family in the recipe's table; "
                               f"languages are: {', '.join(FAMILY_OF)}")
        picked = [lang for lang in wanted if lang in picked]
    if not picked:
        raise SettingError("languages= and families= select no language together")
    return tuple(dict.fromkeys(picked))


def prepare_django_l10n(*, split: str, root: str | None = None,
                        languages: str | Sequence[str] | None = None,
                        families: str | Sequence[str] | None = None,
                        ) -> tuple[Any, FieldKey, dict[str, Any]]:
    if split != "train":
        raise SettingError("recipe 'django_l10n' has one split, train; hold out documents "
                           "when reading (the hierarchy holds out groups per federation)")
    top = root or installed_root()
    if not os.path.isdir(top):
        raise SourceError(f"{top}: no such folder (root= should be a Django package folder)")
    langs = _languages(languages, families)
    missing = [lang for lang in langs if not catalog_paths(top, lang)]
    if languages not in (None, "all") and missing:
        raise SourceError(f"{top}: no catalogs for {missing} (*/locale/LANG/LC_MESSAGES/*.po)")
    langs = tuple(lang for lang in langs if lang not in missing)
    if not langs:
        raise SourceError(f"{top}: no catalogs for any of the selected languages")
    where = locations(top)
    size = sum(os.path.getsize(p) for lang in langs for _, p in catalog_paths(top, lang))
    src = DjangoL10nSource(
        description={"kind": "django-l10n", "root": top, "languages": list(langs),
                     "not_shipped": missing},
        num_units=len(langs), schema=SCHEMA, estimated_bytes=size, parallel=True,
        root=top, languages=langs, located_in=where)
    key = FieldKey(spec="field:doc", field_name="doc", columns=("doc",))
    return src, key, {"text_column": "text", "group_columns": ("family", "lang")}


DJANGO_L10N = Recipe(
    name="django_l10n", prepare=prepare_django_l10n,
    description="Django's human translations: one group per (language, source file), with "
                "language family and language as group columns",
    base="the gettext catalogs of the installed Django package (pip install django)",
    group="language × source file",
    options={"languages": "comma-separated language codes (default: every language in the "
                          "recipe's family table that Django ships)",
             "families": "comma-separated families from the table (romance, germanic, "
                         "slavic, …): only their languages",
             "root": "a Django package folder (default: the installed django)"},
    expected="Django 5.2: ~900 strings per complete language, ~160 documents per language "
             "(1 to ~100 strings each, heavy-tailed), ~30 kB of text per language")
