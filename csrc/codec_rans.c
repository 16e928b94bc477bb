/* Interleaved rANS (cnnzip.codec.rans, which documents the format): symbol i is coded
 * by lane i % lanes; each lane's 16-bit words lie together in the stream. Decoding runs
 * step by step over all lanes, as the NumPy reference does, so every lane's state
 * advances in the same order and the output is written sequentially. */
#include <stdlib.h>
#include <string.h>

#include "codec.h"

#define PROB_BITS 16
#define TOTAL (1u << PROB_BITS)
#define LOW ((uint64_t)1 << 32)
#define STATE_BYTES 6
#define START 1
#define MAX_LANES 1024
#define SYMBOLS_PER_LANE 1024
#define MAX_VARINT_BYTES 4

size_t cc_rans_lanes(size_t n) {
    size_t lanes = n / SYMBOLS_PER_LANE;
    return lanes < 1 ? 1 : lanes > MAX_LANES ? MAX_LANES : lanes;
}

/* Symbol, frequency and cumulative frequency of every slot of the 2**16. */
typedef struct {
    uint16_t sym[TOTAL];
    uint32_t freq[TOTAL];
    uint32_t bias[TOTAL]; /* slot - cum[sym] */
} slot_table;

static int build_slots(const int64_t *freq, size_t nsym, slot_table *t) {
    uint64_t cum = 0;
    if (nsym > TOTAL) return CC_RANS_TABLE; /* a symbol would not fit the uint16 slot table */
    for (size_t s = 0; s < nsym; s++) {
        if (freq[s] < 0 || freq[s] > (int64_t)TOTAL || cum + (uint64_t)freq[s] > TOTAL)
            return CC_RANS_TABLE;
        for (uint64_t k = cum; k < cum + (uint64_t)freq[s]; k++) {
            t->sym[k] = (uint16_t)s;
            t->freq[k] = (uint32_t)freq[s];
            t->bias[k] = (uint32_t)(k - cum);
        }
        cum += (uint64_t)freq[s];
    }
    return cum == TOTAL ? CC_OK : CC_RANS_TABLE;
}

/* The word counts of lanes 0..lanes-2 (LEB128, at most 4 bytes each) from data[*at..len). */
static int read_counts(const uint8_t *data, size_t len, size_t *at, size_t lanes, int64_t *count) {
    for (size_t j = 0; j + 1 < lanes; j++) {
        uint64_t v = 0;
        for (int b = 0;; b++) {
            if (*at >= len || b >= MAX_VARINT_BYTES) return CC_RANS_VARINT;
            uint8_t byte = data[(*at)++];
            v |= (uint64_t)(byte & 0x7F) << (7 * b);
            if (byte < 0x80) break;
        }
        count[j] = (int64_t)v;
    }
    return CC_OK;
}

typedef struct {
    uint64_t x;
    size_t ptr, end; /* next word and one past the lane's last, in words */
} lane_state;

static int decode_lanes(const uint8_t *words, lane_state *ls, size_t lanes, size_t n,
                        const slot_table *t, cc_syms out) {
    for (size_t base = 0; base < n; base += lanes) {
        size_t active = n - base < lanes ? n - base : lanes;
        for (size_t j = 0; j < active; j++) {
            lane_state *l = &ls[j];
            uint32_t slot = (uint32_t)(l->x & (TOTAL - 1));
            cc_put(out, base + j, t->sym[slot]);
            uint64_t x = (uint64_t)t->freq[slot] * (l->x >> PROB_BITS) + t->bias[slot];
            if (x < LOW && l->ptr < l->end) { /* below LOW with no words left: START's tail */
                x = (x << 16) | words[2 * l->ptr] | ((uint64_t)words[2 * l->ptr + 1] << 8);
                l->ptr++;
            }
            l->x = x;
        }
    }
    for (size_t j = 0; j < lanes; j++)
        if (ls[j].ptr != ls[j].end || ls[j].x != START) return CC_RANS_END;
    return CC_OK;
}

