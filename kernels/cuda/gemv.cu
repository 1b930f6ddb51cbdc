// gemv.cu - projections of a few rows (decode steps) that stream the 16-bit
// weights once through the tensor cores, with fused prologue (RMSNorm of the
// input) and epilogues (bias, residual add, SwiGLU, QK-norm + RoPE + paged KV
// write). See krn_gemv.h for the contract. The kernel is templated on the
// 16-bit type E (bf16 or fp16: weights, staged input, 16-bit outputs and KV);
// sums and epilogues are fp32.
//
// Layout of the work. A warp multiplies one tile of 16 weight rows by the
// block's staged input over a range of K with mma.m16n8k16 (A = weights,
// B = up to 8 tokens; two B tiles for M > 8). K is walked in chunks of 32:
// lane (r, c) (r = lane / 4, c = lane % 4) loads 16 bytes of rows r and r + 8
// at k = 32 * chunk + 8 * c, and the same 16 bytes of its token's staged
// input. The mma's k order is a permutation of those 32 k (the same for the
// weights and the input, so the dot products are unchanged), chosen so that
// each of these 16-byte loads is already an mma fragment: no shuffles, no
// shared memory for the weights. U chunks are loaded before the first is
// used; the first U are loaded before griddepcontrol.wait, since weights do
// not depend on the previous kernel: with programmatic dependent launch they
// stream while that kernel finishes.
//
// A block (8 warps) takes one group of tiles and one slice of K: the warps
// split the group's tiles and the slice between them, and their sums meet in
// shared memory. When K is cut into several slices, the block writes its sums
// to the workspace and the last block of the group adds all slices in order.
#include "cuda/krn_cuda_internal.cuh"
#include "cuda/krn_gemv.h"

#define WARPS      8
#define THREADS    (WARPS * 32)
#define U          8            // chunks loaded before the first is used
#define MIN_CHUNKS 4            // fewest chunks per warp when K is split for parallelism
#define SMEM_MAX   (160 * 1024) // dynamic shared memory a block may take

enum { EPI_F32, EPI_ADD, EPI_SWIGLU, EPI_QKV };

struct gemv_p {
    const krn_half *w0, *w1, *w2; // weight segments (see tile_rows), of the kernel's E
    const void *x;                // [M][K]: fp32 when norm, else E
    const float *norm;            // RMSNorm weight of the input, NULL: none
    float eps;
    int M, K, rows;  // rows: output columns (N, ff, or the q|k|v rows)
    int epi, tiles;  // epilogue, tiles per group
    int groups;      // groups of tiles
    int ksplit, cps; // slices of K, chunks per slice
    int stride;      // staged input row (16-bit elements)
    float *y;        // F32/ADD: [M][rows]; QKV: q [M][nh * hd]
    const float *bias;
    krn_half *y16; // SWIGLU: [M][rows], E
    const float *bq, *bk, *bv, *qn, *kn, *inv_freq;
    int nh, nkv, hd;
    krn_step st;
    krn_kv_layer kv;
    float *part;
    unsigned *count;
};

static __device__ __forceinline__ void pdl_wait(void)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

static __device__ __forceinline__ void pdl_launch_dependents(void)
{
#if __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;");
#endif
}

// 16 bytes of weights, read once: not kept in L1.
static __device__ __forceinline__ uint4 ld_stream(const void *p)
{
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w)
                 : "l"(p));
    return r;
}

static __device__ __forceinline__ float warp_sum(float s)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        s += __shfl_xor_sync(0xffffffffu, s, o);
    return s;
}

