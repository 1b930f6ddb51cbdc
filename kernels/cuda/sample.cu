// sample.cu - logits processing and sampling on the device (krn_sample.h):
// one block of 1024 threads per logit row, every pass a coalesced sweep of
// the row.
//
// Selection without sorting: top-k, top-p and the top-n logprobs each keep a
// prefix of one total order (larger key first, then lower id), so a "cut"
// {key, id} names any of them and they compose by cutting again inside the
// previous cut. A cut is found by radix select over 32-bit keys in three
// passes (11, 11 and 10-bit digits): each pass histograms the tokens still in
// play (count, and fixed-point mass for top-p) and walks the bins from the
// top until the count or mass is reached; tokens tied on the final key are
// split by id in one more pass, only when a cut falls inside a tie.
//
// Keys are the bits of e = exp((l - max) / T) (non-negative floats order as
// their bits), written once per sampled row into the caller's scratch, or
// order-preserving bits of the logit for the logprobs. Masses are e * 2^45
// rounded to integers, so sums are exact and independent of order (2^19
// tokens fit 64 bits); the CPU sampler sums doubles, and the two agree far
// below any gap a top-p cut could fall in.
//
// Whatever decides membership (penalties, scaling, exp) is written with
// round-to-nearest intrinsics so that nvcc fuses nothing into FMAs: the CPU
// build does not contract either, and e must equal the CPU's bit for bit for
// the candidate sets to be the same.
#include <cfloat>
#include <math.h>
#include <stdint.h>

#include "cuda/krn_cuda_internal.cuh"
#include "cuda/krn_sample.h"

