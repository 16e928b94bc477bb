"""Python side of the XNOR-popcount kernels (csrc/), with a torch fallback.

Conventions (shared with csrc/xnor.h and with training in cnnzip.binary):
a value binarizes to -1 when it is < 0, else to +1; padding is +1; weights
are stored packed, 1 bit per weight (set bit = -1) along input channels in
64-bit little-endian words, as ``(cout, kh, kw, 8 * ceil(cin / 64))`` bytes.
A layer's output is ``dot [* K] * scale + bias`` per output channel, where
``dot`` is the exact +-1 convolution and ``scale``/``bias`` fold the weight
scale alpha, the layer bias and the batch norm that follows.

Between two binary layers the float output is waste: the next layer only reads
its sign. A kernel with ``thresholds`` emits packed activations instead
(``PackedActs``: the activations' signs packed as the weights are, channels last),
one bit per channel and pixel, decided on the integer dot alone:
``bit = (dot < t) XOR flip`` (``thresholds_from`` derives t and flip from the float
path, so both give the same bits), and a kernel reads them as its input.

The compiled extension ``cnnzip._xnor`` runs the kernels (AVX-512 VPOPCNTDQ,
AVX2 or portable C, chosen at run time). Without it, ``"torch"`` computes the
same numbers, bit for bit, with ordinary torch ops.
"""

from __future__ import annotations

import functools
import importlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType

import numpy as np
import torch
import torch.nn.functional as F

from cnnzip.errors import CnnzipError
from cnnzip.runtime.shapes import (
    C_INT_MAX,
    check_conv_settings,
    check_elements,
    check_int,
    conv_output_size,
)

REBUILD = "`make install` (or `.venv/bin/pip install --no-deps --no-build-isolation -e .`)"


def _import_extension() -> tuple[ModuleType | None, str]:
    """The compiled kernels, or None and the import error that says why they are missing."""
    try:
        return importlib.import_module("cnnzip._xnor"), ""
    except ImportError as exc:  # not compiled: everything runs through the torch fallback
        return None, str(exc)


_xnor, _missing_because = _import_extension()
_fallback_reported = False


def _extension() -> ModuleType | None:
    """The compiled kernels; without them, warn once per process that the torch fallback
    runs, so a failed build is not mistaken for slow kernels."""
    global _fallback_reported
    if _xnor is None and not _fallback_reported:
        _fallback_reported = True
        warnings.warn(
            f"cnnzip's C kernels are not built ({_missing_because}): binary layers run "
            f"through the torch fallback (same results, slower); rebuild with {REBUILD}",
            RuntimeWarning,
            stacklevel=3,
        )
    return _xnor


__all__ = [
    "BinaryConvKernel",
    "PackedActs",
    "available_paths",
    "binarize",
    "default_path",
    "get_threads",
    "max_pool_packed",
    "pack_bits",
    "pack_signs",
    "pool_packed_words",
    "raced_paths",
    "set_threads",
    "thresholds_from",
    "unpack_signs",
]

_threads: int | None = None
MAX_THREADS = 1024  # the kernels take a C int and start one thread each

# The vector paths a layer races on its first call when the CPU runs more than one:
# the AVX-512 kernel has never been timed against the AVX2 one on a CPU that has
# both, so neither is assumed faster. Portable C never is.
RACED = ("avx512", "avx2")


def available_paths() -> list[str]:
    """Kernel paths this machine runs, slowest first; ``"torch"`` always works."""
    ext = _extension()
    return ["torch", *(_compiled_paths(ext) if ext else [])]


@functools.cache
def _compiled_paths(ext: ModuleType) -> tuple[str, ...]:
    """What the CPU runs does not change: asked once per extension module (a layer call
    asks on every call, and a small layer takes ~0.1 ms)."""
    return tuple(ext.paths())


