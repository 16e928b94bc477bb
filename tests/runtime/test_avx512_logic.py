"""The AVX-512 VPOPCNTDQ kernel's logic, checked on CPUs without AVX-512.

This machine (and most CI runners) cannot execute the AVX-512 path, yet it is
dispatched by default wherever the CPU has it. Here xnor_conv.c is compiled
with the seven AVX-512 intrinsics it uses replaced by plain C (avx512_shim/), and
its output is compared bit for bit with the portable path over random shapes.
"""

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).parent / "avx512_shim"
CC = shutil.which("cc") or shutil.which("gcc")
CPUINFO = Path("/proc/cpuinfo")
# the AVX-512 path packs its input with the AVX2 pack, as on every AVX-512 CPU
AVX2 = platform.machine() == "x86_64" and CPUINFO.exists() and " avx2" in CPUINFO.read_text()


@pytest.mark.skipif(CC is None or not AVX2, reason="needs a C compiler and an AVX2 CPU")
@pytest.mark.slow
def test_avx512_path_equals_portable_path(tmp_path):
    exe = tmp_path / "check"
    sources = [SHIM / "wrap.c", ROOT / "csrc" / "xnor_pack.c", SHIM / "check.c"]
    flags = ["-O1", "-fno-tree-vectorize", "-std=c11", "-pthread", "-ffp-contract=off"]
    includes = [f"-I{SHIM}", f"-I{ROOT / 'csrc'}"]
    cmd = [CC, *flags, *includes, *map(str, sources), "-o", str(exe), "-lm", "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True)
    # the shim must not have let AVX-512 instructions in: this test has to run anywhere
    disasm = shutil.which("objdump")
    if disasm:
        text = subprocess.run([disasm, "-d", str(exe)], capture_output=True, text=True).stdout
        assert "zmm" not in text
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout
    runs, bad = (int(w) for w in out.stdout.split()[::2][:2])
    assert runs > 300 and bad == 0, out.stdout