namespace
{

typedef unsigned long long u64;

constexpr int THREADS = 1024;
constexpr int WARPS = THREADS / 32;
constexpr int BINS = 2048; // the widest digit: 11 bits
constexpr unsigned FULL = 0xffffffffu;
constexpr float MASS_ONE = 35184372088832.0f; // 2^45: e == 1 in fixed point
constexpr double MASS_ONE_D = 35184372088832.0;
constexpr int32_t ID_ALL = 0x7fffffff;

static_assert(WARPS == 32, "the block scans assume 32 warps");

// A prefix of the order: every token with a larger key, and those with this
// key up to and including id. {0, ID_ALL} is every token.
struct cut_t {
    uint32_t key;
    int32_t id;
};

__device__ __forceinline__ bool in_cut(cut_t c, uint32_t key, int32_t i)
{
    return key > c.key || (key == c.key && i <= c.id);
}

// What a row's keys are: e (from the scratch), the penalised logit (greedy
// logprobs) or the scaled logit (sampled logprobs).
enum key_kind { KEY_E, KEY_LOGIT, KEY_SCALED };

struct row_t {
    const float *x;    // penalised logits (non-finite not yet cleaned)
    const uint32_t *e; // KEY_E: bits of e per token
    int V;
    float max, T;
    key_kind kind;
};

struct smem_t {
    uint32_t cnt[BINS];
    u64 mass[BINS];
    u64 ra[WARPS], rb[WARPS], tot_a, tot_b;
    double rd[WARPS];
    float rx[WARPS];
    int32_t ri[WARPS];
    // results one thread finds and every thread reads
    int found;
    uint32_t bin;
    u64 above_c, above_m, bin_c, bin_m, draw_r;
    int32_t tie_id, draw_t, token;
    int n_list;
    float list_x[KRN_SAMPLE_MAX_TOP];
    int32_t list_i[KRN_SAMPLE_MAX_TOP];
};

__device__ __forceinline__ int lane_id()
{
    return threadIdx.x & 31;
}
__device__ __forceinline__ int warp_id()
{
    return threadIdx.x >> 5;
}

__device__ __forceinline__ float clean(float v)
{
    return isfinite(v) ? v : -INFINITY;
}

// (l - max) / T exactly as the CPU sampler rounds it.
__device__ __forceinline__ float scaled(const row_t &r, float l)
{
    return __fdiv_rn(__fsub_rn(l, r.max), r.T);
}

// The CPU sampler's exp_nonpos, operation for operation (Cody-Waite
// reduction and Cephes' polynomial, no fused multiply-adds).
__device__ __forceinline__ float exp_nonpos(float x)
{
    float keep = x >= -87.0f ? 1.0f : 0.0f;
    x = x >= -87.0f ? x : -87.0f;
    float n = __fadd_rn(__fmul_rn(x, 1.44269504088896341f), 12582912.0f);
    n = __fsub_rn(n, 12582912.0f);
    float r = __fsub_rn(x, __fmul_rn(n, 0.693359375f));
    r = __fsub_rn(r, __fmul_rn(n, -2.12194440e-4f));
    float y = 1.9875691500e-4f;
    y = __fadd_rn(__fmul_rn(y, r), 1.3981999507e-3f);
    y = __fadd_rn(__fmul_rn(y, r), 8.3334519073e-3f);
    y = __fadd_rn(__fmul_rn(y, r), 4.1665795894e-2f);
    y = __fadd_rn(__fmul_rn(y, r), 1.6666665459e-1f);
    y = __fadd_rn(__fmul_rn(y, r), 5.0000001201e-1f);
    y = __fadd_rn(__fadd_rn(__fmul_rn(__fmul_rn(y, r), r), r), 1.0f);
    float scale = __int_as_float((__float2int_rz(n) + 127) << 23);
    return __fmul_rn(__fmul_rn(y, scale), keep);
}

__device__ __forceinline__ u64 fixed_mass(float e)
{
    return __float2ull_rn(__fmul_rn(e, MASS_ONE));
}

// Bits that order like the float (no NaN here; -0 and +0 are one value).
__device__ __forceinline__ uint32_t order_bits(float v)
{
    uint32_t u = __float_as_uint(v);
    if (u == 0x80000000u)
        u = 0;
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

__device__ __forceinline__ float value_at(const row_t &r, int i)
{
    float l = clean(r.x[i]);
    return r.kind == KEY_SCALED ? scaled(r, l) : l;
}

__device__ __forceinline__ uint32_t key_at(const row_t &r, int i)
{
    return r.kind == KEY_E ? r.e[i] : order_bits(value_at(r, i));
}

__device__ __forceinline__ u64 mass_of(const row_t &r, uint32_t key)
{
    return r.kind == KEY_E ? fixed_mass(__uint_as_float(key)) : 0;
}

// ---- block-wide reductions (every thread gets the result) ----

__device__ double block_sum_d(double v, smem_t &s)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(FULL, v, o);
    if (lane_id() == 0)
        s.rd[warp_id()] = v;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < WARPS; w++)
        t += s.rd[w];
    __syncthreads();
    return t;
}

// Exclusive prefix sums of a and b over the threads in order, and totals.
__device__ void block_scan2(u64 a, u64 b, u64 *ea, u64 *eb, u64 *ta, u64 *tb, smem_t &s)
{
    const int lane = lane_id(), warp = warp_id();
    u64 ia = a, ib = b;
    for (int o = 1; o < 32; o <<= 1) {
        u64 xa = __shfl_up_sync(FULL, ia, o), xb = __shfl_up_sync(FULL, ib, o);
        if (lane >= o) {
            ia += xa;
            ib += xb;
        }
    }
    if (lane == 31) {
        s.ra[warp] = ia;
        s.rb[warp] = ib;
    }
    __syncthreads();
    if (warp == 0) {
        u64 wa = s.ra[lane], wb = s.rb[lane], sa = wa, sb = wb;
        for (int o = 1; o < 32; o <<= 1) {
            u64 xa = __shfl_up_sync(FULL, sa, o), xb = __shfl_up_sync(FULL, sb, o);
            if (lane >= o) {
                sa += xa;
                sb += xb;
            }
        }
        s.ra[lane] = sa - wa;
        s.rb[lane] = sb - wb;
        if (lane == 31) {
            s.tot_a = sa;
            s.tot_b = sb;
        }
    }
    __syncthreads();
    *ea = s.ra[warp] + ia - a;
    *eb = s.rb[warp] + ib - b;
    *ta = s.tot_a;
    *tb = s.tot_b;
    __syncthreads();
}

