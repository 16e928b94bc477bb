/* y = W x straight from a pruned + shared layer, never decoded to dense floats.
 *
 * Layout (built by cnnzip.runtime.compressed from a .cnnz's streams), per output row r,
 * row_len[r] two-byte entries (delta, code) in ascending column order:
 *   - delta: columns advanced from the previous entry of the row (the first entry's
 *     delta is its column, counted from 0); a gap over 255 is bridged by filler
 *     entries (delta 255, code of a 0.0 centroid), as Deep Compression's relative
 *     indices do, so every entry is two bytes and no branch depends on the data;
 *   - code: the entry's index into the layer's codebook (float32, at most 256).
 * A kept weight therefore moves 2 bytes instead of 4 dense bytes per weight (or 8 of CSR).
 *
 * Arithmetic, identical on every path (no fused multiply-add, -ffp-contract=off):
 *   batch 1:  y[r] = bias[r] + (((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))),
 *             entry i of the row adding codebook[code] * x[col] to a(i mod 8);
 *   batched:  yt[r][b] = bias[r] + a_b, entries added to a_b in order.
 * No Python object is seen below this header; the binding is sparse_module.c.
 */
#ifndef CNNZIP_SPARSE_H
#define CNNZIP_SPARSE_H

#include <stddef.h>
#include <stdint.h>

enum { CS_PORTABLE = 0, CS_AVX2 = 1, CS_NPATHS = 2 };

typedef struct {
    int64_t rows, fan_in, k; /* k: codebook entries */
    int64_t entries;         /* sum of row_len */
    const uint8_t *stream;   /* [entries][2]: delta, code */
    const uint32_t *row_len; /* [rows] */
    const float *codebook;   /* [k] */
    const float *bias;       /* [rows] */
} cs_layer;

/* Whether this CPU runs `path`; the fastest path it runs. */
int cs_path_supported(int path);
int cs_best_path(void);

/* -1 when the layer is consistent (entries add up, every column < fan_in, every code < k),
 * else the first row at fault. O(entries): run once, when the layer is built. */
int64_t cs_check(const cs_layer *l);

/* y[rows] = W x[fan_in]. */
void cs_matvec(int path, const cs_layer *l, const float *x, float *y);

/* yt[rows][bp] = W x for bp inputs (bp a multiple of 8), given as panels of 8:
 * xp[bp / 8][fan_in][8] (input b is xp[b / 8][.][b % 8]). */
void cs_matmat(int path, const cs_layer *l, const float *xp, int64_t bp, float *yt);

/* The baseline the layout is measured against: a plain CSR matvec as scipy's csr_matvec
 * runs it (float32 values, int32 columns, one accumulator per row, in order). */
typedef struct {
    int64_t rows, fan_in, nnz;
    const float *values;   /* [nnz] */
    const int32_t *cols;   /* [nnz] */
    const int64_t *rowptr; /* [rows + 1] */
} cs_csr;

/* -1 when rowptr runs from 0 to nnz without decreasing and every column < fan_in, else
 * the first row at fault. */
int64_t cs_csr_check(const cs_csr *m);
void cs_csr_matvec(const cs_csr *m, const float *x, float *y);

#endif
