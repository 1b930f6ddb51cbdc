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

#include <sys/stat.h>
#include <unistd.h>

#include "images.h"
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
    c.n_layer = 4; /* the preset's shapes, fewer layers: quick under ASan too */
    double t0 = now_s();
    assert_int_equal(eng_model_dummy(&c, 7, &a, err, sizeof err), BI_OK);
    double dt = now_s() - t0;
    print_message("dummy smollm2-135m (4 layers): %.3f s\n", dt);
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
    assert_true(a->layers[3].ffn_norm[575] == 1.0f);
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
    /* token_embd is Q8_0, every other matrix Q4_1: no one source type */
    assert_int_equal(m->weight_dtype, ENG_DTYPE_INVALID);
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

/* ---- tiny models written here in both formats ---- */

typedef struct tiny {
    const char *arch; /* "llama", "qwen2", "qwen3" */
    int head_dim;     /* 4, or 6 for a head_dim that is not d/n_head */
    const char *drop; /* GGUF/HF name of a tensor to leave out, or NULL */
    const char *bad;  /* name of a tensor written with a wrong shape, or NULL */
} tiny;

enum { T_L = 2, T_D = 8, T_H = 2, T_KV = 1, T_FF = 12, T_V = 16 };

typedef struct tw {
    char gguf[64], hf[96];
    int rows, cols; /* cols 0: vector */
    int perm_heads; /* llama GGUF permutation: heads, or 0 */
} tw;

/* The weights of a tiny model, named independently of model.c's table. */
static int tiny_weights(const tiny *t, tw *w)
{
    int hd = t->head_dim, n = 0;
    bool bias = !strcmp(t->arch, "qwen2"), qkn = !strcmp(t->arch, "qwen3");
    bool llama = !strcmp(t->arch, "llama");
#define W(g, h, r, c, p)                                                                           \
    do {                                                                                           \
        snprintf(w[n].gguf, sizeof w[n].gguf, "%s", g);                                            \
        snprintf(w[n].hf, sizeof w[n].hf, "%s", h);                                                \
        w[n].rows = r, w[n].cols = c, w[n].perm_heads = llama ? p : 0;                             \
        n++;                                                                                       \
    } while (0)
    W("token_embd.weight", "model.embed_tokens.weight", T_V, T_D, 0);
    W("output_norm.weight", "model.norm.weight", T_D, 0, 0);
    W("output.weight", "lm_head.weight", T_V, T_D, 0);
    for (int l = 0; l < T_L; l++) {
        char g[64], h[96];
#define LW(gs, hs, r, c, p)                                                                        \
    do {                                                                                           \
        snprintf(g, sizeof g, "blk.%d.%s", l, gs);                                                 \
        snprintf(h, sizeof h, "model.layers.%d.%s", l, hs);                                        \
        W(g, h, r, c, p);                                                                          \
    } while (0)
        LW("attn_norm.weight", "input_layernorm.weight", T_D, 0, 0);
        LW("attn_q.weight", "self_attn.q_proj.weight", T_H * hd, T_D, T_H);
        LW("attn_k.weight", "self_attn.k_proj.weight", T_KV * hd, T_D, T_KV);
        LW("attn_v.weight", "self_attn.v_proj.weight", T_KV * hd, T_D, 0);
        if (bias) {
            LW("attn_q.bias", "self_attn.q_proj.bias", T_H * hd, 0, 0);
            LW("attn_k.bias", "self_attn.k_proj.bias", T_KV * hd, 0, 0);
            LW("attn_v.bias", "self_attn.v_proj.bias", T_KV * hd, 0, 0);
        }
        if (qkn) {
            LW("attn_q_norm.weight", "self_attn.q_norm.weight", hd, 0, 0);
            LW("attn_k_norm.weight", "self_attn.k_norm.weight", hd, 0, 0);
        }
        LW("attn_output.weight", "self_attn.o_proj.weight", T_D, T_H * hd, 0);
        LW("ffn_norm.weight", "post_attention_layernorm.weight", T_D, 0, 0);
        LW("ffn_gate.weight", "mlp.gate_proj.weight", T_FF, T_D, 0);
        LW("ffn_up.weight", "mlp.up_proj.weight", T_FF, T_D, 0);
        LW("ffn_down.weight", "mlp.down_proj.weight", T_D, T_FF, 0);
    }
#undef LW
#undef W
    return n;
}