// Row 0 of tile t of group g, and how many of its 16 rows exist (16-bit
// elements of either type: only addresses are computed here).
static __device__ const krn_half *tile_rows(const gemv_p &p, int g, int t, int *valid)
{
    if (p.epi == EPI_SWIGLU) { // tiles [0, half): gate rows; [half, tiles): the same up rows
        const int half = p.tiles / 2, r = (g * half + t % half) * 16;
        *valid = min(16, p.rows - r);
        return (t < half ? p.w0 : p.w1) + (size_t)r * p.K;
    }
    if (p.epi == EPI_QKV) { // group g: head g of q, then of k, then of v
        *valid = 16;
        const size_t r = (size_t)t * 16;
        if (g < p.nh)
            return p.w0 + ((size_t)g * p.hd + r) * p.K;
        if (g < p.nh + p.nkv)
            return p.w1 + ((size_t)(g - p.nh) * p.hd + r) * p.K;
        return p.w2 + ((size_t)(g - p.nh - p.nkv) * p.hd + r) * p.K;
    }
    const int r = (g * p.tiles + t) * 16;
    *valid = min(16, p.rows - r);
    return p.w0 + (size_t)r * p.K;
}

// One warp's unit of work: rows r and r + 8 of a tile over chunks [k0, k1).
struct unit {
    const char *a, *b;
    bool va, vb;
    int k0, k1;
};

static __device__ unit unit_at(const gemv_p &p, int g, int u, int wp, int c0, int c1, int per,
                               int lr)
{
    int valid;
    const krn_half *w = tile_rows(p, g, u / wp, &valid);
    unit q;
    q.va = lr < valid;
    q.vb = lr + 8 < valid;
    q.a = reinterpret_cast<const char *>(w + (size_t)(q.va ? lr : 0) * p.K);
    q.b = reinterpret_cast<const char *>(w + (size_t)(q.vb ? lr + 8 : 0) * p.K);
    q.k0 = c0 + (u % wp) * per;
    q.k1 = min(c1, q.k0 + per);
    return q;
}

static __device__ __forceinline__ void load_stage(uint4 (&wa)[U], uint4 (&wb)[U], const unit &q,
                                                  int c, int K, int lc)
{
#pragma unroll
    for (int i = 0; i < U; i++) {
        const int k = (c + i) * 32 + lc * 8;
        const bool ok = c + i < q.k1 && k < K;
        wa[i] = make_uint4(0, 0, 0, 0);
        wb[i] = make_uint4(0, 0, 0, 0);
        if (ok && q.va)
            wa[i] = ld_stream(q.a + (size_t)k * 2);
        if (ok && q.vb)
            wb[i] = ld_stream(q.b + (size_t)k * 2);
    }
}

template <typename E, int NT>
static __device__ __forceinline__ void
mma_stage(float (&acc)[NT][4], const uint4 (&wa)[U], const uint4 (&wb)[U], const E *__restrict__ sx,
          int stride, int M, int c, int c0, int k1, int lr, int lc)
{
#pragma unroll
    for (int i = 0; i < U; i++) {
        if (c + i >= k1)
            break; // warp-uniform
        const int kk = (c + i - c0) * 32 + lc * 8;
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            const int n = min(nt * 8 + lr, M - 1); // tokens past M: any finite column
            const uint4 xv = *reinterpret_cast<const uint4 *>(sx + (size_t)n * stride + kk);
            mma16816<E>(acc[nt], wa[i].x, wb[i].x, wa[i].y, wb[i].y, xv.x, xv.y);
            mma16816<E>(acc[nt], wa[i].z, wb[i].z, wa[i].w, wb[i].w, xv.z, xv.w);
        }
    }
}

