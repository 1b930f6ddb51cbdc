// attention.cu - RoPE + paged KV write, and paged attention over a
// sequence's cascade levels (decode and prefill share one kernel).
//
// Attention: one block per (token, kv head) serves the group of query heads
// that share the kv head, so each key and value is read once per group. The
// block walks the levels (segments, then the causal tail) in tiles of TILE
// keys staged in shared memory, keeping one online-softmax state (max, sum,
// accumulator) per query head in fp32; carrying the state from one level to
// the next is the log-sum-exp merge. The query is re-rotated per level
// (differential RoPE). This tiled kernel serves the shapes the split kernel
// below does not (head_dim other than 64/128/256, groups over 8).
//
// K/V and the output are 16-bit (bf16 or fp16, the kv layer's dtype): every
// kernel is templated on the element type T and computes in fp32.
#include "cuda/krn_attn.h"
#include "cuda/krn_cuda_internal.cuh"

#define TILE    32
#define THREADS 128

// Partials: n_slots outputs (head_dim floats) per row, then their
// log2-sum-exps; the offset of the latter.
static size_t krn_part_lse_offset(int n_rows, int n_head, int head_dim, int n_slots)
{
    return (size_t)n_rows * n_head * n_slots * head_dim;
}

template <typename T>
static __global__ void
rope_store_kv_kernel(krn_step st, krn_kv_layer kv, const float *__restrict__ k,
                     const float *__restrict__ v, const float *__restrict__ inv_freq)
{
    const int t = blockIdx.x, h = blockIdx.y, hd = kv.head_dim, half = hd / 2;
    const int32_t *seq = st.seq_info + (size_t)st.tok_seq[t] * KRN_SEQ_FIELDS;
    const int32_t idx = st.tok_idx[t];
    const int32_t page = st.pages[seq[KRN_SEQ_TAIL_PAGES] + idx / kv.page_size];
    const size_t dst = kv_offset(kv, page, h, idx % kv.page_size);
    const float *kt = k + ((size_t)t * kv.n_kv_head + h) * hd;
    const float *vt = v + ((size_t)t * kv.n_kv_head + h) * hd;
    const float pos = (float)st.tok_pos[t];
    T *K = hv<T>(kv.k), *V = hv<T>(kv.v);
    for (int i = threadIdx.x; i < half; i += blockDim.x) {
        float x1 = kt[i], x2 = kt[i + half];
        rope_pair(x1, x2, pos, inv_freq[i]);
        K[dst + i] = from_f32<T>(x1);
        K[dst + i + half] = from_f32<T>(x2);
    }
    for (int i = threadIdx.x; i < hd; i += blockDim.x)
        V[dst + i] = from_f32<T>(vt[i]);
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
    return krn_dispatch(kv.dtype, [&](auto t) {
        using T = decltype(t);
        rope_store_kv_kernel<T><<<grid, threads, 0, stream>>>(*step, kv, k, v, inv_freq);
        return krn_launched();
    });
}

// Shared memory of one attention block: K/V tiles (rows padded by one 16-bit
// pair so that a warp reading one column of many rows hits distinct banks),
// then per query head the rotated query, the accumulator, scores, and the
// (max, sum, correction) state.
template <typename T> struct attn_smem {
    int group, hd, row;
    T *ks, *vs;
    float *q, *acc, *sc, *m, *l, *corr;
};

static __host__ __device__ size_t attn_smem_bytes(int group, int hd)
{
    size_t row = (size_t)hd + 2;
    return 2 * TILE * row * sizeof(krn_half) +
           ((size_t)2 * group * hd + (size_t)group * TILE + 3 * (size_t)group) * sizeof(float);
}

template <typename T> static __device__ attn_smem<T> attn_smem_carve(char *base, int group, int hd)
{
    attn_smem<T> s;
    s.group = group;
    s.hd = hd;
    s.row = hd + 2;
    s.ks = (T *)base;
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
template <typename T>
static __device__ void attn_level(const attn_smem<T> &s, const krn_kv_layer &kv, int kvh,
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
    const T *K = hv<T>(kv.k), *V = hv<T>(kv.v);
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
                    d += s.q[g * hd + e] * to_f32(s.ks[jj * s.row + e]);
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
                a += s.sc[g * TILE + jj] * to_f32(s.vs[jj * s.row + e]);
            s.acc[i] = a;
        }
    }
}

