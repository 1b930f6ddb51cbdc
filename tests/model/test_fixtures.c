/*
 * test_fixtures.c - loads the tiny reference models of tests/fixtures/models
 * (written by tests/fixtures/gen_fixtures.py with transformers and the gguf
 * package) and checks every weight: HF directories against the safetensors
 * values read directly (F32, F16, BF16, one sharded), and the GGUF files,
 * after un-permutation, against their HF originals (exact for F16 originals,
 * the fp16 rounding of F32 originals, Q8_0 within quantization error).
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "model/model.h"
#include "model/safetensors.h"

#define MODELS BRAID_FIXTURES_DIR "/models"

typedef struct named {
    char name[96];
    const float *p;
    size_t n;
} named;

/* Every weight of m with its Hugging Face name. */
static size_t model_weights(const eng_model *m, named *out)
{
    const eng_model_config *c = &m->cfg;
    size_t n = 0, d = (size_t)c->d_model, q = (size_t)c->n_head * c->head_dim;
    size_t kv = (size_t)c->n_kv_head * c->head_dim, ff = (size_t)c->d_ff;
#define ADD(nm, ptr, count)                                                                        \
    do {                                                                                           \
        if (ptr) {                                                                                 \
            snprintf(out[n].name, sizeof out[n].name, "%s", nm);                                   \
            out[n].p = ptr, out[n].n = count, n++;                                                 \
        }                                                                                          \
    } while (0)
    ADD("model.embed_tokens.weight", m->tok_embd, (size_t)c->vocab_size * d);
    ADD("model.norm.weight", m->out_norm, d);
    if (!c->tie_embeddings)
        ADD("lm_head.weight", m->lm_head, (size_t)c->vocab_size * d);
    for (int l = 0; l < c->n_layer; l++) {
        const eng_layer_weights *w = &m->layers[l];
        char b[96];
#define LADD(suffix, ptr, count)                                                                   \
    do {                                                                                           \
        snprintf(b, sizeof b, "model.layers.%d.%s", l, suffix);                                    \
        ADD(b, ptr, count);                                                                        \
    } while (0)
        LADD("input_layernorm.weight", w->attn_norm, d);
        LADD("self_attn.q_proj.weight", w->wq, q * d);
        LADD("self_attn.k_proj.weight", w->wk, kv * d);
        LADD("self_attn.v_proj.weight", w->wv, kv * d);
        LADD("self_attn.q_proj.bias", w->bq, q);
        LADD("self_attn.k_proj.bias", w->bk, kv);
        LADD("self_attn.v_proj.bias", w->bv, kv);
        LADD("self_attn.q_norm.weight", w->q_norm, (size_t)c->head_dim);
        LADD("self_attn.k_norm.weight", w->k_norm, (size_t)c->head_dim);
        LADD("self_attn.o_proj.weight", w->wo, d * q);
        LADD("post_attention_layernorm.weight", w->ffn_norm, d);
        LADD("mlp.gate_proj.weight", w->w_gate, ff * d);
        LADD("mlp.up_proj.weight", w->w_up, ff * d);
        LADD("mlp.down_proj.weight", w->w_down, d * ff);
    }
#undef LADD
#undef ADD
    return n;
}

static bool present(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static eng_model *load(const char *path)
{
    char err[256] = "";
    eng_model *m = NULL;
    if (eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK)
        fail_msg("%s: %s", path, err);
    return m;
}

/* Loads dir and compares every weight to the safetensors bytes. */
static void check_hf(const char *name, eng_arch arch, bool sharded)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", MODELS, name);
    eng_model *m = load(dir);
    assert_int_equal(m->cfg.arch, arch);
    eng_st_set *set = NULL;
    char err[256];
    assert_int_equal(eng_st_set_open(dir, &set, err, sizeof err), BI_OK);
    assert_int_equal(eng_st_set_n_files(set) > 1, sharded);
    named w[512];
    size_t n = model_weights(m, w);
    for (size_t i = 0; i < n; i++) {
        const eng_st_tensor *t = eng_st_set_find(set, w[i].name);
        if (!t)
            fail_msg("%s: %s not in the safetensors", name, w[i].name);
        float *want = malloc(w[i].n * sizeof *want);
        assert_int_equal(eng_dequant_f32(t->dtype, t->data, w[i].n, want), BI_OK);
        if (memcmp(want, w[i].p, w[i].n * sizeof *want) != 0)
            fail_msg("%s: %s differs from the file", name, w[i].name);
        free(want);
    }
    print_message("%s: %s, %zu weights match (%zu files)\n", name, eng_arch_name(m->cfg.arch), n,
                  eng_st_set_n_files(set));
    eng_st_set_close(set);
    eng_model_destroy(m);
}