// Stages 8-element groups [first, n8) step `step` of token m's slice (from
// element kb) as E, scaled by the norm weight when there is one; returns the
// sum of squares of the raw inputs it read. Past K: zeros.
template <typename E>
static __device__ float stage_row(const gemv_p &p, E *sx, int m, int kb, int n8, int first,
                                  int step)
{
    float ss = 0.0f;
    for (int j = first; j < n8; j += step) {
        const int k = kb + 8 * j;
        uint4 o = make_uint4(0, 0, 0, 0);
        if (k < p.K) {
            if (p.norm) {
                const float4 *xr = reinterpret_cast<const float4 *>(
                    static_cast<const float *>(p.x) + (size_t)m * p.K + k);
                const float4 *wr = reinterpret_cast<const float4 *>(p.norm + k);
                const float4 x0 = xr[0], x1 = xr[1], w0 = wr[0], w1 = wr[1];
                ss += x0.x * x0.x + x0.y * x0.y + x0.z * x0.z + x0.w * x0.w + x1.x * x1.x +
                      x1.y * x1.y + x1.z * x1.z + x1.w * x1.w;
                o = make_uint4(
                    pack2<E>(x0.x * w0.x, x0.y * w0.y), pack2<E>(x0.z * w0.z, x0.w * w0.w),
                    pack2<E>(x1.x * w1.x, x1.y * w1.y), pack2<E>(x1.z * w1.z, x1.w * w1.w));
            } else {
                o = *reinterpret_cast<const uint4 *>(static_cast<const E *>(p.x) + (size_t)m * p.K +
                                                     k);
            }
        }
        *reinterpret_cast<uint4 *>(sx + (size_t)m * p.stride + 8 * j) = o;
    }
    return ss;
}

// Stages the block's slice of every token's input; ssq[m] = the slice's sum
// of squares (deterministic: fixed warp per part, fixed order).
template <typename E>
static __device__ void stage_input(const gemv_p &p, E *sx, float *ssq, float *ssw, int c0, int c1,
                                   int warp, int lane)
{
    const int kb = c0 * 32, n8 = (c1 - c0) * 4;
    if (p.M >= WARPS) {
        for (int m = warp; m < p.M; m += WARPS) {
            const float s = warp_sum(stage_row(p, sx, m, kb, n8, lane, 32));
            if (lane == 0)
                ssq[m] = s;
        }
        return;
    }
    const int wpt = WARPS / p.M, m = warp / wpt, part = warp % wpt;
    float s = 0.0f;
    if (m < p.M)
        s = stage_row(p, sx, m, kb, n8, part * 32 + lane, wpt * 32);
    s = warp_sum(s);
    if (lane == 0)
        ssw[warp] = s;
    __syncthreads();
    if (threadIdx.x < p.M) {
        float t = 0.0f;
        for (int j = 0; j < wpt; j++)
            t += ssw[threadIdx.x * wpt + j];
        ssq[threadIdx.x] = t;
    }
}

static __device__ __forceinline__ float inv_rms(const gemv_p &p, const float *ssq, int m)
{
    return p.norm ? rsqrtf(ssq[m] / (float)p.K + p.eps) : 1.0f;
}

// Head h's epilogue (one warp per token): bias, QK-norm, then q out (fp32,
// unrotated), k rotated into its page, v into its page.
template <typename E>
static __device__ void qkv_epilogue(const gemv_p &p, int h, const float *grp, const float *ssq,
                                    int warp, int lane)
{
    const int hd = p.hd, half = hd / 2;
    const int kind = h < p.nh ? 0 : h < p.nh + p.nkv ? 1 : 2;
    const int hh = kind == 0 ? h : kind == 1 ? h - p.nh : h - p.nh - p.nkv;
    const float *bias = kind == 0 ? p.bq : kind == 1 ? p.bk : p.bv;
    const float *nw = kind == 0 ? p.qn : kind == 1 ? p.kn : nullptr;
    if (bias)
        bias += (size_t)hh * hd;
    for (int m = warp; m < p.M; m += WARPS) {
        const float inv = inv_rms(p, ssq, m);
        const float *gm = grp + (size_t)m * hd;
        float r = 1.0f;
        if (nw) {
            float s = 0.0f;
            for (int i = lane; i < hd; i += 32) {
                const float v = gm[i] * inv + (bias ? bias[i] : 0.0f);
                s += v * v;
            }
            r = rsqrtf(warp_sum(s) / (float)hd + p.eps);
        }
        if (kind == 0) {
            float *q = p.y + ((size_t)m * p.nh + hh) * hd;
            for (int i = lane; i < hd; i += 32) {
                const float v = gm[i] * inv + (bias ? bias[i] : 0.0f);
                q[i] = nw ? v * r * nw[i] : v;
            }
            continue;
        }
        const int32_t *seq = p.st.seq_info + (size_t)p.st.tok_seq[m] * KRN_SEQ_FIELDS;
        const int32_t idx = p.st.tok_idx[m];
        const int32_t page = p.st.pages[seq[KRN_SEQ_TAIL_PAGES] + idx / p.kv.page_size];
        const size_t dst = kv_offset(p.kv, page, hh, idx % p.kv.page_size);
        if (kind == 2) {
            E *V = hv<E>(p.kv.v) + dst;
            for (int i = lane; i < hd; i += 32)
                V[i] = from_f32<E>(gm[i] * inv + (bias ? bias[i] : 0.0f));
            continue;
        }
        E *K = hv<E>(p.kv.k) + dst;
        const float pos = (float)p.st.tok_pos[m];
        for (int i = lane; i < half; i += 32) {
            float x1 = gm[i] * inv + (bias ? bias[i] : 0.0f);
            float x2 = gm[i + half] * inv + (bias ? bias[i + half] : 0.0f);
            if (nw) {
                x1 = x1 * r * nw[i];
                x2 = x2 * r * nw[i + half];
            }
            rope_pair(x1, x2, pos, p.inv_freq[i]);
            K[i] = from_f32<E>(x1);
            K[i + half] = from_f32<E>(x2);
        }
    }
}