template <typename T>
static __global__ void paged_attention_kernel(krn_step st, krn_kv_layer kv, T *__restrict__ out,
                                              const float *__restrict__ q,
                                              const float *__restrict__ inv_freq, int n_head,
                                              float scale)
{
    extern __shared__ __align__(16) char smem_raw[];
    const int t = blockIdx.x, kvh = blockIdx.y, hd = kv.head_dim;
    const int group = n_head / kv.n_kv_head;
    attn_smem<T> s = attn_smem_carve<T>(smem_raw, group, hd);
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
    T *o = out + ((size_t)t * n_head + (size_t)kvh * group) * hd;
    for (int i = threadIdx.x; i < group * hd; i += blockDim.x) {
        float l = s.l[i / hd];
        o[i] = from_f32<T>(l > 0.0f ? s.acc[i] / l : 0.0f);
    }
}

// ---- split-KV attention (flash-decoding) ----
//
// One block per (token, kv head, split) of SPLIT_WARPS warps. A key row of
// HD 16-bit values is read by HD / 8 lanes, 16 bytes each, so a warp covers 256 / HD
// keys per load and a block KPB; U such loads (2 or 4) are in flight
// before the first use. Each lane keeps an online-softmax state (max and sum
// in the log2 domain, its 8 accumulator columns) for every query head of the
// group; states merge by log-sum-exp across the lanes of a warp (shuffles),
// then across warps (shared memory). The token's keys are its levels laid end
// to end; split s takes a contiguous slice of them, so a long level is shared
// by several blocks. With one split the block writes the output; otherwise it
// writes its normalised partial output and log2-sum-exp, and merge_kernel
// combines the splits.
#define SPLIT_WARPS 4

template <int HD, int G> struct split_shape {
    static constexpr int LPK = HD / 8;            // lanes per key
    static constexpr int KPW = 32 / LPK;          // keys per warp per load
    static constexpr int KPB = KPW * SPLIT_WARPS; // keys per block per load
    static constexpr int U = G >= 8 ? 2 : 4;      // loads in flight (registers)
    static constexpr int STEP = KPB * U;          // keys per iteration
};

// Keys of token t over its levels (segments a shared job does not cover,
// then the causal tail).
static __device__ int32_t token_keys(const krn_step &st, int t, const int32_t *seq)
{
    int32_t n = st.tok_idx[t] + 1;
    for (int i = 0; i < seq[KRN_SEQ_N_SEGS]; i++) {
        const int32_t *g = st.seg_info + (size_t)(seq[KRN_SEQ_FIRST_SEG] + i) * KRN_SEG_FIELDS;
        if (!g[KRN_SEG_SHARED])
            n += g[KRN_SEG_LEN];
    }
    return n;
}

