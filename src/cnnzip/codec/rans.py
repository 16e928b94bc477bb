"""Interleaved rANS, vectorised over lanes with numpy: closer to the entropy than Huffman.

rANS (Duda) codes a symbol of probability f/2**16 in -log2(f/2**16) bits,
with no whole-bit rounding per symbol. It is sequential within one state, so
a stream is cut round-robin into ``lanes`` independent states (symbol i goes
to lane i % lanes) and numpy advances every lane one symbol per array step.
Each lane keeps its renormalisation words in its own region of the stream,
so a step needs no bookkeeping across lanes. The encoder starts each lane at
state 1, not at the renormalisation bound (16 bits that carried nothing), and
a lane costs ~2.5 bytes: its 6-byte final state, less the information it
holds, the symbols coded while the state is still small, and its word count.
One lane per whole 1024 symbols (at most 1024) keeps that under 0.5%, and a
lone lane of up to 2047 symbols keeps a small stream within ~2% of its
entropy. All rANS streams of a file decode together in one loop of at most
~2,048 steps (``decode_many``): LeNet-5 loads in under a tenth of a second.
Where cnnzip._codec is built (csrc/codec_rans.c) its compiled twin encodes and
decodes instead, stream by stream, with the same bytes and symbols
(cnnzip.codec.native); this NumPy code stays the reference.

Layout: final lane states (48 bits LE), the word count of every lane but the
last (LEB128), then the lanes' 16-bit words (LE), lane after lane.
State: 48 bits; in [2**32, 2**48) once above 2**32, so x // f stays large and
rounding costs nothing measurable (a 32-bit state lost ~1% on skewed streams).
Below 2**32 (a lane's first encoded symbols) the encoder emits no words, so
the decoder reads a word only while its lane has words left. Frequencies are
the symbol counts (stored in the file) scaled to sum to 2**16.
"""

from __future__ import annotations

import numpy as np

from cnnzip.codec.bits import read_varints, write_varints
from cnnzip.codec.errors import CnnzFormatError
from cnnzip.codec.native import call, extension, narrow

__all__ = ["PROB_BITS", "decode", "decode_many", "encode", "lane_count", "quantize_counts"]

PROB_BITS = 16
TOTAL = 1 << PROB_BITS
LOW = 1 << 32  # lower bound of the state once it has grown past it
STATE_BYTES = 6  # states < 2**48: every product below fits int64
START = 1  # the encoder's first state: the decoder must end on it
MAX_LANES = 1024
SYMBOLS_PER_LANE = 1024
GROUP = 16  # streams decoded together


