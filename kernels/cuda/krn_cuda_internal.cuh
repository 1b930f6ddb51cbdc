// krn_cuda_internal.cuh - device helpers shared by the .cu files (typed views
// of 16-bit storage and conversions, the dtype dispatch, the 16-bit mma, the
// launch check, grid sizing, RoPE and the paged KV layout). Never included
// from C.
#ifndef KRN_CUDA_INTERNAL_CUH
#define KRN_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <string.h>

#include <type_traits>

#include "common/status.h"
#include "cuda/krn_types.h"

// krn_half storage seen as T (__nv_bfloat16 or __half).
template <typename T> static inline __host__ __device__ T *hv(krn_half *p)
{
    return reinterpret_cast<T *>(p);
}
template <typename T> static inline __host__ __device__ const T *hv(const krn_half *p)
{
    return reinterpret_cast<const T *>(p);
}

// Element conversions: every kernel loads 16-bit values into fp32, computes
// and accumulates in fp32, and rounds to nearest even on the way out.
static __device__ __forceinline__ float to_f32(__nv_bfloat16 x)
{
    return __bfloat162float(x);
}
static __device__ __forceinline__ float to_f32(__half x)
{
    return __half2float(x);
}
template <typename T> static __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x)
{
    return __float2bfloat16_rn(x);
}
template <> __device__ __forceinline__ __half from_f32<__half>(float x)
{
    return __float2half_rn(x);
}

// Two values in one 32-bit word, lo in the low half (the layout of
// __nv_bfloat162 / __half2 and of mma fragments), and back.
template <typename T> static __device__ __forceinline__ uint32_t pack2(float lo, float hi);
template <> __device__ __forceinline__ uint32_t pack2<__nv_bfloat16>(float lo, float hi)
{
    __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}
template <> __device__ __forceinline__ uint32_t pack2<__half>(float lo, float hi)
{
    __half2 h = __floats2half2_rn(lo, hi);
    uint32_t u;
    memcpy(&u, &h, 4);
    return u;
}
template <typename T> static __device__ __forceinline__ float2 unpack2(uint32_t u);
template <> __device__ __forceinline__ float2 unpack2<__nv_bfloat16>(uint32_t u)
{
    __nv_bfloat162 h;
    memcpy(&h, &u, 4);
    return __bfloat1622float2(h);
}
template <> __device__ __forceinline__ float2 unpack2<__half>(uint32_t u)
{
    __half2 h;
    memcpy(&h, &u, 4);
    return __half22float2(h);
}

// Eight 16-bit values (one 16-byte load) as floats.
template <typename T> static __device__ __forceinline__ void unpack8(const uint4 &r, float *f)
{
    const uint32_t w[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const float2 x = unpack2<T>(w[i]);
        f[2 * i] = x.x;
        f[2 * i + 1] = x.y;
    }
}

// c += a b on the tensor cores (mma.sync m16n8k16, row.col), a (4 registers)
// and b (2) of T, bf16 or fp16; c fp32.
template <typename T>
static __device__ __forceinline__ void mma16816(float *c, uint32_t a0, uint32_t a1, uint32_t a2,
                                                uint32_t a3, uint32_t b0, uint32_t b1)
{
    if constexpr (std::is_same_v<T, __half>)
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
                     "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
    else
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
                     "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
                     : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                     : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

// Calls f(T()) with T the element type dt names and returns what f returns
// (a bi_status); BI_INVALID_ARGUMENT for a dtype it does not know. A launcher
// writes its launch once, as a generic lambda:
//   return krn_dispatch(dt, [&](auto t) { using T = decltype(t); ... });
template <typename F> static inline bi_status krn_dispatch(krn_dtype dt, F &&f)
{
    switch (dt) {
    case KRN_BF16:
        return f(__nv_bfloat16());
    case KRN_F16:
        return f(__half());
    }
    return BI_INVALID_ARGUMENT;
}

// The status of the launch just made; clears nothing sticky (a sticky error
// stays visible to the next call, which is what the backend wants).
static inline bi_status krn_launched(void)
{
    return cudaGetLastError() == cudaSuccess ? BI_OK : BI_DEVICE;
}

// Blocks for a grid-stride loop over n elements.
static inline unsigned krn_blocks(size_t n, int threads)
{
    size_t b = (n + threads - 1) / threads;
    return (unsigned)(b > 65535u * 32 ? 65535u * 32 : (b ? b : 1));
}

// Rotates the pair (x1, x2) = (x[i], x[i + half]) by angle pos * inv_freq[i]
// (RoPE, HF half-split layout).
static __device__ __forceinline__ void rope_pair(float &x1, float &x2, float pos, float inv_freq)
{
    float s, c;
    sincosf(pos * inv_freq, &s, &c);
    float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
    x1 = a;
    x2 = b;
}

// Element offset of (page, kv head, slot) in one layer's paged K or V.
static __device__ __forceinline__ size_t kv_offset(const krn_kv_layer &kv, int32_t page, int kvh,
                                                   int slot)
{
    return (((size_t)page * kv.n_kv_head + kvh) * kv.page_size + slot) * kv.head_dim;
}

#endif
