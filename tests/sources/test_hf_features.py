"""Hugging Face ``Features`` (ClassLabel, Image, ...) travel with the source's schema as
``datasets`` writes them (the ``huggingface`` key of the Arrow schema metadata); other
metadata of the input (pandas' index notes) does not."""

from __future__ import annotations

import glob
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fedgroups as fg
from fedgroups.sources import make_source

datasets = pytest.importorskip("datasets")

def _labelled() -> datasets.Dataset:
    features = datasets.Features({"text": datasets.Value("string"), "user": datasets.Value(
        "string"), "label": datasets.ClassLabel(names=["neg", "pos"])})
    return datasets.Dataset.from_dict({"text": ["a", "b", "c"], "user": ["u", "v", "u"],
                                       "label": [0, 1, 1]}, features=features)


def _label_feature(schema: pa.Schema) -> dict:
    meta = json.loads(schema.metadata[b"huggingface"])
    return meta["info"]["features"]["label"]


def test_a_dataset_source_carries_its_features():
    src = make_source(_labelled())
    assert set(src.schema.metadata) == {b"huggingface"}
    assert _label_feature(src.schema) == {"names": ["neg", "pos"], "_type": "ClassLabel"}


def test_parquet_sources_keep_hf_features_and_drop_other_metadata(tmp_path):
    hf_file = tmp_path / "hf.parquet"
    _labelled().to_parquet(str(hf_file))
    assert _label_feature(make_source(str(hf_file)).schema)["_type"] == "ClassLabel"
    noted = tmp_path / "noted.parquet"
    pq.write_table(pa.table({"user": ["a"]}).replace_schema_metadata(
        {b"pandas": b'{"index_columns": ["__index_level_0__"]}', b"writer": b"me"}), noted)
    assert make_source(str(noted)).schema.metadata is None


def test_built_shards_give_the_features_back_to_datasets(tmp_path):
    out = fg.build(_labelled(), "field:user", tmp_path / "out", progress=False).path
    shards = [p for p in glob.glob(os.path.join(out, "**", "*.parquet"), recursive=True)
              if not os.path.basename(p).startswith(".") and ".fedgroups" not in p]
    loaded = datasets.load_dataset("parquet", data_files=shards, split="train",
                                   cache_dir=str(tmp_path / "cache"))
    assert loaded.features["label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert fg.verify(out) == []


def test_to_hf_gives_the_features_back(tmp_path):
    ds = fg.open(fg.build(_labelled(), "field:user", tmp_path / "out", progress=False).path)
    assert ds.to_hf().features["label"] == datasets.ClassLabel(names=["neg", "pos"])
    assert ds.group("u").to_hf().features["label"].names == ["neg", "pos"]