// a before b in the greedy order: finite (id >= 0), larger, then lower id.
__device__ __forceinline__ bool better(float xa, int32_t ia, float xb, int32_t ib)
{
    return ia >= 0 && (ib < 0 || xa > xb || (xa == xb && ia < ib));
}

// The largest finite logit and its lowest id (-1: none is finite).
__device__ void block_argmax(const float *x, int V, float *mx, int32_t *best, smem_t &s)
{
    float bx = -INFINITY;
    int32_t bi = -1;
    for (int i = threadIdx.x; i < V; i += THREADS) {
        float v = x[i];
        if (isfinite(v) && (bi < 0 || v > bx)) {
            bx = v;
            bi = i;
        }
    }
    for (int o = 16; o > 0; o >>= 1) {
        float ox = __shfl_xor_sync(FULL, bx, o);
        int32_t oi = __shfl_xor_sync(FULL, bi, o);
        if (better(ox, oi, bx, bi)) {
            bx = ox;
            bi = oi;
        }
    }
    if (lane_id() == 0) {
        s.rx[warp_id()] = bx;
        s.ri[warp_id()] = bi;
    }
    __syncthreads();
    bx = s.rx[0];
    bi = s.ri[0];
    for (int w = 1; w < WARPS; w++)
        if (better(s.rx[w], s.ri[w], bx, bi)) {
            bx = s.rx[w];
            bi = s.ri[w];
        }
    __syncthreads();
    *mx = bx;
    *best = bi;
}

// ---- the steps of a row ----

// Repetition (HF), then frequency and presence (OpenAI) on each distinct
// history id, clamped to finite, exactly as the CPU sampler.
__device__ void apply_penalties(const krn_sample_row &p, float *x, int V, const int32_t *ids,
                                const uint32_t *counts)
{
    for (int j = threadIdx.x; j < p.n_hist; j += THREADS) {
        int32_t id = ids[j];
        if (id < 0 || id >= V)
            continue;
        float v = x[id];
        if (!isfinite(v)) {
            x[id] = -INFINITY;
            continue;
        }
        if (p.repetition_penalty != 1.0f)
            v = v > 0.0f ? __fdiv_rn(v, p.repetition_penalty) : __fmul_rn(v, p.repetition_penalty);
        uint32_t c = counts[j];
        if (c > 0)
            v = __fsub_rn(v, __fadd_rn(__fmul_rn(p.frequency_penalty, __uint2float_rn(c)),
                                       p.presence_penalty));
        x[id] = fminf(fmaxf(v, -FLT_MAX), FLT_MAX);
    }
}

// Adds (1, m) to bin for every lane with bin >= 0. Lanes of a warp that
// share a bin are summed first (one shared atomic per bin per warp), since
// the top bins of a skewed row would otherwise serialise on one address.
__device__ __forceinline__ void hist_add(smem_t &s, int bin, u64 m)
{
    const int lane = lane_id();
    unsigned peers = __match_any_sync(FULL, bin);
    bool alone = __popc(peers) == 1;
    if (alone && bin >= 0) {
        atomicAdd(&s.cnt[bin], 1u);
        if (m)
            atomicAdd(&s.mass[bin], m);
    }
    unsigned todo = __ballot_sync(FULL, !alone && bin >= 0);
    while (todo) {
        int leader = __ffs(todo) - 1;
        int lb = __shfl_sync(FULL, bin, leader);
        bool mine = bin == lb;
        unsigned grp = __ballot_sync(FULL, mine);
        // m <= 2^45: two 32-bit halves whose sums over a warp cannot overflow
        unsigned lo = __reduce_add_sync(FULL, mine ? (unsigned)(m & 0xffffffu) : 0u);
        unsigned hi = __reduce_add_sync(FULL, mine ? (unsigned)(m >> 24) : 0u);
        if (lane == leader) {
            atomicAdd(&s.cnt[lb], (unsigned)__popc(grp));
            u64 t = ((u64)hi << 24) + lo;
            if (t)
                atomicAdd(&s.mass[lb], t);
        }
        todo &= ~grp;
    }
}