def default_path() -> str:
    """$CNNZIP_KERNEL if set, else the fastest compiled path, else ``"torch"``."""
    forced = os.environ.get("CNNZIP_KERNEL")
    if forced:
        _check_path(forced)
        return forced
    ext = _extension()
    return ext.best_path() if ext else "torch"


def raced_paths() -> list[str]:
    """The RACED paths this CPU runs; with two or more, each layer takes the one that
    ran its input fastest (BinaryConvKernel.path_for), unless $CNNZIP_KERNEL says."""
    if os.environ.get("CNNZIP_KERNEL"):
        return []
    here = available_paths()
    return [p for p in RACED if p in here]


def _check_path(path: str) -> None:
    if path not in available_paths():
        raise CnnzipError(
            f"kernel path {path!r} is not available here; available: {available_paths()}"
        )


def set_threads(n: int | None) -> None:
    """Threads the kernels use; None follows torch.get_num_threads()."""
    if n is not None:
        _check_threads(n)
    global _threads
    _threads = n


def _check_threads(n: int) -> None:
    if not 1 <= n <= MAX_THREADS:
        raise CnnzipError(f"thread count must be in 1..{MAX_THREADS}, got {n}")


def get_threads() -> int:
    return _threads or torch.get_num_threads()


def binarize(x: torch.Tensor) -> torch.Tensor:
    """-1 where x < 0, else +1 (0, -0.0 and NaN give +1), in x's dtype."""
    return torch.where(x < 0, -1.0, 1.0).to(x.dtype)


def pack_signs(w: torch.Tensor) -> torch.Tensor:
    """Signs of a (cout, cin, kh, kw) weight as packed bits: uint8 (cout, kh, kw, 8 * cw).
    The same for activations (n, c, h, w): uint8 (n, h, w, 8 * cw)."""
    return pack_bits(w.detach() < 0)


