/*
 * forward.h - the transformer forward pass over a flat batch, written once
 * against the backend op interface (backend.h).
 *
 * A batch is N tokens drawn from M sequences (varlen, like FlashAttention's
 * cu_seqlens): each sequence contributes n_new consecutive tokens. Prefill
 * pieces (many tokens) and decodes (one token) mix freely.
 *
 * A sequence's KV is a list of segments. The read-only segments are chunks
 * (immutable pages, possibly shared with other sequences): every new token
 * attends to all of them. The tail is the sequence's own pages: tail_len
 * tokens already written, and room for the n_new tokens of this step, whose K
 * and V the pass writes at tail slots tail_len .. tail_len + n_new - 1 (causal
 * within the tail).
 *
 * Positions and differential RoPE: a segment sits at absolute position `pos`
 * of the composition and its keys were rotated at rot_base.. when computed. A
 * query at absolute position m attending to it is rotated by m - pos + rot_base,
 * so cached keys are never rewritten. The tail is computed in place, so its
 * rot_base equals its pos (tail_pos).
 *
 * Each segment is one level of the cascade: attention over a level yields a
 * partial output and its softmax statistics, and levels merge exactly by the
 * log-sum-exp rule (attention.h).
 */
#ifndef ENG_FORWARD_H
#define ENG_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

#include "common/status.h"
#include "core/backend.h"
#include "core/kv.h"
#include "model/model.h"

typedef struct eng_seg {
    const int32_t *pages; /* page ids of the segment */
    int32_t len;          /* tokens */
    int32_t pos;          /* absolute position of its first token in this composition */
    int32_t rot_base;     /* position its first key was rotated at */
} eng_seg;

enum { ENG_LOGITS_NONE = 0, ENG_LOGITS_LAST = 1, ENG_LOGITS_ALL = 2 };

typedef struct eng_fwd_seq {
    const eng_seg *segs; /* read-only levels, attended in full; may be NULL when n_segs is 0 */
    int n_segs;
    const int32_t *tail_pages; /* own pages, with room for tail_len + n_new tokens */
    int32_t tail_pos;          /* absolute position of tail slot 0 */
    int32_t tail_len;          /* tail tokens already in the pool */
    int32_t n_new;             /* tokens of this sequence in the batch (>= 1) */
    int logits;                /* ENG_LOGITS_* */
} eng_fwd_seq;

typedef struct eng_fwd_batch {
    const int32_t *tokens; /* n_tokens ids, grouped by sequence in seqs[] order */
    int32_t n_tokens;
    const eng_fwd_seq *seqs;
    int n_seqs;
} eng_fwd_batch;

typedef struct eng_forward eng_forward;

/* Creates the forward pass for model m on backend b, writing KV into kv. All
 * three must outlive it. The backend uploads m's weights now (m may be freed
 * only after the forward pass) and binds kv: a pool made without host K/V
 * needs a backend that stores them (eng_backend.host_kv false). max_tokens
 * bounds n_tokens per call (scratch size). */
bi_status eng_forward_create(const eng_model *m, eng_backend *b, eng_kv_pool *kv,
                             int32_t max_tokens, eng_forward **out);
void eng_forward_destroy(eng_forward *f);

/* Rows of logits a batch produces (1 per LAST sequence, n_new per ALL). */
int32_t eng_forward_logit_rows(const eng_fwd_batch *b);

/* Runs the batch. logits (host memory) receives eng_forward_logit_rows(b)
 * rows of vocab_size floats, in sequence order. BI_INVALID_ARGUMENT for
 * malformed batches (ids out of the vocabulary, more tokens than max_tokens,
 * n_new < 1); a backend failure's status otherwise (BI_DEVICE for a CUDA
 * error), after which the KV written in this step is undefined. */
bi_status eng_forward_run(eng_forward *f, const eng_fwd_batch *b, float *logits);

/* True when the backend samples on the device (eng_forward_run_sampled) for
 * this model's vocabulary. */
bool eng_forward_can_sample(const eng_forward *f);

/* Runs the batch like eng_forward_run, but each logit row r is sampled on the
 * device with samplers[r] (see backend.h's sample op) into out[r] instead of
 * being returned; the samplers are not changed (record the tokens with
 * eng_sampler_accept). BI_UNSUPPORTED when the backend cannot sample. */
bi_status eng_forward_run_sampled(eng_forward *f, const eng_fwd_batch *b,
                                  eng_sampler *const *samplers, eng_sample_out *out);

#endif
