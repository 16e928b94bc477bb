"""The AVX-512 kernel's packed input and output, checked on CPUs without AVX-512: as
test_avx512_logic.py, xnor_conv.c is compiled with the AVX-512 intrinsics replaced by
plain C (avx512_shim/), and its packed output is compared word for word with the portable
path's over random shapes and thresholds (always / never set included)."""

import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIM = Path(__file__).parent / "avx512_shim"
CC = shutil.which("cc") or shutil.which("gcc")
CPUINFO = Path("/proc/cpuinfo")
AVX2 = platform.machine() == "x86_64" and CPUINFO.exists() and " avx2" in CPUINFO.read_text()

CHECK = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xnor.h"
int main(void) {
    srand(11); int bad = 0, runs = 0;
    for (int it = 0; it < 300; it++) {
        cz_geom g = {.n = 1 + rand() % 2, .c = 1 + rand() % 150, .h = 1 + rand() % 10,
                     .w = 1 + rand() % 16, .cout = 1 + rand() % 140, .kh = 1 + rand() % 3,
                     .kw = 1 + rand() % 3, .stride = 1 + rand() % 2, .pad = rand() % 2,
                     .in_bits = 1, .out_bits = 1};
        if (cz_geom_init(&g)) continue;
        int cw = (g.c + 63) / 64, cwo = (g.cout + 63) / 64, total = g.c * g.kh * g.kw;
        size_t xn = (size_t)g.n * g.h * g.w * cw, on = (size_t)g.n * g.ho * g.wo * cwo;
        uint64_t *x = calloc(xn, 8), *o0 = malloc(8 * on), *o1 = malloc(8 * on);
        uint64_t *words = calloc((size_t)g.cout * g.kh * g.kw * cw, 8);
        int32_t *th = malloc(8 * g.cout);
        float *one = malloc(4 * g.cout);
        for (size_t p = 0; p < (size_t)g.n * g.h * g.w; p++) for (int c = 0; c < g.c; c++)
            if (rand() & 1) x[p * cw + c / 64] |= 1ULL << (c % 64);
        for (size_t i = 0; i < (size_t)g.cout * g.kh * g.kw; i++) for (int c = 0; c < g.c; c++)
            if (rand() & 1) words[i * cw + c / 64] |= 1ULL << (c % 64);
        for (int co = 0; co < g.cout; co++) {
            th[co] = rand() % (2 * total + 7) - total - 3; /* past both ends too */
            th[g.cout + co] = rand() & 1;
            one[co] = 1.0f;
        }
        uint8_t *b0 = malloc(cz_prepared_size(CZ_PORTABLE, g.cout, g.c, g.kh, g.kw));
        uint8_t *b2 = malloc(cz_prepared_size(CZ_AVX512, g.cout, g.c, g.kh, g.kw));
        cz_prepare(CZ_PORTABLE, words, g.cout, g.c, g.kh, g.kw, b0);
        cz_prepare(CZ_AVX512, words, g.cout, g.c, g.kh, g.kw, b2);
        memset(o1, 0xAB, 8 * on); /* the kernel must clear what it does not set */
        int r0 = cz_conv2d_ex(CZ_PORTABLE, &g, x, b0, one, one, th, o0, 1 + rand() % 3);
        int r1 = cz_conv2d_ex(CZ_AVX512, &g, x, b2, one, one, th, o1, 1 + rand() % 3);
        runs++;
        if (r0 || r1 || memcmp(o0, o1, 8 * on)) bad++;
        free(x); free(o0); free(o1); free(words); free(th); free(one); free(b0); free(b2);
    }
    printf("%d %d\n", runs, bad);
    return bad != 0;
}
"""


@pytest.mark.skipif(CC is None or not AVX2, reason="needs a C compiler and an AVX2 CPU")
@pytest.mark.slow
def test_avx512_packed_path_equals_portable_path(tmp_path):
    check, exe = tmp_path / "check_bits.c", tmp_path / "check_bits"
    check.write_text(CHECK)
    sources = [SHIM / "wrap.c", ROOT / "csrc" / "xnor_pack.c", check]
    flags = ["-O1", "-fno-tree-vectorize", "-std=c11", "-pthread", "-ffp-contract=off"]
    includes = [f"-I{SHIM}", f"-I{ROOT / 'csrc'}"]
    cmd = [CC, *flags, *includes, *map(str, sources), "-o", str(exe), "-lm", "-ldl"]
    subprocess.run(cmd, check=True, capture_output=True)
    disasm = shutil.which("objdump")
    if disasm:  # the shim must not have let AVX-512 instructions in
        text = subprocess.run([disasm, "-d", str(exe)], capture_output=True, text=True).stdout
        assert "zmm" not in text
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    runs, bad = (int(v) for v in out.stdout.split())
    assert out.returncode == 0 and runs > 200 and bad == 0, out.stdout
