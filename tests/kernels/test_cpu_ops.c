/*
 * test_cpu_ops.c - the fp32 CPU ops against plain double-precision references
 * on fresh random inputs of awkward sizes, for both the AVX2 and the scalar
 * variant; matmul results must be bit-identical whatever the pool size and
 * whatever the other rows of the batch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu/krn_cpu.h"

#define MAX_REL_ERR 1e-5

static uint64_t g_rng;

/* Uniform in [-1, 1). */
static float rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static float *rand_vec(size_t n)
{
    float *v = malloc((n ? n : 1) * sizeof(float));
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rnd();
    return v;
}

/* ||y - ref|| / ||ref||, or ||y|| when ref is all zero. */
static double rel_err(const float *y, const double *ref, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)y[i] - ref[i];
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

static void check_close(const char *what, const float *y, const double *ref, size_t n)
{
    double e = rel_err(y, ref, n);
    if (!(e < MAX_REL_ERR))
        fail_msg("%s (%s): relative error %g", what, krn_cpu_isa_name(krn_cpu_get_isa()), e);
}

static krn_cpu_isa g_scalar = KRN_CPU_ISA_SCALAR, g_avx2 = KRN_CPU_ISA_AVX2;

/* Selects the variant a test was registered with (its state); skips the test
 * when this CPU cannot run it. */
static void select_isa(void **state)
{
    krn_cpu_isa isa = *(krn_cpu_isa *)*state;
    if (krn_cpu_set_isa(isa) != BI_OK) {
        fprintf(stderr, "note: no %s here, skipped\n", krn_cpu_isa_name(isa));
        skip();
    }
}

static int setup(void **state)
{
    (void)state;
    g_rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)time(NULL);
    fprintf(stderr, "random seed %#llx\n", (unsigned long long)g_rng);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    return krn_cpu_set_isa(KRN_CPU_ISA_AUTO) == BI_OK ? 0 : -1;
}

/* ---- matmul ---- */

typedef struct mm_case {
    float *x, *w, *bias;
    int M, N, K;
} mm_case;

static mm_case mm_make(int M, int N, int K, int with_bias)
{
    mm_case c = {.M = M, .N = N, .K = K};
    c.x = rand_vec((size_t)M * K);
    c.w = rand_vec((size_t)N * K);
    c.bias = with_bias ? rand_vec((size_t)N) : NULL;
    return c;
}

static void mm_free(mm_case *c)
{
    free(c->x);
    free(c->w);
    free(c->bias);
}

static float *mm_run(const mm_case *c, krn_pool *p)
{
    float *y = rand_vec((size_t)c->M * c->N);
    krn_cpu_matmul(p, y, c->x, c->w, c->bias, c->M, c->N, c->K);
    return y;
}

static void mm_check(const mm_case *c, const float *y)
{
    double *ref = malloc(((size_t)c->M * c->N + 1) * sizeof(double));
    assert_non_null(ref);
    for (int m = 0; m < c->M; m++)
        for (int n = 0; n < c->N; n++) {
            double s = c->bias ? c->bias[n] : 0.0;
            for (int k = 0; k < c->K; k++)
                s += (double)c->x[(size_t)m * c->K + k] * c->w[(size_t)n * c->K + k];
            ref[(size_t)m * c->N + n] = s;
        }
    char what[64];
    snprintf(what, sizeof(what), "matmul M=%d N=%d K=%d bias=%d", c->M, c->N, c->K,
             c->bias != NULL);
    check_close(what, y, ref, (size_t)c->M * c->N);
    free(ref);
}

/* M, N, K around and off the tile sizes (3x4, 1x8), the task width (32),
 * the vector width (8) and the x block (1 MiB of rows: 12 rows at K = 20000). */
static const int mm_shapes[][3] = {
    {1, 1, 1},     {1, 1, 8},      {1, 17, 9},     {2, 5, 3},     {3, 4, 8},      {4, 33, 100},
    {5, 64, 576},  {7, 13, 1},     {8, 70, 31},    {13, 40, 577}, {1, 100, 1536}, {37, 65, 129},
    {128, 36, 64}, {100, 33, 700}, {14, 5, 20000}, {2, 1, 17},    {1, 8, 7},      {6, 96, 16},
};

static void test_cpu_ops_matmul_matches_reference(void **state)
{
    select_isa(state);
    krn_pool *p = NULL;
    assert_int_equal(krn_pool_create(2, &p), BI_OK);
    for (size_t s = 0; s < sizeof(mm_shapes) / sizeof(mm_shapes[0]); s++) {
        mm_case c = mm_make(mm_shapes[s][0], mm_shapes[s][1], mm_shapes[s][2], (int)(s % 2));
        float *y = mm_run(&c, s % 3 == 0 ? NULL : p);
        mm_check(&c, y);
        free(y);
        mm_free(&c);
    }
    krn_pool_destroy(p);
}

