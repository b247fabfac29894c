"""The Django translations recipe: the .po parser, locating messages in the source, the
build with its group columns on a small Django-shaped tree, and the installed Django."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

import fedgroups as fg
from fedgroups.errors import SettingError, SourceError
from fedgroups.recipes import get_recipe
from fedgroups.recipes.django_l10n import FAMILY_OF, UNLOCATED, parse_po

HEADER = '''# Translators:
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Plural-Forms: nplurals=2; plural=(n > 1);\\n"

'''


def po(entries: str) -> str:
    return HEADER + entries


def test_parse_po_reads_entries_plurals_context_and_continuations() -> None:
    text = po('''#. Translators: a comment
msgid "Enter a number."
msgstr "Saisissez un nombre."

#, python-format
msgid "Ensure this value has at most %(limit)d character."
msgid_plural "Ensure this value has at most %(limit)d characters."
msgstr[0] "Au plus %(limit)d caractère."
msgstr[1] ""
"Au plus %(limit)d "
"caractères."

msgctxt "abbrev. month"
msgid "May"
msgstr "mai"

#, fuzzy
msgid "Log in"
msgstr "Connexion"

msgid "Tab\\tand \\"quotes\\""
msgstr "Tab\\tet \\"guillemets\\"\\n"

#~ msgid "Old"
#~ msgstr "Vieux"
''')
    entries = parse_po(text, "x.po")
    assert [e.msgid for e in entries] == [
        "Enter a number.", "Ensure this value has at most %(limit)d character.", "May",
        "Log in", 'Tab\tand "quotes"']
    assert entries[0].msgstr == {0: "Saisissez un nombre."}
    assert entries[1].msgstr == {0: "Au plus %(limit)d caractère.",
                                 1: "Au plus %(limit)d caractères."}
    assert entries[2].msgstr == {0: "mai"}
    assert [e.fuzzy for e in entries] == [False, False, False, True, False]
    assert entries[4].msgstr == {0: 'Tab\tet "guillemets"\n'}


def test_parse_po_names_file_and_line_of_a_bad_line() -> None:
    with pytest.raises(SourceError, match=r"x\.po:9: not a gettext line"):
        parse_po(po('msgid "a"\nmsgstr "b"\nbogus line\n'), "x.po")
    with pytest.raises(SourceError, match=r"x\.po:7: expected a quoted string"):
        parse_po(po('msgid a\n'), "x.po")


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


CONF = {  # msgid -> (fr, de, ru); None = untranslated
    "Enter a number.": ("Saisissez un nombre.", "Bitte eine Zahl eingeben.",
                        "Введите число."),
    "January": ("janvier", "Januar", "Январь"),
    "Only somewhere": ("Seulement quelque part", "Nur irgendwo", None),
    "Nowhere at all": ("Nulle part", "Nirgendwo", "Нигде"),
}
ADMIN = {"Log in": ("Connexion", "Anmelden", "Войти"),
         "Site administration": ("Administration du site", "Website-Verwaltung",
                                 "Администрирование сайта")}
JS = {"Today": ("Aujourd’hui", "Heute", "Сегодня")}
LANGS = ("fr", "de", "ru")


def catalog(messages: dict[str, tuple[str | None, ...]], lang: str | None) -> str:
    out = []
    for msgid, texts in messages.items():
        text = "" if lang is None else (texts[LANGS.index(lang)] or "")
        out.append(f'msgid "{msgid}"\nmsgstr "{text}"\n')
    return po("\n".join(out))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A package shaped like Django: catalogs per app and language, and the source files."""
    root = tmp_path / "django"
    write(root, "forms/fields.py", 'error = _("Enter a number.")\n')
    write(root, "utils/dates.py", 'MONTHS = {1: _("January")}\n# Only somewhere, unquoted\n')
    write(root, "contrib/admin/templates/admin/login.html", '{% translate "Log in" %}\n')
    write(root, "contrib/admin/sites.py", 'site_header = gettext_lazy("Site administration")\n'
                                          '# Log in, unquoted: the template quotes it\n')
    write(root, "contrib/admin/static/admin/js/calendar.js", 'gettext("Today");\n')
    # a quoted "January" in contrib must not count for conf's catalog
    write(root, "contrib/admin/options.py", 'x = "January"\n')
    for lang in (None, *LANGS):
        code = lang or "en"
        write(root, f"conf/locale/{code}/LC_MESSAGES/django.po", catalog(CONF, lang))
        write(root, f"contrib/admin/locale/{code}/LC_MESSAGES/django.po", catalog(ADMIN, lang))
        write(root, f"contrib/admin/locale/{code}/LC_MESSAGES/djangojs.po", catalog(JS, lang))
    fuzzy = '\n#, fuzzy\nmsgid "Enter a date."\nmsgstr "Saisissez une date (à revoir)."\n'
    with open(root / "conf/locale/fr/LC_MESSAGES/django.po", "a", encoding="utf-8") as f:
        f.write(fuzzy)  # a fuzzy translation is not one: skipped
    return root