template <typename T, int HD, int G>
static __global__ void __launch_bounds__(SPLIT_WARPS * 32)
    split_attention_kernel(krn_step st, krn_kv_layer kv, T *__restrict__ out,
                           float *__restrict__ part_o, float *__restrict__ part_lse,
                           const float *__restrict__ q, const float *__restrict__ inv_freq,
                           int n_head, float scale_log2, int n_split, int n_slots)
{
    using S = split_shape<HD, G>;
    __shared__ __align__(16) float qs[G * HD];
    __shared__ __align__(16) float red_acc[SPLIT_WARPS][G][HD];
    __shared__ float red_m[SPLIT_WARPS][G], red_l[SPLIT_WARPS][G];
    const int di = blockIdx.x, t = st.dec ? st.dec[di] : di, kvh = blockIdx.y, split = blockIdx.z;
    const int group = n_head / kv.n_kv_head;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int kk = lane / S::LPK, d0 = (lane % S::LPK) * 8;
    const int32_t *seq = st.seq_info + (size_t)st.tok_seq[t] * KRN_SEQ_FIELDS;
    const int n_segs = seq[KRN_SEQ_N_SEGS];
    const int32_t pos = st.tok_pos[t];
    const int32_t total = token_keys(st, t, seq);
    int32_t chunk = (total + n_split - 1) / n_split;
    chunk = (chunk + S::KPB - 1) / S::KPB * S::KPB;
    const int32_t k0 = split * chunk, k1 = min(total, k0 + chunk);

    float m[G], l[G], acc[G][8];
#pragma unroll
    for (int g = 0; g < G; g++) {
        m[g] = -INFINITY;
        l[g] = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; e++)
            acc[g][e] = 0.0f;
    }
    const float *qt = q + ((size_t)t * n_head + (size_t)kvh * group) * HD;
    const T *K = hv<T>(kv.k), *V = hv<T>(kv.v);
    int32_t base = 0;
    for (int lv = 0; lv <= n_segs; lv++) {
        const int32_t *pages;
        int32_t len;
        float rot;
        if (lv < n_segs) {
            const int32_t *g = st.seg_info + (size_t)(seq[KRN_SEQ_FIRST_SEG] + lv) * KRN_SEG_FIELDS;
            if (g[KRN_SEG_SHARED])
                continue; // a shared job attends it
            pages = st.pages + g[KRN_SEG_PAGES];
            len = g[KRN_SEG_LEN];
            rot = (float)(pos - g[KRN_SEG_POS] + g[KRN_SEG_ROT_BASE]);
        } else {
            pages = st.pages + seq[KRN_SEQ_TAIL_PAGES];
            len = st.tok_idx[t] + 1;
            rot = (float)pos;
        }
        const int32_t lo = max(k0, base) - base, hi = min(k1, base + len) - base;
        base += len;
        if (lo >= hi)
            continue;    // block-uniform
        __syncthreads(); // the previous level's readers of qs are done
        for (int i = threadIdx.x; i < group * (HD / 2); i += blockDim.x) {
            int g = i / (HD / 2), e = i % (HD / 2);
            float x1 = qt[g * HD + e], x2 = qt[g * HD + e + HD / 2];
            rope_pair(x1, x2, rot, inv_freq[e]);
            qs[g * HD + e] = x1 * scale_log2;
            qs[g * HD + e + HD / 2] = x2 * scale_log2;
        }
        __syncthreads();
        float qr[G][8];
#pragma unroll
        for (int g = 0; g < G; g++)
#pragma unroll
            for (int e = 0; e < 8; e++)
                qr[g][e] = g < group ? qs[g * HD + d0 + e] : 0.0f;
        for (int32_t j0 = lo; j0 < hi; j0 += S::STEP) {
            uint4 kr[S::U], vr[S::U];
            bool ok[S::U];
#pragma unroll
            for (int u = 0; u < S::U; u++) {
                const int32_t j = j0 + u * S::KPB + warp * S::KPW + kk;
                ok[u] = j < hi;
                if (ok[u]) {
                    size_t off = kv_offset(kv, pages[j / kv.page_size], kvh, j % kv.page_size) + d0;
                    kr[u] = *reinterpret_cast<const uint4 *>(K + off);
                    vr[u] = *reinterpret_cast<const uint4 *>(V + off);
                } else {
                    kr[u] = make_uint4(0, 0, 0, 0);
                    vr[u] = make_uint4(0, 0, 0, 0);
                }
            }
            float s[S::U][G];
#pragma unroll
            for (int u = 0; u < S::U; u++) {
                float kf[8];
                unpack8<T>(kr[u], kf);
#pragma unroll
                for (int g = 0; g < G; g++) {
                    float d = 0.0f;
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        d = fmaf(qr[g][e], kf[e], d);
#pragma unroll
                    for (int o = S::LPK / 2; o > 0; o >>= 1)
                        d += __shfl_xor_sync(0xffffffffu, d, o);
                    s[u][g] = ok[u] ? d : -INFINITY;
                }
            }
#pragma unroll
            for (int g = 0; g < G; g++) {
                float mx = m[g];
#pragma unroll
                for (int u = 0; u < S::U; u++)
                    mx = fmaxf(mx, s[u][g]);
                if (mx == -INFINITY)
                    continue;
                const float corr = exp2f(m[g] - mx);
                l[g] *= corr;
#pragma unroll
                for (int e = 0; e < 8; e++)
                    acc[g][e] *= corr;
#pragma unroll
                for (int u = 0; u < S::U; u++) {
                    const float p = exp2f(s[u][g] - mx);
                    float vf[8];
                    unpack8<T>(vr[u], vf);
                    l[g] += p;
#pragma unroll
                    for (int e = 0; e < 8; e++)
                        acc[g][e] = fmaf(p, vf[e], acc[g][e]);
                }
                m[g] = mx;
            }
        }
    }
    // Merge the warp's key slots (lanes with the same columns), then the warps.
#pragma unroll
    for (int o = S::LPK; o < 32; o <<= 1) {
#pragma unroll
        for (int g = 0; g < G; g++) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[g], o);
            const float lo_ = __shfl_xor_sync(0xffffffffu, l[g], o);
            float ao[8];
#pragma unroll
            for (int e = 0; e < 8; e++)
                ao[e] = __shfl_xor_sync(0xffffffffu, acc[g][e], o);
            const float M = fmaxf(m[g], mo);
            if (M == -INFINITY)
                continue;
            const float c1 = exp2f(m[g] - M), c2 = exp2f(mo - M);
            l[g] = l[g] * c1 + lo_ * c2;
