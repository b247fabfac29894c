"""Shakespeare: the complete works from Project Gutenberg (eBook #100), one group per
speaking role of each play — the LEAF / TensorFlow Federated grouping.

The parser reads Gutenberg's plain-text layout:

- the licence header and footer end and start at ``*** START OF …`` / ``*** END OF …``;
- a table of contents, after a line ``Contents``, lists the works' titles, one per line;
  a work starts where its title appears again on a line of its own;
- in the current edition a speech starts with the speaker's name in capitals on its own
  line, ending with a full stop (``HAMLET.``), and runs to the next blank line; in the
  1990s edition LEAF used, it starts on an indented line ``  HAMLET. To be, or …`` and
  continues on more-indented lines. Both are read.

Stage directions (``Enter …`` lines, ``[_Exit._]``) are dropped; poems, which have no
speakers, give no examples. An example is one speech (as TFF's snippets) or, with
``unit="line"``, one line of verse. Columns: ``play``, ``role``, ``text``, ``line`` (the
1-based line in the file where the example starts); key ``PLAY_ROLE`` in LEAF's style.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa

from fedgroups.errors import SettingError, SourceError
from fedgroups.keys.functions import FieldKey
from fedgroups.recipes.base import Recipe
from fedgroups.sources.base import BATCH_ROWS, Source

GUTENBERG_URL = "https://www.gutenberg.org/cache/epub/100/pg100.txt"
SCHEMA = pa.schema([("play", pa.string()), ("role", pa.string()), ("text", pa.string()),
                    ("line", pa.int64()), ("group", pa.string())])
Unit = Literal["speech", "line"]

_NAME = r"[A-Z][A-Z’'\-]*(?: [A-Z][A-Z’'\-]*| of| and| OF| AND| \d)*"
_SPEAKER_LINE = re.compile(rf"^(?P<name>{_NAME})\.\s*$")  # current edition: "HAMLET."
_SPEAKER_INLINE = re.compile(rf"^  (?P<name>{_NAME})\. (?P<text>\S.*)$")  # 1990s edition
_NOT_A_SPEAKER = re.compile(r"^(ACT|SCENE|PROLOGUE|EPILOGUE|INDUCTION|CONTENTS|THE END|FINIS)\b")
_DIRECTION = re.compile(r"\[_?[^\]]*_?\]")


@dataclass(frozen=True)
class Speech:
    play: str
    role: str
    text: str
    line: int


def group_key(play: str, role: str) -> str:
    """LEAF's client id: play and role, upper case, non-alphanumerics as underscores."""
    return re.sub(r"[^A-Z0-9]+", "_", f"{play} {role}".upper()).strip("_")


def _body(lines: list[str]) -> tuple[int, int]:
    """First and stop line of the text between Gutenberg's START and END markers."""
    start, stop = 0, len(lines)
    for i, line in enumerate(lines):
        if line.startswith("*** START OF") and start == 0:
            start = i + 1
        elif line.startswith("*** END OF"):
            stop = i
            break
    return start, stop


def _titles(lines: list[str], start: int, stop: int) -> tuple[list[str], int]:
    """The titles listed after the first ``Contents`` line, and the line where the first
    work starts (its title seen a second time), so blank lines inside the list are fine."""
    for i in range(start, stop):
        if lines[i].strip().lower() == "contents":
            titles: list[str] = []
            j = i + 1
            while j < stop and lines[j].strip() not in titles:
                if lines[j].strip():
                    titles.append(lines[j].strip())
                j += 1
            return titles, j
    raise SourceError("no 'Contents' line with the list of works: not the layout of "
                      "Project Gutenberg's Complete Works of William Shakespeare (eBook #100)")


def _clean(text: str) -> str:
    return re.sub(r"\s+", " ", _DIRECTION.sub(" ", text)).strip()


def _speaker(line: str) -> tuple[str, str | None] | None:
    """(name, inline text or None) if ``line`` starts a speech."""
    if _NOT_A_SPEAKER.match(line.strip()):
        return None
    m = _SPEAKER_LINE.match(line)
    if m:
        return m["name"], None
    m = _SPEAKER_INLINE.match(line)
    if m and not _NOT_A_SPEAKER.match(m["name"]):
        return m["name"], m["text"]
    return None


