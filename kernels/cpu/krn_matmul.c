/*
 * krn_matmul.c - y = x . w^T + bias, the CPU backend's hot spot.
 *
 * Both operands are K-contiguous (nn.Linear weights), so an output element is
 * a dot product of two contiguous rows. The AVX2 kernel computes a tile of
 * mr rows of x by nr rows of w with one 8-lane FMA accumulator per output,
 * which serves both regimes without packing or scratch memory:
 *  - decode (M = 1..8) is memory-bound: each weight row is streamed from DRAM
 *    once, 4 or 8 rows at a time, and reused from L1 for every row of x;
 *  - prefill (M up to hundreds) is compute-bound: the 3x4 tile keeps 12
 *    accumulators and 3 x vectors in registers, 12 FMAs per 7 loads. That is
 *    all 16 ymm registers with the w vector, so GCC keeps one x vector on
 *    the stack (an L1 hit folded into the FMAs); it still measured ~40%
 *    faster than a spill-free 2x6 tile (about 70 vs 50 GFLOP/s of an 85
 *    GFLOP/s single-core peak). x is walked in blocks that stay in L2 while a
 *    task's weight rows are reused across them.
 * Work is split over the pool by fixed blocks of output columns, and every
 * tile shape performs the same per-element sequence (8-lane accumulation
 * over K, masked tail, fixed horizontal sum, then + bias), so the result does
 * not depend on the thread count, the tile an element landed in, or M.
 */
#include "cpu/krn_cpu.h"

#include "cpu/krn_cpu_internal.h"

#if KRN_HAVE_X86
#include <immintrin.h>
#endif

enum {
    MM_MR = 3,           /* rows of x per prefill tile */
    MM_NR = 4,           /* rows of w per prefill tile */
    MM_NR_WIDE = 8,      /* rows of w per tile when the block has one row of x */
    MM_NB = 32,          /* rows of w (output columns) per pool task */
    MM_X_BLOCK = 1 << 20 /* bytes of x walked per pass over a task's w rows (L2) */
};

typedef struct mm_args {
    float *y;
    const float *x, *w, *bias;
    int M, N, K;
    int mb; /* rows of x per block */
} mm_args;

static inline int imin(int a, int b)
{
    return a < b ? a : b;
}

/* ---- portable variant ---- */

float krn_dot_scalar(const float *a, const float *b, int n)
{
    /* Four partial sums: independent chains, and the order is fixed. */
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < n; i++)
        s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

static void mm_block_scalar(const mm_args *a, int n0, int n1)
{
    for (int m0 = 0; m0 < a->M; m0 += a->mb) {
        int m1 = imin(a->M, m0 + a->mb);
        for (int n = n0; n < n1; n++) {
            const float *wr = a->w + (size_t)n * a->K;
            for (int m = m0; m < m1; m++) {
                float s = krn_dot_scalar(a->x + (size_t)m * a->K, wr, a->K);
                if (a->bias != NULL)
                    s += a->bias[n];
                a->y[(size_t)m * a->N + n] = s;
            }
        }
    }
}

/* ---- AVX2 + FMA variant ---- */

#if KRN_HAVE_X86
#define AVX2        __attribute__((target("avx2,fma")))
#define AVX2_INLINE __attribute__((target("avx2,fma"), always_inline)) static inline

/* Lanes [0, n) set, for the masked load of a K tail of n < 8 elements. */
AVX2_INLINE __m256i tail_mask(int n)
{
    static const int bits[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256((const __m256i *)(bits + 8 - n));
}

AVX2_INLINE float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* y[i][j] (row stride ldy) = x row i . w row j (+ bias[j]) for an mr x nr
 * tile; mr and nr are constants at every call, so the loops unroll and acc
 * lives in registers. */
AVX2_INLINE void tile_avx2(float *y, int ldy, const float *x, const float *w, const float *bias,
                           int K, int mr, int nr)
{
    __m256 acc[MM_MR][MM_NR > MM_NR_WIDE ? MM_NR : MM_NR_WIDE];
#pragma GCC unroll 3
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++)
            acc[i][j] = _mm256_setzero_ps();
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv[MM_MR];
#pragma GCC unroll 3
        for (int i = 0; i < mr; i++)
            xv[i] = _mm256_loadu_ps(x + (size_t)i * K + k);
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++) {
            __m256 wv = _mm256_loadu_ps(w + (size_t)j * K + k);
#pragma GCC unroll 3
            for (int i = 0; i < mr; i++)
                acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
    if (k < K) {
        __m256i mask = tail_mask(K - k);
        __m256 xv[MM_MR];
#pragma GCC unroll 3
        for (int i = 0; i < mr; i++)
            xv[i] = _mm256_maskload_ps(x + (size_t)i * K + k, mask);
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++) {
            __m256 wv = _mm256_maskload_ps(w + (size_t)j * K + k, mask);
#pragma GCC unroll 3
            for (int i = 0; i < mr; i++)
                acc[i][j] = _mm256_fmadd_ps(xv[i], wv, acc[i][j]);
        }
    }
