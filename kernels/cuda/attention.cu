// attention.cu - RoPE + paged KV write, and paged attention over a
// sequence's cascade levels (decode and prefill share one kernel).
//
// Attention: one block per (token, kv head) serves the group of query heads
// that share the kv head, so each key and value is read once per group. The
// block walks the levels (segments, then the causal tail) in tiles of TILE
// keys staged in shared memory, keeping one online-softmax state (max, sum,
// accumulator) per query head in fp32; carrying the state from one level to
// the next is the log-sum-exp merge. The query is re-rotated per level
// (differential RoPE). This is the correct-first version: scalar FMAs, no
// split over long contexts, no tensor cores (see issue 5).
#include "cuda/krn_attn.h"
#include "cuda/krn_cuda_internal.cuh"

#define TILE 32
#define THREADS 128

// Rotates the pair (x1, x2) = (x[i], x[i + half]) by angle pos * inv_freq[i].
static __device__ __forceinline__ void rope_pair(float &x1, float &x2, float pos, float inv_freq)
{
    float s, c;
    sincosf(pos * inv_freq, &s, &c);
    float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
    x1 = a;
    x2 = b;
}

static __device__ __forceinline__ size_t kv_offset(const krn_kv_layer &kv, int32_t page, int kvh,
                                                   int slot)
{
    return (((size_t)page * kv.n_kv_head + kvh) * kv.page_size + slot) * kv.head_dim;
}

static __global__ void rope_store_kv_kernel(krn_step st, krn_kv_layer kv, const float *__restrict__ k,
                                            const float *__restrict__ v,
                                            const float *__restrict__ inv_freq)
{
    const int t = blockIdx.x, h = blockIdx.y, hd = kv.head_dim, half = hd / 2;
    const int32_t *seq = st.seq_info + (size_t)st.tok_seq[t] * KRN_SEQ_FIELDS;
    const int32_t idx = st.tok_idx[t];
    const int32_t page = st.pages[seq[KRN_SEQ_TAIL_PAGES] + idx / kv.page_size];
    const size_t dst = kv_offset(kv, page, h, idx % kv.page_size);
    const float *kt = k + ((size_t)t * kv.n_kv_head + h) * hd;
    const float *vt = v + ((size_t)t * kv.n_kv_head + h) * hd;
    const float pos = (float)st.tok_pos[t];
    __nv_bfloat16 *K = bf(kv.k), *V = bf(kv.v);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float x1 = kt[i], x2 = kt[i + half];
        rope_pair(x1, x2, pos, inv_freq[i]);
        K[dst + i] = __float2bfloat16_rn(x1);
        K[dst + i + half] = __float2bfloat16_rn(x2);
    }
    for (int i = threadIdx.x; i < hd; i += blockDim.x)
        V[dst + i] = __float2bfloat16_rn(vt[i]);
}

extern "C" bi_status krn_rope_store_kv(const krn_step *step, krn_kv_layer kv, const float *k,
                                       const float *v, const float *inv_freq, cudaStream_t stream)
{
    if (kv.head_dim <= 0 || kv.head_dim % 2 || kv.n_kv_head <= 0 || kv.page_size <= 0)
        return BI_INVALID_ARGUMENT;
    if (step->n_tokens <= 0)
        return BI_OK;
    dim3 grid((unsigned)step->n_tokens, (unsigned)kv.n_kv_head);
    int threads = kv.head_dim < 128 ? 64 : 128;
    rope_store_kv_kernel<<<grid, threads, 0, stream>>>(*step, kv, k, v, inv_freq);
    return krn_launched();
}

// Shared memory of one attention block: K/V tiles (rows padded by one bf16
// pair so that a warp reading one column of many rows hits distinct banks),
// then per query head the rotated query, the accumulator, scores, and the
// (max, sum, correction) state.
struct attn_smem {
    int group, hd, row;
    __nv_bfloat16 *ks, *vs;
    float *q, *acc, *sc, *m, *l, *corr;
};

static __host__ __device__ size_t attn_smem_bytes(int group, int hd)
{
    size_t row = (size_t)hd + 2;
    return 2 * TILE * row * sizeof(__nv_bfloat16) +
           ((size_t)2 * group * hd + (size_t)group * TILE + 3 * (size_t)group) * sizeof(float);
}

static __device__ attn_smem attn_smem_carve(char *base, int group, int hd)
{
    attn_smem s;
    s.group = group;
    s.hd = hd;
    s.row = hd + 2;
    s.ks = (__nv_bfloat16 *)base;
    s.vs = s.ks + TILE * s.row;
    float *f = (float *)(s.vs + TILE * s.row);
    s.q = f;
    s.acc = s.q + group * hd;
    s.sc = s.acc + group * hd;
    s.m = s.sc + group * TILE;
    s.l = s.m + group;
    s.corr = s.l + group;
    return s;
}