// The id of the n-th (from 1) token of c0, in id order, whose key is E.
__device__ int32_t nth_tie(const row_t &r, cut_t c0, uint32_t E, int n, smem_t &s)
{
    const int tid = threadIdx.x, lane = lane_id(), warp = warp_id();
    int before = 0;
    for (int base = 0; base < r.V; base += THREADS) {
        const int i = base + tid;
        bool f = false;
        if (i < r.V) {
            uint32_t key = key_at(r, i);
            f = key == E && in_cut(c0, key, i);
        }
        unsigned bal = __ballot_sync(FULL, f);
        if (lane == 0)
            s.ri[warp] = __popc(bal);
        __syncthreads();
        int run = before, hit = -1, hit_run = 0;
        for (int w = 0; w < WARPS; w++) {
            int c = s.ri[w];
            if (hit < 0 && run + c >= n) {
                hit = w;
                hit_run = run;
            }
            run += c;
        }
        if (hit == warp && f && hit_run + __popc(bal & ((1u << lane) - 1u)) + 1 == n)
            s.tie_id = i;
        __syncthreads();
        if (hit >= 0) {
            int32_t id = s.tie_id;
            __syncthreads();
            return id;
        }
        before = run;
    }
    return ID_ALL; // n beyond the ties: cannot happen when called as below
}

struct sel_t {
    cut_t cut;
    u64 total_m; // mass of c0
};

