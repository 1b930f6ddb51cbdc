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
 * Launchers take a stream, never allocate or synchronise, check the launch
 * and return BI_DEVICE if it failed, BI_INVALID_ARGUMENT for shapes they do not
 * handle (head_dim odd or over KRN_ATTN_MAX_HEAD_DIM, n_head not a multiple of
 * n_kv_head). Device pointers, owned by the caller.
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
 * tok_pos[t] and writes it and v[t][h] as bf16 at the token's tail slot
 * tok_idx[t] of its sequence's tail pages. inv_freq: head_dim / 2. */
bi_status krn_rope_store_kv(const krn_step *step, krn_kv_layer kv, const float *k, const float *v,
                            const float *inv_freq, cudaStream_t stream);

/* out[t][h] (bf16) = softmax-weighted V over every level of t's sequence:
 * its segments in full, then its tail up to and including slot tok_idx[t]
 * (causal). q: [n_tokens][n_head][head_dim] fp32, unrotated.
 * Where krn_attn_split_supported(), each token's keys (its levels end to end)
 * are cut into n_split slices attended by separate blocks and merged by
 * log-sum-exp (flash-decoding); part is device scratch of
 * krn_attn_part_floats() floats (unused, may be NULL, when n_split is 1).
 * Other shapes use one block per (token, kv head) and ignore n_split. */
bi_status krn_paged_attention(const krn_step *step, krn_kv_layer kv, krn_bf16 *out, const float *q,
                              const float *inv_freq, int n_head, float scale, int n_split,
                              float *part, cudaStream_t stream);

/* True when the split kernel handles the shape: head_dim 64, 128 or 256 and
 * at most 8 query heads per kv head. */
bool krn_attn_split_supported(int n_head, int n_kv_head, int head_dim);
/* Scratch floats krn_paged_attention needs for n_split > 1. */
size_t krn_attn_part_floats(int n_tokens, int n_head, int head_dim, int n_split);

#ifdef __cplusplus
}
#endif

#endif
