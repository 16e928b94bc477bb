/* Compressed-domain products of pruned + shared layers (see sparse.h).
 *
 * Both paths do the same float operations in the same order, so they give identical
 * bits. Batched: one body for both, on GCC vectors of 8 floats (two SSE registers in
 * the portable build, one AVX register in the AVX2 one). Batch 1: sixteen lanes; the
 * portable path loads each weight from the codebook (L1), the AVX2 path keeps a
 * codebook of up to 32 entries in four registers and picks the weights of 8 entries
 * with permutes, so per kept weight only x is loaded (plus its 3 bytes of entry).
 * Absolute 16-bit columns, not deltas: no chain of adds from one entry to the next and
 * two integer operations per entry instead of three; with sixteen entries a step this
 * ran fc6 / fc7-sized layers 1.3-1.4x faster than (delta, code) byte pairs, whose
 * integer work bounded them at ~1.1 cycles per kept weight. Rows padded to whole groups
 * of 16 (zero products: column fan_in of a zeroed copy of x) have no tail loop and no
 * mispredicted exits from it: 5-18% faster again (standalone harness, caches swept
 * before each call). A ymm gather of x was ~50% slower than eight scalar loads.
 */
#include <string.h>

#include "sparse.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CS_X86 1
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* Batch 1: the columns 2 KiB ahead (and their codes 1 KiB ahead) are asked for while
 * these are summed. The dense layer timed beside it sweeps the caches, and the hardware
 * prefetcher restarts at every 4 KiB page of the stream: fc6 at 9% / 4% kept ran 1.29 /
 * 0.61 ms without, 1.06 / 0.49 ms with 1 KiB (the earlier byte-pair layout); with this
 * layout's faster loop 2 KiB beat 1 KiB by 5-10% (fastest of 41 calls; 4 KiB the same). */
#define STREAM_AHEAD 2048

int cs_path_supported(int path) {
#ifdef CS_X86
    __builtin_cpu_init();
    if (path == CS_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi2");
#endif
    return path == CS_PORTABLE;
}

int cs_best_path(void) { return cs_path_supported(CS_AVX2) ? CS_AVX2 : CS_PORTABLE; }

/* Column i of the layer's entries (little-endian 16 bits; the stream is bytes). */
ALWAYS_INLINE unsigned col_at(const uint8_t *cols, int64_t i) {
    uint16_t v;
    memcpy(&v, cols + 2 * i, 2);
    return v;
}

/* Four columns from the stream: one 8-byte load (not a 32-byte copy through the stack). */
ALWAYS_INLINE uint64_t cols4(const uint8_t *cols) {
    uint64_t e;
    memcpy(&e, cols, 8);
    return e;
}

int64_t cs_check(const cs_layer *l) {
    const uint8_t *cols = l->stream, *codes = l->stream + 2 * l->entries;
    int64_t seen = 0;
    if (l->fan_in > CS_MAX_FAN_IN) return 0;
    for (int64_t q = 0; q < l->k; q++) /* a padding product is cb * 0: finite centroids only */
        if (!(l->codebook[q] - l->codebook[q] == 0.0f)) return 0;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r], m = cs_padded(n);
        if (m > l->entries - seen) return r;
        for (int64_t i = seen; i < seen + m; i++) {
            unsigned c = col_at(cols, i);
            int ok = i < seen + n ? c < l->fan_in && (i == seen || c > col_at(cols, i - 1))
                                  : c == l->fan_in;
            if (!ok || codes[i] >= l->k) return r;
        }
        seen += m;
    }
    return seen == l->entries ? -1 : l->rows - 1;
}

/* The lanes summed in one fixed tree. */
ALWAYS_INLINE float tree(const float a[8]) {
    return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

/* Entry i of each group of 16 adds codebook[code] * x[col] to lane i; lanes j and
 * j + 8 are then added (j < 8). `m`: the row's entries with its padding. */
ALWAYS_INLINE float row_dot(const uint8_t *cols, const uint8_t *codes, int64_t m,
                            const float *cb, const float *x) {
    float a[16] = {0.0f};
    for (int64_t i = 0; i < m; i += 16, cols += 32, codes += 16) {
        __builtin_prefetch(cols + STREAM_AHEAD);
        __builtin_prefetch(codes + STREAM_AHEAD / 2);
        for (int h = 0; h < 4; h++) { /* four columns per 8-byte load: fewer loads */
            uint64_t e = cols4(cols + 8 * h);
            for (int q = 0; q < 4; q++, e >>= 16)
                a[4 * h + q] += cb[codes[4 * h + q]] * x[e & 0xffff];
        }
    }
    for (int j = 0; j < 8; j++) a[j] += a[j + 8];
    return tree(a);
}

/* x with a 0.0 at column fan_in, where padding entries point. */
static const float *zero_padded(const cs_layer *l, const float *x, float *xz) {
    memcpy(xz, x, 4 * l->fan_in);
    xz[l->fan_in] = 0.0f;
    return xz;
}

static void matvec_portable(const cs_layer *l, const float *x, float *y, float *xz) {
    const uint8_t *cols = l->stream, *codes = l->stream + 2 * l->entries;
    x = zero_padded(l, x, xz);
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t m = cs_padded(l->row_len[r]);
        y[r] = l->bias[r] + row_dot(cols, codes, m, l->codebook, x);
        cols += 2 * m;
        codes += m;
    }
}