// grp [M][R] (raw sums) -> the outputs.
template <typename E>
static __device__ void epilogue(const gemv_p &p, int g, const float *grp, const float *ssq, int R,
                                int warp, int lane)
{
    if (p.epi == EPI_QKV) {
        qkv_epilogue<E>(p, g, grp, ssq, warp, lane);
        return;
    }
    if (p.epi == EPI_SWIGLU) {
        const int half = R / 2;
        for (int i = threadIdx.x; i < p.M * half; i += THREADS) {
            const int m = i / half, r = i % half, f = g * half + r;
            if (f >= p.rows)
                continue;
            const float inv = inv_rms(p, ssq, m);
            const float gt = grp[m * R + r] * inv, up = grp[m * R + half + r] * inv;
            hv<E>(p.y16)[(size_t)m * p.rows + f] = from_f32<E>(gt / (1.0f + expf(-gt)) * up);
        }
        return;
    }
    for (int i = threadIdx.x; i < p.M * R; i += THREADS) {
        const int m = i / R, r = i % R, n = g * R + r;
        if (n >= p.rows)
            continue;
        const float v = grp[i] * inv_rms(p, ssq, m) + (p.bias ? p.bias[n] : 0.0f);
        float *d = p.y + (size_t)m * p.rows + n;
        *d = p.epi == EPI_ADD ? *d + v : v;
    }
}

// One item of a launch: group g, slice s of K (chunks [c0, c1)), split
// between the warps of a tile in parts of `per` chunks. Items run slice-major
// (a block walking items every gridDim.x changes slice rarely).
struct item {
    int g, s, c0, c1, per;
};

static __device__ item item_at(const gemv_p &p, int it, int wp)
{
    const int chunks = (p.K + 31) / 32;
    item r;
    r.g = it % p.groups;
    r.s = it / p.groups;
    r.c0 = r.s * p.cps;
    r.c1 = min(chunks, r.c0 + p.cps);
    r.per = (r.c1 - r.c0 + wp - 1) / wp;
    return r;
}

