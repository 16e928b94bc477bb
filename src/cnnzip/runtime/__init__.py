"""Fast inference: the binary C kernels (csrc/) with their torch fallback, and pruned
layers as sparse products."""

from cnnzip.runtime.binary import compile_binary, load
from cnnzip.runtime.sparse import bench_sparse, sparsify
from cnnzip.runtime.xnor import (
    BinaryConvKernel,
    available_paths,
    binarize,
    default_path,
    get_threads,
    pack_signs,
    raced_paths,
    set_threads,
    unpack_signs,
)

__all__ = [
    "BinaryConvKernel",
    "available_paths",
    "bench_sparse",
    "binarize",
    "compile_binary",
    "default_path",
    "get_threads",
    "load",
    "pack_signs",
    "raced_paths",
    "set_threads",
    "sparsify",
    "unpack_signs",
]
