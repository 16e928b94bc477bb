/* Binary convolution kernels, run-time dispatch, threads (see xnor.h). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* RTLD_NOLOAD, dl_iterate_phdr */
#endif
#include <dlfcn.h>
#ifdef __linux__
#include <link.h>
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "xnor.h"

#if defined(__x86_64__) /* the AVX2 kernel is x86-64 assembly; 32-bit x86 runs portable C */
#include <immintrin.h>
#define CZ_X86 1
#endif

#define WIDTH 32  /* output channels per AVX2 vector (one byte each) */
#define SUPER 4   /* vectors of output channels per AVX2 register block */
#define FLUSH 63  /* byte counters hold 63 table lookups of at most 4 each */
#define BLOCK512 32 /* output channels per AVX-512 item: 4 vectors of 8 64-bit lanes */
#define PIX512 6    /* output pixels per AVX-512 register block (24 accumulators) */

int cz_geom_init(cz_geom *g) {
    if (g->n < 1 || g->c < 1 || g->cout < 1 || g->kh < 1 || g->kw < 1 || g->stride < 1 ||
        g->pad < 0)
        return -1;
    g->ho = (g->h + 2 * g->pad - g->kh) / g->stride + 1;
    g->wo = (g->w + 2 * g->pad - g->kw) / g->stride + 1;
    return (g->h + 2 * g->pad >= g->kh && g->w + 2 * g->pad >= g->kw) ? 0 : -1;
}

int cz_path_supported(int path) {
#ifdef CZ_X86
    __builtin_cpu_init();
    if (path == CZ_AVX512)
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vpopcntdq");
    if (path == CZ_AVX2) return __builtin_cpu_supports("avx2");
#endif
    return path == CZ_PORTABLE;
}

int cz_best_path(void) {
    for (int p = CZ_NPATHS - 1; p > 0; p--)
        if (cz_path_supported(p)) return p;
    return CZ_PORTABLE;
}

/* ---------------------------------------------------------------- threads */

/* Items are claimed one at a time from a shared counter rather than split into
 * fixed shares: a thread slowed down by something else on its core (typically
 * torch's OpenMP workers, which spin for a while after each torch op) then just
 * does fewer items, instead of making every call wait for its share. */
typedef struct {
    cz_range_fn fn;
    void *ctx;
    int nitems;
    atomic_int next; /* the first unclaimed item */
} cz_queue;

typedef struct {
    cz_queue *queue;
    int thread;
} cz_worker;

static void *drain(void *arg) {
    cz_worker *w = (cz_worker *)arg;
    cz_queue *q = w->queue;
    for (int i; (i = atomic_fetch_add(&q->next, 1)) < q->nitems;) q->fn(q->ctx, i, i + 1, w->thread);
    return NULL;
}

/* torch's OpenMP runtime, when the process has one loaded: running our threads in
 * its pool means its workers, still spinning after the last torch op, take our
 * items instead of competing with our own threads for the cores. GOMP_parallel
 * is the entry point of `#pragma omp parallel` in libgomp, and LLVM's and
 * Intel's runtimes export it too. */
typedef void (*gomp_parallel_fn)(void (*)(void *), void *, unsigned, unsigned);
static gomp_parallel_fn gomp_parallel;
static int (*gomp_thread_num)(void);
static pthread_once_t gomp_once = PTHREAD_ONCE_INIT;

/* A forked child cannot use the parent's OpenMP pool (libgomp hangs): it falls back
 * to pthreads. */
static void forget_openmp(void) { gomp_parallel = NULL; }

/* Take GOMP_parallel from `lib` (a handle of an already loaded library); 0 if absent. */
static int use_openmp(void *lib) {
    if (!lib) return 0;
    gomp_parallel = (gomp_parallel_fn)dlsym(lib, "GOMP_parallel");
    *(void **)&gomp_thread_num = dlsym(lib, "omp_get_thread_num");
    if (!gomp_parallel || !gomp_thread_num) gomp_parallel = NULL;
    return gomp_parallel != NULL;
}

static int is_openmp_name(const char *path) {
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    return !strncmp(base, "libgomp", 7) || !strncmp(base, "libiomp5", 8) || !strncmp(base, "libomp", 6);
}

#ifdef __linux__
/* Wheels may ship the runtime renamed (libgomp-<hash>.so.1): look at every loaded object. */
static int loaded_openmp(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size, (void)data;
    if (!info->dlpi_name || !is_openmp_name(info->dlpi_name)) return 0;
    return use_openmp(dlopen(info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD));
}
#endif

static void find_openmp(void) {
    const char *names[] = {"libgomp.so.1", "libiomp5.so", "libomp.so", "libomp.dylib"};
    pthread_atfork(NULL, NULL, forget_openmp);
#ifdef __linux__
    if (dl_iterate_phdr(loaded_openmp, NULL)) return;
#endif
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) /* RTLD_NOLOAD: only if loaded */
        if (use_openmp(dlopen(names[i], RTLD_LAZY | RTLD_NOLOAD))) return;
}

static void drain_omp(void *arg) {
    cz_worker w = {(cz_queue *)arg, gomp_thread_num()};
    drain(&w);
}

int cz_parallel(int threads, int nitems, cz_range_fn fn, void *ctx) {
    if (threads > nitems) threads = nitems;
    if (threads > 256) threads = 256;
    if (threads <= 1) {
        if (nitems > 0) fn(ctx, 0, nitems, 0);
        return 0;
    }
    cz_queue queue = {.fn = fn, .ctx = ctx, .nitems = nitems};
    atomic_init(&queue.next, 0);
    pthread_once(&gomp_once, find_openmp);
    if (gomp_parallel) {
        gomp_parallel(drain_omp, &queue, (unsigned)threads, 0);
        return 0;
    }
    cz_worker workers[256];
    pthread_t ids[256];
    int started[256] = {0};
    for (int t = 0; t < threads; t++) workers[t] = (cz_worker){&queue, t};
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, drain, &workers[t]) == 0;
    drain(&workers[0]); /* threads that could not start leave their items to this one */
    for (int t = 1; t < threads; t++)
        if (started[t]) pthread_join(ids[t], NULL);
    return 0;
}

/* ---------------------------------------------------------------- weights */

static int cw_of(int c) { return (c + 63) / 64; }
static int cg_of(int c) { return (c + 3) / 4; }

