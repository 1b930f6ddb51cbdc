// gemm.cu - 16-bit x 16-bit projections through cuBLAS (tensor cores, fp32
// accumulation): CUDA_R_16BF for bf16, CUDA_R_16F for fp16; fp32 or 16-bit
// output.
#include "cuda/krn_gemm.h"

// y = x w^T + beta y, with x and w of dt and y of yt.
static bi_status gemm(cublasHandle_t h, void *y, cudaDataType yt, const krn_half *x,
                      const krn_half *w, int M, int N, int K, float beta, krn_dtype dt)
{
    if (M < 0 || N <= 0 || K <= 0 || (dt != KRN_BF16 && dt != KRN_F16))
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    const cudaDataType t = dt == KRN_F16 ? CUDA_R_16F : CUDA_R_16BF;
    // Row-major y = x w^T is column-major y^T (N x M) = w (N x K, stored as
    // K x N column-major, transposed) times x^T (K x M).
    const float one = 1.0f;
    cublasStatus_t s = cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, w, t, K, x, t, K,
                                    &beta, y, yt, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    return s == CUBLAS_STATUS_SUCCESS ? BI_OK : BI_DEVICE;
}

extern "C" bi_status krn_gemm(cublasHandle_t h, float *y, const krn_half *x, const krn_half *w,
                              int M, int N, int K, krn_dtype dt)
{
    return gemm(h, y, CUDA_R_32F, x, w, M, N, K, 0.0f, dt);
}

extern "C" bi_status krn_gemm_add(cublasHandle_t h, float *y, const krn_half *x, const krn_half *w,
                                  int M, int N, int K, krn_dtype dt)
{
    return gemm(h, y, CUDA_R_32F, x, w, M, N, K, 1.0f, dt);
}

extern "C" bi_status krn_gemm_h(cublasHandle_t h, krn_half *y, const krn_half *x, const krn_half *w,
                                int M, int N, int K, krn_dtype dt)
{
    return gemm(h, y, dt == KRN_F16 ? CUDA_R_16F : CUDA_R_16BF, x, w, M, N, K, 0.0f, dt);
}
