/* Compressed-domain products of pruned + shared layers (see sparse.h).
 *
 * Both paths compile one body: the AVX2 path is the same C built for AVX2 (the batched
 * loop on GCC vectors of 8 floats: two SSE or one AVX register), so it gives identical
 * results by construction. Batch 1 is scalar: per kept weight one 2-byte load (delta, code),
 * one codebook load (L1), one x load, a multiply and an add, with four accumulators
 * to hide the add latency. AVX2 gathers were measured slower here (Zen 2: a ymm
 * gather costs about as much as its eight scalar loads, plus the prefix sum of the
 * deltas), see benchmarks/compressed_kernels.py.
 */
#include <string.h>

#include "sparse.h"

#if defined(__x86_64__) || defined(__i386__)
#define CS_X86 1
#endif

#define ALWAYS_INLINE static inline __attribute__((always_inline))

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

ALWAYS_INLINE float row_dot(const uint8_t *s, int64_t n, const float *cb, const float *x) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
    int64_t pos = 0, i = 0;
    for (; i + 4 <= n; i += 4, s += 8) { /* four entries per 8-byte load: fewer loads */
        uint64_t e;
        memcpy(&e, s, 8);
        pos += e & 255;
        a0 += cb[(e >> 8) & 255] * x[pos];
        pos += (e >> 16) & 255;
        a1 += cb[(e >> 24) & 255] * x[pos];
        pos += (e >> 32) & 255;
        a2 += cb[(e >> 40) & 255] * x[pos];
        pos += (e >> 48) & 255;
        a3 += cb[e >> 56] * x[pos];
    }
    for (int64_t j = 0; i < n; i++, j++, s += 2) { /* the last n % 4 entries, lanes 0.. */
        unsigned e = entry(s);
        pos += e & 255;
        float t = cb[e >> 8] * x[pos];
        if (j == 0)
            a0 += t;
        else if (j == 1)
            a1 += t;
        else
            a2 += t;
    }
    return (a0 + a1) + (a2 + a3);
}

ALWAYS_INLINE void matvec_body(const cs_layer *l, const float *x, float *y) {
    const uint8_t *s = l->stream;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r];
        y[r] = l->bias[r] + row_dot(s, n, l->codebook, x);
        s += 2 * n;
    }
}

/* Eight floats; GCC lowers it to two SSE registers in the portable build and to one
 * AVX register in the AVX2 build, the same lane-wise multiply and add either way. */
typedef float v8f __attribute__((vector_size(32)));

/* 8 * nv inputs of one row: acc[b] += codebook[code] * xt[col][b], entry by entry. */
ALWAYS_INLINE void row_block(const uint8_t *s, int64_t n, const float *cb, const float *xt,
                             int64_t bp, float bias, float *y, const int nv) {
    v8f acc[4] = {{0.0f}};
    int64_t pos = 0;
    for (int64_t i = 0; i < n; i++, s += 2) {
        unsigned e = entry(s);
        pos += e & 255;
        const float c = cb[e >> 8], *xr = xt + pos * bp;
        for (int v = 0; v < nv; v++) {
            v8f xv;
            memcpy(&xv, xr + 8 * v, sizeof xv);
            acc[v] += c * xv;
        }
    }
    for (int v = 0; v < nv; v++) {
        v8f out = bias + acc[v];
        memcpy(y + 8 * v, &out, sizeof out);
    }
}

ALWAYS_INLINE void matmat_body(const cs_layer *l, const float *xt, int64_t bp, float *yt) {
    const uint8_t *s = l->stream;
    for (int64_t r = 0; r < l->rows; r++) {
        int64_t n = l->row_len[r], b = 0;
        float *y = yt + r * bp;
        for (; b + 32 <= bp; b += 32) row_block(s, n, l->codebook, xt + b, bp, l->bias[r], y + b, 4);
        for (; b < bp; b += 8) row_block(s, n, l->codebook, xt + b, bp, l->bias[r], y + b, 1);
        s += 2 * n;
    }
}

static void matvec_portable(const cs_layer *l, const float *x, float *y) { matvec_body(l, x, y); }
static void matmat_portable(const cs_layer *l, const float *xt, int64_t bp, float *yt) {
    matmat_body(l, xt, bp, yt);
}

#ifdef CS_X86
__attribute__((target("avx2"))) static void matvec_avx2(const cs_layer *l, const float *x,
                                                        float *y) {
    matvec_body(l, x, y);
}
__attribute__((target("avx2"))) static void matmat_avx2(const cs_layer *l, const float *xt,
                                                        int64_t bp, float *yt) {
    matmat_body(l, xt, bp, yt);
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

void cs_matmat(int path, const cs_layer *l, const float *xt, int64_t bp, float *yt) {
#ifdef CS_X86
    if (path == CS_AVX2) {
        matmat_avx2(l, xt, bp, yt);
        return;
    }
#endif
    (void)path;
    matmat_portable(l, xt, bp, yt);
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