size_t cz_prepared_size(int path, int cout, int c, int kh, int kw) {
    if (path == CZ_AVX2) /* [vectors][kh][kw][cg][32] nibbles, one per byte; whole super
                            blocks of SUPER vectors, zero past cout */
        return (size_t)((cout + SUPER * WIDTH - 1) / (SUPER * WIDTH)) * SUPER * kh * kw *
               cg_of(c) * WIDTH;
    if (path == CZ_AVX512) /* [cout / 32][kh][kw][cw][32] words, zero past cout */
        return (size_t)((cout + BLOCK512 - 1) / BLOCK512) * BLOCK512 * kh * kw * cw_of(c) * 8;
    return (size_t)cout * kh * kw * cw_of(c) * 8; /* the words themselves */
}

void cz_prepare(int path, const uint64_t *words, int cout, int c, int kh, int kw, uint8_t *blob) {
    size_t cw = cw_of(c), cg = cg_of(c), taps = (size_t)kh * kw;
    memset(blob, 0, cz_prepared_size(path, cout, c, kh, kw));
    if (path == CZ_AVX512) { /* a vector: one word of 8 output channels */
        uint64_t *out = (uint64_t *)blob;
        for (int co = 0; co < cout; co++)
            for (size_t i = 0; i < taps * cw; i++) /* i: tap and word */
                out[((size_t)(co / BLOCK512) * taps * cw + i) * BLOCK512 + co % BLOCK512] =
                    words[(size_t)co * taps * cw + i];
        return;
    }
    if (path != CZ_AVX2) {
        memcpy(blob, words, cz_prepared_size(path, cout, c, kh, kw));
        return;
    }
    for (int co = 0; co < cout; co++)
        for (size_t t = 0; t < taps; t++)
            for (size_t q = 0; q < cg; q++) {
                uint64_t word = words[((size_t)co * taps + t) * cw + q / 16];
                size_t at = (((size_t)(co / WIDTH) * taps + t) * cg + q) * WIDTH + co % WIDTH;
                blob[at] = (uint8_t)((word >> (4 * (q % 16))) & 15);
            }
}

/* ---------------------------------------------------------------- shared */

typedef struct {
    const cz_geom *g;
    const float *x;
    const uint64_t *xbits; /* packed input, or NULL */
    const int32_t *thresh; /* packed output: t[cout], flip[cout] */
    uint32_t *obits;       /* packed output as 32-bit halves of its words, or NULL */
    uint16_t *thr16;       /* AVX2 packed output: per vector, pop >= thr16 in counter order */
    int64_t *below64;      /* AVX-512 packed output: per channel, pop > below64 */
    uint32_t *flip32, *valid32; /* packed output: per 32 channels, in channel order */
    const uint8_t *blob;
    const float *scale, *bias, *kmap; /* kmap: [n][ho][wo] or NULL */
    float *out;
    uint8_t *act; /* padded NHWC planes */
    float *amap;  /* [n][h][w] mean |x| or NULL */
    int layout, path;
    size_t pb;    /* bytes per padded pixel */
    int nsuper;   /* AVX2, AVX-512: blocks of output channels per item */
    uint16_t **acc; /* AVX2: per-thread [wo8][SUPER * WIDTH] counters */
    uint16_t *pairs; /* AVX2: LUT2 offsets of pixel pairs, laid out as act */
    int32_t **pop;   /* AVX-512: per-thread [BLOCK512][wo] popcounts, then dots */
    int failed;     /* a thread could not allocate its scratch */
} conv_ctx;

static int hp_of(const cz_geom *g) { return g->h + 2 * g->pad; }
static int wp_of(const cz_geom *g) { return g->w + 2 * g->pad; }

/* Channel co's packed-output decision on the popcount of a XOR w: bit = (pop >= P) XOR
 * flip (dot < t <=> total - 2 pop < t <=> pop >= floor((total - t) / 2) + 1), with
 * "never" turned into "always" and the flip inverted, so that 0 <= P <= total < 2^16. */
static uint16_t pop_threshold(const conv_ctx *cx, int co, uint32_t *flip) {
    const cz_geom *g = cx->g;
    long long total = (long long)g->c * g->kh * g->kw, u = total - cx->thresh[co];
    long long p = (u >= 0 ? u / 2 : -((1 - u) / 2)) + 1; /* floor(u / 2) + 1 */
    *flip = cx->thresh[g->cout + co] != 0;
    if (p > total) p = 0, *flip ^= 1; /* never set: always set, flipped */
    return (uint16_t)(p < 0 ? 0 : p);
}

/* 32-bit halves of the words of one output pixel. */
static size_t out_halves(const cz_geom *g) { return 2 * (size_t)((g->cout + 63) / 64); }

/* Packed output of one channel's row of dots: bit = (dot < t) XOR flip. The item owns
 * the channel's 32-bit half of each word (blocks of channels are multiples of 32). */
static void emit_bits_row(const conv_ctx *cx, int n, int co, int oy, const int32_t *dot) {
    const cz_geom *g = cx->g;
    int32_t t = cx->thresh[co], flip = cx->thresh[g->cout + co] != 0;
    size_t step = out_halves(g);
    uint32_t *o = cx->obits + ((size_t)n * g->ho + oy) * g->wo * step + co / 32;
    for (int ox = 0; ox < g->wo; ox++) /* branchless: the decisions are coin flips */
        o[ox * step] |= (uint32_t)((dot[ox] < t) != flip) << (co % 32);
}

/* The output transform of one channel's row of dots. */
static inline void emit_row(const conv_ctx *cx, int n, int co, int oy, const int32_t *dot) {
    const cz_geom *g = cx->g;
    if (cx->obits) {
        emit_bits_row(cx, n, co, oy, dot);
        return;
    }
    float s = cx->scale[co], b = cx->bias[co];
    float *o = cx->out + (((size_t)n * g->cout + co) * g->ho + oy) * g->wo;
    const float *k = cx->kmap ? cx->kmap + ((size_t)n * g->ho + oy) * g->wo : NULL;
    for (int ox = 0; ox < g->wo; ox++) {
        float y = (float)dot[ox];
        if (k) y = y * k[ox];
        o[ox] = y * s + b;
    }
}

