"""The Gutenberg parser on small texts in both of Gutenberg's layouts, and the real build."""

from __future__ import annotations

import pytest

import fedgroups as fg
from fedgroups.errors import SettingError, SourceError
from fedgroups.recipes import get_recipe
from fedgroups.recipes.shakespeare import group_key, parse_works

# The current edition of eBook #100: speaker names alone on a line, verse not indented,
# stage directions indented; a contents list of the works near the top.
CURRENT = """\ufeffThe Project Gutenberg eBook of The Complete Works of William Shakespeare

This eBook is for the use of anyone anywhere in the United States and
most other parts of the world at no cost and with almost no restrictions.

*** START OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF WILLIAM SHAKESPEARE ***
The Complete Works of William Shakespeare

by William Shakespeare




                    Contents

    THE SONNETS
    ALL’S WELL THAT ENDS WELL
    THE TRAGEDY OF HAMLET, PRINCE OF DENMARK



THE SONNETS

                    1

From fairest creatures we desire increase,
That thereby beauty’s rose might never die,


ALL’S WELL THAT ENDS WELL



Contents

 ACT I
 Scene I. Rousillon. The Count’s palace.


 Dramatis Personæ

KING OF FRANCE
BERTRAM, Count of Rousillon.


ACT I

SCENE I. Rousillon. The Count’s palace.

 Enter Bertram, the Countess of Rousillon, Helena and Lafew, all in black.

COUNTESS.
In delivering my son from me, I bury a second husband.

BERTRAM.
And I in going, madam, weep o’er my father’s death anew; but I must
attend his majesty’s command, to whom I am now in ward, evermore in
subjection.

FIRST LORD.
Farewell, [_To Bertram._] young lord.
 [_Exit._]

COUNTESS.
Be thou blest, Bertram.

 Exeunt.



THE TRAGEDY OF HAMLET, PRINCE OF DENMARK



ACT I

SCENE I. Elsinore. A platform before the Castle.

 Enter Francisco and Barnardo, two sentinels.

BARNARDO.
Who’s there?

FRANCISCO.
Nay, answer me. Stand and unfold yourself.

BARNARDO.
Long live the King!


*** END OF THE PROJECT GUTENBERG EBOOK THE COMPLETE WORKS OF WILLIAM SHAKESPEARE ***

COUNTESS.
Licence text is not a play.
"""

# The 1990s edition (LEAF's source): speeches start on an indented line "  NAME. text".
OLD = """*** START OF THE PROJECT GUTENBERG EBOOK ***
Contents
THE TRAGEDY OF KING LEAR

THE TRAGEDY OF KING LEAR

ACT I. SCENE I.
King Lear's palace.

Enter Kent, Gloucester, and Edmund.

  KENT. I thought the King had more affected the Duke of Albany than
    Cornwall.
  GLOUCESTER. It did always seem so to us.
  KENT. Is not this your son, my lord?
"""


def test_current_layout_speeches_roles_and_plays() -> None:
    speeches = list(parse_works(CURRENT))
    got = [(s.play, s.role, s.text) for s in speeches]
    assert got == [
        ("ALL’S WELL THAT ENDS WELL", "Countess",
         "In delivering my son from me, I bury a second husband."),
        ("ALL’S WELL THAT ENDS WELL", "Bertram",
         ("And I in going, madam, weep o’er my father’s death anew; but I must attend his "
         "majesty’s command, to whom I am now in ward, evermore in subjection.")),
        ("ALL’S WELL THAT ENDS WELL", "First Lord", "Farewell, young lord."),
        ("ALL’S WELL THAT ENDS WELL", "Countess", "Be thou blest, Bertram."),
        ("THE TRAGEDY OF HAMLET, PRINCE OF DENMARK", "Barnardo", "Who’s there?"),
        ("THE TRAGEDY OF HAMLET, PRINCE OF DENMARK", "Francisco",
         "Nay, answer me. Stand and unfold yourself."),
        ("THE TRAGEDY OF HAMLET, PRINCE OF DENMARK", "Barnardo", "Long live the King!"),
    ]
    lines = CURRENT.splitlines()
    assert lines[speeches[0].line - 1] == "COUNTESS."  # 1-based line of the speech start


