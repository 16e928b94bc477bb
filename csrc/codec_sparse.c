/* Relative indices (cnnzip.codec.sparse, which documents the format) expanded straight
 * into the dense tensor: symbol 2**p - 1 skips that many positions with no weight; any
 * other symbol s skips s and places the next kept weight. */
#include "codec.h"

int cc_expand(cc_syms gaps, size_t ngaps, int p, cc_syms codes, const float *values,
              size_t nvalues, size_t count, float *out, size_t size) {
    if (p < 1 || p > 16) return CC_GAPS;
    uint32_t skip = (1u << p) - 1;
    uint64_t next = 0; /* the position the next gap counts from */
    size_t k = 0;
    int one = !codes.p && nvalues == 1 && count != 1; /* one cluster: values[0] everywhere */
    if (!codes.p && !one && nvalues != count) return CC_GAPS;
    for (size_t i = 0; i < ngaps; i++) {
        uint32_t s = cc_get(gaps, i);
        if (s > skip) return CC_GAPS;
        if (s == skip) {
            next += skip;
            if (next > size) return CC_GAPS;
            continue;
        }
        uint64_t at = next + s;
        if (at >= size || k >= count) return CC_GAPS;
        size_t v = codes.p ? cc_get(codes, k) : one ? 0 : k;
        if (v >= nvalues) return CC_SYMBOL;
        out[at] = values[v];
        next = at + 1;
        k++;
    }
    /* every weight placed, and no filler after the last one */
    if (k != count || (ngaps && cc_get(gaps, ngaps - 1) == skip)) return CC_GAPS;
    return CC_OK;
}

int cc_histogram(cc_syms in, size_t n, int64_t *counts, size_t alphabet) {
    for (size_t s = 0; s < alphabet; s++) counts[s] = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t s = cc_get(in, i);
        if (s >= alphabet) return CC_SYMBOL;
        counts[s]++;
    }
    return CC_OK;
}
