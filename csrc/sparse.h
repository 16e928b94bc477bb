/* y = W x straight from a pruned + shared layer, never decoded to dense floats.
 *
 * Layout (built by cnnzip.runtime.compressed from a .cnnz's streams): the kept weights
 * row by row, in ascending column order within a row, each row padded with entries of
 * column fan_in to a multiple of 16 entries (cs_padded), as two arrays in one stream:
 *   - cols[entries]: each entry's column, 16-bit little-endian (so fan_in < 65536; wider
 *     layers stay dense); padding: fan_in;
 *   - codes[entries]: each entry's index into the layer's codebook (float32, finite, at
 *     most 256 entries); padding: any code < k (the portable path reads its weight);
 * and row_len[r] kept weights in row r (its padding not counted). A kept weight moves 3
 * bytes instead of 4 dense bytes per weight (or 8 of CSR), plus 0-15 padding entries a row.
 *
 * Arithmetic, identical on every path (no fused multiply-add, -ffp-contract=off):
 *   batch 1:  x is copied with a 0.0 at column fan_in (so padding adds +-0.0: nothing);
 *             entry i of each group of 16 adds codebook[code] * x[col] to lane i; then
 *             lane j += lane j + 8 (j < 8); y[r] = bias[r] + (((a0 + a4) + (a2 + a6)) +
 *             ((a1 + a5) + (a3 + a7)));
 *   batched:  yt[r][b] = bias[r] + a_b, the kept entries added to a_b in order.
 * No Python object is seen below this header; the binding is sparse_module.c.
 */
#ifndef CNNZIP_SPARSE_H
#define CNNZIP_SPARSE_H

#include <stddef.h>
#include <stdint.h>

enum { CS_PORTABLE = 0, CS_AVX2 = 1, CS_NPATHS = 2 };
#define CS_MAX_FAN_IN 65535 /* columns are 16 bits, and fan_in itself marks padding */

/* A row of n kept weights takes this many entries of the stream. */
static inline int64_t cs_padded(int64_t n) { return (n + 15) & ~(int64_t)15; }

typedef struct {
    int64_t rows, fan_in, k; /* k: codebook entries */
    int64_t entries;         /* sum of cs_padded(row_len) */
    const uint8_t *stream;   /* cols [entries] (uint16 LE), then codes [entries] (uint8) */
    const uint32_t *row_len; /* [rows] */
    const float *codebook;   /* [k] */
    const float *bias;       /* [rows] */
} cs_layer;

/* Whether this CPU runs `path`; the fastest path it runs. */
int cs_path_supported(int path);
int cs_best_path(void);

/* -1 when the layer is consistent (entries add up, columns ascend within each row and
 * stay below fan_in <= CS_MAX_FAN_IN, padding is column fan_in, every code < k, every
 * centroid finite), else the first row at fault. O(entries): run once, when the layer
 * is built. */
int64_t cs_check(const cs_layer *l);

/* y[rows] = W x[fan_in]; xz: scratch of fan_in + 1 floats (x copied with a 0.0 after). */
void cs_matvec(int path, const cs_layer *l, const float *x, float *y, float *xz);

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
