from __future__ import annotations

import torch
from fl_testkit import MemoryGroup, make_records
from hypothesis import given, settings
from hypothesis import strategies as st

from fedgroups.fl.client_data import encode_prefix, iter_batches, pack_client
from fedgroups.fl.config import ModelConfig
from fedgroups.fl.model import ModelArgs, build_model, num_parameters
from fedgroups.fl.simulation import model_args
from fedgroups.fl.tokenizer import EOS, train_bpe


def test_tiny_preset_size_and_names() -> None:
    model = build_model(model_args(ModelConfig(preset="tiny"), 1024), seed=0)
    assert 100_000 < num_parameters(model) < 1_000_000
    names = [n for n, _ in model.named_parameters()]
    assert names[:2] == ["tok_emb.weight", "pos_emb.weight"]
    assert "blocks.1.attn.qkv.weight" in names and "ln_f.weight" in names
    assert not any("head" in n for n in names)  # tied output head


def test_causal_and_seeded() -> None:
    args = ModelArgs(vocab_size=50, seq_len=8, d_model=16, n_layers=2, n_heads=2, d_ff=32)
    a, b = build_model(args, seed=3), build_model(args, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    x = torch.randint(0, 50, (2, 8), generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, 5:] = (y[:, 5:] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(a(x)[:, :5], a(y)[:, :5])


def _tokenizer():
    return train_bpe([r["text"] for r in make_records(4)], vocab_size=300)


def test_pack_appends_eos_concatenates_and_caps() -> None:
    tok = _tokenizer()
    eos = tok.token_to_id(EOS)
    texts = [{"text": t} for t in ["alpha beta", "gamma", "delta epsilon zeta"] * 10]
    stream = []
    for ex in texts:
        stream += tok.encode(ex["text"], add_special_tokens=False).ids + [eos]
    data = pack_client(MemoryGroup("k", texts), tok, text_column="text", seq_len=4,
                       max_sequences=3, eos_id=eos)
    assert data.sequences.shape == (3, 5)
    assert data.sequences.reshape(-1).tolist() == stream[:15]
    assert data.num_tokens == 12 and data.key == "k"
    small = pack_client(MemoryGroup("s", texts[:1]), tok, text_column="text", seq_len=64,
                        max_sequences=3, eos_id=eos)
    assert small.num_sequences == 0  # too little data: the simulation skips and counts it


@settings(max_examples=25, deadline=None)
@given(n=st.integers(0, 40), bs=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_batches_cover_every_sequence_once(n: int, bs: int, seed: int) -> None:
    seqs = torch.arange(n * 3).reshape(n, 3)
    got = list(iter_batches(seqs, bs, torch.Generator().manual_seed(seed)))
    assert all(1 <= b.shape[0] <= bs for b in got)
    rows = sorted(r[0].item() for b in got for r in b)
    assert rows == list(range(0, n * 3, 3))


_PIECES = ["alpha", " beta", "'re", "'s", " ", "   ", "\n", "\n\n  ", "42", " 7", "é", "日本",
           "!?", "(", "x_y", "\t", "<|endoftext|>"]


@settings(max_examples=40, deadline=None)
@given(pieces=st.lists(st.sampled_from(_PIECES), min_size=200, max_size=1500),
       at_least=st.integers(1, 300))
def test_encode_prefix_equals_the_start_of_the_whole_encoding(pieces: list[str],
                                                                at_least: int) -> None:
    tok = _tokenizer()
    text = "".join(pieces)
    full = tok.encode(text, add_special_tokens=False).ids
    got = encode_prefix(tok, text, at_least)
    if got is not None:
        assert len(got) >= at_least and got == full[: len(got)]


def test_pack_with_one_huge_example_equals_tokenizing_it_whole() -> None:
    tok = _tokenizer()
    eos = tok.token_to_id(EOS)
    huge = " ".join(r["text"] for r in make_records(16)) * 4  # far longer than needed
    texts = [{"text": "short one"}, {"text": huge}, {"text": "never read"}]
    stream = tok.encode("short one", add_special_tokens=False).ids + [eos]
    stream += tok.encode(huge, add_special_tokens=False).ids
    assert len(huge) > 4096 and encode_prefix(tok, huge, 32) is not None  # the prefix path
    data = pack_client(MemoryGroup("k", texts), tok, text_column="text", seq_len=8,
                       max_sequences=4, eos_id=eos)
    assert data.sequences.reshape(-1).tolist() == stream[:36]
    assert data.num_examples == 2
