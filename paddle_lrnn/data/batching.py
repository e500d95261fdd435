"""Batches of token windows as int64 numpy arrays [B, T]: random for training (deterministic, resumable, shardable
over data-parallel ranks) and in order for evaluation (exact token counts)."""
import math

import numpy as np

from .errors import DataError

STATE_FORMAT = "paddle_lrnn.BatchSampler"
STATE_VERSION = 1


def _check_tokens(tokens):
    if not hasattr(tokens, "ndim") or tokens.ndim != 1 or np.dtype(tokens.dtype).kind not in "iu":
        raise DataError("tokens must be a 1-D integer numpy array (e.g. corpus.train)")


def _windows(tokens, starts, length):
    """Rows tokens[s:s+length] for each start, as int64 [len(starts), length] (read as contiguous slices, so a
    memory-mapped split is only touched where the windows lie)."""
    out = np.empty((len(starts), length), np.int64)
    for r, s in enumerate(starts.tolist()):
        out[r] = tokens[s:s + length]
    return out


class Batch:
    """One global training batch: offsets int64 [B] (window starts in the split), step (0-based index of the
    batch in the sampler's sequence). x, y: int64 [B, T], y shifted by one token. shard(rank, world_size) -> (x, y)
    with only this rank's rows: the contiguous block of B // world_size rows starting at rank * B // world_size
    (concatenating the shards of ranks 0..world_size-1 gives x and y)."""

    def __init__(self, tokens, offsets, ctx_len, step):
        self.tokens = tokens
        self.offsets = offsets
        self.ctx_len = ctx_len
        self.step = step
        self._xy = None

    def __len__(self):
        return len(self.offsets)

    def _gather(self, offsets):
        w = _windows(self.tokens, offsets, self.ctx_len + 1)
        return np.ascontiguousarray(w[:, :-1]), np.ascontiguousarray(w[:, 1:])

    @property
    def x(self):
        if self._xy is None:
            self._xy = self._gather(self.offsets)
        return self._xy[0]

    @property
    def y(self):
        if self._xy is None:
            self._xy = self._gather(self.offsets)
        return self._xy[1]

    def rows(self, rank, world_size):
        """The slice of rows that `rank` of `world_size` takes; DataError if B is not divisible by world_size."""
        B = len(self.offsets)
        if not (isinstance(world_size, (int, np.integer)) and world_size >= 1):
            raise DataError(f"world_size must be a positive integer, got {world_size!r}")
        if not (isinstance(rank, (int, np.integer)) and 0 <= rank < world_size):
            raise DataError(f"rank must be in 0..{world_size - 1}, got {rank!r}")
        if B % world_size:
            raise DataError(f"the global batch size {B} is not divisible by the world size {world_size}: use a "
                            f"global batch that is a multiple of the number of ranks")
        per = B // world_size
        return slice(rank * per, (rank + 1) * per)

    def shard(self, rank, world_size):
        """(x, y) int64 [B // world_size, T] for this rank (see the class docstring)."""
        rows = self.rows(rank, world_size)
        if self._xy is not None:
            return self._xy[0][rows], self._xy[1][rows]
        return self._gather(self.offsets[rows])


