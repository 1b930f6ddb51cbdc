/*
 * test_forward.c - the forward pass's invariants on a random tiny model:
 * prefill equals token-by-token decode, a batch of sequences equals each run
 * alone, KV read through read-only segments (cascade levels) equals the same
 * KV as one tail, and differential RoPE: a segment computed at positions
 * base.. and placed at pos gives the logits of computing it at pos.
 * (Agreement with HF transformers is checked in test_reference.c.)
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "core/forward.h"
#include "model/model.h"

typedef struct fx {
    eng_model *m;
    eng_backend *b;
    eng_kv_pool kv;
    eng_forward *f;
} fx;

static void tiny_config(eng_model_config *c, bool qk_norm, bool bias)
{
    memset(c, 0, sizeof *c);
    c->arch = qk_norm ? ENG_ARCH_QWEN3 : bias ? ENG_ARCH_QWEN2 : ENG_ARCH_LLAMA;
    snprintf(c->name, sizeof c->name, "tiny");
    c->n_layer = 2;
    c->d_model = 48;
    c->n_head = 4;
    c->n_kv_head = 2;
    c->head_dim = qk_norm ? 16 : 12;
    c->d_ff = 96;
    c->vocab_size = 97;
    c->max_ctx = 2048;
    c->norm_eps = 1e-5f;
    c->rope_theta = 10000.0f;
    c->qk_norm = qk_norm;
    c->qkv_bias = bias;
    c->bos_id = c->eos_id = -1;
}

static int fx_setup(void **state, bool qk_norm, bool bias)
{
    fx *x = calloc(1, sizeof *x);
    eng_model_config c;
    tiny_config(&c, qk_norm, bias);
    char err[256];
    assert_int_equal(eng_model_dummy(&c, 1234, &x->m, err, sizeof err), BI_OK);
    /* Dummy weights are small (std 0.02); scale them up so attention is not
     * uniform and positions matter. */
    for (int l = 0; l < c.n_layer; l++) {
        eng_layer_weights *w = &x->m->layers[l];
        for (int i = 0; i < c.n_head * c.head_dim * c.d_model; i++)
            w->wq[i] *= 40.0f;
        for (int i = 0; i < c.n_kv_head * c.head_dim * c.d_model; i++)
            w->wk[i] *= 40.0f;
    }
    assert_int_equal(eng_backend_cpu_create(2, 2048, &x->b), BI_OK);
    assert_int_equal(eng_kv_pool_init(&x->kv, c.n_layer, c.n_kv_head, c.head_dim, 4, 1024), BI_OK);
    assert_int_equal(eng_forward_create(x->m, x->b, &x->kv, 256, &x->f), BI_OK);
    *state = x;
    return 0;
}

static int setup_llama(void **state)
{
    return fx_setup(state, false, false);
}
static int setup_qwen3(void **state)
{
    return fx_setup(state, true, false);
}
static int setup_qwen2(void **state)
{
    return fx_setup(state, false, true);
}

static int fx_teardown(void **state)
{
    fx *x = *state;
    eng_forward_destroy(x->f);
    eng_kv_pool_fini(&x->kv);
    eng_backend_destroy(x->b);
    eng_model_destroy(x->m);
    free(x);
    return 0;
}

