"""Build the optional C kernels (csrc/) as cnnzip._xnor and cnnzip._sparse; the rest is in
pyproject.toml.

The extension is optional: when it cannot be compiled (no compiler, another
platform) the install still succeeds and cnnzip runs its binary layers through
the torch fallback, with identical results. No flag ties the build to the
building CPU: AVX2 and AVX-512 code is chosen at run time.
"""

import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Warn instead of failing when the C kernels do not compile."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # any compiler or platform failure
            print(f"warning: cnnzip C kernels not built ({exc}); using the torch fallback")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:
            print(f"warning: cnnzip C kernels not built ({exc}); using the torch fallback")


unix = sys.platform != "win32"
# Register-pressure-aware scheduling keeps the AVX2 kernel's 8 accumulators in registers.
GCC_TUNING = ["-fsched-pressure", "-fschedule-insns"]
xnor = Extension(
    "cnnzip._xnor",
    sources=["csrc/xnor_module.c", "csrc/xnor_conv.c", "csrc/xnor_pack.c"],
    depends=["csrc/xnor.h", "csrc/paths.h"],
    extra_compile_args=["-O3", "-ffp-contract=off", "-std=c11", "-pthread", *GCC_TUNING]
    if unix
    else [],
    extra_link_args=["-pthread", "-ldl"] if unix else [],
)

# Compressed-domain products of pruned + shared layers (cnnzip.runtime.compressed).
sparse = Extension(
    "cnnzip._sparse",
    sources=["csrc/sparse_module.c", "csrc/sparse_kernels.c"],
    depends=["csrc/sparse.h", "csrc/paths.h"],
    extra_compile_args=["-O3", "-ffp-contract=off", "-std=c11"] if unix else [],
)

# The .cnnz coders (cnnzip.codec falls back to its NumPy reference without them).
codec = Extension(
    "cnnzip._codec",
    sources=[f"csrc/codec_{part}.c" for part in ("module", "rans", "huffman", "sparse")],
    depends=["csrc/codec.h"],
    extra_compile_args=["-O3", "-std=c11"] if unix else [],
)

setup(ext_modules=[xnor, sparse, codec], cmdclass={"build_ext": OptionalBuildExt})
