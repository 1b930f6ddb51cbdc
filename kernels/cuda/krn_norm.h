/*
 * krn_norm.h - RMSNorm on the fp32 residual stream: into 16-bit storage
 * (the input of a projection, optionally gathering rows; dt bf16 or fp16) or
 * in place in fp32 (QK-norm).
 *
 * y = x / sqrt(mean(x^2) + eps) * w, statistics in fp32. Launchers take a
 * stream, never allocate or synchronise, check the launch and return
 * BI_DEVICE if it failed. Device pointers, owned by the caller.
 */
#ifndef KRN_NORM_H
#define KRN_NORM_H

#include <cuda_runtime_api.h>

#include "common/status.h"
#include "cuda/krn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[r] = dt(rmsnorm(x[rows ? rows[r] : r]) * w) for M rows of D. */
bi_status krn_rmsnorm_half(krn_half *y, const float *x, const int32_t *rows, const float *w, int M,
                           int D, float eps, krn_dtype dt, cudaStream_t stream);
/* x[r] += y[r], then h[r] = dt(rmsnorm(x[r]) * w), M rows of D (the
 * residual add fused with the next norm). */
bi_status krn_add_rmsnorm_half(krn_half *h, float *x, const float *y, const float *w, int M, int D,
                               float eps, krn_dtype dt, cudaStream_t stream);
/* x[r] = rmsnorm(x[r]) * w in place, M rows of D. */
bi_status krn_rmsnorm_f32(float *x, const float *w, int M, int D, float eps, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
