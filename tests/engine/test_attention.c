/*
 * test_attention.c - cascade levels: attention split over segments and merged
 * by log-sum-exp equals attention over the concatenated KV (fp32 rounding),
 * in any merge order, and both equal a plain double-precision softmax.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/attention.h"

static float frand(void)
{
    return (float)rand() / RAND_MAX * 2.0f - 1.0f;
}

static void test_attention_levels_merge_to_concatenation(void **state)
{
    (void)state;
    enum { HD = 64, PS = 16, N = 300, LAYER = 1, KVH = 1 };
    eng_kv_pool kv;
    assert_int_equal(eng_kv_pool_init(&kv, 2, 2, HD, PS, 64), BI_OK);
    srand(7);
    int32_t pages[64];
    int32_t np = (N + PS - 1) / PS;
    assert_int_equal(eng_kv_alloc(&kv, np, pages), BI_OK);
    /* Scramble the page order so paging is exercised. */
    for (int i = np - 1; i > 0; i--) {
        int j = rand() % (i + 1);
        int32_t t = pages[i];
        pages[i] = pages[j];
        pages[j] = t;
    }
    float q[HD];
    for (int i = 0; i < HD; i++)
        q[i] = 3.0f * frand();
    for (int t = 0; t < N; t++)
        for (int i = 0; i < HD; i++) {
            eng_kv_k(&kv, LAYER, pages[t / PS], KVH, t % PS)[i] = frand();
            eng_kv_v(&kv, LAYER, pages[t / PS], KVH, t % PS)[i] = frand();
        }
    const float scale = 1.0f / 8.0f;
    float scores[N], acc_all[HD], out_all[HD];
    eng_attn_state all = {.acc = acc_all};
    eng_attn_level(&kv, LAYER, KVH, q, pages, N, scale, scores, &all);
    eng_attn_finish(&all, out_all, HD);

    /* Plain double reference. */
    double ref[HD] = {0}, s[N], mx = -INFINITY, sum = 0;
    for (int t = 0; t < N; t++) {
        double d = 0;
        for (int i = 0; i < HD; i++)
            d += (double)q[i] * eng_kv_k(&kv, LAYER, pages[t / PS], KVH, t % PS)[i];
        s[t] = d * scale;
        mx = s[t] > mx ? s[t] : mx;
    }
    for (int t = 0; t < N; t++) {
        double p = exp(s[t] - mx);
        sum += p;
        for (int i = 0; i < HD; i++)
            ref[i] += p * eng_kv_v(&kv, LAYER, pages[t / PS], KVH, t % PS)[i];
    }
    double num = 0, den = 0;
    for (int i = 0; i < HD; i++) {
        ref[i] /= sum;
        num += (out_all[i] - ref[i]) * (out_all[i] - ref[i]);
        den += ref[i] * ref[i];
    }
    assert_true(sqrt(num / den) < 1e-5);

    /* Levels: page-aligned splits (as chunks are), merged in two orders. */
    const int cuts[] = {0, 48, 112, 240, N};
    for (int order = 0; order < 2; order++) {
        float acc[HD], lacc[HD], out[HD];
        eng_attn_state st = {.acc = acc}, lv = {.acc = lacc};
        eng_attn_state_clear(&st, HD);
        for (int c = 0; c < 4; c++) {
            int k = order ? 3 - c : c;
            eng_attn_level(&kv, LAYER, KVH, q, pages + cuts[k] / PS, cuts[k + 1] - cuts[k], scale,
                           scores, &lv);
            eng_attn_merge(&st, &lv, HD);
        }
        eng_attn_finish(&st, out, HD);
        num = den = 0;
        for (int i = 0; i < HD; i++) {
            num += (out[i] - out_all[i]) * (out[i] - out_all[i]);
            den += out_all[i] * out_all[i];
        }
        print_message("merge order %d: rel diff to one level %.2e\n", order, sqrt(num / den));
        assert_true(sqrt(num / den) < 1e-6);
        assert_true(fabsf(st.m + logf(st.l) - (all.m + logf(all.l))) < 1e-5f);
    }
    /* An empty level leaves a state unchanged. */
    float e1[HD], e2[HD];
    eng_attn_state empty = {.acc = e1}, copy = {.acc = e2};
    eng_attn_level(&kv, LAYER, KVH, q, pages, 0, scale, scores, &empty);
    memcpy(e2, acc_all, sizeof e2);
    copy.m = all.m;
    copy.l = all.l;
    eng_attn_merge(&copy, &empty, HD);
    assert_memory_equal(e2, acc_all, sizeof e2);
    eng_kv_pool_fini(&kv);
}

static void test_attention_pool_refcounts(void **state)
{
    (void)state;
    eng_kv_pool kv;
    assert_int_equal(eng_kv_pool_init(&kv, 1, 1, 8, 4, 3), BI_OK);
    int32_t a[3], b[1];
    assert_int_equal(eng_kv_alloc(&kv, 3, a), BI_OK);
    assert_int_equal(eng_kv_alloc(&kv, 1, b), BI_KV_FULL);
    eng_kv_ref(&kv, a, 1);
    eng_kv_unref(&kv, a, 3);
    assert_int_equal(kv.n_free, 2);
    eng_kv_unref(&kv, a, 1);
    assert_int_equal(kv.n_free, 3);
    eng_kv_unref(&kv, a, 1); /* double free is ignored */
    assert_int_equal(kv.n_free, 3);
    assert_int_equal(eng_kv_alloc(&kv, -1, b), BI_INVALID_ARGUMENT);
    eng_kv_pool_fini(&kv);
    assert_int_equal(eng_kv_pool_init(&kv, 1, 1, 8, 0, 3), BI_INVALID_ARGUMENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attention_levels_merge_to_concatenation),
        cmocka_unit_test(test_attention_pool_refcounts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
