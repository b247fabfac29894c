"""Row groups for streams: decoded ahead of the consumer, in the order it will need them.

A stream plans its groups chunk by chunk (see chunks.py) and tells the feed which row
groups each chunk needs, in first-need order. With read-ahead on, the feed hands those row
groups to Arrow's dataset scanner in segments of a few MiB: Arrow decodes them on its own
thread pool without the GIL — Python threads would each need the GIL back after every
call into Arrow, and wait up to the interpreter's switch interval (5 ms) for it while the
consumer runs Python. The consumer pulls decoded row groups in order as it reaches groups
that need them; scans stay under ``READ_AHEAD_BYTES`` of undelivered row groups, so memory
is bounded however far ahead the stream plans. Without read-ahead, row groups are decoded
in the consumer's thread when first needed.

Each row group is decoded once while some planned chunk holds it, checked against the
index (tiling.py), and handed to the shard cache, where the random-access path (and later
chunks) find it. A row group whose rows the planned chunks mostly need can also be
converted to Python dicts whole, once, for groups iterated as dicts (:meth:`dicts`).
"""

from __future__ import annotations

import atexit
import os
import threading
import weakref
from collections import deque
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from fedgroups.errors import CorruptDatasetError
from fedgroups.format.rows import to_dicts
from fedgroups.format.spec import KEY_COLUMN
from fedgroups.reader.shards import DecodedRowGroup, ShardCache
from fedgroups.reader.store import Store
from fedgroups.reader.tiling import check_row_group

if TYPE_CHECKING:
    import pyarrow.dataset as pds

# undelivered bytes (uncompressed, from the footers) in flight across scans, and per scan.
# Two scans at a time: Arrow's pool shares its threads among all running scans, so more
# of them make the row group the consumer needs next arrive later (a shuffled stream's
# first window waited 82-84 ms in all with 64 MiB in flight, 29-57 ms with 16 MiB).
READ_AHEAD_BYTES = 16 << 20
SEGMENT_BYTES = 8 << 20
# row groups converted whole to dicts (counted by their Arrow size; the dicts take ~2-3x)
DICT_BYTES = 64 << 20
_MASK = 0xFFFFFFFF


@cache
def _dataset() -> tuple[Any, Any, Any]:
    """pyarrow.dataset, the Parquet format scans read with and the local filesystem.
    Imported at the first scan, not with the reader: in pyarrow 25 importing it takes
    ~0.3 s and imports pandas, which opening a dataset or reading one group never needs.
    The key column is read dictionary-encoded (one string per run rather than per row:
    about half its decoding time; tiling.py then checks runs, not rows)."""
    import pyarrow.dataset as pds
    import pyarrow.fs as pfs
    fmt = pds.ParquetFileFormat(
        read_options=pds.ParquetReadOptions(dictionary_columns={KEY_COLUMN}))
    return pds, fmt, pfs.LocalFileSystem()


# Feeds not closed yet. A stream abandoned mid-iteration and still referenced at exit (a
# global, a traceback) would be closed only while the interpreter finalizes, too late for
# Arrow's threads to finish its scans safely: close them before that, at exit.
_LIVE: weakref.WeakSet[RowGroupFeed] = weakref.WeakSet()


@atexit.register
def _close_live_feeds() -> None:
    for feed in list(_LIVE):
        feed.close()


def _scan_schema(schema: pa.Schema) -> pa.Schema:
    """The shard's schema as a scan with ``_dataset()``'s format reads it: string or binary
    keys as a dictionary (other key types are read as they are)."""
    i = schema.get_field_index(KEY_COLUMN)
    t = schema.field(i).type
    if pa.types.is_string(t) or pa.types.is_binary(t) or pa.types.is_large_string(t) or \
            pa.types.is_large_binary(t):
        return schema.set(i, schema.field(i).with_type(pa.dictionary(pa.int32(), t)))
    return schema