def pack_bits(bits: torch.Tensor) -> torch.Tensor:
    """bool (a, c, h, w), True = -1 -> uint8 (a, h, w, 8 * ceil(c / 64)), channels in words."""
    cin = bits.shape[1]
    cw = -(-cin // 64)
    flat = bits.permute(0, 2, 3, 1).cpu().numpy()  # (a, h, w, c)
    flat = np.pad(flat, ((0, 0), (0, 0), (0, 0), (0, 64 * cw - cin)))
    return torch.from_numpy(np.packbits(flat, axis=-1, bitorder="little"))


def unpack_signs(words: torch.Tensor, cin: int) -> torch.Tensor:
    """Inverse of pack_signs: float32 +-1 weights (cout, cin, kh, kw)."""
    bits = np.unpackbits(words.numpy(), axis=-1, bitorder="little")[..., :cin]
    return torch.from_numpy(1.0 - 2.0 * bits.astype(np.float32)).permute(0, 3, 1, 2).contiguous()


@dataclass(eq=False)
class PackedActs:
    """Binary activations as the kernels pass them between layers: uint8 ``words``
    (n, h, w, 8 * ceil(chans / 64)) from pack_signs, a set bit = -1, bits past
    ``chans`` clear."""

    words: torch.Tensor
    chans: int
    _numpy: tuple = field(default=(None, None), init=False, repr=False)  # (words, its array)

    def __post_init__(self) -> None:
        shape = tuple(self.words.shape)
        if (
            self.words.dtype != torch.uint8
            or len(shape) != 4
            or shape[3] != 8 * -(-self.chans // 64)
        ):
            raise CnnzipError(
                f"packed activations {self.words.dtype} {shape} do not hold {self.chans} "
                f"channels (expected uint8 (n, h, w, {8 * -(-self.chans // 64)}))"
            )
        self.words = self.words.contiguous()

    @classmethod
    def trusted(cls, array: np.ndarray, chans: int) -> PackedActs:
        """Words a kernel has just written for ``chans`` channels: no checks (~1 us)."""
        acts = object.__new__(cls)
        acts.words, acts.chans = torch.from_numpy(array), chans
        acts._numpy = acts.words, array
        return acts

    def numpy_words(self) -> np.ndarray:
        """``words`` as a NumPy array (the same memory), made once while they stay the same:
        what the kernels read (a tensor's ``.numpy()`` takes ~1 us)."""
        words, array = self._numpy
        if words is not self.words:
            array = self.words.numpy()
            self._numpy = self.words, array
        return array

    @classmethod
    def of(cls, x: torch.Tensor) -> PackedActs:
        """The signs of float activations (n, c, h, w), packed."""
        return cls(pack_signs(x), int(x.shape[1]))

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n, c, h, w), as the float activations had."""
        n, h, w, _ = self.words.shape
        return int(n), self.chans, int(h), int(w)

    def signs(self) -> torch.Tensor:
        """float32 +-1 activations (n, c, h, w)."""
        return unpack_signs(self.words, self.chans)


def thresholds_from(decide: Callable[[torch.Tensor], torch.Tensor], fan_in: int) -> torch.Tensor:
    """int32 (2, cout): t and flip with ``(dot < t) XOR flip == decide(dot)`` for every dot
    a layer of ``fan_in`` +-1 products can give (-fan_in..fan_in, step 2).

    ``decide`` maps float32 dots (1, 1, 1, D), the same for every channel, to the
    bool decisions "negative" (1, cout, 1, D) by the float path's own operations,
    so the thresholds reproduce its rounding; it must be monotone in dot.
    """
    dots = torch.arange(-fan_in, fan_in + 1, 2, dtype=torch.int32)  # (D,)
    bits = decide(dots.float()[None, None, None]).reshape(-1, len(dots))  # (cout, D)
    falls = (bits[:, 1:] <= bits[:, :-1]).all(1)  # 1..1 0..0: bit = dot < t
    rises = (bits[:, 1:] >= bits[:, :-1]).all(1)  # 0..0 1..1: bit = not (dot < t)
    if not bool((falls | rises).all()):
        raise CnnzipError(
            "binary chain: the sign decision after a binary layer is not monotone in its dot "
            "(an op between the layers is not monotone); keep float outputs there"
        )
    big = torch.full_like(bits[:, :1], True)
    first_clear = torch.cat([~bits, big], 1).int().argmax(1)  # index of the first 0, else D
    first_set = torch.cat([bits, big], 1).int().argmax(1)
    ends = torch.cat([dots, dots.new_tensor([fan_in + 2])])  # t past every dot: always set
    t = torch.where(falls, ends[first_clear], ends[first_set])
    return torch.stack([t, (~falls).int()]).to(torch.int32)


def max_pool_packed(
    x: PackedActs,
    kernel_size: int,
    stride: int,
    padding: int,
    or_mask: torch.Tensor,
    *,
    path: str | None = None,
) -> PackedActs:
    """Max-pool of packed activations: per channel the AND of the window's bits, or their
    OR where ``or_mask`` (bool (c,)) is set. The pooled bit equals the sign decision on
    the pooled float value when that decision falls (AND) or rises (OR) with the value."""
    if or_mask.shape != (x.chans,):
        raise CnnzipError(f"packed max-pool: or_mask {tuple(or_mask.shape)} must be ({x.chans},)")
    mask = pack_bits(or_mask.bool()[None, :, None, None])[0, 0, 0]  # (8 * cw,)
    return pool_packed_words(x, kernel_size, stride, padding, mask, path=path)


def pool_packed_words(
    x: PackedActs,
    kernel_size: int,
    stride: int,
    padding: int,
    mask: torch.Tensor,
    *,
    path: str | None = None,
) -> PackedActs:
    """max_pool_packed with the or-mask already packed: uint8 (8 * ceil(c / 64),)."""
    n, c, h, w = x.shape
    if mask.dtype != torch.uint8 or mask.shape != (x.words.shape[3],):
        raise CnnzipError(
            f"packed max-pool: or-mask words {mask.dtype} {tuple(mask.shape)} must be uint8 "
            f"({x.words.shape[3]},)"
        )
    if kernel_size < 1 or stride < 1 or not 0 <= 2 * padding <= kernel_size:
        raise CnnzipError(
            f"packed max-pool: kernel {kernel_size}, stride {stride}, padding {padding}: need "
            "kernel >= 1, stride >= 1 and 0 <= padding <= kernel / 2 (as torch's max-pool)"
        )
    side = (kernel_size,) * 2, (stride,) * 2, (padding,) * 2
    ho, wo = conv_output_size("packed max-pool", (h, w), *side)
    if (path or default_path()) == "torch":
        bits = x.signs() < 0  # (n, c, h, w), True = -1
        rise = PackedActs(mask[None, None, None], c).signs()[0, :, :1, :1] < 0  # (c, 1, 1)
        pooled = F.max_pool2d(torch.where(rise, bits, ~bits).float(), *side)  # OR, or AND as ~OR~
        return PackedActs(pack_bits(torch.where(rise, pooled > 0, pooled == 0)), c)
    out = torch.empty(n, ho, wo, x.words.shape[3], dtype=torch.uint8)
    geometry = (kernel_size, stride, padding)
    _xnor.pool_bits(x.words.numpy(), mask.numpy(), out.numpy(), (n, c, h, w), geometry)
    return PackedActs(out, c)


_LAYER_FIELDS = frozenset(
    ("words", "in_chans", "scale", "bias", "stride", "padding", "use_k", "thresholds")
)


@dataclass(eq=False)
class BinaryConvKernel:
    """One binary conv layer ready to run: packed weights plus its output transform."""

    words: torch.Tensor  # uint8 (cout, kh, kw, 8 * cw), see pack_signs
    in_chans: int
    scale: torch.Tensor  # float32 (cout,)
    bias: torch.Tensor  # float32 (cout,)
    stride: int = 1
    padding: int = 0
    use_k: bool = False  # multiply by XNOR-Net's K map (mean |x| over each window)
    thresholds: torch.Tensor | None = None  # int32 (2, cout): packed output, see thresholds_from
    _prepared: dict[str, bytes] = field(default_factory=dict, repr=False)
    _fastest: dict[tuple, str] = field(default_factory=dict, repr=False)
    # (input shape, packed channels or 0, threads, path asked) -> (C handle, output shape,
    # (n, h, w));
    # not an init field: dataclasses.replace gives the new kernel its own
    _plans: dict[tuple, tuple] = field(default_factory=dict, init=False, repr=False)

    def __setattr__(self, name: str, value: object) -> None:
        """A new weight, scale, bias, threshold or setting makes new handles (the handles
        read the tensors' memory, so in-place changes need nothing)."""
        super().__setattr__(name, value)
        if name in _LAYER_FIELDS and "_plans" in self.__dict__:
            self._plans.clear()
            if name in ("words", "in_chans"):
                self._prepared.clear()

    def __getstate__(self) -> dict[str, object]:
        """Copies and pickles leave the C handles behind (a capsule can be neither)."""
        return {**self.__dict__, "_plans": {}}

    def __post_init__(self) -> None:
        self.scale = self.scale.detach().float().contiguous()
        self.bias = self.bias.detach().float().contiguous()
        check_int("binary conv", "in_chans", self.in_chans, 1, C_INT_MAX)
        cw = -(-self.in_chans // 64)
        shape = tuple(self.words.shape)
        if (
            self.words.dtype != torch.uint8
            or len(shape) != 4
            or min(shape[:3]) < 1
            or shape[3] != 8 * cw
        ):
            raise CnnzipError(
                f"binary conv: packed weights {self.words.dtype} {shape} do not hold "
                f"{self.in_chans} input channels (expected uint8 (cout, kh, kw, {8 * cw}))"
            )
        if self.scale.shape != (shape[0],) or self.bias.shape != (shape[0],):
            raise CnnzipError(
                f"binary conv: scale {tuple(self.scale.shape)} and bias {tuple(self.bias.shape)} "
                f"must both be ({shape[0]},), one per output channel"
            )
        pair = (self.stride, self.stride), (self.padding, self.padding)
        check_conv_settings("binary conv", *pair, self.kernel_size)
        if self.thresholds is not None:
            self.thresholds = self.thresholds.to(torch.int32).contiguous()
            if self.thresholds.shape != (2, shape[0]) or self.use_k:
                raise CnnzipError(
                    f"binary conv: thresholds {tuple(self.thresholds.shape)} must be "
                    f"(2, {shape[0]}), for a layer without K (K varies per pixel)"
                )

    @property
    def out_chans(self) -> int:
        return int(self.words.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.words.shape[1]), int(self.words.shape[2])

    def __call__(
        self, x: torch.Tensor | PackedActs, *, threads: int | None = None, path: str | None = None
    ) -> torch.Tensor | PackedActs:
        """(n, cin, h, w) float32 or packed -> (n, cout, ho, wo) float32, or packed when the
        kernel has thresholds; ``path`` None: path_for(x).

        The first call per input shape, thread count and path checks everything and keeps
        the layer's C handle (``_first_call``); later ones only allocate the output and call
        it: 2-4 us of Python instead of ~12 (measured), which a 0.08 ms layer needs."""
        packed_in = isinstance(x, PackedActs)
        data = x.words if packed_in else x.detach().float().contiguous()
        nthreads = threads if threads is not None else _threads or torch.get_num_threads()
        chans = x.chans if packed_in else 0  # words of 60 and of 64 channels look alike
        key = (data.shape, chans, nthreads, path or os.environ.get("CNNZIP_KERNEL"))
        plan = self._plans.get(key)
        if plan is None:
            return self._first_call(x, data, key, threads, path)
        handle, out_shape, dims = plan
        array = x.numpy_words() if packed_in else data.numpy()
        if self.thresholds is None:
            out = torch.empty(out_shape, dtype=torch.float32)  # (n, cout, ho, wo)
            _xnor.run(handle, array, out.numpy(), dims, nthreads, packed_in)
            return out
        words = np.empty(out_shape, np.uint8)  # (n, ho, wo, 8 * ceil(cout / 64))
        _xnor.run(handle, array, words, dims, nthreads, packed_in)
        return PackedActs.trusted(words, self.out_chans)

    def _first_call(
        self,
        x: torch.Tensor | PackedActs,
        data: torch.Tensor,
        key: tuple,
        threads: int | None,
        path: str | None,
    ) -> torch.Tensor | PackedActs:
        """A call with every check; it keeps the C handle for the next calls of ``key``."""
        n, c, h, w = self._check_input(x)
        side = (self.stride, self.stride), (self.padding, self.padding)
        ho, wo = conv_output_size("binary conv", (h, w), self.kernel_size, *side)
        if path is not None:
            _check_path(path)
        if threads is not None:
            _check_threads(threads)
        p = self.padding
        check_elements("binary conv", "padded input", (n, c, h + 2 * p, w + 2 * p))
        check_elements("binary conv", "output", (n, self.out_chans, ho, wo))
        packed_out = self.thresholds is not None
        out_shape = (
            (n, ho, wo, 8 * -(-self.out_chans // 64)) if packed_out else (n, self.out_chans, ho, wo)
        )
        out = torch.empty(out_shape, dtype=torch.uint8 if packed_out else torch.float32)
        if n == 0:  # an empty batch, as torch's convs accept it
            return PackedActs(out, self.out_chans) if packed_out else out
        path = path or self.path_for(x, threads)
        if path == "torch":
            return self._torch(x if isinstance(x, PackedActs) else data)
        kh, kw = self.kernel_size
        handle = _xnor.layer(
            self._blob(path),
            self.scale.numpy(),
            self.bias.numpy(),
            None if self.thresholds is None else self.thresholds.numpy(),
            (self.out_chans, c, kh, kw, self.stride, p),
            self.use_k,
            path,
        )
        self._plans[key] = handle, out_shape, (n, h, w)
        return self(x, threads=threads, path=key[3])

    def _check_input(self, x: torch.Tensor | PackedActs) -> tuple[int, int, int, int]:
        """x's (n, c, h, w), once it is known to fit this layer."""
        shape = tuple(x.shape)
        if len(shape) != 4 or shape[1] != self.in_chans:
            raise CnnzipError(f"binary conv expects input (N, {self.in_chans}, H, W), got {shape}")
        if isinstance(x, PackedActs) and self.use_k:
            raise CnnzipError(
                "binary conv: a layer with K (mean |x| of its input) needs float input, "
                "not packed activations; compile it with scale_k=False to chain it"
            )
        return shape  # type: ignore[return-value]

    def path_for(self, x: torch.Tensor | PackedActs, threads: int | None = None) -> str:
        """default_path(), unless the CPU runs several RACED paths and $CNNZIP_KERNEL does
        not choose: then whichever ran this input shape fastest, best of 3 each, timed
        once per shape and thread count (all paths give the same numbers)."""
        raced = raced_paths()
        if len(raced) < 2:
            return default_path()
        key = (tuple(x.shape), isinstance(x, PackedActs), threads or get_threads())
        if key not in self._fastest:
            seconds = {p: min(self._time(x, threads, p) for _ in range(3)) for p in raced}
            self._fastest[key] = min(seconds, key=seconds.__getitem__)
        return self._fastest[key]

    def _time(self, x: torch.Tensor | PackedActs, threads: int | None, path: str) -> float:
        start = time.perf_counter()
        self(x, threads=threads, path=path)
        return time.perf_counter() - start

    def _blob(self, path: str) -> bytes:
        if path not in self._prepared:
            kh, kw = self.kernel_size
            words = self.words.contiguous().numpy()
            self._prepared[path] = _xnor.prepare(words, self.out_chans, self.in_chans, kh, kw, path)
        return self._prepared[path]

    def _torch(self, x: torch.Tensor | PackedActs) -> torch.Tensor | PackedActs:
        """The fallback: the same arithmetic as the C kernels, in the same order."""
        p = self.padding
        signs = x.signs() if isinstance(x, PackedActs) else binarize(x)
        xb = F.pad(signs, (p, p, p, p), value=1.0)  # +1 padding
        w = unpack_signs(self.words, self.in_chans)
        y = F.conv2d(xb, w, stride=self.stride)  # exact: integer sums far below 2**24
        if self.thresholds is not None:  # (dot < t) XOR flip, per output channel
            t, flip = (v[:, None, None] for v in self.thresholds)
            return PackedActs(pack_bits((y < t) ^ flip.bool()), self.out_chans)
        if self.use_k:
            y = y * k_map(x, self.kernel_size, self.stride, p)
        return y * self.scale[:, None, None] + self.bias[:, None, None]


def k_map(x: torch.Tensor, kernel_size: tuple[int, int], stride: int, padding: int) -> torch.Tensor:
    """XNOR-Net's K: mean |x| over channels, box-filtered over each window (zero padded).

    Summed in the C kernels' order (channels, then window rows, then columns) so the
    fallback matches them bit for bit: (n, 1, ho, wo).
    """
    a = torch.zeros_like(x[:, :1])
    for c in range(x.shape[1]):
        a = a + x[:, c : c + 1].abs()
    a = F.pad(a / x.shape[1], (padding,) * 4)
    kh, kw = kernel_size
    ho = (a.shape[2] - kh) // stride + 1
    wo = (a.shape[3] - kw) // stride + 1
    k = torch.zeros(x.shape[0], 1, ho, wo)
    for ky in range(kh):
        for kx in range(kw):
            k = (
                k
                + a[
                    :,
                    :,
                    ky : ky + stride * (ho - 1) + 1 : stride,
                    kx : kx + stride * (wo - 1) + 1 : stride,
                ]
            )
    return k / (kh * kw)
