// krn_cuda_internal.cuh - device helpers shared by the .cu files (bf16 views,
// the launch check, grid sizing, RoPE and the paged KV layout). Never included from C.
#ifndef KRN_CUDA_INTERNAL_CUH
#define KRN_CUDA_INTERNAL_CUH

#include <cuda_bf16.h>

#include "common/status.h"
#include "cuda/krn_types.h"

static inline __host__ __device__ __nv_bfloat16 *bf(krn_bf16 *p)
{
    return reinterpret_cast<__nv_bfloat16 *>(p);
}
static inline __host__ __device__ const __nv_bfloat16 *bf(const krn_bf16 *p)
{
    return reinterpret_cast<const __nv_bfloat16 *>(p);
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