class _Scan:
    """One Arrow scan over some row groups (fragments), pulled in order."""

    def __init__(self, shards: ShardCache, codes: list[int], columns: list[str],
                 schema: pa.Schema, parallel: int,
                 fragments: dict[int, list[pds.ParquetFileFragment]]) -> None:
        pds, fmt, fs = _dataset()
        frags = []
        for c in codes:
            s = c >> 32
            if s not in fragments:  # one per row group, sharing the footer parsed once
                # from the checked open file, never the path: no swapped file is read
                whole = fmt.make_fragment(shards.file(s))
                whole.ensure_complete_metadata()
                fragments[s] = whole.split_by_row_group()
            frags.append(fragments[s][c & _MASK])
        schema = _scan_schema(schema)
        dataset = pds.FileSystemDataset(frags, schema, fmt, fs)
        # shards are local files: pre-buffering reads would only add a copy (~10% more CPU)
        options = pds.ParquetFragmentScanOptions(page_checksum_verification=True,
                                                 pre_buffer=False)
        scanner = pds.Scanner.from_dataset(
            dataset, columns=columns, batch_size=1 << 30, fragment_scan_options=options,
            fragment_readahead=parallel, use_threads=True)
        self.codes = deque(codes)  # not yet pulled, in order
        self._schema = pa.schema([schema.field(c) for c in columns])
        self._batches = iter(scanner.scan_batches())  # starts decoding in the background
        self._pending: list[pa.RecordBatch] = []

    def pull(self, shards: ShardCache) -> tuple[int, pa.Table]:
        """The next row group's code and rows (blocks until Arrow has decoded it)."""
        code = self.codes[0]
        s, r = code >> 32, code & _MASK
        starts = shards.get(s).row_group_starts
        want = int(starts[r + 1] - starts[r])
        path = shards.get(s).path
        got = sum(b.num_rows for b in self._pending)
        try:
            while got < want:
                tagged = next(self._batches, None)
                if tagged is None:
                    break
                frag = tagged.fragment  # scans yield in fragment order; make sure
                if [g.id for g in frag.row_groups] != [r]:
                    raise RuntimeError(f"scan of {path} row group {r} got another row group")
                self._pending.append(tagged.record_batch)
                got += tagged.record_batch.num_rows
        except (OSError, pa.ArrowException) as e:
            raise self._damaged(shards, e) from e
        if got != want:
            raise CorruptDatasetError(
                f"{path}: row group {r} gave {got} rows, its footer says {want}; the shard is "
                "damaged — rebuild the dataset")
        self.codes.popleft()
        batches, self._pending = self._pending, []
        if not batches:  # an empty row group
            return code, self._schema.empty_table()
        return code, pa.Table.from_batches(batches)

    def drain(self) -> None:
        """Let the scan run to its end, discarding what it decodes: afterwards none of its
        work is left on Arrow's threads. (Dropping an unfinished scan leaves its work
        running there; at interpreter exit that work can meet a finalizing interpreter
        and abort the process: "terminate called without an active exception".) At most
        SEGMENT_BYTES of row groups, most of them decoded already."""
        try:
            for _ in self._batches:
                pass
        except (OSError, pa.ArrowException):
            pass  # damage is reported when a row group is pulled, not when one is dropped
        self.codes.clear()
        self._pending = []

    def _damaged(self, shards: ShardCache, err: Exception) -> CorruptDatasetError:
        """The error naming the damaged file: the scan reads ahead, so what failed may be
        a later row group (of another shard) than the one being pulled; read each one not
        yet handed out, in order, until one fails (only on this error path)."""
        columns = self._schema.names
        for code in self.codes:
            try:
                shards.get(code >> 32).read_row_group(code & _MASK, columns)
            except CorruptDatasetError as e:
                return e
        s, r = self.codes[0] >> 32, self.codes[0] & _MASK
        return CorruptDatasetError(
            f"{shards.get(s).path}: row group {r} cannot be read ({err}); the shard is damaged "
            "— run `fedgroups verify` and rebuild the dataset")


