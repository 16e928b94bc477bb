/* Canonical Huffman (cnnzip.codec.huffman, which documents the format): codewords are
 * read MSB first; a block of symbols starts at a stored bit offset. A codeword is found
 * through a table of the next LUT_BITS bits, or for a longer one by a binary search over
 * the left-justified codes, as the NumPy reference searches them all. */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define LUT_BITS 11
#define MAX_WIDTH 24

/* The `width` (<= 25) bits from bit `pos` of data[0..len), MSB first; zeros past the end. */
static inline uint32_t window(const uint8_t *data, size_t len, uint64_t pos, int width) {
    size_t byte = (size_t)(pos >> 3);
    uint32_t w;
    if (byte + 4 <= len) {
        w = ((uint32_t)data[byte] << 24) | ((uint32_t)data[byte + 1] << 16) |
            ((uint32_t)data[byte + 2] << 8) | data[byte + 3];
    } else {
        w = 0;
        for (size_t k = 0; k < 4; k++) w = (w << 8) | (byte + k < len ? data[byte + k] : 0);
    }
    return (w >> (32 - width - (pos & 7))) & ((1u << width) - 1);
}

/* Rank of the codeword that the `width`-bit window w starts with: the last lj <= w. */
static inline size_t rank_of(const int64_t *lj, size_t ncodes, uint32_t w) {
    size_t lo = 0, hi = ncodes; /* lj[0] = 0 <= w: the answer is in [0, ncodes) */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if ((uint64_t)lj[mid] <= w) lo = mid;
        else hi = mid;
    }
    return lo;
}

typedef struct {
    const int64_t *lj, *lens, *syms;
    size_t ncodes;
    int width, lut_bits;
    int32_t lut[1 << LUT_BITS]; /* rank of a codeword no longer than lut_bits, else -1 */
} code;

static int build_code(code *c, int wide) {
    if (c->ncodes < 1 || c->width < 1 || c->width > MAX_WIDTH || c->lj[0] != 0)
        return CC_HUFF_TABLE;
    for (size_t r = 0; r < c->ncodes; r++)
        if (c->lens[r] < 1 || c->syms[r] < 0 || c->syms[r] > (wide ? 0xFFFF : 0xFF) || c->lens[r] > c->width || c->lj[r] >= (1LL << c->width) ||
            (r && c->lj[r] <= c->lj[r - 1]))
            return CC_HUFF_TABLE;
    c->lut_bits = c->width < LUT_BITS ? c->width : LUT_BITS;
    int shift = c->width - c->lut_bits;
    for (uint32_t v = 0; v < (1u << c->lut_bits); v++) {
        size_t r = rank_of(c->lj, c->ncodes, v << shift);
        int unique = c->lens[r] <= c->lut_bits; /* the code is decided by these bits alone */
        c->lut[v] = unique ? (int32_t)r : -1;
    }
    return CC_OK;
}

static int decode_block(const uint8_t *body, size_t len, uint64_t start, uint64_t stop, size_t m,
                        int last, const code *c, cc_syms out, size_t at) {
    uint64_t pos = start;
    int shift = c->width - c->lut_bits;
    for (size_t i = 0; i < m; i++) {
        if (pos >= stop) return CC_HUFF_SHORT;
        uint32_t w = window(body, len, pos, c->width);
        int32_t r = c->lut[w >> shift];
        size_t rank = r >= 0 ? (size_t)r : rank_of(c->lj, c->ncodes, w);
        cc_put(out, at + i, (uint32_t)c->syms[rank]);
        pos += (uint64_t)c->lens[rank];
    }
    if (pos > stop) return CC_HUFF_SHORT;
    uint64_t spare = stop - pos; /* bits after the last codeword: zero padding of the end */
    if (spare >= (uint64_t)(last ? 8 : 1)) return CC_HUFF_SPARE;
    if (spare && window(body, len, pos, (int)spare)) return CC_HUFF_SPARE;
    return CC_OK;
}

int cc_huff_decode(const uint8_t *body, size_t len, const int64_t *bounds, size_t nblocks,
                   size_t block, size_t n, const int64_t *lj, const int64_t *lens,
                   const int64_t *syms, size_t ncodes, int width, cc_syms out) {
    code *c = malloc(sizeof *c);
    if (!c) return CC_NOMEM;
    *c = (code){.lj = lj, .lens = lens, .syms = syms, .ncodes = ncodes, .width = width};
    int rc = build_code(c, out.wide);
    for (size_t b = 0; rc == CC_OK && b < nblocks; b++) {
        if (bounds[b] < 0 || bounds[b + 1] < bounds[b] || (uint64_t)bounds[b + 1] > 8 * (uint64_t)len) {
            rc = CC_HUFF_SHORT;
            break;
        }
        size_t m = n - b * block < block ? n - b * block : block;
        rc = decode_block(body, len, (uint64_t)bounds[b], (uint64_t)bounds[b + 1], m,
                          b + 1 == nblocks, c, out, b * block);
    }
    free(c);
    return rc;
}

int cc_huff_encode(cc_syms in, size_t n, const int64_t *code_of, const int64_t *lens, size_t nsym,
                   size_t block, uint8_t *bits, uint32_t *offsets) {
    uint64_t pos = 0, acc = 0; /* acc: pending bits, `have` of them, MSB first */
    int have = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = cc_get(in, i);
        if (s >= nsym || lens[s] < 1 || lens[s] > MAX_WIDTH) return CC_SYMBOL;
        int l = (int)lens[s];
        acc = (acc << l) | ((uint64_t)code_of[s] & ((1u << l) - 1));
        have += l;
        pos += (uint64_t)l;
        while (have >= 8) {
            have -= 8;
            *bits++ = (uint8_t)(acc >> have);
        }
        acc &= (1u << have) - 1;
        if ((i + 1) % block == 0 && i + 1 < n) offsets[i / block] = (uint32_t)pos;
    }
    if (have) *bits = (uint8_t)(acc << (8 - have));
    return CC_OK;
}
