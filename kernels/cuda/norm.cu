// norm.cu - RMSNorm over rows of the fp32 residual stream: one block per row,
// fp32 statistics, 16-bit (bf16 or fp16) or in-place fp32 output.
#include "cuda/krn_cuda_internal.cuh"
#include "cuda/krn_norm.h"

static const int THREADS = 256;

// 1 / sqrt(mean(x^2) + eps) of one row, known to every thread of the block.
static __device__ float row_inv_rms(const float *__restrict__ x, int D, float eps)
{
    __shared__ float part[THREADS / 32];
    float s = 0.0f;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        s += x[i] * x[i];
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = s;
    __syncthreads();
    float tot = 0.0f;
    for (int w = 0; w < THREADS / 32; w++)
        tot += part[w];
    return rsqrtf(tot / (float)D + eps);
}

template <typename T>
static __global__ void rmsnorm_half_kernel(T *__restrict__ y, const float *__restrict__ x,
                                           const int32_t *__restrict__ rows,
                                           const float *__restrict__ w, int D, float eps)
{
    const int r = blockIdx.x;
    const float *xr = x + (size_t)(rows ? rows[r] : r) * D;
    float s = row_inv_rms(xr, D, eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        y[(size_t)r * D + i] = from_f32<T>(xr[i] * s * w[i]);
}

static __global__ void rmsnorm_f32_kernel(float *__restrict__ x, const float *__restrict__ w, int D,
                                          float eps)
{
    float *xr = x + (size_t)blockIdx.x * D;
    float s = row_inv_rms(xr, D, eps);
    __syncthreads(); // every thread has read the row before any writes it
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        xr[i] = xr[i] * s * w[i];
}

// x += y, then h = rmsnorm(x) * w (16-bit): the residual add and the next
// norm in one pass over the row.
template <typename T>
static __global__ void add_rmsnorm_kernel(T *__restrict__ h, float *__restrict__ x,
                                          const float *__restrict__ y, const float *__restrict__ w,
                                          int D, float eps)
{
    float *xr = x + (size_t)blockIdx.x * D;
    const float *yr = y + (size_t)blockIdx.x * D;
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        xr[i] += yr[i]; // each thread re-reads only what it wrote
    float s = row_inv_rms(xr, D, eps);
    for (int i = threadIdx.x; i < D; i += blockDim.x)
        h[(size_t)blockIdx.x * D + i] = from_f32<T>(xr[i] * s * w[i]);
}

// add_rmsnorm_kernel for rows of D % 4 == 0 and D <= THREADS * 4 * MAXV: the
// row stays in registers (float4s), so x is read and written once. y NULL:
// the norm alone (rmsnorm_half_kernel over all rows; x is only read).
#define MAXV 8
template <typename T>
static __global__ void __launch_bounds__(THREADS)
    add_rmsnorm4_kernel(T *__restrict__ h, float *__restrict__ x, const float *__restrict__ y,
                        const float *__restrict__ w, int D, float eps)
{
    __shared__ float part[THREADS / 32];
    float4 *xr = reinterpret_cast<float4 *>(x + (size_t)blockIdx.x * D);
    const float4 *yr = reinterpret_cast<const float4 *>(y + (size_t)blockIdx.x * D);
    const int n4 = D / 4;
    float4 v[MAXV];
    float ss = 0.0f;
#pragma unroll
    for (int k = 0; k < MAXV; k++) {
        const int i = threadIdx.x + k * THREADS;
        if (i < n4) {
            float4 a = xr[i];
            if (y) {
                const float4 b = yr[i];
                a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
                xr[i] = a;
            }
            v[k] = a;
            ss += a.x * a.x + a.y * a.y + a.z * a.z + a.w * a.w;
        }
    }
    for (int o = 16; o > 0; o >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, o);
    if ((threadIdx.x & 31) == 0)
        part[threadIdx.x >> 5] = ss;
    __syncthreads();
    float tot = 0.0f;
#pragma unroll
    for (int i = 0; i < THREADS / 32; i++)
        tot += part[i];
    const float s = rsqrtf(tot / (float)D + eps);
    const float4 *w4 = reinterpret_cast<const float4 *>(w);
    T *hr = h + (size_t)blockIdx.x * D;
#pragma unroll
    for (int k = 0; k < MAXV; k++) {
        const int i = threadIdx.x + k * THREADS;
        if (i < n4) {
            const float4 g = w4[i];
            uint2 o;
            o.x = pack2<T>(v[k].x * s * g.x, v[k].y * s * g.y);
            o.y = pack2<T>(v[k].z * s * g.z, v[k].w * s * g.w);
            *reinterpret_cast<uint2 *>(hr + 4 * i) = o;
        }
    }
}

// Whether add_rmsnorm4_kernel takes rows of D with these pointers (16-byte
// float4 loads, 8-byte stores of four 16-bit outputs).
static bool rows4_ok(int D, const void *x, const void *y, const void *w, const void *h)
{
    return D % 4 == 0 && D <= THREADS * 4 * MAXV &&
           ((uintptr_t)x | (uintptr_t)y | (uintptr_t)w) % 16 == 0 && (uintptr_t)h % 8 == 0;
}

extern "C" bi_status krn_add_rmsnorm_half(krn_half *h, float *x, const float *y, const float *w,
                                          int M, int D, float eps, krn_dtype dt,
                                          cudaStream_t stream)
{
    if (M < 0 || D <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        if (rows4_ok(D, x, y, w, h))
            add_rmsnorm4_kernel<T><<<M, THREADS, 0, stream>>>(hv<T>(h), x, y, w, D, eps);
        else
            add_rmsnorm_kernel<T><<<M, THREADS, 0, stream>>>(hv<T>(h), x, y, w, D, eps);
        return krn_launched();
    });
}

extern "C" bi_status krn_rmsnorm_half(krn_half *y, const float *x, const int32_t *rows,
                                      const float *w, int M, int D, float eps, krn_dtype dt,
                                      cudaStream_t stream)
{
    if (M < 0 || D <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        if (!rows && rows4_ok(D, x, nullptr, w, y))
            add_rmsnorm4_kernel<T>
                <<<M, THREADS, 0, stream>>>(hv<T>(y), const_cast<float *>(x), nullptr, w, D, eps);
        else
            rmsnorm_half_kernel<T><<<M, THREADS, 0, stream>>>(hv<T>(y), x, rows, w, D, eps);
        return krn_launched();
    });
}

extern "C" bi_status krn_rmsnorm_f32(float *x, const float *w, int M, int D, float eps,
                                     cudaStream_t stream)
{
    if (M < 0 || D <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    rmsnorm_f32_kernel<<<M, THREADS, 0, stream>>>(x, w, D, eps);
    return krn_launched();
}