#pragma unroll
            for (int e = 0; e < 8; e++)
                acc[g][e] = acc[g][e] * c1 + ao[e] * c2;
            m[g] = M;
        }
    }
    if (kk == 0) {
#pragma unroll
        for (int g = 0; g < G; g++) {
#pragma unroll
            for (int e = 0; e < 8; e++)
                red_acc[warp][g][d0 + e] = acc[g][e];
            if (d0 == 0) {
                red_m[warp][g] = m[g];
                red_l[warp][g] = l[g];
            }
        }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < group * HD; i += blockDim.x) {
        const int g = i / HD, e = i % HD;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < SPLIT_WARPS; w++)
            M = fmaxf(M, red_m[w][g]);
        float L = 0.0f, A = 0.0f;
        if (M != -INFINITY) {
#pragma unroll
            for (int w = 0; w < SPLIT_WARPS; w++) {
                const float c = exp2f(red_m[w][g] - M);
                L += red_l[w][g] * c;
                A += red_acc[w][g][e] * c;
            }
        }
        const size_t head = (size_t)kvh * group + g;
        if (n_slots == 1) {
            out[((size_t)t * n_head + head) * HD + e] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
        } else {
            const size_t r = ((size_t)di * n_head + head) * n_slots + split;
            part_o[r * HD + e] = L > 0.0f ? A / L : 0.0f;
            if (e == 0)
                part_lse[r] = L > 0.0f ? M + log2f(L) : -INFINITY;
        }
    }
}

// out of row (dec token, head) = its slots' outputs weighted by 2^lse (the
// log-sum-exp merge): its n_split slices, then the shared levels' partials.
template <typename T>
static __global__ void
merge_kernel(krn_step st, T *__restrict__ out, const float *__restrict__ part_o,
             const float *__restrict__ part_lse, int n_head, int n_split, int n_slots, int hd)
{
    const size_t row = blockIdx.x; // dec index * n_head + head
    const int di = (int)(row / n_head), h = (int)(row % n_head);
    const int t = st.dec ? st.dec[di] : di;
    const int used = n_split + (st.dec_extra ? st.dec_extra[di] : 0);
    const int s0 = di < st.n_dec_split ? 0 : n_split; // tokens the split kernel did not see
    const float *lse = part_lse + row * n_slots;
    float M = -INFINITY;
    for (int s = s0; s < used; s++)
        M = fmaxf(M, lse[s]);
    T *o = out + ((size_t)t * n_head + h) * hd;
    for (int e = threadIdx.x; e < hd; e += blockDim.x) {
        float L = 0.0f, A = 0.0f;
        for (int s = s0; s < used; s++) {
            if (lse[s] == -INFINITY)
                continue;
            const float w = exp2f(lse[s] - M);
            L += w;
            A += w * part_o[(row * n_slots + s) * hd + e];
        }
        o[e] = from_f32<T>(L > 0.0f ? A / L : 0.0f);
    }
}

template <typename T, int HD, int G>
static void split_launch(const krn_step *step, const krn_kv_layer &kv, krn_half *out, float *part,
                         const float *q, const float *inv_freq, int n_head, float scale,
                         int n_split, int n_slots, cudaStream_t stream)
{
    if (step->n_dec <= 0)
        return;
    float *part_lse = n_slots > 1 || n_split == 0
                          ? part + krn_part_lse_offset(step->n_dec, n_head, HD, n_slots)
                          : nullptr;
    if (n_split > 0 && step->n_dec_split > 0) { // else the jobs attended every level
        dim3 grid((unsigned)step->n_dec_split, (unsigned)kv.n_kv_head, (unsigned)n_split);
        split_attention_kernel<T, HD, G><<<grid, SPLIT_WARPS * 32, 0, stream>>>(
            *step, kv, hv<T>(out), part, part_lse, q, inv_freq, n_head, scale * 1.4426950408889634f,
            n_split, n_slots);
    }
    const int merge_threads = HD < 128 ? HD : 128;
    if (n_slots > 1 || n_split == 0)
        merge_kernel<T><<<(unsigned)((size_t)step->n_dec * n_head), merge_threads, 0, stream>>>(
            *step, hv<T>(out), part, part_lse, n_head, n_split, n_slots, HD);
}

