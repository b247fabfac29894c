"""Optional pieces: fedgroups imports without Beam; TFDS is an optional source."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_import_fedgroups_does_not_import_beam():
    code = ("import sys, fedgroups, fedgroups.engine.api, fedgroups.sources; "
            "assert 'apache_beam' not in sys.modules, 'beam imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# Runs in a fresh interpreter in which tensorflow_datasets cannot be imported, whether or
# not it is installed (it is, with the dev extra): the path a user without it takes.
_WITHOUT_TFDS = """
import sys

class BlockTfds:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "tensorflow_datasets":
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None

sys.meta_path.insert(0, BlockTfds())
sys.modules.pop("tensorflow_datasets", None)
from fedgroups.errors import SettingError
from fedgroups.sources import make_source
try:
    make_source("tfds:mnist", split="train")
except SettingError as e:
    print("SettingError:", e)
"""


def test_tfds_missing_gives_an_install_hint():
    run = subprocess.run([sys.executable, "-c", _WITHOUT_TFDS], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.startswith("SettingError:") and "pip install tensorflow" in run.stdout


_BUILDERS: dict = {}  # TFDS registers a builder class by name: define it once


def _tiny_tfds(tfds, data_dir: str) -> str:
    """A real TFDS dataset, prepared offline into ``data_dir``: 40 examples, 3 users."""
    if "tiny" not in _BUILDERS:
        _BUILDERS["tiny"] = _define_tiny(tfds)
    builder = _BUILDERS["tiny"]
    builder(data_dir=data_dir).download_and_prepare()
    return builder.name


def _define_tiny(tfds):
    tf = pytest.importorskip("tensorflow")

    class FedgroupsTinyUsers(tfds.core.GeneratorBasedBuilder):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(
                {"text": tfds.features.Text(), "user": tf.int64}))

        def _split_generators(self, dl_manager):
            return {"train": self._generate_examples()}

        def _generate_examples(self):
            for i in range(40):
                yield i, {"text": f"example {i} of user {i % 3}", "user": i % 3}

    return FedgroupsTinyUsers


def test_tfds_source_reads_a_prepared_dataset(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from beam_helpers import DIRECT, assert_same_dataset

    import fedgroups as fg

    name = _tiny_tfds(tfds, str(tmp_path / "tfds"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    local = fg.build(f"tfds:{name}", "field:user", tmp_path / "local", progress=False)
    beam = fg.build(f"tfds:{name}", "field:user", tmp_path / "beam", engine="beam",
                    pipeline_options=DIRECT, progress=False)
    assert_same_dataset(local.path, beam.path)
    ds = fg.open(local.path)
    assert ds.keys() == [0, 1, 2] and ds.num_examples == 40
    texts = sorted(r["text"] for r in ds[1])
    assert texts == sorted(f"example {i} of user 1" for i in range(1, 40, 3))


def test_tfds_source_names_a_missing_split(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")
    from fedgroups.errors import SourceError
    from fedgroups.sources import make_source

    name = _tiny_tfds(tfds, str(tmp_path / "tfds"))
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    with pytest.raises(SourceError, match="no split 'test'; splits are \\['train'\\]"):
        make_source(f"tfds:{name}", split="test")
