"""Bring your own tokenizer: a tokenizer.json, a save_pretrained folder, a configurable EOS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fl_testkit import make_records, tiny_config

from fedgroups.fl.config import parse_config
from fedgroups.fl.errors import TokenizerError
from fedgroups.fl.simulation import run
from fedgroups.fl.tokenizer import EOS, load_tokenizer, open_tokenizer, run_eos_id, train_bpe

TEXTS = [r["text"] for r in make_records(6, seed=1)]


def _bpe(eos: str = "</s>") -> object:
    return train_bpe(TEXTS, vocab_size=300, eos_token=eos)


def test_a_file_and_a_folder_with_tokenizer_json(tmp_path: Path) -> None:
    tok = _bpe(EOS)
    tok.save(str(tmp_path / "tok.json"))
    assert open_tokenizer(tmp_path / "tok.json")[1] == EOS
    folder = tmp_path / "folder"
    folder.mkdir()
    _bpe("</s>").save(str(folder / "tokenizer.json"))
    (folder / "special_tokens_map.json").write_text(json.dumps({"eos_token": {"content": "</s>"}}))
    loaded, eos = open_tokenizer(folder)
    assert eos == "</s>" and loaded.token_to_id("</s>") == 0


def test_eos_token_setting_wins_and_missing_ones_are_named(tmp_path: Path) -> None:
    tok = train_bpe(TEXTS, vocab_size=300, eos_token="</s>")
    tok.add_special_tokens(["<eot>"])
    tok.save(str(tmp_path / "t.json"))
    _, eos = open_tokenizer(tmp_path / "t.json", "<eot>")
    assert eos == "<eot>"
    with pytest.raises(TokenizerError, match=r"no end-of-text token '<\|endoftext\|>'.*"
                                             r"\['</s>', '<eot>'\].*tokenizer.eos_token"):
        load_tokenizer(tmp_path / "t.json")
    with pytest.raises(TokenizerError, match="no tokenizer file or folder"):
        load_tokenizer(tmp_path / "missing")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TokenizerError, match="cannot read .*bad.json as a tokenizer.json"):
        load_tokenizer(tmp_path / "bad.json")


def test_save_pretrained_folders_from_transformers(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tok = _bpe("</s>")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="</s>")
    fast.save_pretrained(str(tmp_path / "fast"))
    loaded, eos = open_tokenizer(tmp_path / "fast")
    assert eos == "</s>"
    assert loaded.encode("alpha beta").ids == tok.encode("alpha beta").ids
    # A "slow" GPT-2 folder (vocab.json + merges.txt, no tokenizer.json): AutoTokenizer.
    slow = tmp_path / "slow"
    slow.mkdir()
    tok.model.save(str(slow))
    (slow / "tokenizer_config.json").write_text(json.dumps(
        {"tokenizer_class": "GPT2Tokenizer", "eos_token": "</s>", "bos_token": "</s>",
         "unk_token": "</s>", "add_prefix_space": False}))
    loaded, eos = open_tokenizer(slow)
    assert eos == "</s>" and loaded.token_to_id("</s>") is not None
    assert loaded.encode("gamma delta").ids == tok.encode("gamma delta").ids
    with pytest.raises(TokenizerError, match="is not a tokenizer folder"):
        (tmp_path / "empty").mkdir()
        load_tokenizer(tmp_path / "empty")


def test_a_run_with_a_folder_tokenizer_records_its_eos(make_dataset, tmp_path: Path) -> None:
    folder = tmp_path / "tok"
    folder.mkdir()
    tok = _bpe("</s>")
    tok.add_special_tokens(["<pad>"])
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<pad>"}))
    data = make_dataset(make_records(8))
    cfg = parse_config(tiny_config(data, str(tmp_path / "run"), rounds=1),
                       [f"tokenizer.path={folder}", "tokenizer.eos_token=</s>",
                        "eval.datasets=[]"])
    res = run(cfg, echo=lambda m: None)
    assert json.loads((res.run_dir / "tokenizer_config.json").read_text()) == {"eos_token": "</s>"}
    assert run_eos_id(res.run_dir, load_tokenizer(res.run_dir)) == tok.token_to_id("</s>")
    assert res.rows[0]["clients"] > 0
