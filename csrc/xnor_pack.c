/* Binarize + pack: NCHW float32 -> padded NHWC bit planes (see xnor.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "xnor.h"

#if defined(__x86_64__) /* the AVX2 kernel is x86-64 assembly; 32-bit x86 runs portable C */
#include <immintrin.h>
#define CZ_X86 1
#endif

#define CHUNK 256 /* pixels per work item: 32 blocks of 8 */

int cz_pack_items(const cz_geom *g) { return g->n * ((g->h * g->w + CHUNK - 1) / CHUNK); }

/* Bytes per padded pixel in a layout. */
static size_t pixel_bytes(const cz_geom *g, int layout) {
    return layout == 0 ? (size_t)8 * ((g->c + 63) / 64) : (size_t)(g->c + 3) / 4;
}

/* Store byte b (channels 8k..8k+7 of one pixel) at the pixel's address. */
static inline void put_byte(uint8_t *pix, int k, uint8_t b, int layout, size_t pb) {
    if (layout == 0) {
        pix[k] = b;
        return;
    }
    pix[2 * k] = (uint8_t)((b & 15) << 4); /* nibble as an offset into the 16x16 table */
    if ((size_t)(2 * k + 1) < pb) pix[2 * k + 1] = (uint8_t)(b & 0xF0);
}

/* Padded-pixel address of pixel p of image n. */
static inline uint8_t *pixel_at(const cz_geom *g, uint8_t *dst, int layout, int n, int p) {
    int hp = g->h + 2 * g->pad, wp = g->w + 2 * g->pad;
    int y = p / g->w + g->pad, x = p % g->w + g->pad;
    return dst + (((size_t)n * hp + y) * wp + x) * pixel_bytes(g, layout);
}

/* Pixels [p0, p1) of image n, one at a time. */
static void pack_pixels(const cz_geom *g, const float *x, uint8_t *dst, int layout, float *a,
                        int n, int p0, int p1) {
    size_t hw = (size_t)g->h * g->w, pb = pixel_bytes(g, layout);
    const float *img = x + (size_t)n * g->c * hw;
    for (int p = p0; p < p1; p++) {
        uint8_t *pix = pixel_at(g, dst, layout, n, p);
        float s = 0.0f;
        for (int c0 = 0; c0 < g->c; c0 += 8) {
            uint8_t b = 0;
            for (int i = 0; i < 8 && c0 + i < g->c; i++) {
                float v = img[(size_t)(c0 + i) * hw + p];
                b |= (uint8_t)((v < 0.0f) << i);
                s += fabsf(v);
            }
            put_byte(pix, c0 / 8, b, layout, pb);
        }
        if (a) a[(size_t)n * hw + p] = s / (float)g->c;
    }
}

static void item_range(const cz_geom *g, int item, int *n, int *p0, int *p1) {
    int hw = g->h * g->w, nchunk = (hw + CHUNK - 1) / CHUNK;
    *n = item / nchunk;
    *p0 = (item % nchunk) * CHUNK;
    *p1 = *p0 + CHUNK < hw ? *p0 + CHUNK : hw;
}

/* Nibbles of a 32-channel word as bytes, each already times 16 (layout 1). */
static inline uint64_t nibble_bytes(uint32_t word) {
    uint64_t t = word;
    t = (t | (t << 16)) & 0x0000FFFF0000FFFFULL;
    t = (t | (t << 8)) & 0x00FF00FF00FF00FFULL;
    t = (t | (t << 4)) & 0x0F0F0F0F0F0F0F0FULL;
    return t << 4;
}

/* Store a pixel's 32-channel word q (channels 32q..32q+31) in a layout. */
static inline void put_word(uint8_t *pix, size_t q, uint32_t word, int layout, size_t pb) {
    size_t at = layout == 0 ? 4 * q : 8 * q, take;
    uint64_t v = layout == 0 ? word : nibble_bytes(word);
    take = pb - at < (layout == 0 ? 4 : 8) ? pb - at : (layout == 0 ? 4 : 8);
    memcpy(pix + at, &v, take); /* little-endian: the low bytes first */
}

void cz_unpack_bits(const cz_geom *g, const uint64_t *bits, uint8_t *dst, int layout, int begin,
                    int end) {
    size_t cw = (size_t)(g->c + 63) / 64, hw = (size_t)g->h * g->w, pb = pixel_bytes(g, layout);
    size_t q32 = (size_t)(g->c + 31) / 32; /* 32-bit words that hold channels */
    for (int item = begin; item < end; item++) {
        int n, p0, p1;
        item_range(g, item, &n, &p0, &p1);
        for (int p = p0; p < p1; p++) {
            const uint64_t *src = bits + ((size_t)n * hw + p) * cw; /* [cw] words */
            uint8_t *pix = pixel_at(g, dst, layout, n, p);
            for (size_t q = 0; q < q32; q++) {
                uint32_t word = (uint32_t)(src[q / 2] >> (32 * (q % 2)));
                if (g->c - 32 * (int)q < 32) word &= (1u << (g->c - 32 * q)) - 1; /* past c: 0 */
                put_word(pix, q, word, layout, pb);
            }
        }
    }
}

int cz_pool_init(cz_pool *p) {
    if (p->n < 1 || p->c < 1 || p->h < 1 || p->w < 1 || p->k < 1 || p->stride < 1 ||
        p->pad < 0 || 2 * p->pad > p->k || p->h + 2 * p->pad < p->k || p->w + 2 * p->pad < p->k)
        return -1;
    p->ho = (p->h + 2 * p->pad - p->k) / p->stride + 1;
    p->wo = (p->w + 2 * p->pad - p->k) / p->stride + 1;
    return 0;
}