static float tiny_value(int tensor, int i)
{
    return (float)((tensor * 131 + i * 17) % 101) / 101.0f - 0.5f;
}

static size_t tw_elems(const tw *w)
{
    return (size_t)w->rows * (w->cols ? w->cols : 1);
}

/* Values of tensor k in HF order, or permuted as llama.cpp writes them. */
static void tiny_values(const tw *w, int k, bool permuted, float *out)
{
    size_t cols = w->cols ? (size_t)w->cols : 1;
    int heads = permuted ? w->perm_heads : 0;
    for (int r = 0; r < w->rows; r++) {
        int src = r;
        if (heads) { /* GGUF row h*hd + 2j + s holds HF row h*hd + s*hd/2 + j */
            int hd = w->rows / heads, h = r / hd, j = (r % hd) / 2, s = r % 2;
            src = h * hd + s * hd / 2 + j;
        }
        for (size_t c = 0; c < cols; c++)
            out[(size_t)r * cols + c] = tiny_value(k, (int)(src * cols + c));
    }
}

static const char *tiny_gguf(const tiny *t)
{
    tw w[64];
    int n = tiny_weights(t, w), n_kept = 0;
    for (int k = 0; k < n; k++)
        n_kept += !(t->drop && !strcmp(t->drop, w[k].gguf));
    img m = {0};
    gguf_head(&m, 3, (uint64_t)n_kept, 9);
    gguf_kv_str(&m, "general.architecture", t->arch);
    gguf_kv_str(&m, "general.name", "tiny");
    char key[64];
#define KEY(s) (snprintf(key, sizeof key, "%s.%s", t->arch, s), key)
    gguf_kv_u32(&m, KEY("block_count"), T_L);
    gguf_kv_u32(&m, KEY("embedding_length"), T_D);
    gguf_kv_u32(&m, KEY("attention.head_count"), T_H);
    gguf_kv_u32(&m, KEY("attention.head_count_kv"), T_KV);
    gguf_kv_u32(&m, KEY("feed_forward_length"), T_FF);
    gguf_kv_u32(&m, KEY("attention.key_length"), (uint32_t)t->head_dim);
    gguf_kv_f32(&m, KEY("rope.freq_base"), 12345.0f);
#undef KEY
    uint64_t off = 0;
    for (int k = 0; k < n; k++) {
        if (t->drop && !strcmp(t->drop, w[k].gguf))
            continue;
        uint64_t ne[2] = {w[k].cols ? (uint64_t)w[k].cols : (uint64_t)w[k].rows,
                          (uint64_t)w[k].rows};
        if (t->bad && !strcmp(t->bad, w[k].gguf))
            ne[1] = (uint64_t)w[k].rows - 1;
        gguf_tinfo(&m, w[k].gguf, w[k].cols ? 2 : 1, ne, 0, off);
        off += (tw_elems(&w[k]) * 4 + 31) / 32 * 32;
    }
    img_pad(&m, 32);
    for (int k = 0; k < n; k++) {
        if (t->drop && !strcmp(t->drop, w[k].gguf))
            continue;
        float v[256];
        tiny_values(&w[k], k, true, v);
        img_put(&m, v, tw_elems(&w[k]) * 4);
        img_pad(&m, 32);
    }
    const char *path = img_to_file(&m, ".gguf");
    free(m.p);
    return path;
}

/* A Hugging Face directory; returns its path (static buffer). config_extra
 * (",\"key\":value...") goes first in config.json, so that it wins over the
 * defaults written after it (cJSON takes the first of duplicate keys). */