// Attends the block's query heads to the first n keys of one level (page
// list pages), with the queries rotated by rot_pos; updates the online state.
static __device__ void attn_level(const attn_smem &s, const krn_kv_layer &kv, int kvh,
                                  const float *__restrict__ q, const float *__restrict__ inv_freq,
                                  const int32_t *__restrict__ pages, int32_t n, float rot_pos,
                                  float scale)
{
    const int hd = s.hd, half = hd / 2, group = s.group;
    for (int i = threadIdx.x; i < group * half; i += blockDim.x) {
        int g = i / half, e = i % half;
        float x1 = q[g * hd + e], x2 = q[g * hd + e + half];
        rope_pair(x1, x2, rot_pos, inv_freq[e]);
        s.q[g * hd + e] = x1;
        s.q[g * hd + e + half] = x2;
    }
    const __nv_bfloat16 *K = bf(kv.k), *V = bf(kv.v);
    for (int32_t j0 = 0; j0 < n; j0 += TILE) {
        const int nt = n - j0 < TILE ? (int)(n - j0) : TILE;
        __syncthreads(); // the previous tile is consumed; the query is rotated
        for (int i = threadIdx.x; i < nt * hd; i += blockDim.x) {
            int jj = i / hd, e = i % hd;
            int32_t j = j0 + jj;
            size_t off = kv_offset(kv, pages[j / kv.page_size], kvh, j % kv.page_size) + e;
            s.ks[jj * s.row + e] = K[off];
            s.vs[jj * s.row + e] = V[off];
        }
        __syncthreads();
        for (int i = threadIdx.x; i < group * TILE; i += blockDim.x) {
            int g = i / TILE, jj = i % TILE;
            float d = -INFINITY;
            if (jj < nt) {
                d = 0.0f;
                for (int e = 0; e < hd; e++)
                    d += s.q[g * hd + e] * __bfloat162float(s.ks[jj * s.row + e]);
                d *= scale;
            }
            s.sc[g * TILE + jj] = d;
        }
        __syncthreads();
        for (int g = threadIdx.x; g < group; g += blockDim.x) {
            float mx = s.m[g];
            for (int jj = 0; jj < nt; jj++)
                mx = fmaxf(mx, s.sc[g * TILE + jj]);
            float corr = expf(s.m[g] - mx), sum = 0.0f; // exp(-inf) = 0 for the first tile
            for (int jj = 0; jj < TILE; jj++) {
                float p = jj < nt ? expf(s.sc[g * TILE + jj] - mx) : 0.0f;
                s.sc[g * TILE + jj] = p;
                sum += p;
            }
            s.l[g] = s.l[g] * corr + sum;
            s.m[g] = mx;
            s.corr[g] = corr;
        }
        __syncthreads();
        for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
            int g = i / hd, e = i % hd;
            float a = s.acc[i] * s.corr[g];
            for (int jj = 0; jj < nt; jj++)
                a += s.sc[g * TILE + jj] * __bfloat162float(s.vs[jj * s.row + e]);
            s.acc[i] = a;
        }
    }
}

static __global__ void paged_attention_kernel(krn_step st, krn_kv_layer kv,
                                              __nv_bfloat16 *__restrict__ out,
                                              const float *__restrict__ q,
                                              const float *__restrict__ inv_freq, int n_head,
                                              float scale)
{
    extern __shared__ __align__(16) char smem_raw[];
    const int t = blockIdx.x, kvh = blockIdx.y, hd = kv.head_dim;
    const int group = n_head / kv.n_kv_head;
    attn_smem s = attn_smem_carve(smem_raw, group, hd);
    for (int i = threadIdx.x; i < group * hd; i += blockDim.x)
        s.acc[i] = 0.0f;
    for (int g = threadIdx.x; g < group; g += blockDim.x) {
        s.m[g] = -INFINITY;
        s.l[g] = 0.0f;
    }
    const float *qt = q + ((size_t)t * n_head + (size_t)kvh * group) * hd;
    const int32_t *seq = st.seq_info + (size_t)st.tok_seq[t] * KRN_SEQ_FIELDS;
    const int32_t pos = st.tok_pos[t];
    for (int i = 0; i < seq[KRN_SEQ_N_SEGS]; i++) {
        const int32_t *g = st.seg_info + (size_t)(seq[KRN_SEQ_FIRST_SEG] + i) * KRN_SEG_FIELDS;
        __syncthreads(); // the previous level is done with the rotated query
        attn_level(s, kv, kvh, qt, inv_freq, st.pages + g[KRN_SEG_PAGES], g[KRN_SEG_LEN],
                   (float)(pos - g[KRN_SEG_POS] + g[KRN_SEG_ROT_BASE]), scale);
    }
    __syncthreads();
    attn_level(s, kv, kvh, qt, inv_freq, st.pages + seq[KRN_SEQ_TAIL_PAGES], st.tok_idx[t] + 1,
               (float)pos, scale);
    __syncthreads();
    __nv_bfloat16 *o = out + ((size_t)t * n_head + (size_t)kvh * group) * hd;
    for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
        float l = s.l[i / hd];
        o[i] = __float2bfloat16_rn(l > 0.0f ? s.acc[i] / l : 0.0f);
    }
}

extern "C" bi_status krn_paged_attention(const krn_step *step, krn_kv_layer kv, krn_bf16 *out,
                                         const float *q, const float *inv_freq, int n_head,
                                         float scale, cudaStream_t stream)
{
    if (kv.head_dim <= 0 || kv.head_dim % 2 || kv.head_dim > KRN_ATTN_MAX_HEAD_DIM ||
        kv.n_kv_head <= 0 || n_head <= 0 || n_head % kv.n_kv_head || kv.page_size <= 0)
        return BI_INVALID_ARGUMENT;
    if (step->n_tokens <= 0)
        return BI_OK;
    size_t smem = attn_smem_bytes(n_head / kv.n_kv_head, kv.head_dim);
    if (smem > 48 * 1024 &&
        cudaFuncSetAttribute(paged_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)smem) != cudaSuccess)
        return BI_INVALID_ARGUMENT; // a group too large for shared memory
    dim3 grid((unsigned)step->n_tokens, (unsigned)kv.n_kv_head);
    paged_attention_kernel<<<grid, THREADS, smem, stream>>>(*step, kv, bf(out), q, inv_freq, n_head,
                                                            scale);
    return krn_launched();
}
