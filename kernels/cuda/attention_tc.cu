// attention_tc.cu - paged attention on tensor cores (mma.sync m16n8k16,
// bf16 or fp16 in, fp32 accumulation) for the step's attention jobs: prefill
// tiles and the shared levels of the cascade. The kernel is templated on the
// KV's element type T; Q and P are rounded to T for the mma, everything else
// (scores, softmax state, the output accumulator) stays fp32.
//
// A block of four warps holds 64 query rows of one kv head: TC_ROWS / group
// tokens times the group's query heads, so a K/V tile staged in shared memory
// serves every query head that reads it (GQA). Keys stream through shared
// memory in tiles of 64 with cp.async, double-buffered, from the pool's pages
// (a key row is contiguous, its page comes from the level's page list). Each
// warp computes S = Q K^T for its 16 rows, keeps the online softmax (log2
// domain, fp32) in registers, turns P into 16-bit A fragments and accumulates
// P V. Shared memory rows are XOR-swizzled in 16-byte units so that ldmatrix
// reads eight rows of one column without bank conflicts.
//
// Prefill tile (job seg < 0): consecutive tokens of one sequence attend to
// every level of it (segments, then the causal tail), the query rotated per
// level (differential RoPE), the state carried across levels (the
// log-sum-exp merge); the block writes the output.
// Shared job (seg >= 0): decode tokens of several sequences that hold the same
// chunk attend to one slice of it, so its KV pages are read for all of them
// at once; the block writes each row's normalised partial output and
// log2-sum-exp into its partial slot, which the merge kernel (attention.cu)
// combines with the token's other levels.
#include "cuda/krn_attn.h"
#include "cuda/krn_cuda_internal.cuh"

#define TC_ROWS    64
#define TC_KEYS    64
#define TC_THREADS 128

static __device__ __forceinline__ uint32_t smem_u32(const void *p)
{
    return (uint32_t)__cvta_generic_to_shared(p);
}

// Element (row, col) of a [rows][HD] 16-bit tile whose 16-byte units are
// swizzled by row: unit u of row r lives at unit u ^ (r & 7).
template <int HD> static __device__ __forceinline__ int swz(int row, int col)
{
    return row * HD + ((((col >> 3) ^ (row & 7))) << 3) + (col & 7);
}

static __device__ __forceinline__ void cp_async16(void *dst, const void *src, bool valid)
{
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src),
                 "r"(valid ? 16 : 0));
}

static __device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