template <typename T, int HD>
static bool split_dispatch_g(int group, const krn_step *step, const krn_kv_layer &kv, krn_half *out,
                             float *part, const float *q, const float *inv_freq, int n_head,
                             float scale, int n_split, int n_slots, cudaStream_t stream)
{
    switch (group <= 1 ? 1 : group <= 2 ? 2 : group <= 4 ? 4 : group <= 8 ? 8 : 0) {
    case 1:
        split_launch<T, HD, 1>(step, kv, out, part, q, inv_freq, n_head, scale, n_split, n_slots,
                               stream);
        return true;
    case 2:
        split_launch<T, HD, 2>(step, kv, out, part, q, inv_freq, n_head, scale, n_split, n_slots,
                               stream);
        return true;
    case 4:
        split_launch<T, HD, 4>(step, kv, out, part, q, inv_freq, n_head, scale, n_split, n_slots,
                               stream);
        return true;
    case 8:
        split_launch<T, HD, 8>(step, kv, out, part, q, inv_freq, n_head, scale, n_split, n_slots,
                               stream);
        return true;
    default:
        return false;
    }
}

extern "C" bool krn_attn_split_supported(int n_head, int n_kv_head, int head_dim)
{
    return n_kv_head > 0 && n_head % n_kv_head == 0 && n_head / n_kv_head <= 8 &&
           (head_dim == 64 || head_dim == 128 || head_dim == 256);
}

extern "C" size_t krn_attn_part_floats(int n_rows, int n_head, int head_dim, int n_slots)
{
    return (size_t)n_rows * n_head * n_slots * ((size_t)head_dim + 1);
}

extern "C" bi_status krn_paged_attention(const krn_step *step, krn_kv_layer kv, krn_half *out,
                                         const float *q, const float *inv_freq, int n_head,
                                         float scale, int n_split, int n_slots, float *part,
                                         cudaStream_t stream)
{
    if (kv.head_dim <= 0 || kv.head_dim % 2 || kv.head_dim > KRN_ATTN_MAX_HEAD_DIM ||
        kv.n_kv_head <= 0 || n_head <= 0 || n_head % kv.n_kv_head || kv.page_size <= 0 ||
        n_split < 0 || n_split > 65535 || n_slots < n_split || n_slots < 1 ||
        ((n_slots > 1 || n_split == 0) && !part) || (n_split == 0 && step->n_jobs <= 0) ||
        (kv.dtype != KRN_BF16 && kv.dtype != KRN_F16))
        return BI_INVALID_ARGUMENT;
    if (step->n_tokens <= 0)
        return BI_OK;
    const bool split = krn_attn_split_supported(n_head, kv.n_kv_head, kv.head_dim);
    if (step->n_jobs > 0) {
        if (!split || n_slots < 1)
            return BI_INVALID_ARGUMENT;
        float *part_lse =
            n_slots > 1 || n_split == 0
                ? part + krn_part_lse_offset(step->n_dec, n_head, kv.head_dim, n_slots)
                : nullptr;
        bi_status st = krn_tc_attention(step, kv, out, part, part_lse, q, inv_freq, n_head, scale,
                                        n_slots, stream);
        if (st != BI_OK)
            return st;
    }
    if (split) {
        const int group = n_head / kv.n_kv_head;
        return krn_dispatch(kv.dtype, [&](auto t) {
            using T = decltype(t);
            if (kv.head_dim == 64)
                split_dispatch_g<T, 64>(group, step, kv, out, part, q, inv_freq, n_head, scale,
                                        n_split, n_slots, stream);
            else if (kv.head_dim == 128)
                split_dispatch_g<T, 128>(group, step, kv, out, part, q, inv_freq, n_head, scale,
                                         n_split, n_slots, stream);
            else
                split_dispatch_g<T, 256>(group, step, kv, out, part, q, inv_freq, n_head, scale,
                                         n_split, n_slots, stream);
            return krn_launched();
        });
    }
    if (step->dec || n_slots > 1)
        return BI_INVALID_ARGUMENT; // the tiled kernel attends every token, alone
    // Other shapes: one block per (token, kv head) over every key; n_split is
    // ignored.
    size_t smem = attn_smem_bytes(n_head / kv.n_kv_head, kv.head_dim);
    return krn_dispatch(kv.dtype, [&](auto t) {
        using T = decltype(t);
        if (smem > 48 * 1024 && cudaFuncSetAttribute(paged_attention_kernel<T>,
                                                     cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                     (int)smem) != cudaSuccess)
            return BI_INVALID_ARGUMENT; // a group too large for shared memory
        dim3 grid((unsigned)step->n_tokens, (unsigned)kv.n_kv_head);
        paged_attention_kernel<T>
            <<<grid, THREADS, smem, stream>>>(*step, kv, hv<T>(out), q, inv_freq, n_head, scale);
        return krn_launched();
    });
}
