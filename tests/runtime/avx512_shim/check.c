/* The AVX-512 path (shimmed, see wrap.c) against the portable path on random shapes:
 * every output float must be identical. Prints "<runs> shapes, <bad> mismatches". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "xnor.h"
int main(void) {
    srand(7); int bad = 0, runs = 0;
    for (int it = 0; it < 400; it++) {
        cz_geom g = {.n = 1 + rand() % 3, .c = 1 + rand() % 200, .h = 1 + rand() % 12, .w = 1 + rand() % 20,
                     .cout = 1 + rand() % 140, .kh = 1 + rand() % 3, .kw = 1 + rand() % 3, .stride = 1 + rand() % 2,
                     .pad = rand() % 2, .use_k = rand() % 2};
        if (cz_geom_init(&g)) continue;
        size_t xn = (size_t)g.n * g.c * g.h * g.w, on = (size_t)g.n * g.cout * g.ho * g.wo;
        int cw = (g.c + 63) / 64;
        float *x = malloc(4 * xn), *sc = malloc(4 * g.cout), *bi = malloc(4 * g.cout), *o0 = malloc(4 * on), *o1 = malloc(4 * on);
        uint64_t *words = calloc((size_t)g.cout * g.kh * g.kw * cw, 8);
        for (size_t i = 0; i < xn; i++) x[i] = (float)(rand() % 2001 - 1000) / 1000.0f;
        for (int i = 0; i < g.cout; i++) sc[i] = (float)(rand() % 100) / 37.0f, bi[i] = (float)(rand() % 100) / 13.0f;
        for (int co = 0; co < g.cout; co++) for (int t = 0; t < g.kh * g.kw; t++) for (int c = 0; c < g.c; c++)
            if (rand() & 1) words[((size_t)co * g.kh * g.kw + t) * cw + c / 64] |= 1ULL << (c % 64);
        uint8_t *b0 = malloc(cz_prepared_size(CZ_PORTABLE, g.cout, g.c, g.kh, g.kw));
        uint8_t *b2 = malloc(cz_prepared_size(CZ_AVX512, g.cout, g.c, g.kh, g.kw));
        cz_prepare(CZ_PORTABLE, words, g.cout, g.c, g.kh, g.kw, b0);
        cz_prepare(CZ_AVX512, words, g.cout, g.c, g.kh, g.kw, b2);
        int r0 = cz_conv2d(CZ_PORTABLE, &g, x, b0, sc, bi, o0, 1 + rand() % 3);
        int r1 = cz_conv2d(CZ_AVX512, &g, x, b2, sc, bi, o1, 1 + rand() % 3);
        runs++;
        if (r0 || r1 || memcmp(o0, o1, 4 * on)) { bad++; printf("MISMATCH n%d c%d h%d w%d co%d k%dx%d s%d p%d K%d\n", g.n, g.c, g.h, g.w, g.cout, g.kh, g.kw, g.stride, g.pad, g.use_k); }
        free(x); free(sc); free(bi); free(o0); free(o1); free(words); free(b0); free(b2);
    }
    printf("%d shapes, %d mismatches\n", runs, bad);
    return bad != 0;
}