static __device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const void *p)
{
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

// c += a b, the A fragment in a[0..3] (mma16816 of krn_cuda_internal.cuh).
template <typename T>
static __device__ __forceinline__ void mma16816(float *c, const uint32_t *a, uint32_t b0,
                                                uint32_t b1)
{
    mma16816<T>(c, a[0], a[1], a[2], a[3], b0, b1);
}

// 2^x (ex2.approx: 2 ulp, 2^-inf = 0), the softmax's exponential.
static __device__ __forceinline__ float fast_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

static __device__ __forceinline__ size_t tc_kv_offset(const krn_kv_layer &kv, int32_t page, int kvh,
                                                      int slot)
{
    return (((size_t)page * kv.n_kv_head + kvh) * kv.page_size + slot) * kv.head_dim;
}

// One level as the block sees it.
struct tc_level {
    const int32_t *pages;
    int32_t lo, hi; // keys [lo, hi) of the level
    bool tail;      // causal: row r sees keys < its tail slot + 1
};

// log2 of the page size (a power of two here: krn_attn_tc_supported).
static __device__ __forceinline__ int page_shift(const krn_kv_layer &kv)
{
    return __ffs(kv.page_size) - 1;
}

// The 16-byte units of a K/V tile one thread copies: unit i = threadIdx.x +
// k * TC_THREADS of the tile's TC_KEYS * HD / 8.
template <int HD> struct tile_units {
    static constexpr int UNITS = HD / 8; // per key row
    static constexpr int PER = TC_KEYS * UNITS / TC_THREADS;
};

// Page ids of the rows this thread copies for the tile at j0 (-1 past hi):
// loaded a tile ahead, so that the copy does not wait on them.
template <int HD>
static __device__ __forceinline__ void tile_pages(int32_t *pg, const krn_kv_layer &kv,
                                                  const int32_t *pages, int32_t j0, int32_t hi)
{
    using U = tile_units<HD>;
#pragma unroll
    for (int k = 0; k < U::PER; k++) {
        const int32_t j = j0 + (int)(threadIdx.x + k * TC_THREADS) / U::UNITS;
        pg[k] = j < hi ? __ldg(pages + (j >> page_shift(kv))) : -1;
    }
}

// Stages keys [j0, j0 + TC_KEYS) of the level from the page ids tile_pages
// gave (zeros past the level's end).
template <typename T, int HD>
static __device__ __forceinline__ void load_tile(T *ks, T *vs, const krn_kv_layer &kv, int kvh,
                                                 const int32_t *pg, int32_t j0)
{
    using U = tile_units<HD>;
    const T *K = hv<T>(kv.k), *V = hv<T>(kv.v);
#pragma unroll
    for (int k = 0; k < U::PER; k++) {
        const int i = threadIdx.x + k * TC_THREADS, row = i / U::UNITS, u = i % U::UNITS;
        const bool ok = pg[k] >= 0;
        size_t off = 0;
        if (ok)
            off = tc_kv_offset(kv, pg[k], kvh, (j0 + row) & (kv.page_size - 1)) + u * 8;
        const int d = swz<HD>(row, u * 8);
        cp_async16(ks + d, K + off, ok);
        cp_async16(vs + d, V + off, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
}

// The token of a member-list job's first member.
static __device__ __forceinline__ int32_t row_tok_first(const krn_step &st, const int32_t *job)
{
    return st.dec[st.shared[(size_t)job[KRN_JOB_TOK] * KRN_SH_FIELDS + KRN_SH_DEC]];
}

template <typename T, int HD>
static __global__ void __launch_bounds__(TC_THREADS)
    tc_attention_kernel(krn_step st, krn_kv_layer kv, T *__restrict__ out,
                        float *__restrict__ part_o, float *__restrict__ part_lse,
                        const float *__restrict__ q, const float *__restrict__ inv_freq, int n_head,
                        float scale_log2, int n_slots)
{
    extern __shared__ __align__(128) unsigned char smem_raw[];
    T *qs = reinterpret_cast<T *>(smem_raw);
    T *ks = qs + TC_ROWS * HD; // [2][TC_KEYS * HD]
    T *vs = ks + 2 * TC_KEYS * HD;
    __shared__ int32_t row_tok[TC_ROWS], row_lim[TC_ROWS], row_aux[TC_ROWS];
    __shared__ float row_rot[TC_ROWS];

    const int32_t *job = st.jobs + (size_t)blockIdx.x * KRN_JOB_FIELDS;
    const int kvh = blockIdx.y;
    const int group = n_head / kv.n_kv_head, per = TC_ROWS / group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    // member-list jobs: over a segment (seg >= 0) or a member's own tail
    const bool shared = job[KRN_JOB_SEG] >= 0 || job[KRN_JOB_SEG] == KRN_JOB_SEG_TAIL;
    const bool own_tail = job[KRN_JOB_SEG] == KRN_JOB_SEG_TAIL;
    const int ntok = job[KRN_JOB_NTOK];

    // Row r: token r / group of the job, query head r % group of this kv head.
    if (threadIdx.x < TC_ROWS) {
        const int r = threadIdx.x, k = r / group;
        int32_t t = -1, aux = -1;
        if (k < per && k < ntok) {
            if (shared) {
                aux = job[KRN_JOB_TOK] + k; // its entry in the shared list
                t = st.dec[st.shared[(size_t)aux * KRN_SH_FIELDS + KRN_SH_DEC]];
            } else {
                t = job[KRN_JOB_TOK] + k;
            }
        }
        row_tok[r] = t;
        row_aux[r] = aux;
    }

    float o[HD / 8][4];
#pragma unroll
    for (int i = 0; i < HD / 8; i++)
        o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
    const int r0 = warp * 16 + lane / 4, r1 = r0 + 8;

    const int32_t *seq = shared ? nullptr : st.seq_info + (size_t)job[KRN_JOB_SEQ] * KRN_SEQ_FIELDS;
    const int n_levels = shared ? 1 : seq[KRN_SEQ_N_SEGS] + 1;
    for (int lv = 0; lv < n_levels; lv++) {
        tc_level L;
        const int32_t *g = nullptr;
        if (own_tail) {
            const int32_t *ms =
                st.seq_info + (size_t)st.tok_seq[row_tok_first(st, job)] * KRN_SEQ_FIELDS;
            L = {st.pages + ms[KRN_SEQ_TAIL_PAGES], job[KRN_JOB_KEY_LO], job[KRN_JOB_KEY_HI], true};
        } else if (shared) {
            g = st.seg_info + (size_t)job[KRN_JOB_SEG] * KRN_SEG_FIELDS;
            L = {st.pages + g[KRN_SEG_PAGES], job[KRN_JOB_KEY_LO], job[KRN_JOB_KEY_HI], false};
        } else if (lv < n_levels - 1) {
            g = st.seg_info + (size_t)(seq[KRN_SEQ_FIRST_SEG] + lv) * KRN_SEG_FIELDS;
            L = {st.pages + g[KRN_SEG_PAGES], 0, g[KRN_SEG_LEN], false};
        } else {
            // the causal tail: up to the last token's own slot
            const int last = job[KRN_JOB_TOK] + min(ntok, per) - 1;
            L = {st.pages + seq[KRN_SEQ_TAIL_PAGES], 0, st.tok_idx[last] + 1, true};
        }
        if (L.lo >= L.hi)
            continue;    // block-uniform
        __syncthreads(); // the previous level is done with qs and the row tables
        if (threadIdx.x < TC_ROWS) {
            const int r = threadIdx.x;
            const int32_t t = row_tok[r];
            float rot = 0.0f;
            int32_t lim = 0;
            if (t >= 0) {
                const int32_t pos = st.tok_pos[t];
                if (L.tail) {
                    rot = (float)pos;
                    lim = min(L.hi, st.tok_idx[t] + 1);
                } else if (shared) {
                    // rotation from the member's own placement of the chunk
                    const int32_t *own =
                        st.seg_info +
                        (size_t)st.shared[(size_t)row_aux[r] * KRN_SH_FIELDS + KRN_SH_SEG] *
                            KRN_SEG_FIELDS;
                    rot = (float)(pos - own[KRN_SEG_POS] + g[KRN_SEG_ROT_BASE]);
                    lim = L.hi;
                } else {
                    rot = (float)(pos - g[KRN_SEG_POS] + g[KRN_SEG_ROT_BASE]);
                    lim = L.hi;
                }
            }
            row_rot[r] = rot;
            row_lim[r] = lim;
        }
        __syncthreads();
        // Stage the rotated, scaled queries as T.
        for (int i = threadIdx.x; i < TC_ROWS * (HD / 2); i += TC_THREADS) {
            const int r = i / (HD / 2), e = i % (HD / 2);
            const int32_t t = row_tok[r];
            float x1 = 0.0f, x2 = 0.0f;
            if (t >= 0) {
                const float *qr = q + ((size_t)t * n_head + (size_t)kvh * group + r % group) * HD;
                x1 = qr[e];
                x2 = qr[e + HD / 2];
                float s, c;
                sincosf(row_rot[r] * inv_freq[e], &s, &c);
                const float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
                x1 = a * scale_log2;
                x2 = b * scale_log2;
            }
            qs[swz<HD>(r, e)] = from_f32<T>(x1);
            qs[swz<HD>(r, e + HD / 2)] = from_f32<T>(x2);
        }
        const int32_t n_tiles = (L.hi - L.lo + TC_KEYS - 1) / TC_KEYS;
        int32_t pg[tile_units<HD>::PER];
        tile_pages<HD>(pg, kv, L.pages, L.lo, L.hi);
        load_tile<T, HD>(ks, vs, kv, kvh, pg, L.lo);
        if (n_tiles > 1)
            tile_pages<HD>(pg, kv, L.pages, L.lo + TC_KEYS, L.hi);
        __syncthreads();
        uint32_t qf[HD / 16][4];
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++)
            ldsm_x4(qf[kk], qs + swz<HD>(warp * 16 + (lane % 16), kk * 16 + (lane / 16) * 8));
        const int32_t lim0 = row_lim[r0], lim1 = row_lim[r1];
        // a warp whose rows are all padding only helps load (a decode job
        // holds one token: group rows of warp 0)
        const bool busy = __any_sync(0xffffffffu, lim0 > 0 || lim1 > 0);
        // the warp's smallest row limit: tiles below it need no mask
        const int32_t wlim = __reduce_min_sync(0xffffffffu, min(lim0, lim1));

        for (int32_t it = 0; it < n_tiles; it++) {
            const int32_t j0 = L.lo + it * TC_KEYS;
            const int stage = it & 1;
            if (it + 1 < n_tiles) {
                load_tile<T, HD>(ks + (stage ^ 1) * TC_KEYS * HD, vs + (stage ^ 1) * TC_KEYS * HD,
                                 kv, kvh, pg, j0 + TC_KEYS);
                if (it + 2 < n_tiles) // the ids of the tile after, read while this one computes
                    tile_pages<HD>(pg, kv, L.pages, j0 + 2 * TC_KEYS, L.hi);
                asm volatile("cp.async.wait_group 1;\n" ::);
            } else {
                asm volatile("cp.async.wait_group 0;\n" ::);
            }
            __syncthreads();
            const T *kt = ks + stage * TC_KEYS * HD, *vt = vs + stage * TC_KEYS * HD;
            if (!busy) {
                __syncthreads(); // keep the block's barriers in step
                continue;
            }

            // S = Q K^T: 16 rows x 64 keys per warp.
            float s[TC_KEYS / 8][4];
#pragma unroll
            for (int n = 0; n < TC_KEYS / 8; n++)
                s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
                for (int np = 0; np < TC_KEYS / 16; np++) {
                    uint32_t b[4];
                    const int key = np * 16 + (lane & 7) + ((lane >> 4) << 3);
                    ldsm_x4(b, kt + swz<HD>(key, kk * 16 + ((lane >> 3) & 1) * 8));
                    mma16816<T>(s[2 * np], qf[kk], b[0], b[1]);
                    mma16816<T>(s[2 * np + 1], qf[kk], b[2], b[3]);
                }
            }
            // Mask (only a tile that reaches past some row's last key),
            // then the online softmax of rows r0 and r1.
            if (j0 + TC_KEYS > wlim) {
#pragma unroll
                for (int n = 0; n < TC_KEYS / 8; n++) {
                    const int32_t j = j0 + n * 8 + 2 * (lane % 4);
                    if (j >= lim0)
                        s[n][0] = -INFINITY;
                    if (j + 1 >= lim0)
                        s[n][1] = -INFINITY;
                    if (j >= lim1)
                        s[n][2] = -INFINITY;
                    if (j + 1 >= lim1)
                        s[n][3] = -INFINITY;
                }
            }
            float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
            for (int n = 0; n < TC_KEYS / 8; n++) {
                mx0 = fmaxf(mx0, fmaxf(s[n][0], s[n][1]));
                mx1 = fmaxf(mx1, fmaxf(s[n][2], s[n][3]));
            }
#pragma unroll
            for (int x = 1; x <= 2; x <<= 1) {
                mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, x));
                mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, x));
            }
            const float n0 = fmaxf(m[0], mx0), n1 = fmaxf(m[1], mx1);
            const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;
            const float c0 = fast_exp2(m[0] - b0), c1 = fast_exp2(m[1] - b1);
            m[0] = n0;
            m[1] = n1;
            l[0] *= c0;
            l[1] *= c1;
