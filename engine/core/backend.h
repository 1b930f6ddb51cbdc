/*
 * backend.h - the op interface the forward pass is written against.
 *
 * A backend is a table of operations on activations and weights in its own
 * memory (host memory for the CPU backend, device memory for CUDA). The
 * forward pass (forward.c) is the only caller and the same for every backend;
 * a new backend implements this table, not a new forward pass. The forward
 * pass never reads or writes an activation itself: it only hands the
 * backend's buffers from one op to the next.
 *
 * Activations come in two kinds (eng_act_kind): F32 buffers (the residual
 * stream, projection outputs, logits inputs) are fp32 on every backend; IN
 * buffers are what a matmul reads (fp32 on the CPU; on CUDA 16-bit, bf16 or
 * fp16 as eng_store_dtype chose), so the ops that feed a matmul (rmsnorm,
 * attention, silu_mul) write IN buffers.
 *
 * Weights are uploaded once (prepare) into an eng_weights table of opaque
 * handles; the forward pass refers to weights only through it.
 *
 * Per step: begin() receives the plan (which token belongs to which sequence,
 * its position, its tail slot, and every sequence's segments), built once per
 * batch and used by every layer; a device backend uploads it there. Ops then
 * run per layer and return nothing: a device backend records the first error
 * and skips the remaining work, and finish() returns it after waiting for the
 * step (BI_DEVICE for a CUDA failure). Logit rows land in host memory once
 * finish() returned BI_OK, or, through the optional sample op, are sampled
 * where they are and only token ids and logprobs come back.
 */
#ifndef ENG_BACKEND_H
#define ENG_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "sampler/sampler.h"

struct eng_kv_pool;
struct eng_fwd_batch;
struct eng_model;

/* Per-token view of a batch, shared by the ops of every layer. The arrays are
 * host memory owned by the forward pass, valid during one eng_forward_run. */
typedef struct eng_plan {
    const struct eng_fwd_batch *batch;
    int32_t *tok_seq;   /* n_tokens: index of the token's sequence */
    int32_t *tok_pos;   /* n_tokens: absolute position */
    int32_t *tok_idx;   /* n_tokens: slot in its sequence's tail */
    int32_t *logit_tok; /* n_logits: tokens whose logits are wanted, in order */
    int32_t n_logits;
} eng_plan;

typedef struct eng_rope {
    int head_dim;
    float *inv_freq; /* head_dim / 2 frequencies, scaling applied */
} eng_rope;

/* An activation buffer in the backend's memory; opaque to the forward pass. */
typedef struct eng_act eng_act;
typedef enum eng_act_kind {
    ENG_ACT_F32 = 0, /* fp32 on every backend */
    ENG_ACT_IN,      /* a matmul input: fp32 (CPU) or the 16-bit storage type (CUDA) */
} eng_act_kind;

/* The 16-bit type a device backend stores weight matrices, matmul inputs and
 * the KV cache in (arithmetic and accumulation stay fp32). The CPU backend
 * keeps fp32 and ignores it. */
typedef enum eng_store_dtype {
    ENG_STORE_AUTO = 0, /* fp16 when the model's matrices are stored as F16, else bf16 */
    ENG_STORE_BF16,
    ENG_STORE_FP16,
} eng_store_dtype;

/* "auto" (or NULL), "bf16" or "fp16" into *out; BI_INVALID_ARGUMENT for
 * anything else (*out untouched). */
bi_status eng_store_dtype_parse(const char *name, eng_store_dtype *out);
/* "auto", "bf16" or "fp16" (static strings). */
const char *eng_store_dtype_name(eng_store_dtype d);
/* What `asked` means for model m: BF16 or FP16 as asked; AUTO becomes FP16
 * when m->weight_dtype is ENG_DTYPE_F16 (safetensors F16, GGUF F16), else
 * BF16 (fp32, bf16, quantized and mixed files: bf16 keeps fp32's range). */
eng_store_dtype eng_store_dtype_resolve(eng_store_dtype asked, const struct eng_model *m);

