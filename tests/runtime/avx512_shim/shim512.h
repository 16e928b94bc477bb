/* Plain-C stand-ins for the AVX-512 intrinsics conv_avx512 uses, so that its
 * indexing and data layout run on a CPU without AVX-512. */
#include <stdint.h>
#include <string.h>
typedef struct { uint64_t v[8]; } shim_m512i;
static inline shim_m512i shim_setzero(void) { shim_m512i r = {{0}}; return r; }
static inline shim_m512i shim_loadu(const void *p) { shim_m512i r; memcpy(r.v, p, 64); return r; }
static inline void shim_storeu(void *p, shim_m512i a) { memcpy(p, a.v, 64); }
static inline shim_m512i shim_set1(long long x) {
    shim_m512i r;
    for (int i = 0; i < 8; i++) r.v[i] = (uint64_t)x;
    return r;
}
static inline shim_m512i shim_xor(shim_m512i a, shim_m512i b) {
    for (int i = 0; i < 8; i++) a.v[i] ^= b.v[i];
    return a;
}
static inline shim_m512i shim_add(shim_m512i a, shim_m512i b) {
    for (int i = 0; i < 8; i++) a.v[i] += b.v[i];
    return a;
}
static inline shim_m512i shim_popcnt(shim_m512i a) {
    for (int i = 0; i < 8; i++) a.v[i] = (uint64_t)__builtin_popcountll(a.v[i]);
    return a;
}
static inline uint8_t shim_cmpgt_mask(shim_m512i a, shim_m512i b) { /* signed lanes */
    uint8_t m = 0;
    for (int i = 0; i < 8; i++) m |= (uint8_t)((int64_t)a.v[i] > (int64_t)b.v[i]) << i;
    return m;
}
#define __m512i shim_m512i
#define _mm512_setzero_si512 shim_setzero
#define _mm512_loadu_si512 shim_loadu
#define _mm512_storeu_si512 shim_storeu
#define _mm512_set1_epi64 shim_set1
#define _mm512_xor_si512 shim_xor
#define _mm512_add_epi64 shim_add
#define _mm512_popcnt_epi64 shim_popcnt
#define _mm512_cmpgt_epi64_mask shim_cmpgt_mask
#define target(x) target("avx2")