#pragma unroll
            for (int i = 0; i < HD / 8; i++) {
                o[i][0] *= c0;
                o[i][1] *= c0;
                o[i][2] *= c1;
                o[i][3] *= c1;
            }
#pragma unroll
            for (int n = 0; n < TC_KEYS / 8; n++) {
                s[n][0] = fast_exp2(s[n][0] - b0);
                s[n][1] = fast_exp2(s[n][1] - b0);
                s[n][2] = fast_exp2(s[n][2] - b1);
                s[n][3] = fast_exp2(s[n][3] - b1);
                l[0] += s[n][0] + s[n][1];
                l[1] += s[n][2] + s[n][3];
            }
            // O += P V.
#pragma unroll
            for (int kk = 0; kk < TC_KEYS / 16; kk++) {
                uint32_t a[4] = {pack2<T>(s[2 * kk][0], s[2 * kk][1]),
                                 pack2<T>(s[2 * kk][2], s[2 * kk][3]),
                                 pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                                 pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int dp = 0; dp < HD / 16; dp++) {
                    uint32_t b[4];
                    const int key = kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8;
                    ldsm_x4_t(b, vt + swz<HD>(key, dp * 16 + (lane >> 4) * 8));
                    mma16816<T>(o[2 * dp], a, b[0], b[1]);
                    mma16816<T>(o[2 * dp + 1], a, b[2], b[3]);
                }
            }
            __syncthreads(); // this stage is consumed before the next load refills it
        }
    }

    // Row sums over the four lanes of a row, then the output.