/* A weight tensor in the backend's memory; opaque to the forward pass.
 * Matrices are [out][in] as in model.h; norms and biases are vectors. */
typedef struct eng_wt eng_wt;
typedef struct eng_wlayer {
    const eng_wt *attn_norm, *wq, *wk, *wv, *bq, *bk, *bv, *q_norm, *k_norm, *wo, *ffn_norm,
        *w_gate, *w_up, *w_down; /* NULL where the model has none (biases, QK-norm) */
} eng_wlayer;
typedef struct eng_weights {
    const eng_wt *tok_embd, *out_norm, *lm_head;
    eng_wlayer *layers; /* n_layer */
} eng_weights;

/* One logit row sampled by the backend (the optional op sample). */
typedef struct eng_sample_out {
    int32_t token;    /* the chosen id; -1 when status is not BI_OK */
    bi_status status; /* BI_INTERNAL: every logit of the row was non-finite */
    eng_logprobs lp;  /* chosen + top n, when the sampler asked for logprobs */
} eng_sample_out;

typedef struct eng_backend eng_backend;

/* The attention split of a step (attn_split). */
typedef struct eng_attn_split {
    int tc_jobs;        /* tensor-core jobs: prefill tiles and shared-level slices */
    int shared_members; /* (token, slice) rows of shared levels */
    int per_token;      /* tokens of the per-token (split-KV) kernel */
    int n_split;        /* its slices per token */
    int n_slots;        /* partial slots per row (slices + shared slices) */
} eng_attn_split;

