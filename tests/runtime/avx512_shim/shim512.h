/* Plain-C stand-ins for the AVX-512 intrinsics conv_avx512 uses, so that its
 * indexing and masking can run on a CPU without AVX-512. */
#include <stdint.h>
typedef struct { uint64_t v[8]; } shim_m512i;
typedef uint8_t shim_mask8;
static inline shim_m512i shim_setzero(void) { shim_m512i r = {{0}}; return r; }
static inline shim_m512i shim_maskz_loadu(shim_mask8 k, const void *p) {
    shim_m512i r = {{0}};
    for (int i = 0; i < 8; i++) if (k >> i & 1) r.v[i] = ((const uint64_t *)p)[i];
    return r;
}
static inline shim_m512i shim_xor(shim_m512i a, shim_m512i b) { for (int i = 0; i < 8; i++) a.v[i] ^= b.v[i]; return a; }
static inline shim_m512i shim_add(shim_m512i a, shim_m512i b) { for (int i = 0; i < 8; i++) a.v[i] += b.v[i]; return a; }
static inline shim_m512i shim_popcnt(shim_m512i a) { for (int i = 0; i < 8; i++) a.v[i] = (uint64_t)__builtin_popcountll(a.v[i]); return a; }
static inline long long shim_reduce(shim_m512i a) { long long s = 0; for (int i = 0; i < 8; i++) s += (long long)a.v[i]; return s; }
#define __m512i shim_m512i
#define __mmask8 shim_mask8
#define _mm512_setzero_si512 shim_setzero
#define _mm512_maskz_loadu_epi64 shim_maskz_loadu
#define _mm512_xor_si512 shim_xor
#define _mm512_add_epi64 shim_add
#define _mm512_popcnt_epi64 shim_popcnt
#define _mm512_reduce_add_epi64 shim_reduce
#define target(x) target("avx2")