#pragma unroll
    for (int x = 1; x <= 2; x <<= 1) {
        l[0] += __shfl_xor_sync(0xffffffffu, l[0], x);
        l[1] += __shfl_xor_sync(0xffffffffu, l[1], x);
    }
#pragma unroll
    for (int h = 0; h < 2; h++) {
        const int r = h ? r1 : r0;
        const int32_t t = row_tok[r];
        if (t < 0)
            continue;
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        const size_t head = (size_t)kvh * group + r % group;
        if (shared) {
            const int32_t *e = st.shared + (size_t)row_aux[r] * KRN_SH_FIELDS;
            const size_t slot = ((size_t)e[KRN_SH_DEC] * n_head + head) * n_slots + e[KRN_SH_SLOT];
            float *po = part_o + slot * HD;
#pragma unroll
            for (int i = 0; i < HD / 8; i++) {
                const int d = i * 8 + 2 * (lane % 4);
                *reinterpret_cast<float2 *>(po + d) =
                    make_float2(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
            }
            if (lane % 4 == 0)
                part_lse[slot] = l[h] > 0.0f ? m[h] + log2f(l[h]) : -INFINITY;
        } else {
            T *orow = out + ((size_t)t * n_head + head) * HD;
#pragma unroll
            for (int i = 0; i < HD / 8; i++) {
                const int d = i * 8 + 2 * (lane % 4);
                *reinterpret_cast<uint32_t *>(orow + d) =
                    pack2<T>(o[i][2 * h] * inv, o[i][2 * h + 1] * inv);
            }
        }
    }
}

