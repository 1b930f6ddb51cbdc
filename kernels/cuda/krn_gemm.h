/*
 * krn_gemm.h - the projections through cuBLAS: 16-bit weights and activations
 * (bf16 or fp16), fp32 accumulation, fp32 or 16-bit output.
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

/* y[M][N] (fp32) = x[M][K] . w[N][K]^T, row-major, x and w of dtype dt.
 * M == 0 does nothing. */
bi_status krn_gemm(cublasHandle_t h, float *y, const krn_half *x, const krn_half *w, int M, int N,
                   int K, krn_dtype dt);
/* y[M][N] += x . w^T (the residual add in the GEMM's epilogue). */
bi_status krn_gemm_add(cublasHandle_t h, float *y, const krn_half *x, const krn_half *w, int M,
                       int N, int K, krn_dtype dt);

/* The same product with an output of dtype dt (rounded once, from fp32). */
bi_status krn_gemm_h(cublasHandle_t h, krn_half *y, const krn_half *x, const krn_half *w, int M,
                     int N, int K, krn_dtype dt);

#ifdef __cplusplus
}
#endif

#endif
