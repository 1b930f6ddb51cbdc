/*
 * attention.h - CPU attention over paged KV, one cascade level at a time, and
 * the log-sum-exp merge of level states.
 *
 * A level state is (acc, m, l): acc = sum_j exp(s_j - m) v_j (unnormalised),
 * m = max_j s_j, l = sum_j exp(s_j - m). The attention output is acc / l and
 * the level's log-sum-exp is m + log l. Merging two states is exact,
 * associative and commutative, so attention over segments A and B merged
 * equals attention over their concatenation up to fp32 rounding. This is the
 * reference the CUDA cascade kernels are checked against.
 */
#ifndef ENG_ATTENTION_H
#define ENG_ATTENTION_H

#include <stdint.h>

#include "core/kv.h"

typedef struct eng_attn_state {
    float *acc; /* head_dim, caller-provided */
    float m;    /* -INFINITY for an empty state */
    float l;
} eng_attn_state;

/* Sets st to the empty state (acc zeroed). */
void eng_attn_state_clear(eng_attn_state *st, int head_dim);

/* Attention of one query q (already rotated for this level) over the first n
 * tokens of a level stored in pages, for one layer and kv head: writes the
 * level's state into out. scores is scratch of at least n floats. n == 0 gives
 * the empty state. */
void eng_attn_level(const eng_kv_pool *kv, int layer, int kvh, const float *q, const int32_t *pages,
                    int32_t n, float scale, float *scores, eng_attn_state *out);

/* a = merge(a, b). */
void eng_attn_merge(eng_attn_state *a, const eng_attn_state *b, int head_dim);

/* out = a.acc / a.l (zeros for the empty state). */
void eng_attn_finish(const eng_attn_state *a, float *out, int head_dim);

#endif