template <int HD> static size_t tc_smem_bytes(void)
{
    return (size_t)(TC_ROWS + 4 * TC_KEYS) * HD * sizeof(krn_half);
}

template <typename T, int HD>
static bi_status tc_launch(const krn_step *step, const krn_kv_layer &kv, krn_half *out,
                           float *part_o, float *part_lse, const float *q, const float *inv_freq,
                           int n_head, float scale, int n_slots, cudaStream_t stream)
{
    const size_t smem = tc_smem_bytes<HD>();
    static bool configured; // the attribute is per function, set once per process
    if (!configured) {
        if (cudaFuncSetAttribute(tc_attention_kernel<T, HD>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)smem) != cudaSuccess)
            return BI_DEVICE;
        configured = true;
    }
    dim3 grid((unsigned)step->n_jobs, (unsigned)kv.n_kv_head);
    tc_attention_kernel<T, HD>
        <<<grid, TC_THREADS, smem, stream>>>(*step, kv, hv<T>(out), part_o, part_lse, q, inv_freq,
                                             n_head, scale * 1.4426950408889634f, n_slots);
    return krn_launched();
}

extern "C" bool krn_attn_tc_supported(int n_head, int n_kv_head, int head_dim, int page_size)
{
    return n_kv_head > 0 && n_head % n_kv_head == 0 && n_head / n_kv_head <= 8 &&
           (head_dim == 64 || head_dim == 128) && page_size > 0 &&
           (page_size & (page_size - 1)) == 0;
}

extern "C" int krn_attn_tc_tokens(int n_head, int n_kv_head)
{
    return TC_ROWS / (n_head / n_kv_head);
}

extern "C" bi_status krn_tc_attention(const krn_step *step, krn_kv_layer kv, krn_half *out,
                                      float *part_o, float *part_lse, const float *q,
                                      const float *inv_freq, int n_head, float scale, int n_slots,
                                      cudaStream_t stream)
{
    if (!krn_attn_tc_supported(n_head, kv.n_kv_head, kv.head_dim, kv.page_size))
        return BI_INVALID_ARGUMENT;
    if (step->n_jobs <= 0)
        return BI_OK;
    return krn_dispatch(kv.dtype, [&](auto t) {
        using T = decltype(t);
        if (kv.head_dim == 64)
            return tc_launch<T, 64>(step, kv, out, part_o, part_lse, q, inv_freq, n_head, scale,
                                    n_slots, stream);
        return tc_launch<T, 128>(step, kv, out, part_o, part_lse, q, inv_freq, n_head, scale,
                                 n_slots, stream);
    });
}
