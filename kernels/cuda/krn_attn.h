/*
 * krn_attn.h - RoPE + the paged KV write, and paged attention over a
 * sequence's segments (the cascade levels) for decode and prefill.
 *
 * Positions follow DESIGN.md's differential RoPE: keys are written rotated at
 * their token's position; a query at position m attending to a segment at pos
 * whose keys were rotated from rot_base is rotated by m - pos + rot_base, and
 * by m for its own tail. Levels merge by the log-sum-exp rule (one online
 * softmax state carried across levels, fp32). GQA: one block serves every
 * query head of a KV head, so a key is read once for its whole group.
 *
 * K, V and the attention output are 16-bit of the layer's dtype (kv.dtype,
 * bf16 or fp16); queries, keys and values come in as fp32 and every score,
 * softmax state and accumulator is fp32.
 *
 * Launchers take a stream, never allocate or synchronise, check the launch
 * and return BI_DEVICE if it failed, BI_INVALID_ARGUMENT for shapes they do not
 * handle (head_dim odd or over KRN_ATTN_MAX_HEAD_DIM, n_head not a multiple of
 * n_kv_head) or an unknown dtype. Device pointers, owned by the caller.
 */
#ifndef KRN_ATTN_H
#define KRN_ATTN_H

#include <stdbool.h>
#include <stddef.h>

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "cuda/krn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KRN_ATTN_MAX_HEAD_DIM 256

/* For every token t and kv head h: rotates k[t][h] (fp32, unrotated) at
 * tok_pos[t] and writes it and v[t][h] as kv.dtype at the token's tail slot
 * tok_idx[t] of its sequence's tail pages. inv_freq: head_dim / 2. */
bi_status krn_rope_store_kv(const krn_step *step, krn_kv_layer kv, const float *k, const float *v,
                            const float *inv_freq, cudaStream_t stream);

/* out[t][h] (kv.dtype) = softmax-weighted V over every level of t's sequence:
 * its segments in full, then its tail up to and including slot tok_idx[t]
 * (causal). q: [n_tokens][n_head][head_dim] fp32, unrotated.
 * The work is split as the step says: its tensor-core jobs (step->n_jobs,
 * krn_tc_attention) write the rows of prefill tiles and the partials of
 * shared levels; the per-token kernel attends the tokens step->dec (all when
 * NULL) over their levels except segments flagged KRN_SEG_SHARED.
 * Where krn_attn_split_supported(), each per-token row's keys (its levels end
 * to end) are cut into n_split slices attended by separate blocks and merged
 * by log-sum-exp (flash-decoding) together with the shared partials: row i of
 * dec has n_slots partial slots, n_split of its slices then dec_extra[i] of
 * shared levels. part is device scratch of krn_attn_part_floats(n_dec,
 * n_head, head_dim, n_slots) floats (unused, may be NULL, when n_slots is 1).
 * n_split 0: the jobs attended every level of the dec tokens (member-list
 * jobs over their own segments and tails), and only the merge runs.
 * Other shapes use one block per (token, kv head), ignore n_split and take no
 * jobs. */
bi_status krn_paged_attention(const krn_step *step, krn_kv_layer kv, krn_half *out, const float *q,
                              const float *inv_freq, int n_head, float scale, int n_split,
                              int n_slots, float *part, cudaStream_t stream);

/* The tensor-core jobs of a step alone (krn_paged_attention runs them first):
 * prefill tiles write out, shared jobs write part_o / part_lse (laid out as
 * krn_paged_attention's part with n_slots slots per row). */
bi_status krn_tc_attention(const krn_step *step, krn_kv_layer kv, krn_half *out, float *part_o,
                           float *part_lse, const float *q, const float *inv_freq, int n_head,
                           float scale, int n_slots, cudaStream_t stream);
/* True when the tensor-core kernel handles the shape: head_dim 64 or 128, at
 * most 8 query heads per kv head, pages of a power-of-two size. */
bool krn_attn_tc_supported(int n_head, int n_kv_head, int head_dim, int page_size);
/* Tokens one tensor-core job holds (64 query rows / the group). */
int krn_attn_tc_tokens(int n_head, int n_kv_head);

/* True when the split kernel handles the shape: head_dim 64, 128 or 256 and
 * at most 8 query heads per kv head. */
bool krn_attn_split_supported(int n_head, int n_kv_head, int head_dim);
/* Scratch floats krn_paged_attention needs for n_slots > 1 over n_rows tokens. */
size_t krn_attn_part_floats(int n_rows, int n_head, int head_dim, int n_slots);

#ifdef __cplusplus
}
#endif

#endif
