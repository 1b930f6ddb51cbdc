/*
 * krn_gemm.h - the projections through cuBLAS: bf16 weights and activations,
 * fp32 accumulation and fp32 output.
 *
 * The handle must be bound to the stream the caller works on
 * (cublasSetStream). Never allocates beyond cuBLAS's own workspace, never
 * synchronises; BI_DEVICE if cuBLAS refuses.
 */
#ifndef KRN_GEMM_H
#define KRN_GEMM_H

#include <cublas_v2.h>

#include "common/status.h"
#include "cuda/krn_types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[M][N] (fp32) = x[M][K] (bf16) . w[N][K]^T (bf16), row-major. M == 0 does
 * nothing. */
bi_status krn_gemm_bf16(cublasHandle_t h, float *y, const krn_bf16 *x, const krn_bf16 *w, int M,
                        int N, int K);
/* y[M][N] += x . w^T (the residual add in the GEMM's epilogue). */
bi_status krn_gemm_bf16_add(cublasHandle_t h, float *y, const krn_bf16 *x, const krn_bf16 *w, int M,
                            int N, int K);

/* The same product with a bf16 output (rounded once, from fp32). */
bi_status krn_gemm_bf16_h(cublasHandle_t h, krn_bf16 *y, const krn_bf16 *x, const krn_bf16 *w,
                          int M, int N, int K);

#ifdef __cplusplus
}
#endif

#endif