def test_build_groups_strings_by_language_and_source_file(tree: Path, tmp_path: Path) -> None:
    report = fg.recipes.django_l10n(tmp_path / "out", languages="fr,de,ru", root=str(tree),
                                    progress=False)
    ds = fg.open(report.path)
    sizes = dict(zip(ds.keys(), ds.group_sizes().tolist()))
    expected = collections.Counter()
    for lang in LANGS:
        expected[f"{lang}/forms/fields.py"] += 1
        expected[f"{lang}/utils/dates.py"] += 1 + (lang != "ru")  # ru: one untranslated
        expected[f"{lang}/conf/django {UNLOCATED}"] += 1
        expected[f"{lang}/contrib/admin/templates/admin/login.html"] += 1
        expected[f"{lang}/contrib/admin/sites.py"] += 1
        expected[f"{lang}/contrib/admin/static/admin/js/calendar.js"] += 1
    assert sizes == dict(expected)
    # nothing lost: every translated string is an example, with its family and language
    assert report.manifest["totals"]["examples"] == 3 * 7 - 1
    table = ds.group_table()
    assert ds.group_columns == ("family", "lang")
    for key, fam, lang in zip(table["key"].to_pylist(), table["family"].to_pylist(),
                              table["lang"].to_pylist()):
        assert key.startswith(lang + "/") and fam == FAMILY_OF[lang]
    rows = ds.group("ru/contrib/admin/static/admin/js/calendar.js").to_arrow().to_pylist()
    assert rows[0]["text"] == "Сегодня" and rows[0]["msgid"] == "Today"
    assert rows[0]["catalog"] == "contrib/admin/djangojs" and rows[0]["family"] == "slavic"


def test_families_option_and_bad_settings(tree: Path) -> None:
    recipe = get_recipe("django_l10n")
    src, _, kwargs = recipe.build_args(root=str(tree), families="romance,slavic")
    assert src.languages == ("fr", "ru")  # the table's languages that the tree ships
    assert kwargs["group_columns"] == ("family", "lang")
    assert src.description["not_shipped"][:2] == ["es", "it"]
    with pytest.raises(SettingError, match="languages \\['xx'\\] have no family"):
        recipe.build_args(root=str(tree), languages="fr,xx")
    with pytest.raises(SettingError, match="families \\['klingon'\\]"):
        recipe.build_args(root=str(tree), families="klingon")
    with pytest.raises(SettingError, match="select no language"):
        recipe.build_args(root=str(tree), languages="fr", families="germanic")
    with pytest.raises(SourceError, match="no catalogs for \\['es'\\]"):
        recipe.build_args(root=str(tree), languages="fr,es")
    with pytest.raises(SourceError, match="no such folder"):
        recipe.build_args(root=str(tree / "nope"))
    with pytest.raises(SettingError, match="one split"):
        recipe.build_args(split="test", root=str(tree))


def test_installed_django_gives_dozens_of_parallel_documents_per_language(tmp_path) -> None:
    pytest.importorskip("django")
    report = fg.recipes.django_l10n(tmp_path / "dj", languages="fr,de", progress=False)
    ds = fg.open(report.path)
    by_lang = collections.defaultdict(set)
    for key in ds.keys():
        lang, _, source = key.partition("/")
        by_lang[lang].add(source)
    assert set(by_lang) == {"fr", "de"}
    assert len(by_lang["fr"]) >= 50 and len(by_lang["de"]) >= 50
    # the same source files in both languages (both are near-complete translations)
    assert len(by_lang["fr"] & by_lang["de"]) >= 0.9 * len(by_lang["fr"])
    unlocated = sum(n for k, n in zip(ds.keys(), ds.group_sizes().tolist()) if UNLOCATED in k)
    assert unlocated < 0.25 * report.manifest["totals"]["examples"]
