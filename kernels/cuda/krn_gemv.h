/*
 * krn_gemv.h - projections of a few rows (decode steps: M <= KRN_GEMV_MAX_M
 * tokens) that stream a 16-bit weight matrix (bf16 or fp16, the dtype dt
 * given, or kv.dtype for the attention input) once at full bandwidth, with the
 * work around them folded in: bias, the residual add, the RMSNorm of the
 * input, SwiGLU, and for the attention input QK-norm, RoPE of K and the paged
 * KV write.
 *
 * y[m][n] = sum_k x[m][k] w[n][k], fp32 accumulation on the tensor cores
 * (mma m16n8k16, 16 weight rows by up to 8 tokens a step). A block takes a
 * group of 16-row tiles (one tile; a gate and an up tile; one attention
 * head) and a slice of K; when K is cut into several slices (small N, or an
 * input too large for shared memory), each block writes its partial sums to
 * the workspace and the last block of the group to finish adds them up, in
 * slice order (results do not depend on timing), and applies the epilogue.
 * A normed input x (fp32) is staged as dt(x * norm); the 1/rms of each row,
 * a scalar per token, is applied to the sums.
 *
 * Launchers take a stream, never allocate or synchronise, check the launch
 * and return BI_DEVICE if it failed, BI_INVALID_ARGUMENT for bad sizes,
 * BI_UNSUPPORTED for shapes they do not take (krn_gemv_supported is false,
 * or the workspace is too small): the caller then uses cuBLAS. Device
 * pointers, owned by the caller; weight rows must be 16-byte aligned (K % 8
 * == 0 and 16-byte aligned bases).
 */
#ifndef KRN_GEMV_H
#define KRN_GEMV_H

#include <stdbool.h>
#include <stddef.h>

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "cuda/krn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

#define KRN_GEMV_MAX_M 16

/* Scratch and settings shared by the launches on one stream (launches on
 * one stream run one after another, so they can share it). count must be
 * zeroed once when allocated; each launch leaves it zeroed. */
typedef struct krn_gemv_ws {
    float *part;        /* partial sums of split groups */
    unsigned *count;    /* per group: slices finished */
    size_t part_floats; /* capacity of part */
    int n_count;        /* capacity of count */
    int n_sm;           /* multiprocessors of the device */
    int blocks_per_sm;  /* at most this many blocks per SM, each walking several items
                           (one group, one slice of K); 0: a block per item */
    bool pdl;           /* programmatic dependent launch: a kernel's weight loads start
                           while the previous kernel finishes (Hopper) */
} krn_gemv_ws;

/* True when the kernels take M rows of K (M in 1..KRN_GEMV_MAX_M, K % 8 == 0). */
bool krn_gemv_supported(int M, int K);

/* y[m][n] (fp32) = x (dt [M][K]) . w[n]^T (w of dt) + bias[n] (bias NULL:
 * none); with add, y[m][n] += that instead (the residual add). */
bi_status krn_gemv(const krn_gemv_ws *ws, float *y, const krn_half *x, const krn_half *w,
                   const float *bias, bool add, int M, int N, int K, krn_dtype dt,
                   cudaStream_t stream);

/* out[m][f] (dt) = silu(h . w_gate[f]^T) * (h . w_up[f]^T) for f < ff, with
 * h = rmsnorm(x (fp32 [M][K])) * norm (fused SwiGLU, norm in the prologue). */
bi_status krn_gemv_swiglu(const krn_gemv_ws *ws, krn_half *out, const float *x, const float *norm,
                          float eps, const krn_half *w_gate, const krn_half *w_up, int M, int ff,
                          int K, krn_dtype dt, cudaStream_t stream);

/* One layer's attention input for the step's M tokens. */
typedef struct krn_qkv_layer {
    const float *attn_norm;       /* [K] */
    const krn_half *wq, *wk, *wv; /* [n_head * hd][K], [n_kv_head * hd][K] twice; kv.dtype */
    const float *bq, *bk, *bv;    /* biases, NULL: none */
    const float *q_norm, *k_norm; /* QK-norm weights [hd], NULL: none */
    int n_head, n_kv_head, K;     /* head_dim and the KV layout come from kv */
    float eps;                    /* of both norms */
} krn_qkv_layer;

/* h = rmsnorm(x (fp32 [M][K])) * attn_norm; q|k|v = h . w^T + bias; QK-norm
 * of each q and k head; q (fp32 [M][n_head * hd]) written unrotated; k rotated
 * at tok_pos and, with v, written as kv.dtype at each token's tail slot (as
 * krn_rope_store_kv does). M must equal step->n_tokens. head_dim % 16 == 0
 * and <= KRN_GEMV_MAX_HEAD_DIM, else BI_UNSUPPORTED. */
#define KRN_GEMV_MAX_HEAD_DIM 256
bi_status krn_norm_qkv_store(const krn_gemv_ws *ws, const krn_step *step, krn_kv_layer kv, float *q,
                             const float *x, const krn_qkv_layer *l, const float *inv_freq, int M,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
