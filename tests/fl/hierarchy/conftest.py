"""Fixtures for tests/fl/hierarchy: a tiny multilingual grouped dataset built for real.

Two families (romance: es, it; germanic: de, nl), four documents (groups) per language,
each language with its own words, so languages differ far more than documents do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

torch.set_num_threads(1)

LANGS = {
    "romance": {"es": "el la los las de que y en un una por con para como pero",
                "it": "il la di che e un una per con non come ma anche piu questo"},
    "germanic": {"de": "der die das und ist nicht ein eine mit auf fur von zu den sich",
                 "nl": "de het een en van is niet op met voor dat zijn die ook maar"},
}


def world_records(docs_per_lang: int = 4, seed: int = 0, lines: int = 12
                       ) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    out = []
    for family, langs in LANGS.items():
        for lang, vocab in langs.items():
            words = vocab.split()
            for d in range(docs_per_lang):
                topic = rng.choice(len(words), size=3, replace=False)
                for _ in range(lines):
                    n = int(rng.integers(6, 16))
                    idx = np.where(rng.random(n) < 0.5, rng.choice(topic, size=n),
                                   rng.integers(0, len(words), size=n))
                    out.append({"doc": f"{lang}-{d:02d}", "family": family, "lang": lang,
                                "text": " ".join(words[i] for i in idx)})
    return out


@pytest.fixture(scope="session")
def world_data(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of the tiny world dataset (groups = documents; group columns family, lang)."""
    from fedgroups.engine.api import build

    out = tmp_path_factory.mktemp("world") / "ds"
    build(world_records(), "field:doc", str(out), group_columns=("family", "lang"),
          progress=False)
    return str(out)


def world_config(data: str, out: str | Path, **over: Any) -> dict[str, Any]:
    """A config dict for a seconds-long hierarchical run on ``world_data``."""
    cfg: dict[str, Any] = {
        "data": {"path": data},
        "output_dir": str(out),
        "rounds": 3,
        "cohort_size": 2,
        "seed": 0,
        "tokenizer": {"vocab_size": 300, "sample_groups": 16, "sample_examples": 400},
        "model": {"preset": "tiny", "seq_len": 16, "d_model": 32, "n_heads": 2},
        "client": {"optimizer": "sgd", "lr": 0.3, "local_steps": 2, "batch_size": 4,
                   "max_sequences": 8},
        "server": {"optimizer": "sgd", "lr": 1.0},
        "eval": {"max_sequences": 8, "batch_size": 8},
        "personalization": {"lr": 0.3, "steps": 2, "batch_size": 2},
        "run": {"progress": False, "checkpoint_every": 1, "threads": 1},
        "hierarchy": {"method": "worldlm", "levels": ["family", "lang"], "tau": 0.05,
                      "eval_fraction": 0.25},
    }
    for k, v in over.items():
        node = cfg
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return cfg


@pytest.fixture
def world_config_factory() -> Any:
    return world_config


@pytest.fixture
def make_world_records() -> Any:
    return world_records