// The shortest prefix of c0 (in key order) that holds need tokens (by_mass
// false), or whose mass reaches frac * mass(c0) (by_mass true, need = frac).
// A need that c0 cannot meet (rounding) keeps all of c0.
__device__ sel_t radix_select(const row_t &r, cut_t c0, bool by_mass, double need_arg, smem_t &s)
{
    const int tid = threadIdx.x, lane = lane_id(), warp = warp_id();
    uint32_t prefix = 0;
    u64 acc_c = 0, acc_m = 0, total_m = 0, bin_c = 0, bin_m = 0;
    double need = need_arg;
    for (int level = 0; level < 3; level++) {
        const int shift = level == 0 ? 21 : level == 1 ? 10 : 0;
        const int bits = level == 2 ? 10 : 11, nb = 1 << bits;
        for (int b = tid; b < nb; b += THREADS) {
            s.cnt[b] = 0;
            s.mass[b] = 0;
        }
        __syncthreads();
        for (int base = warp * 32; base < r.V; base += THREADS) {
            const int i = base + lane;
            int bin = -1;
            u64 m = 0;
            if (i < r.V) {
                uint32_t key = key_at(r, i);
                if (in_cut(c0, key, i) && (level == 0 || (key >> (shift + bits)) == prefix)) {
                    bin = (int)((key >> shift) & (uint32_t)(nb - 1));
                    m = mass_of(r, key);
                }
            }
            hist_add(s, bin, m);
        }
        __syncthreads();
        // Thread t holds bins nb-1-2t and nb-2-2t: a scan over threads walks
        // the bins from the top.
        const int b_hi = nb - 1 - 2 * tid, b_lo = b_hi - 1;
        u64 c_hi = 0, c_lo = 0, m_hi = 0, m_lo = 0;
        if (b_hi >= 0) {
            c_hi = s.cnt[b_hi];
            m_hi = s.mass[b_hi];
        }
        if (b_lo >= 0) {
            c_lo = s.cnt[b_lo];
            m_lo = s.mass[b_lo];
        }
        u64 ec, em, tc, tm;
        block_scan2(c_hi + c_lo, m_hi + m_lo, &ec, &em, &tc, &tm, s);
        if (level == 0) {
            total_m = tm;
            if (by_mass)
                need = need_arg * (double)tm;
        }
        if (tid == 0)
            s.found = 0;
        __syncthreads();
        const u64 acc = by_mass ? acc_m + em : acc_c + ec;
        const u64 q_hi = by_mass ? m_hi : c_hi, q_lo = by_mass ? m_lo : c_lo;
        if ((double)acc < need) {
            if (b_hi >= 0 && (double)(acc + q_hi) >= need) {
                s.found = 1;
                s.bin = (uint32_t)b_hi;
                s.above_c = ec;
                s.above_m = em;
                s.bin_c = c_hi;
                s.bin_m = m_hi;
            } else if (b_lo >= 0 && (double)(acc + q_hi + q_lo) >= need) {
                s.found = 1;
                s.bin = (uint32_t)b_lo;
                s.above_c = ec + c_hi;
                s.above_m = em + m_hi;
                s.bin_c = c_lo;
                s.bin_m = m_lo;
            }
        }
        __syncthreads();
        const bool found = s.found;
        if (found) {
            prefix = (prefix << bits) | s.bin;
            acc_c += s.above_c;
            acc_m += s.above_m;
            bin_c = s.bin_c;
            bin_m = s.bin_m;
        }
        __syncthreads();
        if (!found)
            return {c0, total_m};
    }
    // prefix is the key E of the last token in; bin_c tokens of c0 share it.
    const uint32_t E = prefix;
    u64 take;
    if (by_mass) {
        const u64 each = bin_m / bin_c; // ties share e, hence their mass
        take = each ? (u64)ceil((need - (double)acc_m) / (double)each) : bin_c;
        take = take < 1 ? 1 : take > bin_c ? bin_c : take;
    } else {
        take = (u64)need - acc_c;
    }
    int32_t id = E == c0.key ? c0.id : ID_ALL;
    if (take < bin_c)
        id = nth_tie(r, c0, E, (int)take, s);
    return {{E, id}, total_m};
}

// Writes the bits of e for every token of a sampled row; returns the row's
// fixed-point mass.
__device__ u64 key_pass(const row_t &r, uint32_t *e_out, smem_t &s)
{
    u64 m = 0;
    for (int i = threadIdx.x; i < r.V; i += THREADS) {
        float e = exp_nonpos(scaled(r, clean(r.x[i])));
        e_out[i] = __float_as_uint(e);
        m += fixed_mass(e);
    }
    u64 ex, ex2, tot, tot2;
    block_scan2(m, 0, &ex, &ex2, &tot, &tot2, s);
    return tot;
}

__device__ __forceinline__ bool in_set(cut_t cut, float min_p, uint32_t key, int32_t i)
{
    return in_cut(cut, key, i) && __uint_as_float(key) >= min_p;
}

