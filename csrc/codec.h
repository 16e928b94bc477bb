/* The .cnnz entropy coders and relative-index expansion in C (cnnzip._codec).
 *
 * Each function is the compiled twin of a NumPy reference in cnnzip.codec
 * (rans.py, huffman.py, sparse.py) and gives the same bytes / symbols / floats
 * bit for bit; the references stay the specification and the fallback. The
 * formats are described there. Every length read from a stream is checked
 * against the buffer holding it: corrupt input returns an error code, never
 * reads or writes out of bounds. Symbols are uint8 or uint16 (`wide` = 0 / 1),
 * the narrowest dtype of their alphabet. No Python object is seen below this
 * header; the binding is codec_module.c.
 */
#ifndef CNNZIP_CODEC_H
#define CNNZIP_CODEC_H

#include <stddef.h>
#include <stdint.h>

enum {
    CC_OK = 0,
    CC_NOMEM = 1,
    CC_RANS_SHORT,       /* shorter than its lane states */
    CC_RANS_VARINT,      /* word-count table truncated or a value over 4 bytes */
    CC_RANS_HALF_WORD,   /* ends in half a word */
    CC_RANS_COUNTS,      /* lane word counts exceed the stream */
    CC_RANS_END,         /* does not end where its symbols do */
    CC_RANS_TABLE,       /* frequencies do not sum to 2**16 */
    CC_SYMBOL,           /* a symbol outside the table, or of zero frequency */
    CC_HUFF_SHORT,       /* ends before all its symbols */
    CC_HUFF_SPARE,       /* bits to spare after the last symbol */
    CC_HUFF_TABLE,       /* code table is not canonical / too long */
    CC_GAPS,             /* relative indices run past the tensor or miscount */
    CC_NCODES
};

/* A symbol array: uint8 (wide = 0) or uint16 (wide = 1). */
typedef struct {
    void *p;
    int wide;
} cc_syms;

static inline uint32_t cc_get(cc_syms s, size_t i) {
    return s.wide ? ((const uint16_t *)s.p)[i] : ((const uint8_t *)s.p)[i];
}
static inline void cc_put(cc_syms s, size_t i, uint32_t v) {
    if (s.wide)
        ((uint16_t *)s.p)[i] = (uint16_t)v;
    else
        ((uint8_t *)s.p)[i] = (uint8_t)v;
}

/* rANS (cnnzip.codec.rans): freq[0..nsym) sums to 2**16. */
size_t cc_rans_lanes(size_t n);
/* Decode n symbols of `data` into out. */
int cc_rans_decode(const uint8_t *data, size_t len, size_t n, const int64_t *freq, size_t nsym,
                   cc_syms out);
/* Encode: states (6 * lanes bytes), per-lane word counts (lanes), words (<= n uint16 LE,
 * lane after lane); *nwords gets the word total. */
int cc_rans_encode(cc_syms in, size_t n, const int64_t *freq, size_t nsym, uint8_t *states,
                   int64_t *lane_words, uint16_t *words, size_t *nwords);

/* Canonical Huffman (cnnzip.codec.huffman). The code: `ncodes` codewords sorted by
 * (length, symbol), lj[r] left-justified to `width` bits, len[r], sym[r]. bounds: the
 * nblocks + 1 bit offsets of the blocks within `body` (checked by the caller to be
 * ascending and within it); block b holds min(block, n - b * block) symbols. */
int cc_huff_decode(const uint8_t *body, size_t len, const int64_t *bounds, size_t nblocks,
                   size_t block, size_t n, const int64_t *lj, const int64_t *lens,
                   const int64_t *syms, size_t ncodes, int width, cc_syms out);
/* Pack code[s] in len[s] bits (MSB first) for every symbol into `bits` (zeroed, big
 * enough for the total); offsets[k] = bits before symbol (k + 1) * block (nblocks - 1
 * of them, uint32 as the format stores them). */
int cc_huff_encode(cc_syms in, size_t n, const int64_t *code, const int64_t *lens, size_t nsym,
                   size_t block, uint8_t *bits, uint32_t *offsets);

/* Relative indices (cnnzip.codec.sparse) straight to a dense float32 tensor: the k-th
 * kept weight is values[codes[k]] (shared), values[k] (codes.p NULL, nvalues == count:
 * sparse) or values[0] (codes.p NULL, nvalues == 1: one cluster). out[size] must be
 * zeroed by the caller. */
int cc_expand(cc_syms gaps, size_t ngaps, int p, cc_syms codes, const float *values,
              size_t nvalues, size_t count, float *out, size_t size);

/* counts[s] = how often s occurs in in[0..n) (counts has `alphabet` entries); a symbol
 * at or past `alphabet` is an error. */
int cc_histogram(cc_syms in, size_t n, int64_t *counts, size_t alphabet);

#endif
