/* XNOR-popcount binary convolution on x86 (AVX-512 VPOPCNTDQ / AVX2) and portable C.
 *
 * Conventions shared with the Python side (cnnzip.runtime.xnor) and with
 * training (cnnzip.binary):
 *   - sign: a value v binarizes to -1 when v < 0, else +1 (so 0, -0.0 and NaN give +1);
 *   - bit:  a set bit means -1 (the float sign bit), a clear bit +1;
 *   - channels are packed along 64-bit words, little-endian: channel c is bit c % 64
 *     of word c / 64; the bits past the last channel are 0 in weights and activations,
 *     so they never count;
 *   - padding is +1 (clear bits): training pads the +-1 activations with +1 too;
 *   - a dot product of n +-1 values is n - 2 * popcount(a XOR w);
 *   - output transform, per output channel co and pixel p, in float32 without
 *     fused multiply-add:  y = dot [* K[p]] * scale[co] + bias[co]
 *     (alpha, the batch norm that follows, and the layer's bias folded into
 *     scale and bias; K is XNOR-Net's map of mean |input| over each window).
 *
 * Weight words: [cout][kh][kw][cw] with cw = ceil(c / 64).
 *
 * Packed activations (a binary layer feeding another binary layer): words
 * [n][h][w][cw], unpadded, the same bit order as weights. A layer that emits them
 * decides each bit from its integer dot alone: bit = (dot < t[co]) XOR flip[co],
 * where t and flip fold the output transform, the batch norm and ReLU that follow
 * and the next layer's input batch norm + sign (cnnzip.runtime.binary derives them
 * from the float path, so both give the same bits).
 * No Python object is seen below this header; the binding is xnor_module.c.
 */
#ifndef CNNZIP_XNOR_H
#define CNNZIP_XNOR_H

#include <stddef.h>
#include <stdint.h>

enum { CZ_PORTABLE = 0, CZ_AVX2 = 1, CZ_AVX512 = 2, CZ_NPATHS = 3 };

typedef struct {
    int n, c, h, w;                /* input, NCHW float32 */
    int cout, kh, kw, stride, pad; /* layer */
    int ho, wo;                    /* output */
    int use_k;                     /* multiply by XNOR-Net's K map */
    int in_bits;                   /* input is packed words [n][h][w][cw] (no K then) */
    int out_bits;                  /* output is packed words [n][ho][wo][ceil(cout / 64)] */
} cz_geom;

typedef struct {
    int n, c, h, w;       /* packed input words [n][h][w][cw] */
    int k, stride, pad;   /* square max-pool window, padding <= k / 2 */
    int ho, wo;           /* output (floor mode) */
} cz_pool;

/* Fill ho/wo; 0 on success, -1 when the shape is impossible. */
int cz_geom_init(cz_geom *g);

/* Whether this CPU runs `path`; the fastest path it runs. */
int cz_path_supported(int path);
int cz_best_path(void);

/* Kernel-specific copy of the packed weight words, made once per layer. */
size_t cz_prepared_size(int path, int cout, int c, int kh, int kw);
void cz_prepare(int path, const uint64_t *words, int cout, int c, int kh, int kw, uint8_t *blob);

/* out[n][cout][ho][wo] = transform(binary conv of sign(x) with the weights).
 * Returns 0, or -1 when scratch memory could not be allocated. */
int cz_conv2d(int path, const cz_geom *g, const float *x, const uint8_t *blob,
              const float *scale, const float *bias, float *out, int threads);

/* cz_conv2d with packed input (g->in_bits: x is uint64 words) and/or packed output
 * (g->out_bits: out is uint64 words, thresh = int32 [t[cout], flip[cout]], scale and
 * bias unused). Returns 0, -1 when out of memory, -2 for K with packed input. */
int cz_conv2d_ex(int path, const cz_geom *g, const void *x, const uint8_t *blob,
                 const float *scale, const float *bias, const int32_t *thresh, void *out,
                 int threads);

/* Fill ho/wo; 0 on success, -1 when the shape is impossible. */
int cz_pool_init(cz_pool *p);
/* Max-pool of packed activations. A bit is set where the next layer's sign decision is
 * -1. Where that decision can only fall as the value grows (ormask bit clear: the max is
 * -1 only if every value is), the pooled bit is the AND of the window's bits; where it
 * can only rise (ormask bit set), their OR. Padding takes no part.
 * ormask: cw words; out: [n][ho][wo][cw] words. */
void cz_pool_bits(const cz_pool *p, const uint64_t *in, const uint64_t *ormask, uint64_t *out);

/* ---- internals shared by the .c files ---- */
typedef void (*cz_range_fn)(void *ctx, int begin, int end, int thread);
/* Run fn over the items [0, nitems) on `threads` threads, each claiming one item at a
 * time: in the OpenMP pool torch already loaded when there is one, else on pthreads.
 * `thread` is in [0, threads). */
int cz_parallel(int threads, int nitems, cz_range_fn fn, void *ctx);

/* Binarize and pack image-major NCHW floats into padded NHWC bit planes:
 * layout 0: bytes of the words ([n][hp][wp][8*cw]); layout 1: one byte per
 * 4 channels holding 16 * nibble ([n][hp][wp][cg], cg = ceil(c / 4)).
 * `a` (may be NULL) receives mean |x| over channels per pixel ([n][h][w]).
 * Work items are chunks of 256 pixels of one image: [begin, end) of cz_pack_items(g).
 * The padding and the unused bits of dst must be zero beforehand. */
int cz_pack_items(const cz_geom *g);
void cz_pack_portable(const cz_geom *g, const float *x, uint8_t *dst, int layout, float *a,
                      int begin, int end);
void cz_pack_avx2(const cz_geom *g, const float *x, uint8_t *dst, int layout, float *a,
                  int begin, int end);
/* The same for packed input words [n][h][w][cw] (already signs; no mean |x|). */
void cz_unpack_bits(const cz_geom *g, const uint64_t *bits, uint8_t *dst, int layout, int begin,
                    int end);

#endif