// With K cut into slices: the block's sums go to the workspace and the
// group's last block to finish adds the slices in order, with the sums of
// squares into sst. Returns whether this block is that last one.
static __device__ bool finish_split(const gemv_p &p, const item &c, float *grp, const float *ssq,
                                    float *sst, int R, int *last)
{
    const size_t gsz = (size_t)p.M * R + p.M;
    float *mine = p.part + ((size_t)c.g * p.ksplit + c.s) * gsz;
    for (int i = threadIdx.x; i < (int)gsz; i += THREADS)
        mine[i] = i < p.M * R ? grp[i] : ssq[i - p.M * R];
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
        *last = atomicAdd(&p.count[c.g], 1u) == (unsigned)(p.ksplit - 1);
    __syncthreads();
    if (!*last)
        return false;
    __threadfence();
    const float *all = p.part + (size_t)c.g * p.ksplit * gsz;
    for (int i = threadIdx.x; i < (int)gsz; i += THREADS) {
        float s = 0.0f;
        for (int k = 0; k < p.ksplit; k++)
            s += __ldcg(all + (size_t)k * gsz + i);
        if (i < p.M * R)
            grp[i] = s;
        else
            sst[i - p.M * R] = s;
    }
    if (threadIdx.x == 0)
        p.count[c.g] = 0; // ready for the next launch
    return true;
}

// A block walks items blockIdx.x, + gridDim.x, ... (a grid of about one
// block per SM leaves room on each SM for the next kernel's block, which
// under PDL loads its first weights while this one finishes). The first
// stage of the next item is loaded before this item's sums are reduced.
template <typename E, int NT>
static __global__ void __launch_bounds__(THREADS, 2) gemv_kernel(const gemv_p p)
{
    extern __shared__ __align__(16) char smem[];
    __shared__ float ssw[WARPS];
    __shared__ int last;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, lr = lane >> 2, lc = lane & 3;
    const int T = p.tiles, wp = T >= WARPS ? 1 : WARPS / T, units = T * wp;
    const int R = T * 16, CW = NT * 8, n_items = p.groups * p.ksplit;
    E *sx = reinterpret_cast<E *>(smem);
    float *red = reinterpret_cast<float *>(smem + (size_t)p.M * p.stride * 2);
    float *grp = red + (size_t)units * 16 * CW;
    float *ssq = grp + (size_t)p.M * R; // this slice's sums of squares
    float *sst = ssq + KRN_GEMV_MAX_M;  // all slices' (split groups)

    int it = blockIdx.x;
    item cur = item_at(p, it, wp);
    uint4 wa[U], wb[U];
    unit q = unit_at(p, cur.g, warp, wp, cur.c0, cur.c1, cur.per, lr);
    if (warp < units)
        load_stage(wa, wb, q, q.k0, p.K, lc);
    pdl_launch_dependents();
    pdl_wait(); // the input and the outputs belong to earlier kernels
    int staged = -1;
    for (;;) {
        if (cur.s != staged) {
            stage_input(p, sx, ssq, ssw, cur.c0, cur.c1, warp, lane);
            staged = cur.s;
            __syncthreads();
        }
        for (int u = warp; u < units; u += WARPS) {
            if (u != warp)
                q = unit_at(p, cur.g, u, wp, cur.c0, cur.c1, cur.per, lr);
            float acc[NT][4];
#pragma unroll
            for (int nt = 0; nt < NT; nt++)
                acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.0f;
            for (int c = q.k0; c < q.k1; c += U) {
                if (c != q.k0 || u != warp)
                    load_stage(wa, wb, q, c, p.K, lc);
                mma_stage<E, NT>(acc, wa, wb, sx, p.stride, p.M, c, cur.c0, q.k1, lr, lc);
            }
            float *r = red + (size_t)u * 16 * CW;
#pragma unroll
            for (int nt = 0; nt < NT; nt++) {
                const int col = nt * 8 + lc * 2;
                r[lr * CW + col] = acc[nt][0];
                r[lr * CW + col + 1] = acc[nt][1];
                r[(lr + 8) * CW + col] = acc[nt][2];
                r[(lr + 8) * CW + col + 1] = acc[nt][3];
            }
        }
        const int next = it + (int)gridDim.x;
        if (next < n_items) {
            const item n = item_at(p, next, wp);
            q = unit_at(p, n.g, warp, wp, n.c0, n.c1, n.per, lr);
            if (warp < units)
                load_stage(wa, wb, q, q.k0, p.K, lc);
        }
        __syncthreads();
        for (int i = threadIdx.x; i < p.M * R; i += THREADS) {
            const int m = i / R, row = i % R, t = row / 16, rr = row % 16;
            float s = 0.0f;
            for (int kp = 0; kp < wp; kp++)
                s += red[((size_t)(t * wp + kp) * 16 + rr) * CW + m];
            grp[i] = s;
        }
        __syncthreads();
        bool mine = true;
        if (p.ksplit > 1) {
            mine = finish_split(p, cur, grp, ssq, sst, R, &last);
            __syncthreads();
        }
        if (mine)
            epilogue<E>(p, cur.g, grp, p.ksplit > 1 ? sst : ssq, R, warp, lane);
        if (next >= n_items)
            break;
        __syncthreads(); // the epilogue is done with grp; the slice may be restaged
        it = next;
        cur = item_at(p, it, wp);
    }
}

