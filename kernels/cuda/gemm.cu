// gemm.cu - bf16 x bf16 -> fp32 projections through cuBLAS (tensor cores,
// fp32 accumulation).
#include "cuda/krn_gemm.h"

// y = x w^T + beta y.
static bi_status gemm(cublasHandle_t h, float *y, const krn_bf16 *x, const krn_bf16 *w, int M,
                      int N, int K, float beta)
{
    if (M < 0 || N <= 0 || K <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    // Row-major y = x w^T is column-major y^T (N x M) = w (N x K, stored as
    // K x N column-major, transposed) times x^T (K x M).
    const float one = 1.0f;
    cublasStatus_t s =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_16BF, K, x, CUDA_R_16BF,
                     K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? BI_OK : BI_DEVICE;
}

extern "C" bi_status krn_gemm_bf16(cublasHandle_t h, float *y, const krn_bf16 *x, const krn_bf16 *w,
                                   int M, int N, int K)
{
    return gemm(h, y, x, w, M, N, K, 0.0f);
}

extern "C" bi_status krn_gemm_bf16_add(cublasHandle_t h, float *y, const krn_bf16 *x,
                                       const krn_bf16 *w, int M, int N, int K)
{
    return gemm(h, y, x, w, M, N, K, 1.0f);
}

extern "C" bi_status krn_gemm_bf16_h(cublasHandle_t h, krn_bf16 *y, const krn_bf16 *x,
                                     const krn_bf16 *w, int M, int N, int K)
{
    if (M < 0 || N <= 0 || K <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    // as krn_gemm_bf16, the product rounded to bf16 on the way out
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t s =
        cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, CUDA_R_16BF, K, x, CUDA_R_16BF,
                     K, &zero, y, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? BI_OK : BI_DEVICE;
}
