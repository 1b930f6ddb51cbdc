// elem.cu - elementwise ops of the forward pass: embedding gather, fp32 ->
// bf16 conversion, residual add, bias add, SwiGLU.
#include "cuda/krn_cuda_internal.cuh"
#include "cuda/krn_elem.h"

static __global__ void embed_kernel(float *__restrict__ x, const __nv_bfloat16 *__restrict__ table,
                                    const int32_t *__restrict__ tokens, int n, int d)
{
    size_t total = (size_t)n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / d, e = i % d;
        x[i] = __bfloat162float(table[(size_t)tokens[t] * d + e]);
    }
}

static __global__ void to_bf16_kernel(__nv_bfloat16 *__restrict__ y, const float *__restrict__ x,
                                      size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = __float2bfloat16_rn(x[i]);
}

static __global__ void add_kernel(float *__restrict__ x, const float *__restrict__ y, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] += y[i];
}

static __global__ void add_bias_kernel(float *__restrict__ y, const float *__restrict__ bias,
                                       size_t n, int N)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] += bias[i % N];
}

static __global__ void silu_mul_kernel(__nv_bfloat16 *__restrict__ out,
                                       const float *__restrict__ gate, const float *__restrict__ up,
                                       size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = __float2bfloat16_rn(g / (1.0f + expf(-g)) * up[i]);
    }
}

static const int THREADS = 256;

extern "C" bi_status krn_embed(float *x, const krn_bf16 *table, const int32_t *tokens, int n,
                               int d, cudaStream_t stream)
{
    if (n < 0 || d < 0)
        return BI_INVALID_ARGUMENT;
    if (n == 0 || d == 0)
        return BI_OK;
    size_t total = (size_t)n * d;
    embed_kernel<<<krn_blocks(total, THREADS), THREADS, 0, stream>>>(x, bf(table), tokens, n, d);
    return krn_launched();
}

extern "C" bi_status krn_f32_to_bf16(krn_bf16 *y, const float *x, size_t n, cudaStream_t stream)
{
    if (n == 0)
        return BI_OK;
    to_bf16_kernel<<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(bf(y), x, n);
    return krn_launched();
}

extern "C" bi_status krn_add(float *x, const float *y, size_t n, cudaStream_t stream)
{
    if (n == 0)
        return BI_OK;
    add_kernel<<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(x, y, n);
    return krn_launched();
}

extern "C" bi_status krn_add_bias(float *y, const float *bias, int M, int N, cudaStream_t stream)
{
    if (M < 0 || N < 0)
        return BI_INVALID_ARGUMENT;
    size_t n = (size_t)M * N;
    if (n == 0)
        return BI_OK;
    add_bias_kernel<<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(y, bias, n, N);
    return krn_launched();
}

extern "C" bi_status krn_silu_mul(krn_bf16 *out, const float *gate, const float *up, size_t n,
                                  cudaStream_t stream)
{
    if (n == 0)
        return BI_OK;
    silu_mul_kernel<<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(bf(out), gate, up, n);
    return krn_launched();
}