typedef struct eng_backend_ops {
    const char *name;
    void (*destroy)(eng_backend *b);

    /* --- memory --- */
    /* Uploads m's weights (CUDA converts matrices to its 16-bit type, AUTO
     * resolved against m; a weight beyond fp16's range is BI_OUT_OF_RANGE when
     * fp16 was asked for, and falls back to bf16 with a warning under AUTO)
     * and binds kv, whose K/V the backend stores (host arrays for the CPU, one
     * device allocation with the same page ids for CUDA). m and kv must
     * outlive the returned table, which release() frees. max_tokens bounds
     * tokens per step. */
    bi_status (*prepare)(eng_backend *b, const struct eng_model *m, struct eng_kv_pool *kv,
                         int32_t max_tokens, eng_weights **out);
    void (*release)(eng_backend *b, eng_weights *w);
    /* n elements of the given kind; act_free(NULL) is fine. */
    bi_status (*act_alloc)(eng_backend *b, eng_act_kind kind, size_t n, eng_act **out);
    void (*act_free)(eng_backend *b, eng_act *a);

    /* --- one step --- */
    bi_status (*begin)(eng_backend *b, const eng_plan *plan);
    /* x (F32) [n_tokens][d] = rows of the embedding table for the plan's tokens. */
    void (*embed)(eng_backend *b, const eng_plan *plan, eng_act *x, const eng_wt *table, int d);
    /* y (IN) = rmsnorm(x (F32)) * w over M rows of D. */
    void (*rmsnorm)(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w, int M, int D,
                    float eps);
    /* x (F32) = rmsnorm(x) * w in place over M rows of D (QK-norm per head). */
    void (*head_norm)(eng_backend *b, eng_act *x, const eng_wt *w, int M, int D, float eps);
    /* y (F32) [M][N] = x (IN) [M][K] . w[N][K]^T (+ bias). */
    void (*matmul)(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w,
                   const eng_wt *bias, int M, int N, int K);
    /* x += y, both F32, n elements. */
    void (*add)(eng_backend *b, eng_act *x, const eng_act *y, size_t n);
    /* out (IN) = silu(gate) * up, gate and up F32. */
    void (*silu_mul)(eng_backend *b, eng_act *out, const eng_act *gate, const eng_act *up,
                     size_t n);
    /* Rotates each token's k heads (F32, [n_tokens][n_kv_head * head_dim]) at
     * its position (in place) and writes k and v into its sequence's tail pages
     * of this layer. */
    void (*store_kv)(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                     struct eng_kv_pool *kv, int layer, eng_act *k, const eng_act *v);
    /* out (IN) [t][h] = attention of q (F32, unrotated) [t][h] over its
     * sequence's levels, rotating the query per level (differential RoPE) and
     * merging levels by log-sum-exp. */
    void (*attention)(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                      const struct eng_kv_pool *kv, int layer, int n_head, eng_act *out,
                      const eng_act *q);
    /* y (IN) [r] = rmsnorm(x (F32) [plan->logit_tok[r]]) * w for the logit rows. */
    void (*norm_rows)(eng_backend *b, const eng_plan *plan, eng_act *y, const eng_act *x,
                      const eng_wt *w, int D, float eps);
    /* logits (host fp32) [rows][vocab] = h (IN) [rows][d] . lm_head^T; complete
     * after finish(). */
    void (*logits)(eng_backend *b, float *logits, const eng_act *h, const eng_wt *lm_head, int rows,
                   int vocab, int d);
    /* Waits for the step; the first error of the step, or BI_OK. */
    bi_status (*finish)(eng_backend *b);

    /* --- optional fusions: NULL where a backend has none, and the forward
     * pass then calls the ops above instead. Each computes exactly what the
     * sequence of ops it names computes. --- */
    /* matmul(q, x, wq, bq), matmul(k, x, wk, bk), matmul(v, x, wv, bv): q
     * [M][qd], k and v [M][kvd], x [M][K]. */
    void (*qkv)(eng_backend *b, eng_act *q, eng_act *k, eng_act *v, const eng_act *x,
                const eng_wlayer *w, int M, int qd, int kvd, int K);
    /* out (IN) [M][ff] = silu(x . w_gate^T) * (x . w_up^T); gate and up (F32
     * [M][ff]) may be used as scratch and are left undefined. */
    void (*mlp_in)(eng_backend *b, eng_act *out, eng_act *gate, eng_act *up, const eng_act *x,
                   const eng_wt *w_gate, const eng_wt *w_up, int M, int ff, int K);
    /* add(x, y, M * D), then rmsnorm(h, x, w, M, D, eps). */
    void (*add_rmsnorm)(eng_backend *b, eng_act *h, eng_act *x, const eng_act *y, const eng_wt *w,
                        int M, int D, float eps);
    /* --- optional small-step fusions (steps of at most b->small_max tokens;
     * norm_qkv: b->norm_qkv_max) --- */
    /* x (F32) [M][N] += a (IN) [M][K] . w^T: a projection that closes a
     * sublayer, added straight into the residual stream. */
    void (*matmul_add)(eng_backend *b, eng_act *x, const eng_act *a, const eng_wt *w, int M, int N,
                       int K);
    /* rmsnorm(h, x, norm, M, K, eps), then mlp_in(out, gate, up, h, w_gate,
     * w_up, M, ff, K): the MLP's input from the residual stream x (F32
     * [M][K]); h, gate and up may be used as scratch and are left undefined. */
    void (*norm_mlp_in)(eng_backend *b, eng_act *out, eng_act *h, eng_act *gate, eng_act *up,
                        const eng_act *x, const eng_wt *norm, const eng_wt *w_gate,
                        const eng_wt *w_up, int M, int ff, int K, float eps);
    /* A layer's attention input from the residual stream x (F32 [M][d_model]):
     * rmsnorm(h, x, w->attn_norm), qkv (or the three matmuls), head_norm of
     * q and k where the model has QK-norm, then store_kv(k, v). q (F32
     * [M][qd]) is left unrotated, as attention wants it; h, k and v may be
     * used as scratch and are left undefined. */
    void (*norm_qkv)(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                     struct eng_kv_pool *kv, int layer, eng_act *q, eng_act *k, eng_act *v,
                     eng_act *h, const eng_act *x, const eng_wlayer *w, int M, float eps);

    /* --- optional memory queries: NULL where the backend's memory is the
     * host's (the CPU backend), and the engine then sizes the pool from its
     * token count. --- */
    /* Free and total bytes of the backend's device memory now. */
    bi_status (*mem_info)(eng_backend *b, size_t *free_bytes, size_t *total_bytes);
    /* The bound pool was initialised again with another page count (same
     * geometry, same address) before any step ran: drops the K/V storage of
     * the old count and allocates it for the new one. On failure the backend
     * holds no K/V and must not run a step. Present exactly when mem_info is,
     * so that the engine can size the pool after prepare() uploaded the
     * weights. */
    bi_status (*kv_realloc)(eng_backend *b);
    /* How the last step's attention was split (tests and benchmarks read it;
     * NULL where a backend has one kernel for every token). */
    void (*attn_split)(eng_backend *b, struct eng_attn_split *out);

    /* --- optional device sampling: NULL where the backend has none (the
     * CPU), and the caller then samples the rows logits() returns. --- */
    /* As logits(), but the rows stay in the backend's memory and row r is
     * turned into out[r] there as eng_sampler_sample would with samplers[r]
     * (NULL: greedy, no penalties, no logprobs): its penalties and history,
     * temperature, top-k / top-p / min-p (the same candidate set), greedy
     * ties to the lowest id, logprobs; the draw comes from a counter-based
     * generator keyed by the sampler's seed and its count of generated
     * tokens, so the same seed gives the same tokens (not those of the CPU's
     * generator). The samplers are read now and not changed: the caller
     * records each token (eng_sampler_accept). out is complete after
     * finish() returned BI_OK; only ids and logprobs leave the device.
     * Vocabularies up to eng_backend.sample_max_vocab. */
    void (*sample)(eng_backend *b, const eng_act *h, const eng_wt *lm_head, int rows, int vocab,
                   int d, eng_sampler *const *samplers, eng_sample_out *out);
} eng_backend_ops;