#ifdef CS_X86
/* The weights of 8 entries from the codebook in four registers (codes < 32). */
__attribute__((target("avx2"))) static inline __m256 pick(const __m256 cbv[4], __m256i c) {
    __m256 bit3 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 28));
    __m256 bit4 = _mm256_castsi256_ps(_mm256_slli_epi32(c, 27));
    __m256 lo = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cbv[0], c),
                                 _mm256_permutevar8x32_ps(cbv[1], c), bit3);
    __m256 hi = _mm256_blendv_ps(_mm256_permutevar8x32_ps(cbv[2], c),
                                 _mm256_permutevar8x32_ps(cbv[3], c), bit3);
    return _mm256_blendv_ps(lo, hi, bit4);
}

/* x at the four columns packed in `e`, as lanes 0..3 (BMI2's shrx: no register copies). */
__attribute__((target("avx2,bmi2"))) static inline __m128 four(const float *x, uint64_t e) {
    return _mm_set_ps(x[e >> 48], x[(uint16_t)(e >> 32)], x[(uint16_t)(e >> 16)], x[(uint16_t)e]);
}

/* row_dot with lanes 0..7 and 8..15 in two registers: x by scalar loads (AVX2 gathers
 * are slower on Zen 2), the weights by permutes of the codebook registers, not loads. */
__attribute__((target("avx2,bmi2"))) static float row_dot_avx2(const uint8_t *cols,
                                                               const uint8_t *codes, int64_t m,
                                                               const __m256 cbv[4],
                                                               const float *x) {
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    for (int64_t i = 0; i < m; i += 16, cols += 32, codes += 16) {
        _mm_prefetch((const char *)cols + STREAM_AHEAD, _MM_HINT_T0);
        _mm_prefetch((const char *)codes + STREAM_AHEAD / 2, _MM_HINT_T0);
        __m128i k = _mm_loadu_si128((const __m128i *)codes);
        __m256 w0 = pick(cbv, _mm256_cvtepu8_epi32(k));
        __m256 w1 = pick(cbv, _mm256_cvtepu8_epi32(_mm_srli_si128(k, 8)));
        __m256 x0 = _mm256_set_m128(four(x, cols4(cols + 8)), four(x, cols4(cols)));
        __m256 x1 = _mm256_set_m128(four(x, cols4(cols + 24)), four(x, cols4(cols + 16)));
        lo = _mm256_add_ps(lo, _mm256_mul_ps(w0, x0));
        hi = _mm256_add_ps(hi, _mm256_mul_ps(w1, x1));
    }
    float a[8];
    _mm256_storeu_ps(a, _mm256_add_ps(lo, hi));
    return tree(a);
}

__attribute__((target("avx2,bmi2"))) static void matvec_avx2(const cs_layer *l, const float *x,
                                                             float *y, float *xz) {
    if (l->k > 32) { /* the same arithmetic, weights loaded */
        matvec_portable(l, x, y, xz);
        return;
    }
    float padded[32] = {0.0f};
    memcpy(padded, l->codebook, 4 * l->k);
    __m256 cbv[4];
    for (int q = 0; q < 4; q++) cbv[q] = _mm256_loadu_ps(padded + 8 * q);
    const uint8_t *cols = l->stream, *codes = l->stream + 2 * l->entries;
    x = zero_padded(l, x, xz);
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t m = cs_padded(l->row_len[r]);
        y[r] = l->bias[r] + row_dot_avx2(cols, codes, m, cbv, x);
        cols += 2 * m;
        codes += m;
    }
}
#endif

/* Eight floats; GCC lowers it to two SSE registers in the portable build and to one
 * AVX register in the AVX2 build, the same lane-wise multiply and add either way. */
typedef float v8f __attribute__((vector_size(32)));

/* 8 * nv inputs of one row: acc[b] += codebook[code] * x[b][col], entry by entry, from
 * nv consecutive panels (each fan_in x 8 floats, `pstride` floats apart). */
ALWAYS_INLINE void row_block(const uint8_t *cols, const uint8_t *codes, int64_t n,
                             const float *cb, const float *panel, int64_t pstride, float bias,
                             float *y, const int nv) {
    v8f acc[4] = {{0.0f}};
    for (int64_t i = 0; i < n; i++) {
        const float c = cb[codes[i]], *xr = panel + 8 * (int64_t)col_at(cols, i);
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
        const uint8_t *cols = l->stream, *codes = l->stream + 2 * l->entries;
        const float *panel = xp + (b / 8) * pstride, *cb = l->codebook;
        for (int64_t r = 0; r < l->rows; r++) {
            int64_t n = l->row_len[r];
            float *out = yt + r * bp + b;
            if (nv == 4)
                row_block(cols, codes, n, cb, panel, pstride, l->bias[r], out, 4);
            else
                row_block(cols, codes, n, cb, panel, pstride, l->bias[r], out, 1);
            cols += 2 * cs_padded(n); /* the padding is skipped: it adds nothing */
            codes += cs_padded(n);
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

void cs_matvec(int path, const cs_layer *l, const float *x, float *y, float *xz) {
#ifdef CS_X86
    if (path == CS_AVX2) {
        matvec_avx2(l, x, y, xz);
        return;
    }
#endif
    (void)path;
    matvec_portable(l, x, y, xz);
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