static void test_cpu_ops_matmul_empty_is_noop(void **state)
{
    select_isa(state);
    float x[4] = {1, 2, 3, 4}, w[4] = {1, 2, 3, 4}, y[4] = {7, 7, 7, 7};
    krn_cpu_matmul(NULL, y, x, w, NULL, 0, 2, 2);
    krn_cpu_matmul(NULL, y, x, w, NULL, 2, 0, 2);
    krn_cpu_matmul(NULL, y, x, w, NULL, -1, 2, 2);
    krn_cpu_matmul(NULL, y, x, w, NULL, 2, 2, -3);
    for (int i = 0; i < 4; i++)
        assert_true(y[i] == 7.0f);
    /* K = 0: an empty sum, so y is the bias (or zero). */
    float bias[2] = {0.5f, -2.0f};
    krn_cpu_matmul(NULL, y, x, w, bias, 2, 2, 0);
    assert_true(y[0] == 0.5f && y[1] == -2.0f && y[2] == 0.5f && y[3] == -2.0f);
    krn_cpu_matmul(NULL, y, x, w, NULL, 1, 2, 0);
    assert_true(y[0] == 0.0f && y[1] == 0.0f);
}

static void test_cpu_ops_matmul_same_for_any_thread_count(void **state)
{
    select_isa(state);
    static const int shapes[][3] = {
        {1, 1000, 200}, {8, 333, 97}, {37, 129, 576}, {3, 31, 1}, {14, 40, 20000}};
    krn_pool *pools[3];
    for (int t = 0; t < 3; t++)
        assert_int_equal(krn_pool_create(t + 1, &pools[t]), BI_OK);
    for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++) {
        mm_case c = mm_make(shapes[s][0], shapes[s][1], shapes[s][2], 1);
        float *y1 = mm_run(&c, pools[0]);
        size_t bytes = (size_t)c.M * c.N * sizeof(float);
        for (int t = 1; t < 3; t++) {
            float *yt = mm_run(&c, pools[t]);
            assert_memory_equal(y1, yt, bytes);
            free(yt);
        }
        free(y1);
        mm_free(&c);
    }
    for (int t = 0; t < 3; t++)
        krn_pool_destroy(pools[t]);
}

static void test_cpu_ops_matmul_row_independent_of_batch(void **state)
{
    select_isa(state);
    /* A decode row (M = 1) must give the same bits as that row inside a
     * prefill batch, so a token's logits do not depend on its batch mates. */
    mm_case c = mm_make(29, 77, 211, 1);
    float *yb = mm_run(&c, NULL);
    for (int m = 0; m < c.M; m += 4) {
        mm_case one = c;
        one.M = 1;
        one.x = c.x + (size_t)m * c.K;
        float *y1 = mm_run(&one, NULL);
        assert_memory_equal(y1, yb + (size_t)m * c.N, (size_t)c.N * sizeof(float));
        free(y1);
    }
    free(yb);
    mm_free(&c);
}

/* ---- the small ops ---- */

static const int vec_sizes[] = {1, 2, 7, 8, 9, 15, 16, 17, 63, 576, 1001};
#define N_VEC_SIZES (sizeof(vec_sizes) / sizeof(vec_sizes[0]))

static void test_cpu_ops_dot_matches_reference(void **state)
{
    select_isa(state);
    assert_true(krn_cpu_dot(NULL, NULL, 0) == 0.0f);
    for (size_t s = 0; s < N_VEC_SIZES; s++) {
        int n = vec_sizes[s];
        float *a = rand_vec((size_t)n), *b = rand_vec((size_t)n);
        /* A dot product of random vectors can cancel to near zero, so its
         * error is measured against sum |a_i b_i|, the scale of its rounding. */
        double ref = 0.0, scale = 0.0;
        for (int i = 0; i < n; i++) {
            ref += (double)a[i] * b[i];
            scale += fabs((double)a[i] * b[i]);
        }
        float got = krn_cpu_dot(a, b, n);
        if (!(fabs(got - ref) / scale < MAX_REL_ERR))
            fail_msg("dot (%s) n=%d: error %g of sum |a_i b_i|",
                     krn_cpu_isa_name(krn_cpu_get_isa()), n, fabs(got - ref) / scale);
        free(a);
        free(b);
    }
}

static void test_cpu_ops_axpy_matches_reference(void **state)
{
    select_isa(state);
    krn_cpu_axpy(NULL, 2.0f, NULL, 0);
    for (size_t s = 0; s < N_VEC_SIZES; s++) {
        int n = vec_sizes[s];
        float *x = rand_vec((size_t)n), *y = rand_vec((size_t)n);
        double *ref = malloc((size_t)n * sizeof(double));
        assert_non_null(ref);
        float a = rnd() * 3.0f;
        for (int i = 0; i < n; i++)
            ref[i] = (double)y[i] + (double)a * x[i];
        krn_cpu_axpy(y, a, x, n);
        check_close("axpy", y, ref, (size_t)n);
        free(x);
        free(y);
        free(ref);
    }
}

static void rmsnorm_ref(double *ref, const float *x, const float *w, int M, int D, float eps)
{
    for (int m = 0; m < M; m++) {
        double ss = 0.0;
        for (int i = 0; i < D; i++)
            ss += (double)x[(size_t)m * D + i] * x[(size_t)m * D + i];
        double s = 1.0 / sqrt(ss / D + eps);
        for (int i = 0; i < D; i++)
            ref[(size_t)m * D + i] = x[(size_t)m * D + i] * s * w[i];
    }
}