def lane_count(n: int) -> int:
    """Lanes for a stream of ``n`` symbols: one per whole 1024 (a lane holds up to 2047, so a
    small stream pays for few lanes), at least 1, at most 1024."""
    return int(min(max(1, n // SYMBOLS_PER_LANE), MAX_LANES))


def quantize_counts(counts: np.ndarray) -> np.ndarray:
    """Frequencies summing to 2**16, >= 1 for every present symbol, proportional to counts.

    Deterministic integer arithmetic, so the decoder rebuilds the encoder's table.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    freq = np.where(counts > 0, np.maximum(counts * TOTAL // max(n, 1), 1), 0)
    diff = TOTAL - int(freq.sum())
    if diff > 0:  # floor rounding left room: give it to the most frequent symbol
        freq[int(np.argmax(counts))] += diff
    while diff < 0:  # the ">= 1" floor overshot: take from the largest, keeping each >= 1
        big = int(np.argmax(freq))
        take = min(-diff, int(freq[big]) - 1)
        freq[big] -= take
        diff += take
    return freq


def encode(symbols: np.ndarray, counts: np.ndarray) -> bytes:
    """Code ``symbols`` (int, < len(counts)) with frequencies from ``counts``."""
    n = len(symbols)
    lanes = lane_count(n)
    freq = quantize_counts(counts)  # int64: states < 2**48, f * (x >> 16) < 2**48
    ext = extension()
    if ext is not None:  # the compiled twin of the loop below
        states = np.empty(STATE_BYTES * lanes, dtype=np.uint8)
        per_lane = np.empty(lanes, dtype=np.int64)
        words = np.empty(n, dtype=np.uint16)  # a lane emits a word per symbol at most
        used = call(ext.rans_encode, narrow(symbols, len(freq)), freq, states, per_lane, words)
        return (
            states.tobytes() + write_varints(per_lane[:-1]) + words[:used].astype("<u2").tobytes()
        )
    cum = np.cumsum(freq) - freq
    x = np.full(lanes, START, dtype=np.int64)
    emitted: list[tuple[np.ndarray, np.ndarray, int]] = []  # (lanes, words, step)
    for g in range(-(-n // lanes) - 1, -1, -1):  # backwards: the decoder reads forwards
        s = symbols[g * lanes : (g + 1) * lanes]
        a = len(s)  # the last step may have fewer symbols than lanes
        f, xa = freq[s], x[:a]
        emit = xa >= (f << 32)  # one 16-bit word at most: then x < f * 2**32 (never below LOW)
        who = np.flatnonzero(emit)
        emitted.append((who, xa[who] & 0xFFFF, g))
        xa = np.where(emit, xa >> 16, xa)
        x[:a] = ((xa // f) << PROB_BITS) + (xa % f) + cum[s]
    lane_ids = np.concatenate([w for w, _, _ in emitted] + [np.zeros(0, np.int64)])
    words = np.concatenate([v for _, v, _ in emitted] + [np.zeros(0, np.int64)])
    steps = np.concatenate([np.full(len(w), g) for w, _, g in emitted] + [np.zeros(0, np.int64)])
    order = np.lexsort((steps, lane_ids))  # lane after lane, each in decoding order
    per_lane = np.bincount(lane_ids, minlength=lanes)
    return (
        x.astype("<u8").view(np.uint8).reshape(lanes, 8)[:, :STATE_BYTES].tobytes()
        + write_varints(per_lane[:-1])
        + words[order].astype("<u2").tobytes()
    )


def decode(data: bytes, n: int, counts: np.ndarray, dtype: type = np.uint16) -> np.ndarray:
    """The ``n`` symbols ``encode`` wrote, as ``dtype`` (uint16, or uint8 for at most 256
    counts): decoded straight into it by the compiled coder where it is built."""
    ext = extension()
    if ext is None or dtype not in (np.uint8, np.uint16):
        return decode_many([(data, n, counts)])[0].astype(dtype, copy=False)
    out = np.empty(n, dtype=dtype)
    call(ext.rans_decode, data, n, quantize_counts(counts), out)
    return out


def _split(data: bytes, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lane states, words, word count per lane) of one stream, checked."""
    lanes = lane_count(n)
    size = STATE_BYTES * lanes
    if len(data) < size:
        raise CnnzFormatError("rANS stream is shorter than its lane states")
    raw = np.frombuffer(data, dtype=np.uint8, count=size).reshape(lanes, STATE_BYTES)
    states = np.pad(raw, ((0, 0), (0, 8 - STATE_BYTES))).view("<u8")[:, 0].astype(np.int64)
    head, used = read_varints(data[size:], lanes - 1, max_bytes=4)
    body = data[size + used :]
    if len(body) % 2:
        raise CnnzFormatError("rANS stream ends in half a word")
    words = np.frombuffer(body, dtype="<u2").astype(np.int64)
    last = len(words) - int(head.sum())
    if last < 0:
        raise CnnzFormatError("rANS lane word counts exceed the stream")
    return states, words, np.append(head.astype(np.int64), last)


def decode_many(streams: list[tuple[bytes, int, np.ndarray]]) -> list[np.ndarray]:
    """Decode several streams (data, n, counts) in one loop over the lanes of them all
    (in groups of ``GROUP``, which bounds the slot tables to 3 * GROUP * 2**16 entries)."""
    if not streams:
        return []
    if extension() is not None:  # compiled: stream by stream, no slot tables to share
        return [decode(data, n, counts) for data, n, counts in streams]
    if len(streams) > GROUP:
        return [
            out
            for i in range(0, len(streams), GROUP)
            for out in decode_many(streams[i : i + GROUP])
        ]
    parts = [_split(data, n) for data, n, _ in streams]
    ns = np.array([n for _, n, _ in streams], dtype=np.int64)
    lanes = np.array([len(p[0]) for p in parts], dtype=np.int64)
    # per global slot (stream * 2**16 + slot): the symbol (stream-local), its frequency, slot - cum
    symbol_of, freq_of, bias_of = [], [], []
    for _, _, counts in streams:
        freq = quantize_counts(counts)
        sym = np.repeat(np.arange(len(freq), dtype=np.uint16), freq)  # (2**16,)
        symbol_of.append(sym)
        freq_of.append(freq[sym])
        bias_of.append(np.arange(TOTAL) - (np.cumsum(freq) - freq)[sym])
    symbol_of, freq_of, bias_of = (np.concatenate(t) for t in (symbol_of, freq_of, bias_of))
    st = np.repeat(np.arange(len(streams)), lanes)  # (L,) stream of each lane
    j = np.arange(len(st)) - np.repeat(np.cumsum(lanes) - lanes, lanes)  # lane within stream
    todo = (ns[st] - j + lanes[st] - 1) // lanes[st]  # symbols each lane decodes
    order = np.argsort(-todo, kind="stable")  # busiest first: active lanes are a prefix
    st, j, todo = st[order], j[order], todo[order]
    x = np.concatenate([p[0] for p in parts])[order]
    lane_words = np.concatenate([p[2] for p in parts])
    steps = int(todo.max(initial=0))
    # zero padding: a lane reads at most one word per step, so even word counts that lie
    # cannot make a gather leave the array
    words = np.concatenate([p[1] for p in parts] + [np.zeros(steps + 1, np.int64)])
    ptr = (np.cumsum(lane_words) - lane_words)[order]  # next word of each lane
    end = ptr + lane_words[order]
    slot_base = st * TOTAL
    out_base = np.cumsum(ns) - ns
    pos = out_base[st] + j  # (L,) where each lane's next symbol goes
    stride = lanes[st]
    active = np.searchsorted(-todo, -np.arange(steps), side="left")  # lanes busy at step g
    slots = np.zeros(int(ns.sum()), dtype=np.int32)  # global slot (< GROUP * 2**16) of each
    for g in range(steps):
        a = active[g]
        xa = x[:a]
        gs = slot_base[:a] + (xa & (TOTAL - 1))
        slots[pos[:a]] = gs
        pos += stride
        new = freq_of[gs] * (xa >> PROB_BITS) + bias_of[gs]
        need = (new < LOW) & (ptr[:a] < end[:a])  # below LOW with no words left: START's tail
        x[:a] = np.where(need, (new << 16) | words[ptr[:a]], new)
        ptr[:a] += need
    if np.any(ptr != end) or np.any(x != START):
        raise CnnzFormatError("rANS stream does not end where its symbols do (corrupt data)")
    symbols = symbol_of[slots]
    return [symbols[b : b + n] for b, n in zip(out_base, ns, strict=True)]
