/*
 * krn_ops.c - the small CPU ops around the matmuls (RMSNorm, dot, axpy,
 * SwiGLU, softmax) and the run-time choice between the AVX2 and the portable
 * variants.
 *
 * These are a few percent of a token's time, so only the loops that touch
 * every element of a long row are vectorized; the reductions reuse the
 * matmul's dot product so that both round the same way.
 */
#define BI_LOG_MODULE "krn"

#include "cpu/krn_cpu.h"

#include <math.h>
#include <stdatomic.h>

#include "common/log.h"
#include "cpu/krn_cpu_internal.h"

#if KRN_HAVE_X86
#include <immintrin.h>
#endif

/* ---- ISA selection ---- */

/* KRN_CPU_ISA_AUTO until resolved; relaxed loads are enough since the value
 * only changes between kernel calls. */
static atomic_int g_isa = KRN_CPU_ISA_AUTO;

static bool cpu_has_avx2(void)
{
#if KRN_HAVE_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return false;
#endif
}

bi_status krn_cpu_set_isa(krn_cpu_isa isa)
{
    switch (isa) {
    case KRN_CPU_ISA_AUTO:
        isa = cpu_has_avx2() ? KRN_CPU_ISA_AVX2 : KRN_CPU_ISA_SCALAR;
        break;
    case KRN_CPU_ISA_SCALAR:
        break;
    case KRN_CPU_ISA_AVX2:
        if (!cpu_has_avx2()) {
            BI_LOGW(NULL, "krn_cpu_set_isa: this CPU lacks AVX2 or FMA");
            return BI_UNSUPPORTED;
        }
        break;
    default:
        BI_LOGE(NULL, "krn_cpu_set_isa: unknown ISA %d", (int)isa);
        return BI_INVALID_ARGUMENT;
    }
    atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    return BI_OK;
}

krn_cpu_isa krn_cpu_get_isa(void)
{
    int isa = atomic_load_explicit(&g_isa, memory_order_relaxed);
    if (isa == KRN_CPU_ISA_AUTO) {
        isa = cpu_has_avx2() ? KRN_CPU_ISA_AVX2 : KRN_CPU_ISA_SCALAR;
        atomic_store_explicit(&g_isa, isa, memory_order_relaxed);
    }
    return (krn_cpu_isa)isa;
}

bool krn_cpu_use_avx2(void)
{
    return krn_cpu_get_isa() == KRN_CPU_ISA_AVX2;
}

const char *krn_cpu_isa_name(krn_cpu_isa isa)
{
    switch (isa) {
    case KRN_CPU_ISA_AUTO:
        return "auto";
    case KRN_CPU_ISA_SCALAR:
        return "scalar";
    case KRN_CPU_ISA_AVX2:
        return "avx2";
    }
    return "unknown";
}

/* ---- AVX2 loops ---- */

#if KRN_HAVE_X86
__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n)
{
    __m256 av = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i,
                         _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(a, x[i], y[i]);
}

/* y = x * s * w, element-wise. */
__attribute__((target("avx2,fma"))) static void scale_mul_avx2(float *y, const float *x, float s,
                                                               const float *w, int n)
{
    __m256 sv = _mm256_set1_ps(s);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sv),
                                              _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * s * w[i];
}
#endif

/* ---- ops ---- */

float krn_cpu_dot(const float *a, const float *b, int n)
{
    if (n <= 0)
        return 0.0f;
#if KRN_HAVE_X86
    if (krn_cpu_use_avx2())
        return krn_dot_avx2(a, b, n);
#endif
    return krn_dot_scalar(a, b, n);
}

void krn_cpu_axpy(float *y, float a, const float *x, int n)
{
#if KRN_HAVE_X86
    if (krn_cpu_use_avx2()) {
        axpy_avx2(y, a, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        y[i] += a * x[i];
}

void krn_cpu_rmsnorm(float *y, const float *x, const float *w, int M, int D, float eps)
{
    if (D <= 0)
        return;
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * D;
        float *yr = y + (size_t)m * D;
        float s = 1.0f / sqrtf(krn_cpu_dot(xr, xr, D) / (float)D + eps);
#if KRN_HAVE_X86
        if (krn_cpu_use_avx2()) {
            scale_mul_avx2(yr, xr, s, w, D);
            continue;
        }
#endif
        for (int i = 0; i < D; i++)
            yr[i] = xr[i] * s * w[i];
    }
}

void krn_cpu_silu_mul(float *out, const float *gate, const float *up, size_t n)
{
    /* expf dominates and has no vector form in plain C; at d_ff per token
     * this is microseconds, far below the matmuls around it. */
    for (size_t i = 0; i < n; i++) {
        float g = gate[i];
        out[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void krn_cpu_softmax(float *x, int n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    float sum = 0.0f;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    float inv = 1.0f / sum;
    for (int i = 0; i < n; i++)
        x[i] *= inv;
}
