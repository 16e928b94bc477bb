/* Compressed-domain products of pruned + shared layers (see sparse.h).
 *
 * Both paths do the same float operations in the same order, so they give identical
 * bits. Batched: one body for both, on GCC vectors of 8 floats (two SSE registers in
 * the portable build, one AVX register in the AVX2 one). Batch 1: eight lanes; the
 * portable path loads each weight from the codebook (L1), the AVX2 path keeps a
 * codebook of up to 32 entries in four registers and picks the weights of 8 entries
 * with permutes, so per kept weight only x is loaded (plus 2 bytes of entry): ~25%
 * faster than the scalar loop on Zen 2, where a ymm gather of x was ~50% slower than
 * eight scalar loads (measured in a standalone harness on fc6/fc7-sized layers).
 */
#include <string.h>

#include "sparse.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CS_X86 1
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Batch 1: the entries 1 KiB ahead are asked for while these are summed. The dense layer
 * timed beside it sweeps the caches, and the hardware prefetcher restarts at every 4 KiB
 * page of the stream: fc6 at 9% / 4% kept ran 1.29 / 0.61 ms without, 1.06 / 0.49 ms with
 * (standalone harness, caches swept before each call; 512 B and 2 KiB no better). */
#define STREAM_AHEAD 1024

int cs_path_supported(int path) {
#ifdef CS_X86
    __builtin_cpu_init();
    if (path == CS_AVX2) return __builtin_cpu_supports("avx2");
#endif
    return path == CS_PORTABLE;
}

int cs_best_path(void) { return cs_path_supported(CS_AVX2) ? CS_AVX2 : CS_PORTABLE; }

int64_t cs_check(const cs_layer *l) {
    const uint8_t *s = l->stream;
    int64_t seen = 0;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r], pos = 0;
        if (n > l->entries - seen) return r;
        for (int64_t i = 0; i < n; i++, s += 2) {
            pos += s[0];
            if (pos >= l->fan_in || s[1] >= l->k) return r;
        }
        seen += n;
    }
    return seen == l->entries ? -1 : l->rows - 1;
}

/* One entry: (delta, code) as a little-endian 16-bit load. */
ALWAYS_INLINE unsigned entry(const uint8_t *s) {
    uint16_t v;
    memcpy(&v, s, 2);
    return v;
}

/* The end of a row, shared by both paths: the entries past the last group of 8 go to
 * lanes 0.. in order, then the lanes are summed in one fixed tree. */
ALWAYS_INLINE float row_finish(float a[8], const uint8_t *s, int64_t left, int64_t pos,
                               const float *cb, const float *x) {
    for (int64_t j = 0; j < left; j++, s += 2) {
        pos += s[0];
        a[j] += cb[s[1]] * x[pos];
    }
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Entry i of a row adds codebook[code] * x[col] to lane i % 8 (eight accumulators). */
ALWAYS_INLINE float row_dot(const uint8_t *s, int64_t n, const float *cb, const float *x) {
    float a[8] = {0.0f};
    int64_t pos = 0, i = 0;
    for (; i + 8 <= n; i += 8) {
        __builtin_prefetch(s + STREAM_AHEAD);
        for (int h = 0; h < 2; h++, s += 8) { /* four entries per 8-byte load: fewer loads */
            uint64_t e;
            memcpy(&e, s, 8);
            for (int q = 0; q < 4; q++, e >>= 16) {
                pos += e & 255;
                a[4 * h + q] += cb[(e >> 8) & 255] * x[pos];
            }
        }
    }
    return row_finish(a, s, n - i, pos, cb, x);
}

static void matvec_portable(const cs_layer *l, const float *x, float *y) {
    const uint8_t *s = l->stream;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r];
        y[r] = l->bias[r] + row_dot(s, n, l->codebook, x);
        s += 2 * n;
    }
}

#ifdef CS_X86
/* The codebook in four registers (32 entries) when it fits: at most 32 entries, or 33
 * whose last is the +0.0 of the fillers (codes >= 32 then select 0.0). */
static int fits_registers(const cs_layer *l) {
    uint32_t last = 0;
    if (l->k == 33) memcpy(&last, l->codebook + 32, 4);
    return l->k <= 32 || (l->k == 33 && last == 0);
}

/* row_dot with the eight lanes in one register: x by scalar loads (AVX2 gathers are
 * slower on Zen 2), the weights by permutes of the codebook registers, not loads. */
__attribute__((target("avx2"))) static float row_dot_avx2(const uint8_t *s, int64_t n,
                                                          const __m256 cbv[4], const float *cb,
                                                          const float *x) {
    const __m128i odd = _mm_setr_epi8(1, 3, 5, 7, 9, 11, 13, 15, -1, -1, -1, -1, -1, -1, -1, -1);
    __m256 acc = _mm256_setzero_ps();
    int64_t pos = 0, i = 0;
    for (; i + 8 <= n; i += 8, s += 16) {
        uint64_t e[2];
        float v[8];
        _mm_prefetch((const char *)s + STREAM_AHEAD, _MM_HINT_T0);
        memcpy(e, s, 16);
        for (int q = 0; q < 8; q++) { /* a chain of adds: measured faster than prefix sums */
            pos += (e[q / 4] >> (16 * (q % 4))) & 255;
            v[q] = x[pos];
        }
        __m256i c = _mm256_cvtepu8_epi32(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)s), odd));
        __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
        __m256 bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 27));
        __m256 bit5 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 26));
        __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cbv[0], c),
                                     _mm256_permutevar8x32_ps(cbv[1], c), bit3);
        __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cbv[2], c),
                                     _mm256_permutevar8x32_ps(cbv[3], c), bit3);
        __m256 w = _mm256_blendv_ps(_mm256_blendv_ps(lo, hi, bit4), _mm256_setzero_ps(), bit5);
        acc = _mm256_add_ps(acc, _mm256_mul_ps(w, _mm256_loadu_ps(v)));
    }
    float a[8];
    _mm256_storeu_ps(a, acc);
    return row_finish(a, s, n - i, pos, cb, x);
}