extern "C" bool krn_gemv_supported(int M, int K)
{
    return M >= 1 && M <= KRN_GEMV_MAX_M && K > 0 && K % 8 == 0;
}

template <typename E, int NT>
static cudaError_t launch_nt(const gemv_p &p, dim3 grid, size_t smem, bool pdl, cudaStream_t stream)
{
    if (smem > 48 * 1024) {
        cudaError_t e = cudaFuncSetAttribute(gemv_kernel<E, NT>,
                                             cudaFuncAttributeMaxDynamicSharedMemorySize, SMEM_MAX);
        if (e != cudaSuccess)
            return e;
    }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = dim3(THREADS);
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cudaLaunchAttribute attr[1];
    attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.attrs = attr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, gemv_kernel<E, NT>, p);
}

// Chooses the slices of K (staging within shared memory; enough items that
// about half the SMs stream at least) and the grid (every item at once, or
// with blocks_per_sm, at most that many blocks per SM walking the items),
// and launches.
static bi_status gemv_launch(const krn_gemv_ws *ws, gemv_p &p, int groups, krn_dtype dt,
                             cudaStream_t stream)
{
    if (dt != KRN_BF16 && dt != KRN_F16)
        return BI_INVALID_ARGUMENT;
    const int NT = p.M > 8 ? 2 : 1, T = p.tiles;
    const int wp = T >= WARPS ? 1 : WARPS / T, units = T * wp;
    const int chunks = (p.K + 31) / 32;
    const size_t fixed = (size_t)units * 16 * NT * 8 * 4 + (size_t)p.M * T * 16 * 4 +
                         2 * KRN_GEMV_MAX_M * sizeof(float);
    if (fixed + (size_t)p.M * 128 * 2 > SMEM_MAX)
        return BI_UNSUPPORTED;
    // staging of cps chunks takes M * (32 cps + 32) 16-bit values at most (padding included)
    const int max_cps = (int)((SMEM_MAX - fixed) / ((size_t)p.M * 2) / 32) - 1;
    int ksplit = (chunks + max_cps - 1) / max_cps;
    while ((long)groups * ksplit < ws->n_sm / 2 && chunks / (2 * ksplit) >= MIN_CHUNKS * wp)
        ksplit *= 2;
    const int cps = (chunks + ksplit - 1) / ksplit;
    ksplit = (chunks + cps - 1) / cps;
    if (ksplit > 1 && (groups > ws->n_count || !ws->part || !ws->count ||
                       (size_t)groups * ksplit * ((size_t)p.M * T * 16 + p.M) > ws->part_floats))
        return BI_UNSUPPORTED;
    const long items = (long)groups * ksplit;
    if (items > 0x7fffffff)
        return BI_UNSUPPORTED;
    long grid = items;
    if (ws->blocks_per_sm > 0) {
        const long cap = (long)ws->blocks_per_sm * ws->n_sm, per = (items + cap - 1) / cap;
        grid = (items + per - 1) / per; // every block the same number of items, or one less
    }
    p.groups = groups;
    p.ksplit = ksplit;
    p.cps = cps;
    p.stride = cps * 32 + (cps % 2 == 0 ? 32 : 0); // rows 64 bytes off a 128-byte multiple
    p.part = ws->part;
    p.count = ws->count;
    const size_t smem = (size_t)p.M * p.stride * 2 + fixed;
    const dim3 dgrid((unsigned)grid);
    return krn_dispatch(dt, [&](auto t) {
        using E = decltype(t);
        cudaError_t e = NT == 1 ? launch_nt<E, 1>(p, dgrid, smem, ws->pdl, stream)
                                : launch_nt<E, 2>(p, dgrid, smem, ws->pdl, stream);
        return e != cudaSuccess ? BI_DEVICE : krn_launched();
    });
}