def parse_works(text: str, unit: Unit = "speech") -> Iterator[Speech]:
    """Every speech (or line of a speech) of every play, in the order of the text."""
    if unit not in ("speech", "line"):
        raise SettingError(f"unit {unit!r} is not one of: speech, line")
    lines = text.splitlines()
    start, stop = _body(lines)
    titles, after = _titles(lines, start, stop)
    wanted = set(titles)
    play: str | None = None
    i = after
    while i < stop:
        line = lines[i]
        if line.strip() in wanted and not line.startswith(" "):
            play = line.strip()
            i += 1
            continue
        found = _speaker(line) if play is not None else None
        if found is None:
            i += 1
            continue
        role, inline = found
        first = i + 1
        body: list[tuple[int, str]] = [(i + 1, inline)] if inline else []
        i += 1
        # The speech runs to a blank line, or (1990s layout) to the next speaker line.
        while i < stop and lines[i].strip() and _speaker(lines[i]) is None \
                and not (lines[i].strip() in wanted and not lines[i].startswith(" ")):
            body.append((i + 1, lines[i]))
            i += 1
        # Current layout: verse is not indented, stage directions are ("  Exit.").
        # 1990s layout: continuation lines are indented, directions start with a verb.
        body = [(n, t) for n, t in body
                if (inline is not None or not t[:1].isspace())
                and not t.lstrip().startswith(("Enter ", "Exit", "Exeunt"))]
        cleaned = [(n, _clean(t)) for n, t in body]
        cleaned = [(n, t) for n, t in cleaned if t]
        if not cleaned:
            continue
        assert play is not None
        if unit == "speech":
            yield Speech(play, role.title(), " ".join(t for _, t in cleaned), first)
        else:
            for n, t in cleaned:
                yield Speech(play, role.title(), t, n)


@dataclass
class ShakespeareSource(Source):
    """The parsed complete works as one unit (the file is 5.6 MB; parsing takes a second)."""

    path: str = ""
    unit: Unit = "speech"

    def read(self, unit: int) -> Iterator[pa.RecordBatch]:
        with open(self.path, encoding="utf-8-sig") as f:
            text = f.read()
        cols: dict[str, list[Any]] = {name: [] for name in SCHEMA.names}
        count = 0
        for s in parse_works(text, self.unit):
            cols["play"].append(s.play)
            cols["role"].append(s.role)
            cols["text"].append(s.text)
            cols["line"].append(s.line)
            cols["group"].append(group_key(s.play, s.role))
            if len(cols["text"]) >= BATCH_ROWS:
                yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)
                cols = {name: [] for name in SCHEMA.names}
            count += 1
        if count == 0:
            raise SourceError(f"{self.path}: no speeches found; is it Project Gutenberg's "
                              "Complete Works of William Shakespeare (eBook #100)?")
        if cols["text"]:
            yield pa.RecordBatch.from_pydict(cols, schema=SCHEMA)

    def location(self, unit: int, row: int) -> str:
        return f"{self.path}, example {row}"


def default_path() -> str:
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "fedgroups", "pg100.txt")


def fetch(path: str) -> str:
    """Download the complete works to ``path`` (only when a user builds the recipe)."""
    import shutil
    import urllib.request

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".part"
    try:
        with urllib.request.urlopen(GUTENBERG_URL, timeout=60) as r, open(tmp, "wb") as f:
            shutil.copyfileobj(r, f)
    except OSError as e:
        raise SourceError(f"cannot download {GUTENBERG_URL} ({e}); download it yourself and "
                          f"pass path=, or put it at {path}") from e
    os.replace(tmp, path)
    return path


def prepare_shakespeare(*, split: str, path: str | None = None, unit: Unit = "speech",
                        download: bool = True) -> tuple[Any, FieldKey, dict[str, Any]]:
    if split != "train":
        raise SettingError("recipe 'shakespeare' has one split, train; split a grouped "
                           "dataset into train/test by group or within groups when reading")
    if unit not in ("speech", "line"):
        raise SettingError(f"unit {unit!r} is not one of: speech, line")
    file = path or default_path()
    if not os.path.exists(file):
        if path is not None or not download:
            raise SourceError(f"{file}: no such file; get {GUTENBERG_URL}")
        fetch(file)
    src = ShakespeareSource(
        description={"kind": "gutenberg-shakespeare", "path": os.path.abspath(file),
                     "unit": unit},
        num_units=1, schema=SCHEMA, estimated_bytes=os.path.getsize(file), parallel=False,
        path=file, unit=unit)
    return src, FieldKey(spec="field:group", field_name="group", columns=("group",)), {
        "text_column": "text"}


SHAKESPEARE = Recipe(
    name="shakespeare", prepare=prepare_shakespeare,
    description="Shakespeare's plays, one group per (play, speaking role), as in LEAF and TFF",
    base=f"Project Gutenberg eBook #100 ({GUTENBERG_URL})", group="play × speaking role",
    options={"path": "a local copy of pg100.txt (default: downloaded to ~/.cache/fedgroups)",
             "unit": "speech (default) | line: what one example is",
             "download": "download pg100.txt when there is no local copy (default true)"},
    expected="on the order of a thousand roles (LEAF reports 1,129 users from the 1990s "
             "edition); heavy-tailed: a few title roles speak far more than anyone else")