void cz_pool_bits(const cz_pool *p, const uint64_t *in, const uint64_t *ormask, uint64_t *out) {
    size_t cw = (size_t)(p->c + 63) / 64;
    for (int n = 0; n < p->n; n++)
        for (int oy = 0; oy < p->ho; oy++)
            for (int ox = 0; ox < p->wo; ox++) {
                uint64_t *o = out + (((size_t)n * p->ho + oy) * p->wo + ox) * cw;
                for (size_t q = 0; q < cw; q++) {
                    uint64_t all = ~0ULL, any = 0; /* padding is neutral: it takes no part */
                    for (int ky = 0; ky < p->k; ky++)
                        for (int kx = 0; kx < p->k; kx++) {
                            int y = oy * p->stride + ky - p->pad, x = ox * p->stride + kx - p->pad;
                            if (y < 0 || y >= p->h || x < 0 || x >= p->w) continue;
                            uint64_t v = in[(((size_t)n * p->h + y) * p->w + x) * cw + q];
                            all &= v, any |= v;
                        }
                    o[q] = (all & ~ormask[q]) | (any & ormask[q]);
                }
            }
}

void cz_pack_portable(const cz_geom *g, const float *x, uint8_t *dst, int layout, float *a,
                      int begin, int end) {
    for (int item = begin; item < end; item++) {
        int n, p0, p1;
        item_range(g, item, &n, &p0, &p1);
        pack_pixels(g, x, dst, layout, a, n, p0, p1);
    }
}

#ifdef CZ_X86
/* Two passes per chunk of 256 pixels: (1) stream each channel's row of the chunk
 * (contiguous floats) into sign bytes, bits[block][c] (bit j: pixel 8 * block + j);
 * (2) per block of 8 pixels and 32 channels, one shift + VPMOVMSKB per pixel
 * gathers its 32 sign bits into a word, stored as is (layout 0) or as nibble
 * bytes (layout 1). */
__attribute__((target("avx2"))) void cz_pack_avx2(const cz_geom *g, const float *x, uint8_t *dst,
                                                   int layout, float *a, int begin, int end) {
    size_t hw = (size_t)g->h * g->w, pb = pixel_bytes(g, layout);
    size_t c32 = (size_t)(g->c + 31) / 32 * 32, wp = (size_t)g->w + 2 * g->pad;
    uint8_t *bits = calloc(c32 * (CHUNK / 8), 1); /* channels past c stay zero */
    const __m256 zero = _mm256_setzero_ps();
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    if (!bits) { /* no scratch: the one-pixel-at-a-time path gives the same bits */
        cz_pack_portable(g, x, dst, layout, a, begin, end);
        return;
    }
    for (int item = begin; item < end; item++) {
        int n, p0, p1;
        item_range(g, item, &n, &p0, &p1);
        int nb = (p1 - p0) / 8; /* full blocks of 8 pixels */
        const float *img = x + (size_t)n * g->c * hw + p0;
        __m256 asum[CHUNK / 8];
        for (int b = 0; b < nb; b++) asum[b] = _mm256_setzero_ps();
        for (int c = 0; c < g->c; c++) {
            const float *row = img + (size_t)c * hw;
            for (int b = 0; b < nb; b++) {
                __m256 v = _mm256_loadu_ps(row + 8 * b);
                bits[b * c32 + c] = (uint8_t)_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));
                if (a) asum[b] = _mm256_add_ps(asum[b], _mm256_and_ps(v, absmask));
            }
        }
        for (int b = 0; b < nb; b++) {
            uint8_t *pix[8];
            int y = (p0 + 8 * b) / g->w, xx = (p0 + 8 * b) % g->w;
            for (int j = 0; j < 8; j++) { /* the 8 pixels may wrap to the next row */
                pix[j] = dst + (((size_t)n * (g->h + 2 * g->pad) + y + g->pad) * wp + xx + g->pad) * pb;
                if (++xx == g->w) xx = 0, y++;
            }
            for (size_t c0 = 0; c0 < c32; c0 += 32) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(bits + b * c32 + c0));
                for (int j = 0; j < 8; j++) { /* bit 7 of each byte <- bit j: pixel j's signs */
                    uint32_t word = (uint32_t)_mm256_movemask_epi8(
                        _mm256_slli_epi16(v, 7 - j)); /* 16-bit shift: bytes keep their bits */
                    if (layout == 0) {
                        memcpy(pix[j] + c0 / 8, &word, 4);
                    } else {
                        uint64_t nib = nibble_bytes(word);
                        size_t at = c0 / 4, take = pb - at < 8 ? pb - at : 8;
                        memcpy(pix[j] + at, &nib, take);
                    }
                }
            }
            if (a)
                _mm256_storeu_ps(a + (size_t)n * hw + p0 + 8 * b,
                                 _mm256_div_ps(asum[b], _mm256_set1_ps((float)g->c)));
        }
        pack_pixels(g, x, dst, layout, a, n, p0 + 8 * nb, p1); /* the image's last few pixels */
    }
    free(bits);
}
#else
void cz_pack_avx2(const cz_geom *g, const float *x, uint8_t *dst, int layout, float *a, int begin,
                  int end) {
    cz_pack_portable(g, x, dst, layout, a, begin, end);
}
#endif