// Philox4x32-10 (Salmon et al. 2011) of counter (step, 0) under key seed, as
// a uniform double in [0, 1) with 53 random bits.
__device__ double philox_uniform(u64 seed, u64 step)
{
    uint32_t c0 = (uint32_t)step, c1 = (uint32_t)(step >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int round = 0; round < 10; round++) {
        uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return (double)(((((u64)c0) << 32) | c1) >> 11) * 0x1.0p-53;
}

// Draws a token of {cut, e >= min_p} in proportion to its mass with u in
// [0, 1): the block finds the thread whose tokens (its strided share, in
// order) hold the point u * mass, then warp 0 walks that thread's tokens 32
// at a time. keep (optional) receives the set.
__device__ int32_t draw(const row_t &r, cut_t cut, float min_p, double u, int32_t best,
                        uint8_t *keep, smem_t &s)
{
    const int tid = threadIdx.x, lane = lane_id();
    if (tid == 0)
        s.draw_t = -1; // ordered before any write below by the scan's barriers
    u64 own = 0;
    for (int i = tid; i < r.V; i += THREADS) {
        uint32_t key = r.e[i];
        bool in = in_set(cut, min_p, key, i);
        if (keep)
            keep[i] = in;
        if (in)
            own += mass_of(r, key);
    }
    u64 ex, ex2, tot, tot2;
    block_scan2(own, 0, &ex, &ex2, &tot, &tot2, s);
    if (tot == 0)
        return best; // cannot happen: the best token (mass 2^45) is in every set
    u64 point = (u64)(u * (double)tot);
    point = point < tot ? point : tot - 1;
    if (own > 0 && ex <= point && point < ex + own) {
        s.draw_t = tid;
        s.draw_r = point - ex;
    }
    __syncthreads();
    if (warp_id() == 0) {
        const int t = s.draw_t;
        u64 rest = s.draw_r;
        int32_t tok = best;
        for (int k = 0; t >= 0 && t + k * THREADS < r.V; k += 32) {
            const int i = t + (k + lane) * THREADS;
            u64 m = 0;
            if (i < r.V) {
                uint32_t key = r.e[i];
                if (in_set(cut, min_p, key, i))
                    m = mass_of(r, key);
            }
            u64 incl = m;
            for (int o = 1; o < 32; o <<= 1) {
                u64 y = __shfl_up_sync(FULL, incl, o);
                if (lane >= o)
                    incl += y;
            }
            unsigned hit = __ballot_sync(FULL, incl > rest);
            if (hit) {
                tok = __shfl_sync(FULL, i, __ffs(hit) - 1);
                break;
            }
            rest -= __shfl_sync(FULL, incl, 31);
        }
        if (lane == 0)
            s.token = tok;
    }
    __syncthreads();
    int32_t tok = s.token;
    __syncthreads();
    return tok;
}

// The n best tokens by the row's logit key (best first, ties to the lower
// id) into s.list_*; returns how many (n, or the vocabulary if smaller).
__device__ int top_tokens(const row_t &xr, int n, smem_t &s)
{
    sel_t sel = radix_select(xr, {0u, ID_ALL}, false, (double)n, s);
    if (threadIdx.x == 0)
        s.n_list = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < xr.V; i += THREADS) {
        if (!in_cut(sel.cut, key_at(xr, i), i))
            continue;
        int slot = atomicAdd(&s.n_list, 1);
        if (slot < KRN_SAMPLE_MAX_TOP) {
            s.list_x[slot] = value_at(xr, i);
            s.list_i[slot] = i;
        }
    }
    __syncthreads();
    int got = s.n_list < KRN_SAMPLE_MAX_TOP ? s.n_list : KRN_SAMPLE_MAX_TOP;
    if (threadIdx.x == 0) {
        for (int a = 1; a < got; a++) { // insertion sort of at most 20
            float vx = s.list_x[a];
            int32_t vi = s.list_i[a];
            int b = a;
            while (b > 0 &&
                   (s.list_x[b - 1] < vx || (s.list_x[b - 1] == vx && s.list_i[b - 1] > vi))) {
                s.list_x[b] = s.list_x[b - 1];
                s.list_i[b] = s.list_i[b - 1];
                b--;
            }
            s.list_x[b] = vx;
            s.list_i[b] = vi;
        }
    }
    __syncthreads();
    return got;
}