int cc_rans_decode(const uint8_t *data, size_t len, size_t n, const int64_t *freq, size_t nsym,
                   cc_syms out) {
    size_t lanes = cc_rans_lanes(n), at = STATE_BYTES * lanes;
    if (!out.wide && nsym > 256) return CC_SYMBOL; /* a symbol would not fit uint8 */
    if (len < at) return CC_RANS_SHORT;
    slot_table *t = malloc(sizeof *t);
    lane_state *ls = calloc(lanes, sizeof *ls);
    int64_t *count = calloc(lanes, sizeof *count);
    int rc = t && ls && count ? build_slots(freq, nsym, t) : CC_NOMEM;
    if (rc == CC_OK) rc = read_counts(data, len, &at, lanes, count);
    if (rc == CC_OK && (len - at) % 2) rc = CC_RANS_HALF_WORD;
    if (rc == CC_OK) {
        size_t nwords = (len - at) / 2, used = 0;
        for (size_t j = 0; j + 1 < lanes; j++) used += (size_t)count[j]; /* each < 2**28 */
        if (used > nwords) rc = CC_RANS_COUNTS;
        else count[lanes - 1] = (int64_t)(nwords - used);
    }
    if (rc == CC_OK) {
        size_t ptr = 0;
        for (size_t j = 0; j < lanes; j++) {
            uint64_t x = 0;
            for (int b = STATE_BYTES - 1; b >= 0; b--) x = (x << 8) | data[STATE_BYTES * j + b];
            ls[j] = (lane_state){x, ptr, ptr + (size_t)count[j]};
            ptr += (size_t)count[j];
        }
        rc = decode_lanes(data + at, ls, lanes, n, t, out);
    }
    free(t);
    free(ls);
    free(count);
    return rc;
}

int cc_rans_encode(cc_syms in, size_t n, const int64_t *freq, size_t nsym, uint8_t *states,
                   int64_t *lane_words, uint16_t *words, size_t *nwords) {
    size_t lanes = cc_rans_lanes(n);
    uint64_t *cums = malloc(nsym * sizeof *cums + 1);
    uint64_t *x = malloc(lanes * sizeof *x);
    size_t *top = malloc(lanes * sizeof *top); /* one past the next word slot of each lane */
    size_t *region = malloc(lanes * sizeof *region);
    if (!cums || !x || !top || !region) {
        free(cums), free(x), free(top), free(region);
        return CC_NOMEM;
    }
    uint64_t c = 0;
    for (size_t s = 0; s < nsym; s++) {
        cums[s] = c;
        c += freq[s] > 0 ? (uint64_t)freq[s] : 0;
    }
    int rc = c == TOTAL ? CC_OK : CC_RANS_TABLE;
    size_t room = 0; /* lane j may emit one word per symbol: its region holds that many */
    for (size_t j = 0; j < lanes; j++) {
        x[j] = START;
        region[j] = room;
        room += n > j ? (n - j + lanes - 1) / lanes : 0;
        top[j] = room;
    }
    size_t steps = (n + lanes - 1) / lanes;
    for (size_t g = steps; rc == CC_OK && g-- > 0;) { /* backwards: the decoder reads forwards */
        size_t base = g * lanes, active = n - base < lanes ? n - base : lanes;
        for (size_t j = 0; j < active; j++) {
            uint32_t s = cc_get(in, base + j);
            if (s >= nsym || freq[s] <= 0) {
                rc = CC_SYMBOL;
                break;
            }
            uint64_t f = (uint64_t)freq[s], xa = x[j];
            if (xa >= (f << 32)) { /* one word at most: then x < f * 2**32 */
                words[--top[j]] = (uint16_t)(xa & 0xFFFF);
                xa >>= 16;
            }
            x[j] = ((xa / f) << PROB_BITS) + xa % f + cums[s];
        }
    }
    size_t at = 0;
    for (size_t j = 0; rc == CC_OK && j < lanes; j++) {
        size_t end = j + 1 < lanes ? region[j + 1] : room, w = end - top[j];
        memmove(words + at, words + top[j], w * sizeof *words); /* lane after lane */
        lane_words[j] = (int64_t)w;
        at += w;
        for (int b = 0; b < STATE_BYTES; b++) states[STATE_BYTES * j + b] = (uint8_t)(x[j] >> (8 * b));
    }
    *nwords = at;
    free(cums), free(x), free(top), free(region);
    return rc;
}
