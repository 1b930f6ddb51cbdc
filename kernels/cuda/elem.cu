// elem.cu - elementwise ops of the forward pass: embedding gather, fp32 ->
// 16-bit conversion, residual add, bias add, SwiGLU, and the splitting of
// fused projections. Kernels with 16-bit storage are templated on its type
// (__nv_bfloat16 or __half); math is fp32.
#include "cuda/krn_cuda_internal.cuh"
#include "cuda/krn_elem.h"

template <typename T>
static __global__ void embed_kernel(float *__restrict__ x, const T *__restrict__ table,
                                    const int32_t *__restrict__ tokens, int n, int d)
{
    size_t total = (size_t)n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        size_t t = i / d, e = i % d;
        x[i] = to_f32(table[(size_t)tokens[t] * d + e]);
    }
}

template <typename T>
static __global__ void to_half_kernel(T *__restrict__ y, const float *__restrict__ x, size_t n,
                                      unsigned *__restrict__ overflow)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const T r = from_f32<T>(x[i]);
        y[i] = r;
        if (overflow && isinf(to_f32(r)) && isfinite(x[i]))
            atomicAdd(overflow, 1u); // rare: a load that overflows is refused or redone
    }
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

template <typename T>
static __global__ void silu_mul_kernel(T *__restrict__ out, const float *__restrict__ gate,
                                       const float *__restrict__ up, size_t n)
{
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float g = gate[i];
        out[i] = from_f32<T>(g / (1.0f + expf(-g)) * up[i]);
    }
}

// Splits rows of a fused projection y [M][n0 + n1 + n2] into three outputs,
// adding each one's bias (NULL: none).
static __global__ void split3_kernel(float *__restrict__ o0, float *__restrict__ o1,
                                     float *__restrict__ o2, const float *__restrict__ y,
                                     const float *__restrict__ b0, const float *__restrict__ b1,
                                     const float *__restrict__ b2, int M, int n0, int n1, int n2)
{
    const int N = n0 + n1 + n2;
    const size_t total = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / N;
        int c = (int)(i % N);
        float v = y[i];
        if (c < n0) {
            o0[m * n0 + c] = b0 ? v + b0[c] : v;
        } else if ((c -= n0) < n1) {
            o1[m * n1 + c] = b1 ? v + b1[c] : v;
        } else {
            c -= n1;
            o2[m * n2 + c] = b2 ? v + b2[c] : v;
        }
    }
}

// out[m][i] = silu(y[m][i]) * y[m][ff + i]: SwiGLU over a fused gate|up row.
template <typename T>
static __global__ void silu_mul_cat_kernel(T *__restrict__ out, const float *__restrict__ y, int M,
                                           int ff)
{
    const size_t total = (size_t)M * ff;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / ff, c = i % ff;
        const float g = y[m * 2 * ff + c];
        out[i] = from_f32<T>(g / (1.0f + expf(-g)) * y[m * 2 * ff + ff + c]);
    }
}

// silu_mul_cat over four columns per thread (ff % 4 == 0): 16-byte loads,
// one 8-byte store.
template <typename T>
static __global__ void silu_mul_cat4_kernel(T *__restrict__ out, const float *__restrict__ y, int M,
                                            int ff)
{
    const int q = ff / 4;
    const size_t total = (size_t)M * q;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / q, c = (i % q) * 4;
        const float4 g = *reinterpret_cast<const float4 *>(y + m * 2 * ff + c);
        const float4 u = *reinterpret_cast<const float4 *>(y + m * 2 * ff + ff + c);
        uint2 v;
        v.x = pack2<T>(g.x / (1.0f + expf(-g.x)) * u.x, g.y / (1.0f + expf(-g.y)) * u.y);
        v.y = pack2<T>(g.z / (1.0f + expf(-g.z)) * u.z, g.w / (1.0f + expf(-g.w)) * u.w);
        *reinterpret_cast<uint2 *>(out + m * ff + c) = v;
    }
}

// silu_mul_cat over a 16-bit gate|up, eight columns per thread where
// ff % 8 == 0 (16-byte loads), else one.
static __device__ __forceinline__ float silu_mul1(float g, float u)
{
    return g / (1.0f + expf(-g)) * u;
}

template <typename T>
static __global__ void silu_mul_cat_h_kernel(T *__restrict__ out, const T *__restrict__ y, int M,
                                             int ff)
{
    const bool vec = ff % 8 == 0;
    const int w = vec ? 8 : 1, q = ff / w;
    const size_t total = (size_t)M * q;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / q, c = (i % q) * w;
        const T *g = y + m * 2 * ff + c, *u = g + ff;
        if (vec) {
            const uint4 gv = *reinterpret_cast<const uint4 *>(g),
                        uv = *reinterpret_cast<const uint4 *>(u);
            const uint32_t gw[4] = {gv.x, gv.y, gv.z, gv.w}, uw[4] = {uv.x, uv.y, uv.z, uv.w};
            uint32_t ow[4];
#pragma unroll
            for (int k = 0; k < 4; k++) {
                const float2 a = unpack2<T>(gw[k]), b = unpack2<T>(uw[k]);
                ow[k] = pack2<T>(silu_mul1(a.x, b.x), silu_mul1(a.y, b.y));
            }
            *reinterpret_cast<uint4 *>(out + m * ff + c) = make_uint4(ow[0], ow[1], ow[2], ow[3]);
        } else {
            out[m * ff + c] = from_f32<T>(silu_mul1(to_f32(*g), to_f32(*u)));
        }
    }
}

