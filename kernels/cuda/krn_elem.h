/*
 * krn_elem.h - elementwise CUDA ops of the forward pass: embedding gather,
 * fp32 -> 16-bit conversion, residual add, bias add, SwiGLU.
 *
 * Launchers take a stream, never allocate or synchronise, check the launch
 * and return BI_DEVICE if it failed (BI_INVALID_ARGUMENT for negative sizes or
 * an unknown dtype). dt is the element type of every krn_half buffer of the
 * call; math is fp32. Every pointer is a device pointer owned by the caller.
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
bi_status krn_embed(float *x, const krn_half *table, const int32_t *tokens, int n, int d,
                    krn_dtype dt, cudaStream_t stream);
/* y[i] = x[i] rounded to nearest even in dt. When overflow is not NULL, the
 * number of finite x[i] that round to infinity (fp16: |x| >= 65520; what is
 * below rounds to at most 65504) is added to *overflow (a device counter). */
bi_status krn_f32_to_half(krn_half *y, const float *x, size_t n, unsigned *overflow, krn_dtype dt,
                          cudaStream_t stream);
/* x[i] += y[i]. */
bi_status krn_add(float *x, const float *y, size_t n, cudaStream_t stream);
/* y[m][j] += bias[j] for M rows of N. */
bi_status krn_add_bias(float *y, const float *bias, int M, int N, cudaStream_t stream);
/* out[i] = silu(gate[i]) * up[i], stored as dt. */
bi_status krn_silu_mul(krn_half *out, const float *gate, const float *up, size_t n, krn_dtype dt,
                       cudaStream_t stream);

/* Rows of a fused projection y [M][n0 + n1 + n2] go to o0 [M][n0], o1 [M][n1]
 * and o2 [M][n2], each plus its bias (NULL: none). */
bi_status krn_split3(float *o0, float *o1, float *o2, const float *y, const float *b0,
                     const float *b1, const float *b2, int M, int n0, int n1, int n2,
                     cudaStream_t stream);
/* out[m][i] = silu(y[m][i]) * y[m][ff + i], stored as dt, for a fused
 * gate|up y [M][2 ff]. */
bi_status krn_silu_mul_cat(krn_half *out, const float *y, int M, int ff, krn_dtype dt,
                           cudaStream_t stream);
/* The same over a 16-bit gate|up y [M][2 ff] of dtype dt (a GEMM's 16-bit
 * output). */
bi_status krn_silu_mul_cat_h(krn_half *out, const krn_half *y, int M, int ff, krn_dtype dt,
                             cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