static double rel_err(const float *a, const float *ref, int n)
{
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        num += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static void random_tokens(int32_t *t, int n, int vocab, unsigned seed)
{
    srand(seed);
    for (int i = 0; i < n; i++)
        t[i] = rand() % vocab;
}

/* Runs tokens as one sequence: segs (read-only), tail at tail_pos; n_new
 * tokens after tail_len already there. Logits of the last token -> out. */
static void run_seq(fx *x, const eng_seg *segs, int n_segs, const int32_t *pages, int32_t tail_pos,
                    int32_t tail_len, const int32_t *tokens, int32_t n, float *out, int mode)
{
    eng_fwd_seq s = {segs, n_segs, pages, tail_pos, tail_len, n, mode};
    eng_fwd_batch b = {tokens, n, &s, 1};
    assert_int_equal(eng_forward_run(x->f, &b, out), BI_OK);
}

static int32_t *alloc_pages(fx *x, int32_t tokens)
{
    int32_t n = eng_kv_pages_for(&x->kv, tokens);
    int32_t *p = calloc((size_t)n, sizeof *p);
    assert_int_equal(eng_kv_alloc(&x->kv, n, p), BI_OK);
    return p;
}

static void test_forward_prefill_equals_decode(void **state)
{
    fx *x = *state;
    const int V = x->m->cfg.vocab_size, n = 19;
    int32_t tok[19];
    random_tokens(tok, n, V, 1);
    float *a = malloc(sizeof(float) * V * n), *d = malloc(sizeof(float) * V);
    int32_t *p1 = alloc_pages(x, n), *p2 = alloc_pages(x, n);
    run_seq(x, NULL, 0, p1, 0, 0, tok, n, a, ENG_LOGITS_ALL);
    for (int i = 0; i < n; i++) {
        run_seq(x, NULL, 0, p2, 0, i, tok + i, 1, d, ENG_LOGITS_LAST);
        assert_true(rel_err(d, a + (size_t)i * V, V) < 1e-5);
    }
    /* Uneven prefill pieces give the same last logits too. */
    int32_t *p3 = alloc_pages(x, n);
    run_seq(x, NULL, 0, p3, 0, 0, tok, 7, d, ENG_LOGITS_LAST);
    run_seq(x, NULL, 0, p3, 0, 7, tok + 7, 12, d, ENG_LOGITS_LAST);
    assert_true(rel_err(d, a + (size_t)(n - 1) * V, V) < 1e-5);
    free(a), free(d), free(p1), free(p2), free(p3);
}

static void test_forward_batch_equals_alone(void **state)
{
    fx *x = *state;
    const int V = x->m->cfg.vocab_size;
    int32_t t1[13], t2[5], both[18];
    random_tokens(t1, 13, V, 2);
    random_tokens(t2, 5, V, 3);
    memcpy(both, t1, sizeof t1);
    memcpy(both + 13, t2, sizeof t2);
    float r1[97], r2[97], rb[2 * 97];
    int32_t *a = alloc_pages(x, 13), *b = alloc_pages(x, 5), *c = alloc_pages(x, 13),
            *d = alloc_pages(x, 5);
    run_seq(x, NULL, 0, a, 0, 0, t1, 13, r1, ENG_LOGITS_LAST);
    run_seq(x, NULL, 0, b, 0, 0, t2, 5, r2, ENG_LOGITS_LAST);
    eng_fwd_seq s[2] = {{NULL, 0, c, 0, 0, 13, ENG_LOGITS_LAST},
                        {NULL, 0, d, 0, 0, 5, ENG_LOGITS_LAST}};
    eng_fwd_batch batch = {both, 18, s, 2};
    assert_int_equal(eng_forward_logit_rows(&batch), 2);
    assert_int_equal(eng_forward_run(x->f, &batch, rb), BI_OK);
    assert_true(rel_err(rb, r1, V) < 1e-5);
    assert_true(rel_err(rb + V, r2, V) < 1e-5);
    free(a), free(b), free(c), free(d);
}

/* A prefix computed once and read as a level equals the same prefix in the tail. */
static void test_forward_segments_equal_tail(void **state)
{
    fx *x = *state;
    const int V = x->m->cfg.vocab_size;
    int32_t tok[30];
    random_tokens(tok, 30, V, 4);
    float ref[97], got[97];
    int32_t *whole = alloc_pages(x, 30);
    run_seq(x, NULL, 0, whole, 0, 0, tok, 30, ref, ENG_LOGITS_LAST);
    /* Chunk A = tok[0..9) at 0, chunk B = tok[9..22) at 9 computed after A. */
    int32_t *pa = alloc_pages(x, 9), *pb = alloc_pages(x, 13), *pt = alloc_pages(x, 8);
    float tmp[97];
    run_seq(x, NULL, 0, pa, 0, 0, tok, 9, tmp, ENG_LOGITS_NONE);
    eng_seg sa = {pa, 9, 0, 0};
    run_seq(x, &sa, 1, pb, 9, 0, tok + 9, 13, tmp, ENG_LOGITS_NONE);
    eng_seg segs[2] = {{pa, 9, 0, 0}, {pb, 13, 9, 9}};
    run_seq(x, segs, 2, pt, 22, 0, tok + 22, 8, got, ENG_LOGITS_LAST);
    assert_true(rel_err(got, ref, V) < 1e-5);
    free(whole), free(pa), free(pb), free(pt);
}

/* Differential RoPE: a chunk computed at local positions (base 0) and placed
 * at offset p equals the chunk computed at p, for what follows it. */
static void test_forward_differential_rope(void **state)
{
    fx *x = *state;
    const int V = x->m->cfg.vocab_size;
    int32_t chunk[11], q[4];
    random_tokens(chunk, 11, V, 5);
    random_tokens(q, 4, V, 6);
    float tmp[97], ref[97], got[97];
    int32_t *local = alloc_pages(x, 11);
    run_seq(x, NULL, 0, local, 0, 0, chunk, 11, tmp, ENG_LOGITS_NONE);
    int offsets[] = {0, 37, 1000};
    for (int i = 0; i < 3; i++) {
        int p = offsets[i];
        int32_t *at_p = alloc_pages(x, 11), *t1 = alloc_pages(x, 4), *t2 = alloc_pages(x, 4);
        run_seq(x, NULL, 0, at_p, p, 0, chunk, 11, tmp, ENG_LOGITS_NONE);
        eng_seg s_ref = {at_p, 11, p, p}, s_moved = {local, 11, p, 0};
        run_seq(x, &s_ref, 1, t1, p + 11, 0, q, 4, ref, ENG_LOGITS_LAST);
        run_seq(x, &s_moved, 1, t2, p + 11, 0, q, 4, got, ENG_LOGITS_LAST);
        double e = rel_err(got, ref, V);
        print_message("offset %4d: rel err %.2e\n", p, e);
        assert_true(e < 1e-4);
        free(at_p), free(t1), free(t2);
    }
    /* And the positions do matter: a wrong rotation base changes the logits. */
    int32_t *t3 = alloc_pages(x, 4);
    eng_seg wrong = {local, 11, 37, 5};
    run_seq(x, &wrong, 1, t3, 48, 0, q, 4, got, ENG_LOGITS_LAST);
    int32_t *at37 = alloc_pages(x, 11), *t4 = alloc_pages(x, 4);
    run_seq(x, NULL, 0, at37, 37, 0, chunk, 11, tmp, ENG_LOGITS_NONE);
    eng_seg s37 = {at37, 11, 37, 37};
    run_seq(x, &s37, 1, t4, 48, 0, q, 4, ref, ENG_LOGITS_LAST);
    assert_true(rel_err(got, ref, V) > 1e-3);
    free(local), free(t3), free(at37), free(t4);
}

static void test_forward_rejects_bad_batches(void **state)
{
    fx *x = *state;
    int32_t pages[4] = {0, 1, 2, 3};
    int32_t bad[2] = {5, 97};
    float out[97 * 2];
    eng_fwd_seq s = {NULL, 0, pages, 0, 0, 2, ENG_LOGITS_LAST};
    eng_fwd_batch b = {bad, 2, &s, 1};
    assert_int_equal(eng_forward_run(x->f, &b, out), BI_INVALID_ARGUMENT);
    int32_t ok[2] = {5, 6};
    s.n_new = 3;
    b.tokens = ok;
    assert_int_equal(eng_forward_run(x->f, &b, out), BI_INVALID_ARGUMENT);
    s.n_new = 0;
    assert_int_equal(eng_forward_run(x->f, &b, out), BI_INVALID_ARGUMENT);
    b.n_tokens = 1000;
    assert_int_equal(eng_forward_run(x->f, &b, out), BI_INVALID_ARGUMENT);
}

#define T(fn, s) cmocka_unit_test_setup_teardown(fn, s, fx_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_forward_prefill_equals_decode, setup_llama),
        T(test_forward_prefill_equals_decode, setup_qwen3),
        T(test_forward_batch_equals_alone, setup_qwen2),
        T(test_forward_segments_equal_tail, setup_llama),
        T(test_forward_segments_equal_tail, setup_qwen3),
        T(test_forward_differential_rope, setup_llama),
        T(test_forward_differential_rope, setup_qwen3),
        T(test_forward_rejects_bad_batches, setup_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