static const char *tiny_hf(const tiny *t, const char *config_extra)
{
    static char dir[64];
    snprintf(dir, sizeof dir, "/tmp/braid_tiny_hf_XXXXXX");
    assert_non_null(mkdtemp(dir));
    const char *cls = !strcmp(t->arch, "llama")   ? "LlamaForCausalLM"
                      : !strcmp(t->arch, "qwen2") ? "Qwen2ForCausalLM"
                                                  : "Qwen3ForCausalLM";
    char cfg[1024], path[128];
    snprintf(cfg, sizeof cfg,
             "{%s%s\"architectures\":[\"%s\"],\"hidden_size\":%d,\"intermediate_size\":%d,"
             "\"num_hidden_layers\":%d,\"num_attention_heads\":%d,\"num_key_value_heads\":%d,"
             "\"head_dim\":%d,\"vocab_size\":%d,\"rms_norm_eps\":1e-6,\"rope_theta\":12345.0,"
             "\"eos_token_id\":[7,8],\"bos_token_id\":1}",
             config_extra[0] ? config_extra + 1 : "", config_extra[0] ? "," : "", cls, T_D, T_FF,
             T_L, T_H, T_KV, t->head_dim, T_V);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    fputs(cfg, f);
    fclose(f);
    tw w[64];
    int n = tiny_weights(t, w);
    char json[8192];
    size_t jl = 0, off = 0;
    jl += (size_t)snprintf(json + jl, sizeof json - jl, "{");
    for (int k = 0; k < n; k++) {
        size_t nb = tw_elems(&w[k]) * 4;
        int rows = (t->bad && !strcmp(t->bad, w[k].hf)) ? w[k].rows - 1 : w[k].rows;
        char shape[32];
        if (w[k].cols)
            snprintf(shape, sizeof shape, "%d,%d", rows, w[k].cols);
        else
            snprintf(shape, sizeof shape, "%d", rows);
        size_t end = off + (rows == w[k].rows ? nb : nb - (w[k].cols ? w[k].cols : 1) * 4);
        jl += (size_t)snprintf(json + jl, sizeof json - jl,
                               "%s\"%s\":{\"dtype\":\"F32\",\"shape\":[%s],\"data_offsets\":[%zu,"
                               "%zu]}",
                               k ? "," : "", w[k].hf, shape, off, end);
        off = end;
    }
    snprintf(json + jl, sizeof json - jl, "}");
    img m = {0};
    size_t n_json = strlen(json);
    img_u64(&m, n_json);
    img_put(&m, json, n_json);
    for (int k = 0; k < n; k++) {
        float v[256];
        tiny_values(&w[k], k, false, v);
        size_t nb = tw_elems(&w[k]) * 4;
        if (t->bad && !strcmp(t->bad, w[k].hf))
            nb -= (w[k].cols ? w[k].cols : 1) * 4;
        img_put(&m, v, nb);
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    f = fopen(path, "wb");
    fwrite(m.p, 1, m.n, f);
    fclose(f);
    free(m.p);
    return dir;
}

static void rm_hf(const char *dir)
{
    char p[128];
    snprintf(p, sizeof p, "%s/config.json", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    unlink(p);
    rmdir(dir);
}

/* Every weight of m equals the HF-order values. */
static void check_tiny(const eng_model *m, const tiny *t)
{
    tw w[64];
    int n = tiny_weights(t, w);
    int per_layer = (n - 3) / T_L;
    for (int k = 0; k < n; k++) {
        const float *got;
        if (k < 3) {
            const float *g[3] = {m->tok_embd, m->out_norm, m->lm_head};
            got = g[k];
        } else {
            const eng_layer_weights *L = &m->layers[(k - 3) / per_layer];
            const float *order[14];
            int o = 0;
            order[o++] = L->attn_norm, order[o++] = L->wq, order[o++] = L->wk, order[o++] = L->wv;
            if (L->bq)
                order[o++] = L->bq, order[o++] = L->bk, order[o++] = L->bv;
            if (L->q_norm)
                order[o++] = L->q_norm, order[o++] = L->k_norm;
            order[o++] = L->wo, order[o++] = L->ffn_norm, order[o++] = L->w_gate;
            order[o++] = L->w_up, order[o++] = L->w_down;
            got = order[(k - 3) % per_layer];
        }
        float want[256];
        tiny_values(&w[k], k, false, want);
        for (size_t i = 0; i < tw_elems(&w[k]); i++)
            if (got[i] != want[i])
                fail_msg("%s element %zu: %g, want %g", w[k].hf, i, got[i], want[i]);
    }
}

static void test_model_tiny_formats_agree(void **state)
{
    (void)state;
    const tiny cases[] = {
        {"llama", 4, NULL, NULL}, {"qwen2", 4, NULL, NULL}, {"qwen3", 6, NULL, NULL}};
    for (size_t i = 0; i < 3; i++) {
        const tiny *t = &cases[i];
        char err[256] = "";
        eng_model *g = NULL, *h = NULL;
        const char *gp = tiny_gguf(t);
        if (eng_model_load(gp, NULL, &g, err, sizeof err) != BI_OK)
            fail_msg("%s gguf: %s", t->arch, err);
        unlink(gp);
        const char *dir = tiny_hf(t, "");
        if (eng_model_load(dir, NULL, &h, err, sizeof err) != BI_OK)
            fail_msg("%s hf: %s", t->arch, err);
        rm_hf(dir);
        assert_string_equal(eng_arch_name(g->cfg.arch), t->arch);
        assert_int_equal(h->cfg.arch, g->cfg.arch);
        assert_int_equal(g->cfg.head_dim, t->head_dim);
        assert_int_equal(h->cfg.head_dim, t->head_dim);
        assert_true(g->cfg.rope_theta == 12345.0f && h->cfg.rope_theta == 12345.0f);
        assert_int_equal(h->cfg.eos_id, 7);
        assert_int_equal(h->cfg.bos_id, 1);
        assert_int_equal(g->cfg.qkv_bias, !strcmp(t->arch, "qwen2"));
        assert_int_equal(h->cfg.qk_norm, !strcmp(t->arch, "qwen3"));
        assert_false(g->cfg.tie_embeddings);
        check_tiny(g, t); /* llama: un-permuted back to HF order */
        check_tiny(h, t);
        assert_string_not_equal(g->fingerprint, h->fingerprint);
        assert_int_equal(g->weight_dtype, ENG_DTYPE_F32); /* the generators write F32 */
        assert_int_equal(h->weight_dtype, ENG_DTYPE_F32);
        eng_model_destroy(g);
        eng_model_destroy(h);
    }
}

static void expect_load_error(const char *path, bi_status want, const char *msg)
{
    char err[256] = "";
    eng_model *m = NULL;
    bi_status s = eng_model_load(path, NULL, &m, err, sizeof err);
    if (s != want || !strstr(err, msg))
        fail_msg("%s: status %d (want %d), '%s' (want '%s')", path, s, want, err, msg);
    assert_null(m);
}

static void test_model_bad_models(void **state)
{
    (void)state;
    tiny t = {"llama", 4, "blk.1.ffn_down.weight", NULL};
    const char *p = tiny_gguf(&t);
    expect_load_error(p, BI_BAD_FORMAT, "missing tensor blk.1.ffn_down.weight");
    unlink(p);
    t = (tiny){"qwen2", 4, NULL, "blk.0.attn_k.weight"};
    p = tiny_gguf(&t);
    expect_load_error(p, BI_BAD_FORMAT, "tensor blk.0.attn_k.weight has shape [3, 8]");
    unlink(p);
    t = (tiny){"gpt2", 4, NULL, NULL};
    p = tiny_gguf(&t);
    expect_load_error(p, BI_UNSUPPORTED, "architecture 'gpt2'");
    unlink(p);
    t = (tiny){"qwen3", 6, NULL, "model.layers.1.self_attn.q_norm.weight"};
    const char *d = tiny_hf(&t, "");
    expect_load_error(d, BI_BAD_FORMAT, "model.layers.1.self_attn.q_norm.weight has shape [5]");
    rm_hf(d);
    t = (tiny){"llama", 4, NULL, NULL};
    d = tiny_hf(&t, ",\"max_position_embeddings\":0");
    expect_load_error(d, BI_BAD_FORMAT, "max_ctx 0");
    rm_hf(d);
    d = tiny_hf(&t, ",\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}");
    expect_load_error(d, BI_UNSUPPORTED, "yarn");
    rm_hf(d);
    d = tiny_hf(&t, ",\"vocab_size\":\"many\"");
    expect_load_error(d, BI_BAD_FORMAT, "vocab_size is not an integer");
    rm_hf(d);
    /* tied: lm_head.weight in the file is ignored; llama3 rope scaling read */
    d = tiny_hf(&t, ",\"tie_word_embeddings\":true,\"rope_scaling\":{\"rope_type\":\"llama3\","
                    "\"factor\":8.0,\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                    "\"original_max_position_embeddings\":8192}");
    char err[256];
    eng_model *m = NULL;
    assert_int_equal(eng_model_load(d, NULL, &m, err, sizeof err), BI_OK);
    assert_true(m->cfg.tie_embeddings);
    assert_ptr_equal(m->lm_head, m->tok_embd);
    assert_int_equal(m->cfg.rope_scaling, ENG_ROPE_SCALING_LLAMA3);
    assert_int_equal(m->cfg.rope_orig_ctx, 8192);
    assert_true(m->cfg.rope_high_freq_factor == 4.0f);
    eng_model_destroy(m);
    rm_hf(d);
    expect_load_error("/tmp", BI_NOT_FOUND, "no config.json");
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
        cmocka_unit_test(test_model_tiny_formats_agree),
        cmocka_unit_test(test_model_bad_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