static void pack_range(void *p, int begin, int end, int thread) {
    conv_ctx *cx = (conv_ctx *)p;
    (void)thread;
    if (cx->xbits)
        cz_unpack_bits(cx->g, cx->xbits, cx->act, cx->layout, begin, end);
    else if (cx->path == CZ_PORTABLE)
        cz_pack_portable(cx->g, cx->x, cx->act, cx->layout, cx->amap, begin, end);
    else
        cz_pack_avx2(cx->g, cx->x, cx->act, cx->layout, cx->amap, begin, end);
}

/* K = box filter of the mean-|x| map over each window, zero padded (XNOR-Net's K = A * k). */
static void k_map(const cz_geom *g, const float *a, float *k) {
    for (int n = 0; n < g->n; n++)
        for (int oy = 0; oy < g->ho; oy++)
            for (int ox = 0; ox < g->wo; ox++) {
                float s = 0.0f;
                for (int ky = 0; ky < g->kh; ky++)
                    for (int kx = 0; kx < g->kw; kx++) {
                        int y = oy * g->stride + ky - g->pad, x = ox * g->stride + kx - g->pad;
                        if (y >= 0 && y < g->h && x >= 0 && x < g->w)
                            s += a[((size_t)n * g->h + y) * g->w + x];
                    }
                k[((size_t)n * g->ho + oy) * g->wo + ox] = s / (float)(g->kh * g->kw);
            }
}

/* ---------------------------------------------------------------- portable */

static inline int popcount64(uint64_t v) { return __builtin_popcountll(v); }

/* Items: (n, oy). Words layout; one output channel at a time. */
static void conv_portable(void *p, int begin, int end, int thread) {
    conv_ctx *cx = (conv_ctx *)p;
    const cz_geom *g = cx->g;
    const uint64_t *act = (const uint64_t *)cx->act, *wt = (const uint64_t *)cx->blob;
    size_t cw = cw_of(g->c), len = (size_t)g->kw * cw;
    int32_t total = g->c * g->kh * g->kw, *dot = malloc(sizeof(int32_t) * g->wo);
    (void)thread;
    if (!dot) {
        cx->failed = 1;
        return;
    }
    for (int item = begin; item < end; item++) {
        int n = item / g->ho, oy = item % g->ho;
        for (int co = 0; co < g->cout; co++) {
            for (int ox = 0; ox < g->wo; ox++) {
                int pop = 0;
                for (int ky = 0; ky < g->kh; ky++) {
                    const uint64_t *a =
                        act + (((size_t)n * hp_of(g) + oy * g->stride + ky) * wp_of(g) +
                               (size_t)ox * g->stride) * cw;
                    const uint64_t *w = wt + ((size_t)co * g->kh + ky) * len;
                    for (size_t j = 0; j < len; j++) pop += popcount64(a[j] ^ w[j]);
                }
                dot[ox] = total - 2 * pop;
            }
            emit_row(cx, n, co, oy, dot);
        }
    }
    free(dot);
}

#ifdef CZ_X86
/* ---------------------------------------------------------------- AVX2
 * Table lookup instead of popcount, two output pixels per lookup: row p of
 * LUT2 holds, for the 4-channel nibbles a = p & 15 (pixel A) and b = p >> 4
 * (pixel B) of two input pixels, popcount(a ^ w) + 16 * popcount(b ^ w) for
 * the 16 possible weight nibbles w. One VPSHUFB on 32 output channels' weight
 * nibbles then gives 2 pixels x 32 output channels x 4 input channels (256
 * bit-products). */
static uint8_t LUT2[256 * 16] __attribute__((aligned(16)));
static pthread_once_t lut2_once = PTHREAD_ONCE_INIT;

static void fill_lut2(void) {
    for (int p = 0; p < 256; p++)
        for (int w = 0; w < 16; w++)
            LUT2[p * 16 + w] =
                (uint8_t)(__builtin_popcount((p & 15) ^ w) + 16 * __builtin_popcount((p >> 4) ^ w));
}

/* Offsets into LUT2 of output pixel pairs: pair[x] = 16 * nibble(x) + 256 * nibble(x + s),
 * for every padded pixel x and 4-channel group (the nibble of a pixel past the row is 0). */
static void pair_offsets(const cz_geom *g, const uint8_t *act, size_t cg, uint16_t *pair) {
    size_t rows = (size_t)g->n * hp_of(g), wp = wp_of(g), s = g->stride;
    for (size_t r = 0; r < rows; r++)
        for (size_t x = 0; x < wp; x++) {
            const uint8_t *a = act + (r * wp + x) * cg, *b = a + s * cg;
            uint16_t *o = pair + (r * wp + x) * cg;
            for (size_t q = 0; q < cg; q++) o[q] = (uint16_t)(a[q] + (x + s < wp ? 16 * b[q] : 0));
        }
}

/* The hot 2 x 4 block, written as one assembly loop because it is bound by
 * loads (two per cycle): each step is one table broadcast and four weight
 * vectors straight from memory, with the pair offsets read in the loop.
 * Registers: ymm0-3 the packed counters q of the 4 weight vectors over a group
 * of 3 steps (a + 16 b per byte, at most 12 + 16 * 12), ymm4-7 their window
 * sums S = sum q, ymm8-11 B = sum (q >> 4) (16-bit shifts: an even byte also
 * receives 16 times its odd neighbour's a), ymm12 the table, ymm14-15 scratch.
 * S and B wrap mod 256; unpair() recovers a and b exactly because their
 * window sums stay below 256 (FLUSH steps). */
#define CZ_BCAST(OFF) "movzwl " OFF "(%[p]), %%eax\n\t vbroadcasti128 (%[lut],%%rax), %%ymm12\n\t"
#define CZ_FIRST                                                      \
    "vpshufb (%[wp]), %%ymm12, %%ymm0\n\t"                              \
    "vpshufb (%[wp],%[w1]), %%ymm12, %%ymm1\n\t"                        \
    "vpshufb (%[wp],%[w1],2), %%ymm12, %%ymm2\n\t"                      \
    "vpshufb (%[wp],%[w3]), %%ymm12, %%ymm3\n\t"
