/*
 * krn_elem.h - elementwise CUDA ops of the forward pass: embedding gather,
 * fp32 -> bf16 conversion, residual add, bias add, SwiGLU.
 *
 * Launchers take a stream, never allocate or synchronise, check the launch
 * and return BI_DEVICE if it failed (BI_INVALID_ARGUMENT for negative sizes).
 * Every pointer is a device pointer owned by the caller.
 */
#ifndef KRN_ELEM_H
#define KRN_ELEM_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "cuda/krn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x[t][:] = table[tokens[t]][:] as fp32, for n rows of d. Token ids must be
 * valid (checked by the caller). */
bi_status krn_embed(float *x, const krn_bf16 *table, const int32_t *tokens, int n, int d,
                    cudaStream_t stream);
/* y[i] = bf16(x[i]), round to nearest even. */
bi_status krn_f32_to_bf16(krn_bf16 *y, const float *x, size_t n, cudaStream_t stream);
/* x[i] += y[i]. */
bi_status krn_add(float *x, const float *y, size_t n, cudaStream_t stream);
/* y[m][j] += bias[j] for M rows of N. */
bi_status krn_add_bias(float *y, const float *bias, int M, int N, cudaStream_t stream);
/* out[i] = bf16(silu(gate[i]) * up[i]). */
bi_status krn_silu_mul(krn_bf16 *out, const float *gate, const float *up, size_t n,
                       cudaStream_t stream);

/* Rows of a fused projection y [M][n0 + n1 + n2] go to o0 [M][n0], o1 [M][n1]
 * and o2 [M][n2], each plus its bias (NULL: none). */
bi_status krn_split3(float *o0, float *o1, float *o2, const float *y, const float *b0,
                     const float *b1, const float *b2, int M, int n0, int n1, int n2,
                     cudaStream_t stream);
/* out[m][i] = bf16(silu(y[m][i]) * y[m][ff + i]) for a fused gate|up y
 * [M][2 ff]. */
bi_status krn_silu_mul_cat(krn_bf16 *out, const float *y, int M, int ff, cudaStream_t stream);
/* The same over a bf16 gate|up y [M][2 ff] (a GEMM's bf16 output). */
bi_status krn_silu_mul_cat_h(krn_bf16 *out, const krn_bf16 *y, int M, int ff, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