__global__ void __launch_bounds__(THREADS, 1)
    sample_kernel(float *logits, uint32_t *keys, int V, // both written, then read
                  const krn_sample_row *__restrict__ params, const int32_t *__restrict__ hist_ids,
                  const uint32_t *__restrict__ hist_counts, krn_sample_out *__restrict__ out,
                  uint8_t *__restrict__ keep)
{
    __shared__ smem_t s;
    const int tid = threadIdx.x;
    const size_t row = blockIdx.x;
    const krn_sample_row p = params[row];
    float *x = logits + row * V;
    uint8_t *kp = keep ? keep + row * V : nullptr;
    krn_sample_out *o = out + row;

    if (p.n_hist > 0)
        apply_penalties(p, x, V, hist_ids + p.hist_off, hist_counts + p.hist_off);
    __syncthreads();
    float mx;
    int32_t best;
    block_argmax(x, V, &mx, &best, s);
    if (best < 0) {
        for (int i = tid; kp && i < V; i += THREADS)
            kp[i] = 0;
        if (tid == 0) {
            o->token = -1;
            o->status = KRN_SAMPLE_NO_FINITE;
            o->chosen_logprob = 0.0f;
            o->n_top = 0;
        }
        return;
    }
    const bool greedy = p.temperature == 0.0f;
    row_t r = {x, keys ? keys + row * V : nullptr, V, mx, greedy ? 1.0f : p.temperature, KEY_E};
    int32_t token = best;
    double log_z = 0.0;
    if (greedy) {
        for (int i = tid; kp && i < V; i += THREADS)
            kp[i] = i == best;
        if (p.n_logprobs >= 0) {
            double z = 0.0;
            for (int i = tid; i < V; i += THREADS)
                z += (double)expf(__fsub_rn(clean(x[i]), mx));
            log_z = log(block_sum_d(z, s));
        }
    } else {
        const u64 z = key_pass(r, keys + row * V, s);
        cut_t cut = {0u, ID_ALL};
        if (p.top_k > 0 && p.top_k < V)
            cut = radix_select(r, cut, false, (double)p.top_k, s).cut;
        if (p.top_p < 1.0f)
            cut = radix_select(r, cut, true, (double)p.top_p, s).cut;
        token = draw(r, cut, p.min_p, philox_uniform(p.seed, p.step), best, kp, s);
        log_z = log((double)z / MASS_ONE_D);
    }

    // Logprobs: greedy reports l - max - log(sum exp(l - max)), sampling
    // x - log(sum e) with x = (l - max) / T, as the CPU sampler does.
    r.kind = greedy ? KEY_LOGIT : KEY_SCALED;
    const float shift = greedy ? mx : 0.0f;
    int n_top = 0;
    if (p.n_logprobs > 0) {
        int n = p.n_logprobs < KRN_SAMPLE_MAX_TOP ? p.n_logprobs : KRN_SAMPLE_MAX_TOP;
        n_top = top_tokens(r, n < V ? n : V, s);
    }
    if (tid == 0) {
        o->token = token;
        o->status = KRN_SAMPLE_OK;
        o->chosen_logprob = 0.0f;
        if (p.n_logprobs >= 0)
            o->chosen_logprob = (float)((double)__fsub_rn(value_at(r, token), shift) - log_z);
        o->n_top = n_top;
        for (int j = 0; j < n_top; j++) {
            o->top_id[j] = s.list_i[j];
            o->top_logprob[j] = (float)((double)__fsub_rn(s.list_x[j], shift) - log_z);
        }
    }
}

} // namespace

extern "C" bi_status krn_sample(float *logits, uint32_t *keys, int rows, int vocab,
                                const krn_sample_row *params, const int32_t *hist_ids,
                                const uint32_t *hist_counts, krn_sample_out *out, uint8_t *keep,
                                cudaStream_t stream)
{
    if (rows < 0 || vocab <= 0 || vocab > KRN_SAMPLE_MAX_VOCAB)
        return BI_INVALID_ARGUMENT;
    if (rows == 0)
        return BI_OK;
    sample_kernel<<<rows, THREADS, 0, stream>>>(logits, keys, vocab, params, hist_ids, hist_counts,
                                                out, keep);
    return krn_launched();
}