#define CZ_NEXT(OFF)                                                  \
    "vpshufb " OFF "(%[wp]), %%ymm12, %%ymm14\n\t"                      \
    "vpaddb %%ymm14, %%ymm0, %%ymm0\n\t"                               \
    "vpshufb " OFF "(%[wp],%[w1]), %%ymm12, %%ymm15\n\t"                \
    "vpaddb %%ymm15, %%ymm1, %%ymm1\n\t"                               \
    "vpshufb " OFF "(%[wp],%[w1],2), %%ymm12, %%ymm14\n\t"              \
    "vpaddb %%ymm14, %%ymm2, %%ymm2\n\t"                               \
    "vpshufb " OFF "(%[wp],%[w3]), %%ymm12, %%ymm15\n\t"                \
    "vpaddb %%ymm15, %%ymm3, %%ymm3\n\t"
#define CZ_FOLD(Q, S, B, T)                                           \
    "vpaddb %%ymm" Q ", %%ymm" S ", %%ymm" S "\n\t"                    \
    "vpsrlw $4, %%ymm" Q ", %%ymm" T "\n\t"                            \
    "vpaddb %%ymm" T ", %%ymm" B ", %%ymm" B "\n\t"
#define CZ_FOLD_ALL                                                   \
    CZ_FOLD("0", "4", "8", "14") CZ_FOLD("1", "5", "9", "15")         \
    CZ_FOLD("2", "6", "10", "14") CZ_FOLD("3", "7", "11", "15")

/* Add the window sums of weight vector M to the 16-bit counters of pixel A (acc) and
 * pixel B (%rax): per byte k, B_k = b_k + 16 a_{k+1} for even k and b_k for odd k,
 * so a = S - 16 B (mod 256) for every k and b_k = B_k - 16 a_{k+1} for even k.
 * Counters in unpack order (see lane_channel). Needs ymm12 = 0, ymm13 = 0xF0 bytes,
 * ymm14 = 0xFF00 words, ymm15 = 0x00FF words; uses ymm0-3; zeroes S and B. */
#define CZ_UNPAIR(M, S, B)                                                     \
    "vpsllw $4, %%ymm" B ", %%ymm0\n\t vpand %%ymm13, %%ymm0, %%ymm0\n\t"        \
    "vpsubb %%ymm0, %%ymm" S ", %%ymm0\n\t"                /* a */               \
    "vpand %%ymm14, %%ymm0, %%ymm1\n\t vpsrlw $4, %%ymm1, %%ymm1\n\t"            \
    "vpand %%ymm15, %%ymm1, %%ymm1\n\t vpsubb %%ymm1, %%ymm" B ", %%ymm1\n\t" /* b */ \
    "vpunpcklbw %%ymm12, %%ymm0, %%ymm2\n\t vpaddw " M "(%[acc]), %%ymm2, %%ymm2\n\t" \
    "vmovdqu %%ymm2, " M "(%[acc])\n\t"                                            \
    "vpunpckhbw %%ymm12, %%ymm0, %%ymm3\n\t vpaddw " M "+32(%[acc]), %%ymm3, %%ymm3\n\t" \
    "vmovdqu %%ymm3, " M "+32(%[acc])\n\t"                                         \
    "vpunpcklbw %%ymm12, %%ymm1, %%ymm2\n\t vpaddw " M "(%%rax), %%ymm2, %%ymm2\n\t" \
    "vmovdqu %%ymm2, " M "(%%rax)\n\t"                                             \
    "vpunpckhbw %%ymm12, %%ymm1, %%ymm3\n\t vpaddw " M "+32(%%rax), %%ymm3, %%ymm3\n\t" \
    "vmovdqu %%ymm3, " M "+32(%%rax)\n\t"                                          \
    "vpxor %%xmm" S ", %%xmm" S ", %%xmm" S "\n\t vpxor %%xmm" B ", %%xmm" B ", %%xmm" B "\n\t"

static const uint16_t UNPAIR_MASKS[3][16] __attribute__((aligned(32))) = {
    {0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0,
     0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0, 0xF0F0},
    {0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00,
     0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00, 0xFF00},
    {0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF,
     0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF, 0x00FF}};

/* `npairs` pixel pairs x 4 vectors of 32 output channels over one window of `steps`
 * (<= FLUSH) steps: pair i's table offsets at pa + i * pstep, its counters at
 * acc + i * 2 * accstep (pixel A) and + accstep (pixel B). w: the window's weight
 * nibbles of the first vector (next vector at +wvec), the same for every pair, so
 * they stay in L1 across the row. */
