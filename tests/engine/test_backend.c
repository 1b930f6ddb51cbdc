/*
 * test_backend.c - choosing a backend's 16-bit storage type: the dtype names
 * (--dtype, eng_config.dtype), the source type a loaded model records
 * (weight_dtype, from the HF fixtures in F32, BF16 and F16 safetensors and
 * F16 / Q8_0 GGUF), what auto resolves to for each, that the CPU backend
 * ignores the type (keeps fp32), and that the engine refuses an unknown name
 * before loading anything.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "core/backend.h"
#include "core/engine.h"
#include "core/forward.h"
#include "core/kv.h"
#include "model/model.h"

static void test_backend_dtype_names(void **state)
{
    (void)state;
    eng_store_dtype d = ENG_STORE_FP16;
    assert_int_equal(eng_store_dtype_parse(NULL, &d), BI_OK);
    assert_int_equal(d, ENG_STORE_AUTO);
    const eng_store_dtype all[] = {ENG_STORE_AUTO, ENG_STORE_BF16, ENG_STORE_FP16};
    for (int i = 0; i < 3; i++) {
        d = (eng_store_dtype)-1;
        assert_int_equal(eng_store_dtype_parse(eng_store_dtype_name(all[i]), &d), BI_OK);
        assert_int_equal(d, all[i]);
    }
    assert_string_equal(eng_store_dtype_name(ENG_STORE_FP16), "fp16");
    assert_string_equal(eng_store_dtype_name(ENG_STORE_BF16), "bf16");
    assert_string_equal(eng_store_dtype_name((eng_store_dtype)7), "?");
    const char *bad[] = {"", "fp32", "f16", "half", "FP16", "bf16x", "auto "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        d = ENG_STORE_BF16;
        assert_int_equal(eng_store_dtype_parse(bad[i], &d), BI_INVALID_ARGUMENT);
        assert_int_equal(d, ENG_STORE_BF16); /* untouched */
    }
}

/* Each fixture's recorded source type and what auto picks for it; explicit
 * choices pass through whatever the model. */
static void test_backend_dtype_auto(void **state)
{
    (void)state;
    const struct {
        const char *model;
        eng_dtype weights;
        eng_store_dtype want;
    } cases[] = {
        {"llama-tiny", ENG_DTYPE_F32, ENG_STORE_BF16},
        {"qwen3-tiny", ENG_DTYPE_BF16, ENG_STORE_BF16},
        {"llama3-tiny", ENG_DTYPE_BF16, ENG_STORE_BF16}, /* sharded */
        {"qwen2-tiny", ENG_DTYPE_F16, ENG_STORE_FP16},
        {"qwen2-tiny.gguf", ENG_DTYPE_F16, ENG_STORE_FP16},
        {"llama-tiny.gguf", ENG_DTYPE_F16, ENG_STORE_FP16},
        {"llama-tiny-q8_0.gguf", ENG_DTYPE_Q8_0, ENG_STORE_BF16},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4096], err[256] = "";
        snprintf(path, sizeof path, "%s/%s", BRAID_MODELS_DIR, cases[i].model);
        eng_model *m = NULL;
        if (eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK)
            fail_msg("%s: %s", cases[i].model, err);
        if (m->weight_dtype != cases[i].weights)
            fail_msg("%s: weight_dtype %s, want %s", cases[i].model,
                     eng_dtype_name(m->weight_dtype), eng_dtype_name(cases[i].weights));
        assert_int_equal(eng_store_dtype_resolve(ENG_STORE_AUTO, m), cases[i].want);
        assert_int_equal(eng_store_dtype_resolve(ENG_STORE_BF16, m), ENG_STORE_BF16);
        assert_int_equal(eng_store_dtype_resolve(ENG_STORE_FP16, m), ENG_STORE_FP16);
        eng_model_destroy(m);
    }
    /* mixed and dummy models */
    eng_model mixed = {.weight_dtype = ENG_DTYPE_INVALID};
    assert_int_equal(eng_store_dtype_resolve(ENG_STORE_AUTO, &mixed), ENG_STORE_BF16);
    eng_model_config c;
    assert_int_equal(eng_model_config_preset("smollm2-135m", &c), BI_OK);
    c.n_layer = 1;
    char err[256];
    eng_model *d = NULL;
    assert_int_equal(eng_model_dummy(&c, 1, &d, err, sizeof err), BI_OK);
    assert_int_equal(d->weight_dtype, ENG_DTYPE_F32);
    assert_int_equal(eng_store_dtype_resolve(ENG_STORE_AUTO, d), ENG_STORE_BF16);
    eng_model_destroy(d);
}

/* The CPU backend takes any dtype and keeps fp32: its store stays AUTO. */
static void test_backend_cpu_ignores_dtype(void **state)
{
    (void)state;
    char path[4096], err[256] = "";
    snprintf(path, sizeof path, "%s/qwen2-tiny", BRAID_MODELS_DIR);
    eng_model *m = NULL;
    if (eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK)
        fail_msg("qwen2-tiny: %s", err);
    eng_backend *b = NULL;
    assert_int_equal(eng_backend_create("cpu", 1, 256, ENG_STORE_FP16, &b), BI_OK);
    eng_kv_pool kv;
    const eng_model_config *c = &m->cfg;
    assert_int_equal(
        eng_kv_pool_init_opt(&kv, c->n_layer, c->n_kv_head, c->head_dim, 16, 8, b->host_kv), BI_OK);
    eng_forward *f = NULL;
    assert_int_equal(eng_forward_create(m, b, &kv, 32, &f), BI_OK);
    assert_int_equal(b->store, ENG_STORE_AUTO);
    eng_forward_destroy(f);
    eng_kv_pool_fini(&kv);
    eng_backend_destroy(b);
    eng_model_destroy(m);
}

/* An unknown dtype fails engine creation with a message naming it, before
 * the model is loaded (the path does not exist). */
static void test_backend_engine_bad_dtype(void **state)
{
    (void)state;
    eng_config cfg = {0};
    cfg.model_path = "/nonexistent/model.gguf";
    cfg.dtype = "float16";
    char err[256];
    eng_engine *e = NULL;
    assert_int_equal(eng_engine_create(&cfg, &e, err, sizeof err), BI_INVALID_ARGUMENT);
    assert_null(e);
    assert_non_null(strstr(err, "float16"));
    assert_non_null(strstr(err, "bf16"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_dtype_names),
        cmocka_unit_test(test_backend_dtype_auto),
        cmocka_unit_test(test_backend_cpu_ignores_dtype),
        cmocka_unit_test(test_backend_engine_bad_dtype),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