class BatchSampler:
    """Random training windows in RWKV-v2's form: x = tokens[i:i+ctx_len], y = tokens[i+1:i+ctx_len+1].

    BatchSampler(tokens, batch_size, ctx_len, seed=0): tokens a 1-D integer array (e.g. corpus.train, memory-mapped
    is fine) with at least ctx_len + 1 tokens; batch_size the GLOBAL batch (all ranks together).
    Each step draws batch_size offsets uniformly from 0..len(tokens)-ctx_len-1 (every position can be a target;
    v2's own sampler stops one short of the last token) with one numpy Generator (PCG64 seeded with `seed`) shared
    by all ranks: every rank runs the same sampler and keeps its rows with batch.shard(rank, world_size), so a run
    resumed with another world size continues the same global sequence of batches.
      next_batch() / next(sampler) -> Batch (global offsets; .x, .y, .shard(rank, world_size))
      state_dict() -> a JSON-serialisable dict (step, seed, sizes and the generator's full state, its 128-bit
                      integers as decimal strings); load_state_dict(state) restores it, so the batches drawn after
                      it are exactly those the saved sampler would have drawn. load_state_dict checks that
                      batch_size, ctx_len and the split length match (DataError otherwise; strict=False skips it).
    The offsets depend only on the seed, the step, batch_size and len(tokens) - ctx_len (and numpy's PCG64 and
    Generator.integers algorithms, stable across numpy releases since 1.17)."""

    def __init__(self, tokens, batch_size, ctx_len, seed=0):
        _check_tokens(tokens)
        batch_size, ctx_len = int(batch_size), int(ctx_len)
        if batch_size < 1 or ctx_len < 1:
            raise DataError(f"batch_size and ctx_len must be positive, got {batch_size} and {ctx_len}")
        if len(tokens) < ctx_len + 1:
            raise DataError(f"the split has {len(tokens):,} tokens, too few for ctx_len {ctx_len}: a training window "
                            f"needs ctx_len + 1 = {ctx_len + 1:,} tokens")
        self.tokens = tokens
        self.batch_size = batch_size
        self.ctx_len = ctx_len
        self.seed = int(seed)
        self.n_offsets = len(tokens) - ctx_len
        self.rng = np.random.Generator(np.random.PCG64(self.seed))
        self.step = 0

    def draw_offsets(self):
        """Advances one step; returns the global batch's window starts, int64 [batch_size]."""
        offsets = self.rng.integers(0, self.n_offsets, size=self.batch_size, dtype=np.int64)
        self.step += 1
        return offsets

    def next_batch(self):
        step = self.step
        return Batch(self.tokens, self.draw_offsets(), self.ctx_len, step)

    def __iter__(self):
        return self

    def __next__(self):
        return self.next_batch()

    def state_dict(self):
        st = self.rng.bit_generator.state
        return {"format": STATE_FORMAT, "version": STATE_VERSION, "seed": self.seed, "step": self.step,
                "batch_size": self.batch_size, "ctx_len": self.ctx_len, "n_tokens": int(len(self.tokens)),
                "bit_generator": st["bit_generator"],
                "rng_state": {k: str(v) for k, v in st["state"].items()},
                "has_uint32": int(st["has_uint32"]), "uinteger": int(st["uinteger"])}

    def load_state_dict(self, state, strict=True):
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise DataError("not a BatchSampler state (state_dict() of paddle_lrnn.data.BatchSampler)")
        if state.get("version", 1) > STATE_VERSION:
            raise DataError(f"BatchSampler state version {state['version']} is newer than this code reads")
        if state.get("bit_generator") != "PCG64":
            raise DataError(f"BatchSampler state uses {state.get('bit_generator')!r}, expected PCG64")
        if strict:
            for k, mine in (("batch_size", self.batch_size), ("ctx_len", self.ctx_len),
                            ("n_tokens", len(self.tokens))):
                if state[k] != mine:
                    raise DataError(f"cannot resume: the saved sampler had {k} {state[k]}, this one has {mine} (the "
                                    f"batches would differ); pass strict=False to resume anyway")
        self.rng.bit_generator.state = {
            "bit_generator": "PCG64", "state": {k: int(v) for k, v in state["rng_state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
        self.seed = int(state["seed"])
        self.step = int(state["step"])


class EvalBatch(tuple):
    """(x, y, n_tokens): x, y int64 [b, T] (b <= batch_size), y's padding positions hold ignore_index, x's hold 0;
    n_tokens = the number of real targets (y != ignore_index). Also .x, .y, .n_tokens, .mask (bool [b, T])."""

    def __new__(cls, x, y, n_tokens, ignore_index):
        self = super().__new__(cls, (x, y, n_tokens))
        self.ignore_index = ignore_index
        return self

    x = property(lambda self: self[0])
    y = property(lambda self: self[1])
    n_tokens = property(lambda self: self[2])

    @property
    def mask(self):
        return self[1] != self.ignore_index


class eval_batches:  # noqa: N801 (used like a function)
    """Deterministic evaluation windows covering a split, every target position exactly once.

    eval_batches(tokens, batch_size, ctx_len, max_batches=None, ignore_index=-100, streams=False) is an iterable
    of EvalBatch (x, y, n_tokens) with len() (number of batches) and .n_tokens (targets in all its batches).
    The n - 1 targets tokens[1:] are cut into windows of ctx_len (x = tokens[j:j+T], y = tokens[j+1:j+T+1]); the
    last window may be shorter: it is padded (x with 0, y with ignore_index, which paddle's cross_entropy skips
    by default). Summing the per-token losses over the unpadded positions and dividing by the summed n_tokens gives
    the exact mean over the split.
      streams=False: windows in order, non-overlapping, batch_size per batch; the last batch may have fewer rows.
      streams=True: the targets are cut into batch_size contiguous streams of ceil((n-1)/batch_size) tokens (the
        last stream shorter) and batch k holds window k of every stream (always batch_size rows, exhausted rows
        all padding), so a recurrent model may carry its state from batch k to batch k+1 row by row.
    max_batches: stop after this many batches (then .n_tokens counts only those)."""

    def __init__(self, tokens, batch_size, ctx_len, max_batches=None, ignore_index=-100, streams=False):
        _check_tokens(tokens)
        batch_size, ctx_len = int(batch_size), int(ctx_len)
        if batch_size < 1 or ctx_len < 1:
            raise DataError(f"batch_size and ctx_len must be positive, got {batch_size} and {ctx_len}")
        if len(tokens) < 2:
            raise DataError(f"the split has {len(tokens)} token(s); evaluation needs at least 2 (one target)")
        self.tokens = tokens
        self.batch_size = batch_size
        self.ctx_len = ctx_len
        self.ignore_index = ignore_index
        self.streams = bool(streams)
        n_targets = len(tokens) - 1
        T = ctx_len
        if self.streams:
            self.stream_len = -(-n_targets // batch_size)
            # row r covers targets [r*L, min((r+1)*L, n_targets)) of tokens[1:]
            self.row_start = np.arange(batch_size, dtype=np.int64) * self.stream_len
            self.row_end = np.minimum(self.row_start + self.stream_len, n_targets)
            self.row_end = np.maximum(self.row_end, self.row_start)
            n_batches = -(-self.stream_len // T)
        else:
            self.n_windows = -(-n_targets // T)
            n_batches = -(-self.n_windows // batch_size)
        if max_batches is not None:
            n_batches = min(n_batches, int(max_batches))
        self.n_batches = n_batches
        self.n_targets = n_targets
        self.n_tokens = sum(self._batch_bounds(k)[2] for k in range(n_batches)) if self.streams \
            else min(n_targets, n_batches * batch_size * T)

    def __len__(self):
        return self.n_batches

    def _batch_bounds(self, k):
        """streams: (starts, ends, n) of batch k: target index ranges per row."""
        T = self.ctx_len
        starts = np.minimum(self.row_start + k * T, self.row_end)
        ends = np.minimum(starts + T, self.row_end)
        return starts, ends, int((ends - starts).sum())

    def _make(self, starts, ends):
        T = self.ctx_len
        b = len(starts)
        x = np.zeros((b, T), np.int64)
        y = np.full((b, T), self.ignore_index, np.int64)
        n = 0
        for r, (s, e) in enumerate(zip(starts.tolist(), ends.tolist())):
            m = e - s
            if m <= 0:
                continue
            w = np.asarray(self.tokens[s:e + 1], dtype=np.int64)
            x[r, :m] = w[:-1]
            y[r, :m] = w[1:]
            n += m
        return EvalBatch(x, y, n, self.ignore_index)

    def __iter__(self):
        T, B = self.ctx_len, self.batch_size
        for k in range(self.n_batches):
            if self.streams:
                starts, ends, _ = self._batch_bounds(k)
            else:
                first = k * B
                count = min(B, self.n_windows - first)
                starts = (first + np.arange(count, dtype=np.int64)) * T
                ends = np.minimum(starts + T, self.n_targets)
            yield self._make(starts, ends)


def steps_per_epoch(n_tokens, batch_size, ctx_len):
    """ceil(n_tokens / (batch_size * ctx_len)): the number of random batches whose targets add up to one pass over
    a split of n_tokens tokens (a convention for scheduling; random windows do not cover it exactly)."""
    return math.ceil(n_tokens / (batch_size * ctx_len))