__attribute__((target("avx2"))) static void matvec_avx2(const cs_layer *l, const float *x,
                                                        float *y) {
    if (!fits_registers(l)) { /* the same arithmetic, scalar */
        matvec_portable(l, x, y);
        return;
    }
    float padded[32] = {0.0f};
    memcpy(padded, l->codebook, 4 * (l->k < 32 ? l->k : 32));
    __m256 cbv[4];
    for (int q = 0; q < 4; q++) cbv[q] = _mm256_loadu_ps(padded + 8 * q);
    const uint8_t *s = l->stream;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r];
        y[r] = l->bias[r] + row_dot_avx2(s, n, cbv, l->codebook, x);
        s += 2 * n;
    }
}
#endif

/* Eight floats; GCC lowers it to two SSE registers in the portable build and to one
 * AVX register in the AVX2 build, the same lane-wise multiply and add either way. */
typedef float v8f __attribute__((vector_size(32)));

/* 8 * nv inputs of one row: acc[b] += codebook[code] * x[b][col], entry by entry, from
 * nv consecutive panels (each fan_in x 8 floats, `pstride` floats apart). */
ALWAYS_INLINE void row_block(const uint8_t *s, int64_t n, const float *cb, const float *panel,
                             int64_t pstride, float bias, float *y, const int nv) {
    v8f acc[4] = {{0.0f}};
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++, s += 2) {
        unsigned e = entry(s);
        pos += e & 255;
        const float c = cb[e >> 8], *xr = panel + 8 * pos;
        for (int v = 0; v < nv; v++) {
            v8f xv;
            memcpy(&xv, xr + v * pstride, sizeof xv);
            acc[v] += c * xv;
        }
    }
    for (int v = 0; v < nv; v++) {
        v8f out = bias + acc[v];
        memcpy(y + 8 * v, &out, sizeof out);
    }
}

/* Groups of 4 panels (32 inputs) outermost: their 4 * fan_in * 32 bytes (contiguous, few
 * pages) stay in L2 while every row of the layer reads them. Rows outermost over a
 * row-major [fan_in][bp] input made each entry touch another page of a large input
 * (a conv's unfolded batch: 100 MB), 3-4x slower. */
ALWAYS_INLINE void matmat_body(const cs_layer *l, const float *xp, int64_t bp, float *yt) {
    const int64_t pstride = 8 * l->fan_in;
    for (int64_t b = 0; b < bp;) {
        const int nv = bp - b >= 32 ? 4 : 1;
        const uint8_t *s = l->stream;
        const float *panel = xp + (b / 8) * pstride;
        for (int64_t r = 0; r < l->rows; r++) {
            int64_t n = l->row_len[r];
            if (nv == 4)
                row_block(s, n, l->codebook, panel, pstride, l->bias[r], yt + r * bp + b, 4);
            else
                row_block(s, n, l->codebook, panel, pstride, l->bias[r], yt + r * bp + b, 1);
            s += 2 * n;
        }
        b += 8 * nv;
    }
}

static void matmat_portable(const cs_layer *l, const float *xp, int64_t bp, float *yt) {
    matmat_body(l, xp, bp, yt);
}

#ifdef CS_X86
__attribute__((target("avx2"))) static void matmat_avx2(const cs_layer *l, const float *xp,
                                                        int64_t bp, float *yt) {
    matmat_body(l, xp, bp, yt);
}
#endif

void cs_matvec(int path, const cs_layer *l, const float *x, float *y) {
#ifdef CS_X86
    if (path == CS_AVX2) {
        matvec_avx2(l, x, y);
        return;
    }
#endif
    (void)path;
    matvec_portable(l, x, y);
}

void cs_matmat(int path, const cs_layer *l, const float *xp, int64_t bp, float *yt) {
#ifdef CS_X86
    if (path == CS_AVX2) {
        matmat_avx2(l, xp, bp, yt);
        return;
    }
#endif
    (void)path;
    matmat_portable(l, xp, bp, yt);
}

int64_t cs_csr_check(const cs_csr *m) {
    if (m->rowptr[0] != 0) return 0;
    for (int64_t r = 0; r < m->rows; r++) {
        if (m->rowptr[r + 1] < m->rowptr[r] || m->rowptr[r + 1] > m->nnz) return r;
        for (int64_t i = m->rowptr[r]; i < m->rowptr[r + 1]; i++)
            if (m->cols[i] < 0 || m->cols[i] >= m->fan_in) return r;
    }
    return m->rowptr[m->rows] == m->nnz ? -1 : m->rows - 1;
}

void cs_csr_matvec(const cs_csr *m, const float *x, float *y) {
    for (int64_t r = 0; r < m->rows; r++) {
        float sum = 0.0f;
        for (int64_t i = m->rowptr[r]; i < m->rowptr[r + 1]; i++) sum += m->values[i] * x[m->cols[i]];
        y[r] = sum;
    }
}
