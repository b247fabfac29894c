"""Named grouped datasets, one command each (documented in docs/recipes.md).

=============  ==============================  =================================
recipe         base dataset                    group
=============  ==============================  =================================
``fedc4``      C4 (``allenai/c4``)             URL host of the page
``fedwiki``    Wikipedia (dated dump)          article title
``fedbookco``  BookCorpusOpen                  book title
``fedccnews``  CC-News (``vblagoje/cc_news``)  publisher domain
``shakespeare``  Gutenberg complete works      play × speaking role
``pydocs``     installed distributions' docs   Python package (offline)
``django_l10n``  Django's translations (pip)   language × source file
=============  ==============================  =================================

From the shell: ``fedgroups build --recipe fedc4 OUT``. From Python::

    import fedgroups as fg
    report = fg.recipes.fedc4("fedc4-en", config="en")
    report = fg.recipes.shakespeare("shakespeare", path="pg100.txt")
"""

from __future__ import annotations

import os
from typing import Any

from fedgroups.errors import SettingError
from fedgroups.recipes.base import Recipe, TransformSource, transformed
from fedgroups.recipes.django_l10n import DJANGO_L10N
from fedgroups.recipes.hub import FEDBOOKCO, FEDC4, FEDCCNEWS, FEDWIKI
from fedgroups.recipes.pydocs import PYDOCS
from fedgroups.recipes.shakespeare import SHAKESPEARE

RECIPES: dict[str, Recipe] = {r.name: r for r in (FEDC4, FEDWIKI, FEDBOOKCO, FEDCCNEWS,
                                                  SHAKESPEARE, DJANGO_L10N, PYDOCS)}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; SettingError listing the recipes if there is none."""
    try:
        return RECIPES[name]
    except KeyError:
        raise SettingError(f"no recipe {name!r}; recipes are: {', '.join(RECIPES)}") from None


# The build settings a recipe may suggest and a caller may override.
_BUILD_KEYS = {"workers", "memory_limit", "overwrite", "engine", "text_column",
               "on_missing_key", "num_partitions", "pipeline_options", "progress"}


def build_recipe(name: str, out: str | os.PathLike[str], *, split: str = "train",
                 options: dict[str, Any] | None = None, **build_kwargs: Any) -> Any:
    """Build recipe ``name`` into ``out``; ``options`` are the recipe's, the rest fg.build's."""
    from fedgroups.engine.api import build

    unknown = sorted(set(build_kwargs) - _BUILD_KEYS)
    if unknown:
        raise SettingError(f"fg.recipes.{name}: unknown argument(s) {unknown}; recipe options "
                           f"are {', '.join(get_recipe(name).options)}, build settings are "
                           f"{', '.join(sorted(_BUILD_KEYS))}")
    source, key, kwargs = get_recipe(name).build_args(split=split, **(options or {}))
    return build(source, key, out, **{**kwargs, **build_kwargs})


def _split_options(name: str, kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    recipe_keys = set(get_recipe(name).options)
    options = {k: v for k, v in kwargs.items() if k in recipe_keys}
    rest = {k: v for k, v in kwargs.items() if k not in recipe_keys}
    return options, rest


def fedc4(out: str | os.PathLike[str], config: str = "en", split: str = "train",
          **kwargs: Any) -> Any:
    """C4 grouped by website. ``streaming`` (default True), ``source`` and fg.build's settings
    may be passed as keywords."""
    options, rest = _split_options("fedc4", kwargs)
    return build_recipe("fedc4", out, split=split, options={"config": config, **options},
                        **rest)


def fedwiki(out: str | os.PathLike[str], config: str = "20231101.en", split: str = "train",
            **kwargs: Any) -> Any:
    """Wikipedia grouped by article; ``unit`` = paragraph (default), line or document."""
    options, rest = _split_options("fedwiki", kwargs)
    return build_recipe("fedwiki", out, split=split, options={"config": config, **options},
                        **rest)


def fedbookco(out: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> Any:
    """BookCorpusOpen grouped by book; ``unit`` = paragraph (default), line or document."""
    options, rest = _split_options("fedbookco", kwargs)
    return build_recipe("fedbookco", out, split=split, options=options, **rest)


def fedccnews(out: str | os.PathLike[str], split: str = "train", **kwargs: Any) -> Any:
    """CC-News grouped by publisher domain."""
    options, rest = _split_options("fedccnews", kwargs)
    return build_recipe("fedccnews", out, split=split, options=options, **rest)


def shakespeare(out: str | os.PathLike[str], path: str | None = None, **kwargs: Any) -> Any:
    """Shakespeare's plays grouped by (play, role); ``path`` to a local pg100.txt."""
    options, rest = _split_options("shakespeare", kwargs)
    return build_recipe("shakespeare", out, options={"path": path, **options}, **rest)


def django_l10n(out: str | os.PathLike[str], languages: str | None = None,
                **kwargs: Any) -> Any:
    """Django's translations grouped by (language, source file); family and language are
    group columns. ``families`` and ``root`` may be passed as keywords."""
    options, rest = _split_options("django_l10n", kwargs)
    return build_recipe("django_l10n", out, options={"languages": languages, **options}, **rest)


__all__ = ["RECIPES", "Recipe", "TransformSource", "build_recipe", "django_l10n", "fedbookco",
           "fedc4", "fedccnews", "fedwiki", "get_recipe", "shakespeare", "transformed"]
