"""Optional pieces: fedgroups imports without Beam; TFDS is an optional source."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fedgroups.errors import SettingError


def test_import_fedgroups_does_not_import_beam():
    code = ("import sys, fedgroups, fedgroups.build.api, fedgroups.sources; "
            "assert 'apache_beam' not in sys.modules, 'beam imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tfds_missing_gives_an_install_hint():
    try:
        import tensorflow_datasets  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorflow-datasets is installed")
    from fedgroups.sources import make_source
    with pytest.raises(SettingError, match="pip install tensorflow"):
        make_source("tfds:mnist", split="train")


def test_tfds_source_reads_a_prepared_dataset(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    from beam_helpers import DIRECT, assert_same_dataset

    import fedgroups as fg

    with tfds.testing.mock_data(num_examples=40):
        local = fg.build("tfds:mnist", "iid:3:0", tmp_path / "local", progress=False)
        beam = fg.build("tfds:mnist", "iid:3:0", tmp_path / "beam", engine="beam",
                        pipeline_options=DIRECT, progress=False)
    assert_same_dataset(local.path, beam.path)
