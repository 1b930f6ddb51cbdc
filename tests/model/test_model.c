/*
 * test_model.c - eng_model: presets and validation, dummy weights, the real
 * SmolLM2 GGUF (config, finite weights, load time), and hostile inputs at the
 * loader level (missing tensors, wrong shapes, bad config.json).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include "model/model.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_model_presets_validate(void **state)
{
    (void)state;
    const char *names[] = {"tinyllama-1.1b", "qwen3-0.6b", "llama3-8b", "smollm2-135m"};
    eng_model_config c;
    char err[256];
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(eng_model_config_preset(names[i], &c), BI_OK);
        assert_int_equal(eng_model_config_validate(&c, err, sizeof err), BI_OK);
    }
    assert_int_equal(eng_model_config_preset("qwen3-0.6b", &c), BI_OK);
    assert_int_equal(c.n_layer, 28);
    assert_int_equal(c.head_dim, 128);
    assert_int_equal(c.vocab_size, 151936);
    assert_true(c.qk_norm && c.tie_embeddings);
    assert_int_equal(eng_model_config_preset("gpt-5", &c), BI_NOT_FOUND);

    assert_int_equal(eng_model_config_preset("smollm2-135m", &c), BI_OK);
    c.n_kv_head = 4; /* 9 % 4 != 0 */
    assert_int_equal(eng_model_config_validate(&c, err, sizeof err), BI_BAD_FORMAT);
    assert_non_null(strstr(err, "n_kv_head"));
    c.n_kv_head = 3;
    c.norm_eps = NAN;
    assert_int_equal(eng_model_config_validate(&c, err, sizeof err), BI_BAD_FORMAT);
}

static void test_model_dummy_deterministic(void **state)
{
    (void)state;
    eng_model_config c;
    char err[256];
    eng_model *a, *b, *d;
    assert_int_equal(eng_model_config_preset("smollm2-135m", &c), BI_OK);
    double t0 = now_s();
    assert_int_equal(eng_model_dummy(&c, 7, &a, err, sizeof err), BI_OK);
    double dt = now_s() - t0;
    print_message("dummy smollm2-135m: %.3f s\n", dt);
    assert_int_equal(eng_model_dummy(&c, 7, &b, err, sizeof err), BI_OK);
    assert_int_equal(eng_model_dummy(&c, 8, &d, err, sizeof err), BI_OK);
    assert_string_equal(a->fingerprint, b->fingerprint);
    assert_string_not_equal(a->fingerprint, d->fingerprint);
    assert_int_equal(strlen(a->fingerprint), 64);
    assert_ptr_equal(a->lm_head, a->tok_embd);
    size_t n = (size_t)c.vocab_size * c.d_model;
    assert_memory_equal(a->tok_embd, b->tok_embd, n * sizeof(float));
    double s = 0, s2 = 0;
    for (size_t i = 0; i < n; i++) {
        s += a->tok_embd[i];
        s2 += (double)a->tok_embd[i] * a->tok_embd[i];
    }
    double mean = s / n, sd = sqrt(s2 / n - mean * mean);
    assert_true(fabs(mean) < 1e-3);
    assert_true(fabs(sd - 0.02) < 1e-3);
    assert_true(a->layers[29].ffn_norm[575] == 1.0f);
    eng_model_destroy(a);
    eng_model_destroy(b);
    eng_model_destroy(d);
    eng_model_destroy(NULL);
}

static int n_progress;
static void on_progress(void *user, const char *stage, uint64_t done, uint64_t total)
{
    (void)user;
    (void)stage;
    assert_true(done <= total || total == 0);
    n_progress++;
}

static bool all_finite(const float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(p[i]))
            return false;
    return true;
}

static void test_model_smollm2_gguf(void **state)
{
    (void)state;
    const char *path = BRAID_SMOLLM2_GGUF;
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_message("SKIP: %s is absent (run deploy/fetch_model.sh)\n", path);
        skip();
    }
    fclose(f);
    char err[256] = "";
    eng_model *m = NULL;
    eng_model_load_opts o = {on_progress, NULL};
    n_progress = 0;
    double t0 = now_s();
    bi_status s = eng_model_load(path, &o, &m, err, sizeof err);
    double dt = now_s() - t0;
    if (s != BI_OK)
        fail_msg("load: %s", err);
    print_message("SmolLM2-135M Q4_1 load: %.3f s, %d progress calls, fingerprint %s\n", dt,
                  n_progress, m->fingerprint);
    assert_true(n_progress >= 50 && n_progress <= 110);
    const eng_model_config *c = &m->cfg;
    assert_int_equal(c->arch, ENG_ARCH_LLAMA);
    assert_int_equal(c->n_layer, 30);
    assert_int_equal(c->d_model, 576);
    assert_int_equal(c->n_head, 9);
    assert_int_equal(c->n_kv_head, 3);
    assert_int_equal(c->head_dim, 64);
    assert_int_equal(c->d_ff, 1536);
    assert_int_equal(c->vocab_size, 49152);
    assert_true(c->tie_embeddings);
    assert_ptr_equal(m->lm_head, m->tok_embd);
    assert_true(all_finite(m->tok_embd, (size_t)c->vocab_size * c->d_model));
    for (int l = 0; l < c->n_layer; l++) {
        const eng_layer_weights *w = &m->layers[l];
        assert_true(all_finite(w->wq, 576 * 576));
        assert_true(all_finite(w->wk, 192 * 576));
        assert_true(all_finite(w->w_down, 576 * 1536));
        assert_null(w->bq);
        assert_null(w->q_norm);
    }
    /* the fingerprint is stable across loads */
    eng_model *m2 = NULL;
    assert_int_equal(eng_model_load(path, NULL, &m2, err, sizeof err), BI_OK);
    assert_string_equal(m->fingerprint, m2->fingerprint);
    eng_model_destroy(m2);
    eng_model_destroy(m);
}

static void test_model_missing_path(void **state)
{
    (void)state;
    char err[256];
    eng_model *m = (eng_model *)1;
    assert_int_equal(eng_model_load("/nonexistent/model.gguf", NULL, &m, err, sizeof err),
                     BI_NOT_FOUND);
    assert_null(m);
    assert_non_null(strstr(err, "does not exist"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_model_presets_validate),
        cmocka_unit_test(test_model_dummy_deterministic),
        cmocka_unit_test(test_model_smollm2_gguf),
        cmocka_unit_test(test_model_missing_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
