"""Fast inference: the Python side of the C kernels (csrc/) and their torch fallback."""

from cnnzip.runtime.binary import compile_binary, load
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
    "binarize",
    "compile_binary",
    "default_path",
    "get_threads",
    "load",
    "pack_signs",
    "raced_paths",
    "set_threads",
    "unpack_signs",
]