#pragma GCC unroll 3
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nr; j++) {
            float s = hsum(acc[i][j]);
            if (bias != NULL)
                s += bias[j];
            y[(size_t)i * ldy + j] = s;
        }
}

AVX2 float krn_dot_avx2(const float *a, const float *b, int n)
{
    float r;
    tile_avx2(&r, 1, a, b, NULL, n, 1, 1);
    return r;
}

/* Rows [m0, m1) of x against nr rows of w starting at n. */
AVX2_INLINE void rows_avx2(const mm_args *a, int m0, int m1, int n, int nr)
{
    const float *w = a->w + (size_t)n * a->K;
    const float *bias = a->bias != NULL ? a->bias + n : NULL;
    int m = m0;
    for (; m + MM_MR <= m1; m += MM_MR)
        tile_avx2(a->y + (size_t)m * a->N + n, a->N, a->x + (size_t)m * a->K, w, bias, a->K, MM_MR,
                  nr);
    float *y = a->y + (size_t)m * a->N + n;
    const float *x = a->x + (size_t)m * a->K;
    if (m1 - m == 2)
        tile_avx2(y, a->N, x, w, bias, a->K, 2, nr);
    else if (m1 - m == 1)
        tile_avx2(y, a->N, x, w, bias, a->K, 1, nr);
}

AVX2 static void mm_block_avx2(const mm_args *a, int n0, int n1)
{
    for (int m0 = 0; m0 < a->M; m0 += a->mb) {
        int m1 = imin(a->M, m0 + a->mb);
        int n = n0;
        if (m1 - m0 == 1) /* one row of x: wider tiles for more loads in flight */
            for (; n + MM_NR_WIDE <= n1; n += MM_NR_WIDE)
                tile_avx2(a->y + (size_t)m0 * a->N + n, a->N, a->x + (size_t)m0 * a->K,
                          a->w + (size_t)n * a->K, a->bias != NULL ? a->bias + n : NULL, a->K, 1,
                          MM_NR_WIDE);
        for (; n + MM_NR <= n1; n += MM_NR)
            rows_avx2(a, m0, m1, n, MM_NR);
        for (; n < n1; n++)
            rows_avx2(a, m0, m1, n, 1);
    }
}
#endif

/* ---- dispatch ---- */

static void mm_task(void *arg, int task, int n_tasks, int thread)
{
    (void)n_tasks;
    (void)thread;
    const mm_args *a = arg;
    int n0 = task * MM_NB;
    int n1 = imin(a->N, n0 + MM_NB);
#if KRN_HAVE_X86
    if (krn_cpu_use_avx2()) {
        mm_block_avx2(a, n0, n1);
        return;
    }
#endif
    mm_block_scalar(a, n0, n1);
}

void krn_cpu_matmul(krn_pool *p, float *y, const float *x, const float *w, const float *bias, int M,
                    int N, int K)
{
    if (M <= 0 || N <= 0 || K < 0)
        return;
    /* Whole multiples of the tile height, so that blocks split no tile. */
    int mb = K > 0 ? MM_X_BLOCK / (int)sizeof(float) / K / MM_MR * MM_MR : M;
    mm_args a = {.y = y,
                 .x = x,
                 .w = w,
                 .bias = bias,
                 .M = M,
                 .N = N,
                 .K = K,
                 .mb = mb < MM_MR ? MM_MR : mb};
    krn_pool_run(p, (N + MM_NB - 1) / MM_NB, mm_task, &a);
}