static const int THREADS = 256;

// split3_kernel four columns at a time (n0, n1, n2 all % 4 == 0).
static __global__ void split3_4_kernel(float *__restrict__ o0, float *__restrict__ o1,
                                       float *__restrict__ o2, const float *__restrict__ y,
                                       const float *__restrict__ b0, const float *__restrict__ b1,
                                       const float *__restrict__ b2, int M, int n0, int n1, int n2)
{
    const int N4 = (n0 + n1 + n2) / 4;
    const size_t total = (size_t)M * N4;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < total;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t m = i / N4;
        int c = (int)(i % N4) * 4;
        float4 v = reinterpret_cast<const float4 *>(y)[i];
        float *o;
        const float *b;
        int n;
        if (c < n0) {
            o = o0, b = b0, n = n0;
        } else if ((c -= n0) < n1) {
            o = o1, b = b1, n = n1;
        } else {
            c -= n1;
            o = o2, b = b2, n = n2;
        }
        if (b) {
            const float4 bb = *reinterpret_cast<const float4 *>(b + c);
            v.x += bb.x, v.y += bb.y, v.z += bb.z, v.w += bb.w;
        }
        *reinterpret_cast<float4 *>(o + m * n + c) = v;
    }
}

extern "C" bi_status krn_split3(float *o0, float *o1, float *o2, const float *y, const float *b0,
                                const float *b1, const float *b2, int M, int n0, int n1, int n2,
                                cudaStream_t stream)
{
    if (M < 0 || n0 < 0 || n1 < 0 || n2 < 0)
        return BI_INVALID_ARGUMENT;
    size_t n = (size_t)M * ((size_t)n0 + n1 + n2);
    if (n == 0)
        return BI_OK;
    const uintptr_t al = (uintptr_t)o0 | (uintptr_t)o1 | (uintptr_t)o2 | (uintptr_t)y |
                         (uintptr_t)b0 | (uintptr_t)b1 | (uintptr_t)b2;
    if (n0 % 4 == 0 && n1 % 4 == 0 && n2 % 4 == 0 && al % 16 == 0)
        split3_4_kernel<<<krn_blocks(n / 4, THREADS), THREADS, 0, stream>>>(o0, o1, o2, y, b0, b1,
                                                                            b2, M, n0, n1, n2);
    else
        split3_kernel<<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(o0, o1, o2, y, b0, b1, b2, M,
                                                                      n0, n1, n2);
    return krn_launched();
}

extern "C" bi_status krn_silu_mul_cat(krn_half *out, const float *y, int M, int ff, krn_dtype dt,
                                      cudaStream_t stream)
{
    if (M < 0 || ff < 0)
        return BI_INVALID_ARGUMENT;
    size_t n = (size_t)M * ff;
    if (n == 0)
        return BI_OK;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        if (ff % 4 == 0 && ((uintptr_t)y | (uintptr_t)out) % 16 == 0)
            silu_mul_cat4_kernel<T>
                <<<krn_blocks(n / 4, THREADS), THREADS, 0, stream>>>(hv<T>(out), y, M, ff);
        else
            silu_mul_cat_kernel<T>
                <<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(hv<T>(out), y, M, ff);
        return krn_launched();
    });
}

extern "C" bi_status krn_embed(float *x, const krn_half *table, const int32_t *tokens, int n, int d,
                               krn_dtype dt, cudaStream_t stream)
{
    if (n < 0 || d < 0)
        return BI_INVALID_ARGUMENT;
    if (n == 0 || d == 0)
        return BI_OK;
    size_t total = (size_t)n * d;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        embed_kernel<T>
            <<<krn_blocks(total, THREADS), THREADS, 0, stream>>>(x, hv<T>(table), tokens, n, d);
        return krn_launched();
    });
}

extern "C" bi_status krn_f32_to_half(krn_half *y, const float *x, size_t n, unsigned *overflow,
                                     krn_dtype dt, cudaStream_t stream)
{
    if (n == 0)
        return BI_OK;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        to_half_kernel<T><<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(hv<T>(y), x, n, overflow);
        return krn_launched();
    });
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

extern "C" bi_status krn_silu_mul(krn_half *out, const float *gate, const float *up, size_t n,
                                  krn_dtype dt, cudaStream_t stream)
{
    if (n == 0)
        return BI_OK;
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        silu_mul_kernel<T><<<krn_blocks(n, THREADS), THREADS, 0, stream>>>(hv<T>(out), gate, up, n);
        return krn_launched();
    });
}

extern "C" bi_status krn_silu_mul_cat_h(krn_half *out, const krn_half *y, int M, int ff,
                                        krn_dtype dt, cudaStream_t stream)
{
    if (M < 0 || ff < 0)
        return BI_INVALID_ARGUMENT;
    size_t n = (size_t)M * ff;
    if (n == 0)
        return BI_OK;
    if (ff % 8 == 0 && ((uintptr_t)y | (uintptr_t)out) % 16)
        return BI_INVALID_ARGUMENT; // the 16-byte loads need aligned rows
    return krn_dispatch(dt, [&](auto t) {
        using T = decltype(t);
        silu_mul_cat_h_kernel<T><<<krn_blocks(ff % 8 ? n : n / 8, THREADS), THREADS, 0, stream>>>(
            hv<T>(out), hv<T>(y), M, ff);
        return krn_launched();
    });
}