extern "C" bi_status krn_gemv(const krn_gemv_ws *ws, float *y, const krn_half *x, const krn_half *w,
                              const float *bias, bool add, int M, int N, int K, krn_dtype dt,
                              cudaStream_t stream)
{
    if (M < 0 || N <= 0 || K <= 0)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    if (!krn_gemv_supported(M, K))
        return BI_UNSUPPORTED;
    gemv_p p = {};
    p.w0 = w;
    p.x = x;
    p.M = M;
    p.K = K;
    p.rows = N;
    p.epi = add ? EPI_ADD : EPI_F32;
    p.tiles = 1;
    p.y = y;
    p.bias = bias;
    return gemv_launch(ws, p, (N + 15) / 16, dt, stream);
}

extern "C" bi_status krn_gemv_swiglu(const krn_gemv_ws *ws, krn_half *out, const float *x,
                                     const float *norm, float eps, const krn_half *w_gate,
                                     const krn_half *w_up, int M, int ff, int K, krn_dtype dt,
                                     cudaStream_t stream)
{
    if (M < 0 || ff <= 0 || K <= 0 || !norm)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    if (!krn_gemv_supported(M, K))
        return BI_UNSUPPORTED;
    gemv_p p = {};
    p.w0 = w_gate;
    p.w1 = w_up;
    p.x = x;
    p.norm = norm;
    p.eps = eps;
    p.M = M;
    p.K = K;
    p.rows = ff;
    p.epi = EPI_SWIGLU;
    p.tiles = 2;
    p.y16 = out;
    return gemv_launch(ws, p, (ff + 15) / 16, dt, stream);
}

extern "C" bi_status krn_norm_qkv_store(const krn_gemv_ws *ws, const krn_step *step,
                                        krn_kv_layer kv, float *q, const float *x,
                                        const krn_qkv_layer *l, const float *inv_freq, int M,
                                        cudaStream_t stream)
{
    const int hd = kv.head_dim;
    if (M < 0 || M != step->n_tokens || l->K <= 0 || l->n_head <= 0 || l->n_kv_head <= 0 ||
        l->n_kv_head != kv.n_kv_head || kv.page_size <= 0 || !l->attn_norm)
        return BI_INVALID_ARGUMENT;
    if (M == 0)
        return BI_OK;
    if (!krn_gemv_supported(M, l->K) || hd <= 0 || hd % 16 || hd > KRN_GEMV_MAX_HEAD_DIM)
        return BI_UNSUPPORTED;
    gemv_p p = {};
    p.w0 = l->wq;
    p.w1 = l->wk;
    p.w2 = l->wv;
    p.x = x;
    p.norm = l->attn_norm;
    p.eps = l->eps;
    p.M = M;
    p.K = l->K;
    p.rows = (l->n_head + 2 * l->n_kv_head) * hd;
    p.epi = EPI_QKV;
    p.tiles = hd / 16;
    p.y = q;
    p.bq = l->bq;
    p.bk = l->bk;
    p.bv = l->bv;
    p.qn = l->q_norm;
    p.kn = l->k_norm;
    p.inv_freq = inv_freq;
    p.nh = l->n_head;
    p.nkv = l->n_kv_head;
    p.hd = hd;
    p.st = *step;
    p.kv = kv;
    return gemv_launch(ws, p, l->n_head + 2 * l->n_kv_head, kv.dtype, stream);
}