def test_line_unit_gives_one_example_per_line_of_verse() -> None:
    lines = [s for s in parse_works(CURRENT, unit="line") if s.role == "Bertram"]
    assert [s.text for s in lines] == [
        "And I in going, madam, weep o’er my father’s death anew; but I must",
        "attend his majesty’s command, to whom I am now in ward, evermore in",
        "subjection."]
    assert [s.line for s in lines] == [lines[0].line, lines[0].line + 1, lines[0].line + 2]


def test_blank_lines_inside_the_contents_list() -> None:
    spaced = CURRENT.replace("    ALL’S WELL THAT ENDS WELL\n", "\n    ALL’S WELL THAT ENDS WELL\n\n")
    assert [s.text for s in parse_works(spaced)] == [s.text for s in parse_works(CURRENT)]


def test_old_layout_inline_speakers() -> None:
    got = [(s.role, s.text) for s in parse_works(OLD)]
    assert got == [("Kent", ("I thought the King had more affected the Duke of Albany than "
                            "Cornwall.")),
                   ("Gloucester", "It did always seem so to us."),
                   ("Kent", "Is not this your son, my lord?")]


def test_group_key_is_leaf_style() -> None:
    assert group_key("THE TRAGEDY OF HAMLET, PRINCE OF DENMARK", "First Lord") == \
        "THE_TRAGEDY_OF_HAMLET_PRINCE_OF_DENMARK_FIRST_LORD"


def test_not_gutenberg_layout_is_a_clear_error() -> None:
    with pytest.raises(SourceError, match="Contents"):
        list(parse_works("just some text\nwith no contents\n"))


def test_build_shakespeare_recipe(tmp_path) -> None:
    path = tmp_path / "pg100.txt"
    path.write_text(CURRENT, encoding="utf-8")
    report = fg.recipes.shakespeare(tmp_path / "out", path=str(path), progress=False)
    ds = fg.open(report.path)
    assert ds.keys() == ["ALL_S_WELL_THAT_ENDS_WELL_BERTRAM", "ALL_S_WELL_THAT_ENDS_WELL_COUNTESS",
                         "ALL_S_WELL_THAT_ENDS_WELL_FIRST_LORD",
                         "THE_TRAGEDY_OF_HAMLET_PRINCE_OF_DENMARK_BARNARDO",
                         "THE_TRAGEDY_OF_HAMLET_PRINCE_OF_DENMARK_FRANCISCO"]
    countess = list(ds.group("ALL_S_WELL_THAT_ENDS_WELL_COUNTESS"))
    assert [ex["text"] for ex in countess] == [
        "In delivering my son from me, I bury a second husband.", "Be thou blest, Bertram."]
    assert report.manifest["totals"]["examples"] == 7
    assert report.manifest["source"]["kind"] == "gutenberg-shakespeare"


def test_shakespeare_options_are_checked(tmp_path) -> None:
    recipe = get_recipe("shakespeare")
    with pytest.raises(SourceError, match="no such file"):
        recipe.build_args(path=str(tmp_path / "missing.txt"))
    with pytest.raises(SettingError, match="unit"):
        recipe.build_args(path=str(tmp_path / "x"), unit="word")
    with pytest.raises(SettingError, match="no option"):
        recipe.build_args(colour="red")
    empty = tmp_path / "empty.txt"
    empty.write_text("Contents\n  THE SONNETS\n\nTHE SONNETS\nA poem, no speakers.\n")
    with pytest.raises(SourceError, match="no speeches"):
        fg.build(*recipe.build_args(path=str(empty))[:2], tmp_path / "o", progress=False)