__attribute__((target("avx2"))) static void kern_pairs4(const uint16_t *pa, size_t pstep,
                                                        int npairs, const uint8_t *w,
                                                        size_t wvec, int steps, uint16_t *acc,
                                                        size_t accstep) {
    size_t groups = (size_t)steps / 3, rest = (size_t)steps % 3, w3 = 3 * wvec;
    size_t pbytes = 2 * pstep, bbytes = 2 * accstep, abytes = 4 * accstep, g, r;
    int64_t left = npairs;
    const uint8_t *wp;
    const uint16_t *p;
    if (npairs < 1) return;
    __asm__ volatile(
        "vpxor %%xmm4, %%xmm4, %%xmm4\n\t vmovdqa %%ymm4, %%ymm5\n\t vmovdqa %%ymm4, %%ymm6\n\t"
        "vmovdqa %%ymm4, %%ymm7\n\t vmovdqa %%ymm4, %%ymm8\n\t vmovdqa %%ymm4, %%ymm9\n\t"
        "vmovdqa %%ymm4, %%ymm10\n\t vmovdqa %%ymm4, %%ymm11\n"
        "0:\n\t mov %[pa], %[p]\n\t mov %[w], %[wp]\n\t mov %[groups], %[g]\n\t mov %[rest], %[r]\n\t"
        "test %[g], %[g]\n\t jz 2f\n"
        "1:\n\t" CZ_BCAST("0") CZ_FIRST CZ_BCAST("2") CZ_NEXT("32") CZ_BCAST("4") CZ_NEXT("64")
        CZ_FOLD_ALL
        "add $96, %[wp]\n\t add $6, %[p]\n\t dec %[g]\n\t jnz 1b\n"
        "2:\n\t test %[r], %[r]\n\t jz 4f\n"
        "3:\n\t" CZ_BCAST("0") CZ_FIRST CZ_FOLD_ALL
        "add $32, %[wp]\n\t add $2, %[p]\n\t dec %[r]\n\t jnz 3b\n"
        "4:\n\t"
        "vpxor %%xmm12, %%xmm12, %%xmm12\n\t vmovdqa %[m0], %%ymm13\n\t"
        "vmovdqa %[m1], %%ymm14\n\t vmovdqa %[m2], %%ymm15\n\t"
        "mov %[acc], %%rax\n\t add %[bbytes], %%rax\n\t"
        CZ_UNPAIR("0", "4", "8") CZ_UNPAIR("64", "5", "9") CZ_UNPAIR("128", "6", "10")
        CZ_UNPAIR("192", "7", "11")
        "add %[abytes], %[acc]\n\t add %[pbytes], %[pa]\n\t decq %[left]\n\t jnz 0b\n\t"
        : [pa] "+r"(pa), [acc] "+r"(acc), [left] "+m"(left), [p] "=&r"(p), [wp] "=&r"(wp),
          [g] "=&r"(g), [r] "=&r"(r)
        : [w] "m"(w), [w1] "r"(wvec), [w3] "r"(w3), [lut] "r"(LUT2), [groups] "m"(groups),
          [rest] "m"(rest), [pbytes] "m"(pbytes), [bbytes] "m"(bbytes), [abytes] "m"(abytes),
          [m0] "m"(UNPAIR_MASKS[0]), [m1] "m"(UNPAIR_MASKS[1]), [m2] "m"(UNPAIR_MASKS[2])
        : "rax", "cc", "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6",
          "xmm7", "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#undef CZ_BCAST
#undef CZ_FIRST
#undef CZ_NEXT
#undef CZ_FOLD
#undef CZ_FOLD_ALL
#undef CZ_UNPAIR

/* Counter k of a 32-channel vector holds channel lane_channel(k) (unpack order). */
static inline int lane_channel(int k) { return k < 8 ? k : k < 16 ? k + 8 : k < 24 ? k - 8 : k; }

/* Output pixels rounded up to whole blocks of 8: the rows of the AVX2 counters. */
static int wo8(const cz_geom *g) { return (g->wo + 7) / 8 * 8; }

/* Transpose 8x8 floats: r[i] lane j -> r[j] lane i. */
__attribute__((target("avx2"))) static inline void transpose8x8(__m256 r[8]) {
    __m256 t[8], s[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        s[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        s[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        s[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        s[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(s[i], s[i + 4], 0x31);
    }
}

/* The output transform (as emit_row, same float operations in the same order) of one
 * output row's counters, 8 channels x 8 pixels at a time: counters are pixel-major
 * ([ox][32 * m + k]), the output channel-major, hence the transpose. */
__attribute__((target("avx2"))) static void emit_avx2(const conv_ctx *cx, int n, int oy, int v0,
                                                      int mv, const uint16_t *acc,
                                                      size_t accstep) {
    const cz_geom *g = cx->g;
    const __m256i total = _mm256_set1_epi32(g->c * g->kh * g->kw);
    const float *k = cx->kmap ? cx->kmap + ((size_t)n * g->ho + oy) * g->wo : NULL;
    for (int m = 0; m < mv; m++)
        for (int k0 = 0; k0 < WIDTH; k0 += 8) { /* counters k0..k0+7: 8 channels in a row */
            int co0 = (v0 + m) * WIDTH + lane_channel(k0);
            if (co0 >= g->cout) continue;
            for (int ox0 = 0; ox0 < g->wo; ox0 += 8) {
                int nx = g->wo - ox0 < 8 ? g->wo - ox0 : 8;
                __m256 r[8], kv = _mm256_setzero_ps();
                if (k) {
                    float kbuf[8] = {0};
                    memcpy(kbuf, k + ox0, sizeof(float) * nx);
                    kv = _mm256_loadu_ps(kbuf);
                }
                for (int i = 0; i < 8; i++) { /* r[i]: pixel ox0 + i, lanes = channels */
                    const uint16_t *c = acc + (size_t)(ox0 + i) * accstep + m * 32 + k0;
                    __m256i cnt = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)c));
                    r[i] = _mm256_cvtepi32_ps(_mm256_sub_epi32(total, _mm256_add_epi32(cnt, cnt)));
                }
                transpose8x8(r); /* r[j]: channel co0 + j, lanes = pixels */
                for (int j = 0; j < 8 && co0 + j < g->cout; j++) {
                    __m256 y = k ? _mm256_mul_ps(r[j], kv) : r[j];
                    y = _mm256_add_ps(_mm256_mul_ps(y, _mm256_set1_ps(cx->scale[co0 + j])),
                                      _mm256_set1_ps(cx->bias[co0 + j]));
                    float *o = cx->out + (((size_t)n * g->cout + co0 + j) * g->ho + oy) * g->wo;
                    if (nx == 8) {
                        _mm256_storeu_ps(o + ox0, y);
                    } else { /* the row's last pixels (masked stores are slow on AMD) */
                        float part[8];
                        _mm256_storeu_ps(part, y);
                        memcpy(o + ox0, part, sizeof(float) * nx);
                    }
                }
            }
        }
}

/* Packed output of one output row's counters: per pixel and vector of 32 channels,
 * pop >= thr16 (unsigned 16-bit compare), packed to bytes in channel order (the
 * 128-bit lanes of PACKSSWB undo the counters' unpack order), XOR flip, AND valid. */
__attribute__((target("avx2"))) static void emit_bits_avx2(const conv_ctx *cx, int n, int oy,
                                                           int v0, int mv, const uint16_t *acc,
                                                           size_t accstep) {
    const cz_geom *g = cx->g;
    size_t step = out_halves(g);
    uint32_t *o = cx->obits + ((size_t)n * g->ho + oy) * g->wo * step;
    for (int m = 0; m < mv; m++) {
        int v = v0 + m;
        __m256i t0 = _mm256_loadu_si256((const __m256i *)(cx->thr16 + 32 * v));
        __m256i t1 = _mm256_loadu_si256((const __m256i *)(cx->thr16 + 32 * v + 16));
        uint32_t flip = cx->flip32[v], valid = cx->valid32[v];
        for (int ox = 0; ox < g->wo; ox++) {
            const uint16_t *c = acc + (size_t)ox * accstep + 32 * m;
            __m256i a0 = _mm256_loadu_si256((const __m256i *)c);
            __m256i a1 = _mm256_loadu_si256((const __m256i *)(c + 16));
            __m256i ge0 = _mm256_cmpeq_epi16(_mm256_max_epu16(a0, t0), a0);
            __m256i ge1 = _mm256_cmpeq_epi16(_mm256_max_epu16(a1, t1), a1);
            uint32_t word = (uint32_t)_mm256_movemask_epi8(_mm256_packs_epi16(ge0, ge1));
            o[(size_t)ox * step + v] = (word ^ flip) & valid;
        }
    }
}

/* Per 32 output channels, once per call: pop >= P (see pop_threshold) as AVX2's 16-bit
 * thr16 in counter order, or AVX-512's 64-bit below64 = P - 1 in channel order; the
 * flips and the channels that exist. The arrays are zeroed, 32 entries per block. */
static void bits_thresholds(conv_ctx *cx) {
    for (int co = 0; co < cx->g->cout; co++) {
        uint32_t flip;
        int v = co / 32, j = co % 32;
        uint16_t p = pop_threshold(cx, co, &flip);
        if (cx->thr16) cx->thr16[32 * v + lane_channel(j)] = p; /* lane_channel: an involution */
        else cx->below64[co] = (int64_t)p - 1;
        cx->flip32[v] |= flip << j;
        cx->valid32[v] |= 1u << j;
    }
}

/* Items: (n, oy, block of SUPER vectors of output channels). Every output pixel
 * is in a pair (an odd row's last pair has a pixel B past the row, computed into
 * the spare counters of wo8 and never emitted). */
__attribute__((target("avx2"))) static void conv_avx2(void *p, int begin, int end, int thread) {
    conv_ctx *cx = (conv_ctx *)p;
    const cz_geom *g = cx->g;
    size_t cg = cx->pb, len = (size_t)g->kw * cg, wvec = (size_t)g->kh * len * WIDTH;
    size_t astep = (size_t)g->stride * cg, row = (size_t)wp_of(g) * cg;
    size_t accstep = SUPER * WIDTH;
    int nvec = (g->cout + WIDTH - 1) / WIDTH, npairs = (g->wo + 1) / 2;
    uint16_t *acc = cx->acc[thread];
    for (int item = begin; item < end; item++) {
        int sb = item % cx->nsuper, oy = (item / cx->nsuper) % g->ho;
        int n = item / cx->nsuper / g->ho, v0 = sb * SUPER;
        memset(acc, 0, sizeof(uint16_t) * wo8(g) * accstep);
        for (int ky = 0; ky < g->kh; ky++) {
            const uint16_t *pa =
                cx->pairs + ((size_t)n * hp_of(g) + (size_t)oy * g->stride + ky) * row;
            /* this window's weights (4 x 32 B per step) stay in L1 across the row */
            const uint8_t *w = cx->blob + (size_t)v0 * wvec + ky * len * WIDTH;
            for (size_t j0 = 0; j0 < len; j0 += FLUSH) {
                int steps = (int)(len - j0 < FLUSH ? len - j0 : FLUSH);
                kern_pairs4(pa + j0, 2 * astep, npairs, w + j0 * WIDTH, wvec, steps, acc, accstep);
            }
        }
        int mv = nvec - v0 < SUPER ? nvec - v0 : SUPER;
        if (cx->obits)
            emit_bits_avx2(cx, n, oy, v0, mv, acc, accstep);
        else
            emit_avx2(cx, n, oy, v0, mv, acc, accstep);
    }
}

/* ---------------------------------------------------------------- AVX-512
 * Words layout with the output channels across the lanes: a weight vector holds
 * one 64-bit word of 8 output channels (same tap, same word), an activation word
 * is broadcast, and XOR + VPOPCNTQ + add count 8 channels x 64 inputs in three
 * instructions, with no horizontal sums. PIX512 output pixels x 32 output
 * channels keep 24 accumulators in registers; the block's weights (taps x words x
 * 256 B) stay in L1 across the row. Items: (n, oy, block of 32 output channels). */

/* Named accumulators (GCC keeps arrays of vectors on the stack): s<p><m> counts
 * pixel p against weight vector m. */
#define CZ_ZERO4(P) __m512i s##P##0 = z, s##P##1 = z, s##P##2 = z, s##P##3 = z;
#define CZ_COUNT(P, M) s##P##M = _mm512_add_epi64(s##P##M, _mm512_popcnt_epi64(_mm512_xor_si512(av, w##M)));
#define CZ_PIXEL(P)                                                              \
    {                                                                            \
        __m512i av = _mm512_set1_epi64((long long)a[P * astep + j]);             \
        CZ_COUNT(P, 0) CZ_COUNT(P, 1) CZ_COUNT(P, 2) CZ_COUNT(P, 3)              \
    }
#define CZ_STORE4(P) store4(pop, popstep, P, s##P##0, s##P##1, s##P##2, s##P##3);

/* Lane k of vector m (channel 8 m + k) of pixel p into pop[channel * popstep + p]. */
__attribute__((target("avx512f"))) static inline void put8(int32_t *pop, size_t popstep, int p,
                                                           int m, __m512i v) {
    int64_t lanes[8];
    _mm512_storeu_si512(lanes, v);
    for (int k = 0; k < 8; k++) pop[(size_t)(8 * m + k) * popstep + p] = (int32_t)lanes[k];
}

/* Pixel p's counts of the block's 32 channels, channel-major into int32 pop[ch * popstep
 * + p]. */
__attribute__((target("avx512f"))) static inline void store4(int32_t *pop, size_t popstep, int p,
                                                             __m512i v0, __m512i v1, __m512i v2,
                                                             __m512i v3) {
    put8(pop, popstep, p, 0, v0);
    put8(pop, popstep, p, 1, v1);
    put8(pop, popstep, p, 2, v2);
    put8(pop, popstep, p, 3, v3);
}

/* Packed output straight from the accumulators: where pixel p's 32-bit word of the
 * block's channels goes (out + p * step), and per channel pop > below (P - 1). */
typedef struct {
    uint32_t *out;
    size_t step;
    const int64_t *below; /* [BLOCK512], channel order */
    uint32_t flip, valid;
} bits_block;

/* Pixel p's packed word: four compares give the 32 channels' bits in channel order, so
 * the counts never leave the registers (they were stored, reloaded and compared). */
__attribute__((target("avx512f"))) static inline void put_bits(const bits_block *b, int p,
                                                               __m512i v0, __m512i v1,
                                                               __m512i v2, __m512i v3) {
    uint32_t word = (uint32_t)_mm512_cmpgt_epi64_mask(v0, _mm512_loadu_si512(b->below)) |
                    (uint32_t)_mm512_cmpgt_epi64_mask(v1, _mm512_loadu_si512(b->below + 8)) << 8 |
                    (uint32_t)_mm512_cmpgt_epi64_mask(v2, _mm512_loadu_si512(b->below + 16)) << 16 |
                    (uint32_t)_mm512_cmpgt_epi64_mask(v3, _mm512_loadu_si512(b->below + 24)) << 24;
    b->out[(size_t)p * b->step] = (word ^ b->flip) & b->valid;
}

/* The popcounts of (activations ^ weights) over all taps and words, for the block's 32
 * channels and P pixels p (at a + p * astep; rows `row` words apart), stored by store4,
 * or with `bits` as packed output words (put_bits). */
#define CZ_BLOCK512(NAME, P, ZERO, PIXELS, STORE, BITS)                                      \
    __attribute__((target("avx512f,avx512vpopcntdq"))) static void NAME(                     \
        const uint64_t *a, size_t astep, size_t row, const uint64_t *w, int kh, size_t len,   \
        int32_t *pop, size_t popstep, const bits_block *bits) {                               \
        const __m512i z = _mm512_setzero_si512();                                             \
        ZERO                                                                                  \
        for (int ky = 0; ky < kh; ky++, a += row)                                             \
            for (size_t j = 0; j < len; j++, w += BLOCK512) {                                 \
                __m512i w0 = _mm512_loadu_si512(w), w1 = _mm512_loadu_si512(w + 8);           \
                __m512i w2 = _mm512_loadu_si512(w + 16), w3 = _mm512_loadu_si512(w + 24);     \
                PIXELS                                                                        \
            }                                                                                 \
        if (bits) {                                                                           \
            BITS                                                                              \
        } else {                                                                              \
            STORE                                                                             \
        }                                                                                     \
    }
#define CZ_BITS4(P) put_bits(bits, P, s##P##0, s##P##1, s##P##2, s##P##3);
CZ_BLOCK512(block512_6, 6,
            CZ_ZERO4(0) CZ_ZERO4(1) CZ_ZERO4(2) CZ_ZERO4(3) CZ_ZERO4(4) CZ_ZERO4(5),
            CZ_PIXEL(0) CZ_PIXEL(1) CZ_PIXEL(2) CZ_PIXEL(3) CZ_PIXEL(4) CZ_PIXEL(5),
            CZ_STORE4(0) CZ_STORE4(1) CZ_STORE4(2) CZ_STORE4(3) CZ_STORE4(4) CZ_STORE4(5),
            CZ_BITS4(0) CZ_BITS4(1) CZ_BITS4(2) CZ_BITS4(3) CZ_BITS4(4) CZ_BITS4(5))
CZ_BLOCK512(block512_3, 3, CZ_ZERO4(0) CZ_ZERO4(1) CZ_ZERO4(2),
            CZ_PIXEL(0) CZ_PIXEL(1) CZ_PIXEL(2), CZ_STORE4(0) CZ_STORE4(1) CZ_STORE4(2),
            CZ_BITS4(0) CZ_BITS4(1) CZ_BITS4(2))
CZ_BLOCK512(block512_2, 2, CZ_ZERO4(0) CZ_ZERO4(1), CZ_PIXEL(0) CZ_PIXEL(1),
            CZ_STORE4(0) CZ_STORE4(1), CZ_BITS4(0) CZ_BITS4(1))
CZ_BLOCK512(block512_1, 1, CZ_ZERO4(0), CZ_PIXEL(0), CZ_STORE4(0), CZ_BITS4(0))
#undef CZ_BLOCK512
#undef CZ_BITS4
#undef CZ_ZERO4
#undef CZ_COUNT
#undef CZ_PIXEL
#undef CZ_STORE4

__attribute__((target("avx512f,avx512vpopcntdq"))) static void conv_avx512(void *p, int begin,
                                                                           int end, int thread) {
    conv_ctx *cx = (conv_ctx *)p;
    const cz_geom *g = cx->g;
    const uint64_t *act = (const uint64_t *)cx->act, *wt = (const uint64_t *)cx->blob;
    size_t cw = cw_of(g->c), len = (size_t)g->kw * cw, row = (size_t)wp_of(g) * cw;
    size_t astep = (size_t)g->stride * cw, wo = (size_t)g->wo;
    int32_t total = g->c * g->kh * g->kw, *pop = cx->pop[thread];
    for (int item = begin; item < end; item++) {
        int sb = item % cx->nsuper, oy = (item / cx->nsuper) % g->ho;
        int n = item / cx->nsuper / g->ho;
        const uint64_t *a = act + ((size_t)n * hp_of(g) + (size_t)oy * g->stride) * row;
        const uint64_t *w = wt + (size_t)sb * g->kh * len * BLOCK512;
        bits_block bits = {0};
        if (cx->obits) { /* this row's words of the block's 32 channels */
            bits.step = out_halves(g);
            bits.out = cx->obits + ((size_t)n * g->ho + oy) * wo * bits.step + sb;
            bits.below = cx->below64 + (size_t)sb * BLOCK512; /* pop >= P <=> pop > P - 1 */
            bits.flip = cx->flip32[sb];
            bits.valid = cx->valid32[sb];
        }
        for (size_t ox = 0, take; ox < wo; ox += take) {
            /* PIX512 pixels at a time, the row's last ones in blocks of 3, 2, 1: each
             * weight load serves them all */
            size_t left = wo - ox;
            take = left >= PIX512 ? PIX512 : left >= 3 ? 3 : left >= 2 ? 2 : 1;
            void (*block)(const uint64_t *, size_t, size_t, const uint64_t *, int, size_t,
                          int32_t *, size_t, const bits_block *) = take == PIX512 ? block512_6
                                                                   : take == 3    ? block512_3
                                                                   : take == 2    ? block512_2
                                                                                  : block512_1;
            bits_block at = bits;
            at.out += ox * bits.step;
            block(a + ox * astep, astep, row, w, g->kh, len, pop + ox, wo, cx->obits ? &at : NULL);
        }
        if (cx->obits) continue;
        for (int k = 0; k < BLOCK512 && sb * BLOCK512 + k < g->cout; k++) {
            int32_t *dot = pop + (size_t)k * wo;
            for (size_t i = 0; i < wo; i++) dot[i] = total - 2 * dot[i];
            emit_row(cx, n, sb * BLOCK512 + k, oy, dot);
        }
    }
}
#endif

/* ---------------------------------------------------------------- entry */

int cz_conv2d(int path, const cz_geom *g, const float *x, const uint8_t *blob,
              const float *scale, const float *bias, float *out, int threads) {
    cz_geom plain = *g;
    plain.in_bits = plain.out_bits = 0;
    return cz_conv2d_ex(path, &plain, x, blob, scale, bias, NULL, out, threads);
}

#ifdef CZ_X86
/* Packed output's thresholds for `blocks` blocks of 32 channels: AVX2's 16-bit ones
 * (avx2) or AVX-512's 64-bit ones, made once per call; -1 when out of memory. */
static int make_thresholds(conv_ctx *cx, int blocks, int avx2) {
    size_t nb = (size_t)blocks;
    if (avx2) cx->thr16 = calloc(nb * 32, sizeof(uint16_t));
    else cx->below64 = calloc(nb * 32, sizeof(int64_t));
    cx->flip32 = calloc(nb, sizeof(uint32_t));
    cx->valid32 = calloc(nb, sizeof(uint32_t));
    if (!(cx->thr16 || cx->below64) || !cx->flip32 || !cx->valid32) return -1;
    bits_thresholds(cx);
    return 0;
}

static void free_thresholds(conv_ctx *cx) {
    free(cx->thr16);
    free(cx->below64);
    free(cx->flip32);
    free(cx->valid32);
}

/* The AVX2 run: pair offsets, per-thread counters, packed-output thresholds. */
static int run_avx2(conv_ctx *cx, int nthreads, size_t act_bytes) {
    const cz_geom *g = cx->g;
    int nvec = (g->cout + WIDTH - 1) / WIDTH;
    cx->nsuper = (nvec + SUPER - 1) / SUPER;
    int items = g->n * g->ho * cx->nsuper, used = nthreads < items ? nthreads : items, rc = 0;
    uint16_t *bufs[256] = {0};
    cx->acc = bufs;
    pthread_once(&lut2_once, fill_lut2);
    if (!(cx->pairs = malloc(sizeof(uint16_t) * act_bytes))) rc = -1;
    else pair_offsets(g, cx->act, cx->pb, cx->pairs);
    if (cx->obits && make_thresholds(cx, nvec, 1) < 0) rc = -1;
    for (int t = 0; t < used && t < 256; t++)
        if (!(bufs[t] = malloc(sizeof(uint16_t) * wo8(g) * SUPER * WIDTH))) rc = -1;
    if (rc == 0) cz_parallel(used, items, conv_avx2, cx);
    for (int t = 0; t < 256; t++) free(bufs[t]);
    free(cx->pairs);
    free_thresholds(cx);
    return rc;
}

static int run_avx512(conv_ctx *cx, int nthreads) {
    const cz_geom *g = cx->g;
    cx->nsuper = (g->cout + BLOCK512 - 1) / BLOCK512;
    int items = g->n * g->ho * cx->nsuper, used = nthreads < items ? nthreads : items, rc = 0;
    int32_t *bufs[256] = {0};
    cx->pop = bufs;
    if (cx->obits && make_thresholds(cx, cx->nsuper, 0) < 0) rc = -1;
    for (int t = 0; t < used && t < 256; t++)
        if (!(bufs[t] = malloc(sizeof(int32_t) * BLOCK512 * g->wo))) rc = -1; /* counts */
    if (rc == 0) cz_parallel(used, items, conv_avx512, cx);
    for (int t = 0; t < 256; t++) free(bufs[t]);
    free_thresholds(cx);
    return rc;
}
#endif

int cz_conv2d_ex(int path, const cz_geom *g, const void *x, const uint8_t *blob,
                 const float *scale, const float *bias, const int32_t *thresh, void *out,
                 int threads) {
    conv_ctx cx = {.g = g, .blob = blob, .scale = scale, .bias = bias, .thresh = thresh,
                   .path = path, .layout = path == CZ_AVX2 ? 1 : 0};
    if (g->in_bits && g->use_k) return -2; /* K needs the float input */
    if (g->in_bits) cx.xbits = (const uint64_t *)x;
    else cx.x = (const float *)x;
    if (g->out_bits) { /* bits are ORed in: start from zero words */
        cx.obits = (uint32_t *)out;
        memset(out, 0, sizeof(uint32_t) * out_halves(g) * g->n * g->ho * g->wo);
    } else {
        cx.out = (float *)out;
    }
    cx.pb = cx.layout ? (size_t)cg_of(g->c) : (size_t)8 * cw_of(g->c);
    size_t act_bytes = (size_t)g->n * hp_of(g) * wp_of(g) * cx.pb;
    int rc = -1, nthreads = threads < 1 ? 1 : threads;
    float *kmap = NULL;
    cx.act = calloc(act_bytes + 64, 1); /* +64: vector loads may read past the last pixel */
    if (g->use_k) {
        cx.amap = malloc(sizeof(float) * g->n * g->h * g->w);
        kmap = malloc(sizeof(float) * g->n * g->ho * g->wo);
        cx.kmap = kmap;
    }
    if (!cx.act || (g->use_k && (!cx.amap || !kmap))) goto done;
    cz_parallel(nthreads, cz_pack_items(g), pack_range, &cx);
    if (g->use_k) k_map(g, cx.amap, kmap);
#ifdef CZ_X86
    if (path == CZ_AVX2) {
        rc = run_avx2(&cx, nthreads, act_bytes);
        goto done;
    }
    if (path == CZ_AVX512) {
        rc = run_avx512(&cx, nthreads);
        goto done;
    }
#endif
    rc = cz_parallel(nthreads, g->n * g->ho, conv_portable, &cx);
done:
    if (cx.failed) rc = -1;
    free(cx.act);
    free(cx.amap);
    free(kmap);
    return rc;
}