static void test_cpu_ops_rmsnorm_matches_reference(void **state)
{
    select_isa(state);
    for (size_t s = 0; s < N_VEC_SIZES; s++) {
        int D = vec_sizes[s], M = 1 + (int)s % 4;
        size_t n = (size_t)M * D;
        float *x = rand_vec(n), *w = rand_vec((size_t)D), *y = rand_vec(n);
        double *ref = malloc(n * sizeof(double));
        assert_non_null(ref);
        rmsnorm_ref(ref, x, w, M, D, 1e-5f);
        krn_cpu_rmsnorm(y, x, w, M, D, 1e-5f);
        check_close("rmsnorm", y, ref, n);
        krn_cpu_rmsnorm(x, x, w, M, D, 1e-5f); /* in place */
        check_close("rmsnorm in place", x, ref, n);
        free(x);
        free(w);
        free(y);
        free(ref);
    }
    float z[3] = {0, 0, 0}, w[3] = {1, 2, 3};
    krn_cpu_rmsnorm(z, z, w, 1, 3, 1e-6f); /* all-zero row: eps keeps it finite */
    assert_true(z[0] == 0.0f && z[1] == 0.0f && z[2] == 0.0f);
    krn_cpu_rmsnorm(z, z, w, 0, 3, 1e-6f);
}

static void test_cpu_ops_silu_mul_matches_reference(void **state)
{
    select_isa(state);
    for (size_t s = 0; s < N_VEC_SIZES; s++) {
        size_t n = (size_t)vec_sizes[s];
        float *g = rand_vec(n), *u = rand_vec(n);
        double *ref = malloc(n * sizeof(double));
        assert_non_null(ref);
        for (size_t i = 0; i < n; i++) {
            g[i] *= 20.0f; /* reach both tails of the sigmoid */
            ref[i] = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        }
        krn_cpu_silu_mul(g, g, u, n); /* out aliases gate */
        check_close("silu_mul", g, ref, n);
        free(g);
        free(u);
        free(ref);
    }
}

static void test_cpu_ops_softmax_matches_reference(void **state)
{
    select_isa(state);
    for (size_t s = 0; s < N_VEC_SIZES; s++) {
        int n = vec_sizes[s];
        float *x = rand_vec((size_t)n);
        double *ref = malloc((size_t)n * sizeof(double));
        assert_non_null(ref);
        double mx = -INFINITY, sum = 0.0;
        for (int i = 0; i < n; i++) {
            x[i] = x[i] * 50.0f + 1000.0f; /* would overflow expf without the max */
            mx = x[i] > mx ? x[i] : mx;
        }
        for (int i = 0; i < n; i++)
            sum += ref[i] = exp(x[i] - mx);
        for (int i = 0; i < n; i++)
            ref[i] /= sum;
        krn_cpu_softmax(x, n);
        check_close("softmax", x, ref, (size_t)n);
        free(x);
        free(ref);
    }
    krn_cpu_softmax(NULL, 0);
}

static void test_cpu_ops_isa_selection(void **state)
{
    (void)state;
    assert_int_equal(krn_cpu_set_isa((krn_cpu_isa)42), BI_INVALID_ARGUMENT);
    assert_int_equal(krn_cpu_set_isa(KRN_CPU_ISA_SCALAR), BI_OK);
    assert_int_equal(krn_cpu_get_isa(), KRN_CPU_ISA_SCALAR);
    assert_int_equal(krn_cpu_set_isa(KRN_CPU_ISA_AUTO), BI_OK);
    assert_int_not_equal(krn_cpu_get_isa(), KRN_CPU_ISA_AUTO);
    assert_string_equal(krn_cpu_isa_name(KRN_CPU_ISA_AVX2), "avx2");
    assert_string_equal(krn_cpu_isa_name(KRN_CPU_ISA_SCALAR), "scalar");
    assert_string_equal(krn_cpu_isa_name((krn_cpu_isa)42), "unknown");
}

/* Every op test runs once per variant. */
#define BOTH_ISAS(f) cmocka_unit_test_prestate(f, &g_scalar), cmocka_unit_test_prestate(f, &g_avx2)

int main(void)
{
    const struct CMUnitTest tests[] = {
        BOTH_ISAS(test_cpu_ops_matmul_matches_reference),
        BOTH_ISAS(test_cpu_ops_matmul_empty_is_noop),
        BOTH_ISAS(test_cpu_ops_matmul_same_for_any_thread_count),
        BOTH_ISAS(test_cpu_ops_matmul_row_independent_of_batch),
        BOTH_ISAS(test_cpu_ops_dot_matches_reference),
        BOTH_ISAS(test_cpu_ops_axpy_matches_reference),
        BOTH_ISAS(test_cpu_ops_rmsnorm_matches_reference),
        BOTH_ISAS(test_cpu_ops_silu_mul_matches_reference),
        BOTH_ISAS(test_cpu_ops_softmax_matches_reference),
        cmocka_unit_test(test_cpu_ops_isa_selection),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
