"""Per-row statistics for the index agree with plain Python on any text."""

from __future__ import annotations

import re

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from fedgroups.format.rowstats import row_bytes, word_counts

TEXT = st.text(alphabet=st.sampled_from(list("ab é\t\n\r\x00\x1f日 ")), max_size=40)


def _python_words(s: str) -> int:
    return len(re.findall(rb"[^\x00-\x20]+", s.encode()))


@given(st.lists(st.one_of(st.none(), TEXT), max_size=30), st.integers(0, 5))
def test_word_counts_match_python(texts, offset):
    arr = pa.array(["pad"] * offset + texts, pa.string()).slice(offset)
    assert word_counts(arr).tolist() == [0 if t is None else _python_words(t) for t in texts]
    assert word_counts(pa.chunked_array([arr, arr], pa.string())).tolist() == \
        2 * [0 if t is None else _python_words(t) for t in texts]


def test_row_bytes_counts_strings_and_fixed_width():
    t = pa.table({"s": ["ab", None, "日本"], "i": pa.array([1, 2, 3], pa.int64()),
                  "f": pa.array([1.0, 2.0, 3.0], pa.float32())})
    assert row_bytes(t).tolist() == [2 + 8 + 4, 0 + 8 + 4, 6 + 8 + 4]