struct eng_backend {
    const eng_backend_ops *ops;
    bool host_kv; /* the pool's K/V live in host memory (eng_kv_pool_init_opt) */
    /* Steps of at most small_max tokens take matmul_add and norm_mlp_in
     * (where the backend has them), and of at most norm_qkv_max norm_qkv;
     * larger steps the ops they fuse. 0: never. Set by prepare() (the CUDA
     * backend checks its fused norm_qkv kernel there). */
    int32_t small_max, norm_qkv_max;
    /* Steps of at least add_from tokens also close their sublayers with
     * matmul_add and a plain rmsnorm (the projection accumulates into the
     * residual stream instead of writing a product the fused add+norm reads
     * back). 0: never. */
    int32_t add_from;
    /* The largest vocabulary the sample op handles (0 without one). */
    int32_t sample_max_vocab;
    /* The 16-bit type in use once prepare() succeeded (BF16 or FP16 on CUDA);
     * AUTO on a backend that keeps fp32 (the CPU). Read-only for callers. */
    eng_store_dtype store;
};

/* The CPU backend (fp32, multithreaded over n_threads; <= 0 = all CPUs).
 * max_ctx bounds the length of one attention level (scratch size). */
bi_status eng_backend_cpu_create(int n_threads, int32_t max_ctx, eng_backend **out);

/* The CUDA backend on device `device`: 16-bit weights and KV (dtype: bf16,
 * fp16, or auto to choose per model at prepare()), fp32 residual stream and
 * accumulation, cuBLAS GEMMs, one stream. BI_UNSUPPORTED when the build has
 * no CUDA, BI_NO_DEVICE when the device does not exist. */
bi_status eng_backend_cuda_create(int device, eng_store_dtype dtype, eng_backend **out);
/* True when the build has CUDA and a device is usable. */
bool eng_backend_cuda_available(void);

/* By name: "cpu" (or NULL), "cuda", or "auto" (cuda when eng_backend_cuda_available(),
 * else cpu). BI_UNSUPPORTED for "cuda" in a build without CUDA,
 * BI_INVALID_ARGUMENT for other names. n_threads and max_ctx go to the CPU
 * backend, dtype to the CUDA one. */
bi_status eng_backend_create(const char *name, int n_threads, int32_t max_ctx,
                             eng_store_dtype dtype, eng_backend **out);

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
