/*
 * backend.h - the op interface the forward pass is written against.
 *
 * A backend is a table of operations on activations in its own memory (host
 * memory for the CPU backend). The forward pass (forward.c) is the only caller
 * and the same for every backend; a new backend implements this table, not a
 * new forward pass. Attention ops receive the per-step plan (which token
 * belongs to which sequence, its position, and its sequence's segments), built
 * once per batch and used by every layer.
 */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

struct eng_kv_pool;
struct eng_fwd_batch;

/* Per-token view of a batch, shared by the attention ops of every layer. */
typedef struct eng_plan {
    const struct eng_fwd_batch *batch;
    int32_t *tok_seq; /* n_tokens: index of the token's sequence */
    int32_t *tok_pos; /* n_tokens: absolute position */
    int32_t *tok_idx; /* n_tokens: slot in its sequence's tail */
} eng_plan;

typedef struct eng_rope {
    int head_dim;
    float *inv_freq; /* head_dim / 2 frequencies, scaling applied */
} eng_rope;

typedef struct eng_backend eng_backend;

typedef struct eng_backend_ops {
    const char *name;
    void (*destroy)(eng_backend *b);
    /* x[i] = table[tokens[i]] for n rows of d. */
    void (*embed)(eng_backend *b, float *x, const float *table, const int32_t *tokens, int n,
                  int d);
    void (*rmsnorm)(eng_backend *b, float *y, const float *x, const float *w, int M, int D,
                    float eps);
    /* y[M][N] = x[M][K] . w[N][K]^T (+ bias). */
    void (*matmul)(eng_backend *b, float *y, const float *x, const float *w, const float *bias,
                   int M, int N, int K);
    /* x += y, n elements. */
    void (*add)(eng_backend *b, float *x, const float *y, size_t n);
    /* out = silu(gate) * up. */
    void (*silu_mul)(eng_backend *b, float *out, const float *gate, const float *up, size_t n);
    /* Rotates each token's k heads at its position and writes k, v into its
     * sequence's tail pages for this layer. k, v: [n_tokens][n_kv_head * head_dim]. */
    void (*store_kv)(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                     struct eng_kv_pool *kv, int layer, float *k, const float *v);
    /* out[t][h] = attention of q[t][h] (unrotated) over its sequence's levels,
     * rotating the query per level (differential RoPE) and merging levels by
     * log-sum-exp. q, out: [n_tokens][n_head * head_dim]. */
    void (*attention)(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                      const struct eng_kv_pool *kv, int layer, int n_head, float *out,
                      const float *q);
} eng_backend_ops;

struct eng_backend {
    const eng_backend_ops *ops;
};

/* The CPU backend (fp32, multithreaded over n_threads; <= 0 = all CPUs).
 * max_ctx bounds the length of one attention level (scratch size). */
bi_status eng_backend_cpu_create(int n_threads, int32_t max_ctx, eng_backend **out);
/* Frees any backend; NULL is fine. */
void eng_backend_destroy(eng_backend *b);
/* Largest head_dim the CPU backend handles. */
#define ENG_CPU_MAX_HEAD_DIM 512

/* Fills rope->inv_freq for a model configuration, exactly as HF computes it
 * in float32 (llama3 and linear scaling included). */
struct eng_model_config;
bi_status eng_rope_init(eng_rope *rope, const struct eng_model_config *cfg);
void eng_rope_fini(eng_rope *rope);
/* Rotates one head vector x (head_dim) in place by position pos (HF
 * half-split layout). */
void eng_rope_apply(const eng_rope *rope, float *x, int32_t pos);

#endif