static void skip_if_absent(void)
{
    if (!present(MODELS "/manifest.json")) {
        print_message("SKIP: %s is absent (tests/fixtures/gen_fixtures.py writes it)\n", MODELS);
        skip();
    }
}

static void test_fixtures_hf_models(void **state)
{
    (void)state;
    skip_if_absent();
    check_hf("llama-tiny", ENG_ARCH_LLAMA, false);     /* F32 */
    check_hf("llama3-tiny", ENG_ARCH_LLAMA, true);     /* BF16, 4 shards, llama3 rope */
    check_hf("qwen2-tiny", ENG_ARCH_QWEN2, false);     /* F16, qkv bias */
    check_hf("qwen3-tiny", ENG_ARCH_QWEN3, false);     /* BF16, qk norm, tied */
    check_hf("smollm2-tiny", ENG_ARCH_LLAMA, false);   /* BF16, tied */
    check_hf("mistral-tiny", ENG_ARCH_MISTRAL, false); /* F32 */
    eng_model *m = load(MODELS "/llama3-tiny");
    assert_int_equal(m->cfg.rope_scaling, ENG_ROPE_SCALING_LLAMA3);
    assert_true(m->cfg.rope_factor == 8.0f && m->cfg.rope_theta == 500000.0f);
    assert_int_equal(m->cfg.rope_orig_ctx, 64);
    eng_model_destroy(m);
    m = load(MODELS "/qwen3-tiny");
    assert_true(m->cfg.tie_embeddings && m->cfg.qk_norm);
    assert_int_equal(m->cfg.head_dim, 32);
    assert_true(m->cfg.rope_theta == 1000000.0f); /* from rope_parameters */
    eng_model_destroy(m);
}

/* GGUF weights against the HF original: tol 0 means each value equals the
 * original or its fp16 rounding; otherwise the relative L1 error bound. */
static void check_gguf(const char *gguf, const char *hf, double tol)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MODELS, gguf);
    eng_model *g = load(path);
    snprintf(path, sizeof path, "%s/%s", MODELS, hf);
    eng_model *h = load(path);
    assert_int_equal(g->cfg.arch == ENG_ARCH_QWEN2, h->cfg.arch == ENG_ARCH_QWEN2);
    assert_int_equal(g->cfg.n_layer, h->cfg.n_layer);
    assert_int_equal(g->cfg.head_dim, h->cfg.head_dim);
    assert_int_equal(g->cfg.vocab_size, h->cfg.vocab_size);
    assert_int_equal(g->cfg.tie_embeddings, h->cfg.tie_embeddings);
    assert_true(g->cfg.rope_theta == h->cfg.rope_theta);
    named wg[512], wh[512];
    size_t n = model_weights(g, wg);
    assert_int_equal(n, model_weights(h, wh));
    for (size_t i = 0; i < n; i++) {
        assert_string_equal(wg[i].name, wh[i].name);
        double diff = 0, mag = 0;
        for (size_t k = 0; k < wg[i].n; k++) {
            float a = wg[i].p[k], b = wh[i].p[k];
            if (tol == 0 && a != b && a != eng_f16_to_f32(eng_f32_to_f16(b)))
                fail_msg("%s %s[%zu]: %g, HF %g", gguf, wg[i].name, k, a, b);
            diff += fabs((double)a - b);
            mag += fabs((double)b);
        }
        if (diff > tol * mag && tol > 0)
            fail_msg("%s %s: relative error %g over %g", gguf, wg[i].name, diff / mag, tol);
    }
    print_message("%s: %zu weights match %s\n", gguf, n, hf);
    eng_model_destroy(g);
    eng_model_destroy(h);
}

static void test_fixtures_gguf_equals_hf(void **state)
{
    (void)state;
    skip_if_absent();
    check_gguf("llama-tiny.gguf", "llama-tiny", 0);         /* permuted Q/K, F16 */
    check_gguf("qwen2-tiny.gguf", "qwen2-tiny", 0);         /* not permuted */
    check_gguf("llama-tiny-q8_0.gguf", "llama-tiny", 0.02); /* Q8_0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixtures_hf_models),
        cmocka_unit_test(test_fixtures_gguf_equals_hf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