class _Held:
    """A row group some planned chunks need."""

    __slots__ = ("dicts", "nbytes", "rb", "rows", "users")

    def __init__(self, rb: DecodedRowGroup | None, nbytes: int) -> None:
        self.rb = rb  # None until decoded
        self.users = 0  # planned chunks that need it
        self.rows = 0  # rows of it their small groups need
        self.nbytes = nbytes
        self.dicts: list[dict[str, Any]] | None = None  # all its rows, once asked for


class RowGroupFeed:
    """The row groups of a stream's planned chunks: decoded ahead, ``read_ahead`` at a time
    (0: when first needed, in the consumer's thread). ``held_bytes``: uncompressed size of
    the row groups held for planned chunks, what planning ahead costs in memory."""

    def __init__(self, store: Store, columns: list[str], read_ahead: int) -> None:
        self._shards, self._cols, self._index = store.shards, tuple(columns), store.arrays
        self._scan_cols = [*columns, KEY_COLUMN]
        self._read_ahead = read_ahead
        self._held: dict[int, _Held] = {}
        self._queue: deque[tuple[int, int]] = deque()  # (code, bytes) not in a scan yet
        self._queued = 0  # their bytes
        self._scans: deque[_Scan] = deque()
        self._in_flight = 0  # bytes given to scans and not pulled yet
        self._pid = os.getpid()
        self._fragments: dict[int, list[pds.ParquetFileFragment]] = {}  # by shard
        self.held_bytes = 0
        self.wants_dicts = False  # the consumer iterates groups as dicts (see Chunk)
        self._dict_bytes = 0  # Arrow bytes of the row groups converted whole to dicts
        # the stream's thread plans and pulls; a group handed to another thread may pull
        # too (its dicts convert the groups after it)
        self._lock = threading.RLock()
        _LIVE.add(self)  # closed at exit if its stream is not closed before

    def _size(self, code: int) -> int:
        return self._shards.row_group_bytes(code >> 32)[code & _MASK]

    def need(self, codes: list[int], rows: list[int]) -> None:
        """A planned chunk needs row groups ``codes`` (shard << 32 | row group), in this
        order, ``rows`` of each for its small groups: start decoding them (up to
        READ_AHEAD_BYTES in flight)."""
        with self._lock:
            held, cols, cached = self._held, self._cols, self._shards.cached_row_group
            for code, n in zip(codes, rows):
                entry = held.get(code)
                if entry is None:
                    rb = cached(code >> 32, code & _MASK, cols)
                    entry = held[code] = _Held(rb, self._size(code))
                    self.held_bytes += entry.nbytes
                    if rb is None and self._read_ahead:
                        self._queue.append((code, entry.nbytes))
                        self._queued += entry.nbytes
                entry.users += 1
                entry.rows += n
            self._start_scans()

    def _start_scans(self, now: bool = False) -> None:
        """Hand queued row groups to new scans, SEGMENT_BYTES each, while under
        READ_AHEAD_BYTES in flight; a partial segment only if little is in flight or
        ``now`` (each scan costs a few ms to start: a chunk often needs few new ones)."""
        while self._queue and self._in_flight < READ_AHEAD_BYTES:
            if self._queued < SEGMENT_BYTES and self._in_flight >= SEGMENT_BYTES and not now:
                return
            codes, size = [], 0
            while self._queue and size < SEGMENT_BYTES:
                code, nbytes = self._queue.popleft()
                self._queued -= nbytes
                entry = self._held.get(code)
                if entry is None or entry.rb is not None:
                    continue  # released, or decoded meanwhile
                codes.append(code)
                size += entry.nbytes
            if codes:
                schema = self._shards.get(codes[0] >> 32).file.schema_arrow
                self._scans.append(_Scan(self._shards, codes, self._scan_cols, schema,
                                         self._read_ahead, self._fragments))
                self._in_flight += size

    def peek(self, code: int) -> DecodedRowGroup | None:
        """Row group ``code`` if already decoded (never waits)."""
        with self._lock:
            entry = self._held.get(code)
            return entry.rb if entry is not None else None

    def has_dicts(self, code: int) -> bool:
        entry = self._held.get(code)
        return entry is not None and entry.dicts is not None

    def dicts(self, code: int) -> list[dict[str, Any]] | None:
        """All rows of row group ``code`` as dicts, converted once, when the planned chunks
        need at least half of them and fewer than DICT_BYTES of row groups are converted
        (a shuffled stream's groups scatter over many row groups: gathering their rows for
        one conversion costs about twice a plain conversion of a whole row group); else
        None. The row group must be decoded (resolved) already."""
        with self._lock:
            entry = self._held.get(code)
            if entry is None or entry.rb is None:
                return None
            if entry.dicts is None:
                rb = entry.rb
                if 2 * entry.rows < rb.batch.num_rows or \
                        self._dict_bytes + rb.nbytes > DICT_BYTES:
                    return None
                entry.dicts = to_dicts(rb.batch)
                self._dict_bytes += rb.nbytes
            return entry.dicts

    def resolve(self, code: int) -> DecodedRowGroup:
        """Row group ``code`` decoded and checked against the index (every row: its groups
        need no check of their own), pulling (and waiting for) scans up to it."""
        entry = self._held.get(code)  # the common case (later chunks that need it): done
        rb = None if entry is None else entry.rb  # set once, never unset
        if rb is not None and rb.verified:
            return rb  # without the lock, the fork check or the call to _checked
        with self._lock:
            entry = self._held.get(code)
            if entry is None:  # released already (a group iterated after its chunk): read it
                rb = self._shards.decoded_row_group(code >> 32, code & _MASK, self._cols)
                return self._checked(rb, code)
            if self._pid != os.getpid():
                self._after_fork()
            while entry.rb is None:
                if self._read_ahead and not self._scans:
                    self._start_scans(now=True)
                if not self._read_ahead or not self._scans:
                    entry.rb = self._shards.decoded_row_group(code >> 32, code & _MASK,
                                                              self._cols)
                    break
                scan = self._scans[0]
                got, table = scan.pull(self._shards)
                self._in_flight -= self._size(got)
                if not scan.codes:
                    self._scans.popleft()
                rb = self._shards.decoded_row_group(got >> 32, got & _MASK, self._cols, table)
                held = self._held.get(got)
                if held is not None:
                    held.rb = rb
                self._start_scans()
            return self._checked(entry.rb, code)

    def _after_fork(self) -> None:
        """In a forked child Arrow's threads are gone, and with them the scans' work:
        queue what they had not delivered again, in order, for new scans."""
        self._pid = os.getpid()
        pending = [(c, self._size(c)) for scan in self._scans for c in scan.codes]
        self._scans.clear()
        self._in_flight = 0
        self._queue.extendleft(reversed(pending))
        self._queued += sum(n for _, n in pending)

    def _checked(self, rb: DecodedRowGroup, code: int) -> DecodedRowGroup:
        if not rb.verified:
            s, r = code >> 32, code & _MASK
            h = self._shards.get(s)
            check_row_group(self._index.physical, self._index.keys, h.path, s,
                            int(h.row_group_starts[r]), int(h.row_group_starts[r + 1]),
                            rb.keys)
            rb.verified = True
        return rb

    def release(self, codes: list[int], rows: list[int]) -> None:
        """A chunk that needed these row groups (``rows`` of each) is done with them."""
        with self._lock:
            for code, n in zip(codes, rows):
                entry = self._held[code]
                entry.users -= 1
                entry.rows -= n
                if not entry.users:
                    del self._held[code]
                    self.held_bytes -= entry.nbytes
                    if entry.dicts is not None:
                        self._dict_bytes -= entry.rb.nbytes

    def close(self) -> None:
        """Forget every planned row group and end the scans: each runs to its end first
        (see :meth:`_Scan.drain`), so a stream closed — or abandoned, and closed at exit by
        :func:`_close_live_feeds` — leaves no work on Arrow's threads. In a forked child
        the parent's scans have no threads here: they are dropped."""
        with self._lock:
            self._held.clear()
            self._queue.clear()
            self._queued = 0
            scans, self._scans = self._scans, deque()
            self._in_flight = 0
            if self._pid == os.getpid():
                for scan in scans:
                    scan.drain()
            _LIVE.discard(self)
