/*
 * test_engine.c - the engine API end to end on the real model,
 * SmolLM2-135M-Instruct (GGUF Q4_1, fetched by deploy/fetch_model.sh):
 * the chat answer, chunk registration and dedup, EXACT reuse (identical greedy
 * tokens with and without cached chunks), INDEPENDENT reuse, output chunks,
 * cancel, eviction when the pool is full, and bad requests.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "core/engine.h"

#ifndef BRAID_SMOLLM2_GGUF
#define BRAID_SMOLLM2_GGUF "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif

/* Collects one generation's events; the test thread waits for the final one. */
typedef struct collect {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    int32_t tokens[512];
    int n_tokens;
    char text[8192];
    size_t text_len;
    eng_finish finish;
    bi_status status;
    eng_usage usage;
    int finals;
    int n_logprobs; /* token events that carried logprobs */
    float first_logprob;
    eng_engine *cancel_engine; /* cancel after cancel_after tokens */
    int cancel_after;
} collect;

static void collect_init(collect *c)
{
    memset(c, 0, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
}

static void on_event(void *user, const eng_event *ev)
{
    collect *c = user;
    pthread_mutex_lock(&c->mu);
    if (ev->text_len && c->text_len + ev->text_len < sizeof c->text) {
        memcpy(c->text + c->text_len, ev->text, ev->text_len);
        c->text_len += ev->text_len;
        c->text[c->text_len] = '\0';
    }
    if (!ev->final) {
        if (ev->logprobs) {
            if (c->n_logprobs++ == 0)
                c->first_logprob = ev->logprobs->chosen.logprob;
            if (ev->logprobs->n_top < 1 ||
                ev->logprobs->top[0].logprob < ev->logprobs->chosen.logprob)
                c->n_logprobs = -1000; /* the chosen token cannot beat the best one */
        }
        if (c->n_tokens < 512)
            c->tokens[c->n_tokens++] = ev->token;
        if (c->cancel_engine && c->n_tokens == c->cancel_after)
            eng_cancel(c->cancel_engine, ev->gen_id);
    } else {
        c->finals++;
        c->finish = ev->finish;
        c->status = ev->status;
        c->usage = *ev->usage;
        c->done = true;
        pthread_cond_signal(&c->cv);
    }
    pthread_mutex_unlock(&c->mu);
}

static void collect_wait(collect *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->done)
        pthread_cond_wait(&c->cv, &c->mu);
    pthread_mutex_unlock(&c->mu);
}

static eng_engine *engine;

static int group_setup(void **state)
{
    (void)state;
    if (access(BRAID_SMOLLM2_GGUF, R_OK) != 0) {
        print_message("SKIP: %s missing (run deploy/fetch_model.sh)\n", BRAID_SMOLLM2_GGUF);
        return 0;
    }
    eng_config cfg = {.model_path = BRAID_SMOLLM2_GGUF, .n_threads = 2, .kv_tokens = 4096};
    char err[512];
    bi_status st = eng_engine_create(&cfg, &engine, err, sizeof err);
    if (st != BI_OK)
        print_message("engine: %s\n", err);
    return st == BI_OK ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    eng_engine_destroy(engine);
    return 0;
}

#define NEED_MODEL()                                                                               \
    do {                                                                                           \
        if (!engine)                                                                               \
            skip();                                                                                \
    } while (0)

static void greedy(eng_gen_params *p, const eng_part *parts, size_t n, int max_tokens)
{
    memset(p, 0, sizeof *p);
    p->parts = parts;
    p->n_parts = n;
    eng_sampling_params_default(&p->sampling);
    p->sampling.temperature = 0;
    p->max_tokens = max_tokens;
}

static void run(const eng_gen_params *p, collect *c)
{
    char err[256] = "";
    uint64_t id;
    collect_init(c);
    bi_status st = eng_generate(engine, p, on_event, c, &id, err, sizeof err);
    if (st != BI_OK)
        print_message("generate: %s\n", err);
    assert_int_equal(st, BI_OK);
    collect_wait(c);
    assert_int_equal(c->finals, 1);
}

static eng_part text_part(eng_role role, const char *s)
{
    return (eng_part){.role = role, .text = s, .text_len = strlen(s)};
}

static eng_part chunk_part(const eng_chunk_id *id)
{
    return (eng_part){.is_chunk = true, .chunk = *id};
}

static void test_engine_answers_paris(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_part parts[] = {text_part(ENG_ROLE_USER, "What is the capital of France?")};
    eng_gen_params p;
    greedy(&p, parts, 1, 24);
    collect c;
    run(&p, &c);
    print_message("answer: %s\n", c.text);
    assert_int_equal(c.status, BI_OK);
    assert_non_null(strstr(c.text, "Paris"));
    assert_true(c.usage.prompt_tokens > 5);
    assert_true(c.usage.generated_tokens > 0);
}

static const char *doc_a = "Braidinfer keeps the KV cache of every registered chunk in a paged "
                           "pool, so a document is read once and reused by many requests.";
static const char *doc_b = "The orchard behind the old mill grows apples, pears and plums; the "
                           "plums ripen last, in September.";

static void register_text(eng_role role, const char *s, eng_chunk_id *id, bool *existed)
{
    eng_chunk_desc d = {.role = role, .text = s, .text_len = strlen(s)};
    assert_int_equal(eng_chunk_register(engine, &d, id, existed), BI_OK);
}

/* The same composition, first with nothing cached, then with its chunks'
 * KV reused: identical greedy tokens. */
static void test_engine_exact_reuse_identical(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_chunk_id sys, a, b;
    bool existed;
    register_text(ENG_ROLE_SYSTEM, "You are a concise assistant. Answer in one sentence.", &sys,
                  &existed);
    register_text(ENG_ROLE_CONTEXT, doc_a, &a, &existed);
    register_text(ENG_ROLE_CONTEXT, doc_b, &b, &existed);
    eng_part parts[] = {chunk_part(&sys), chunk_part(&a), chunk_part(&b),
                        text_part(ENG_ROLE_USER, "When do the plums ripen?")};
    eng_gen_params p;
    greedy(&p, parts, 4, 16);
    collect c1, c2;
    run(&p, &c1);
    run(&p, &c2);
    print_message("exact: cached %d of %d; '%s'\n", c2.usage.cached_tokens, c2.usage.prompt_tokens,
                  c2.text);
    assert_true(c1.n_tokens > 0);
    assert_int_equal(c1.n_tokens, c2.n_tokens);
    assert_memory_equal(c1.tokens, c2.tokens, (size_t)c1.n_tokens * sizeof(int32_t));
    assert_true(c2.usage.cached_tokens > c1.usage.cached_tokens);

    /* The same prompt sent as inline text only (nothing reused): same tokens. */
    eng_part inline_parts[] = {
        text_part(ENG_ROLE_SYSTEM, "You are a concise assistant. Answer in one sentence."),
        text_part(ENG_ROLE_CONTEXT, doc_a), text_part(ENG_ROLE_CONTEXT, doc_b),
        text_part(ENG_ROLE_USER, "When do the plums ripen?")};
    eng_gen_params q;
    greedy(&q, inline_parts, 4, 16);
    collect c3;
    run(&q, &c3);
    assert_int_equal(c3.n_tokens, c1.n_tokens);
    assert_memory_equal(c3.tokens, c1.tokens, (size_t)c1.n_tokens * sizeof(int32_t));

    eng_chunk_info info;
    assert_int_equal(eng_chunk_get(engine, NULL, &a, &info), BI_OK);
    assert_true(info.hits >= 1);
    assert_true(info.tokens_saved >= (uint64_t)info.n_tokens);
    assert_true(info.kv_resident);
}

static void test_engine_register_dedup_and_namespaces(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_chunk_id x, y, z;
    bool existed;
    register_text(ENG_ROLE_CONTEXT, "dedup me", &x, &existed);
    register_text(ENG_ROLE_CONTEXT, "dedup me", &y, &existed);
    assert_true(existed);
    assert_memory_equal(&x, &y, sizeof x);
    eng_chunk_desc d = {
        .ns = "tenant-b", .role = ENG_ROLE_CONTEXT, .text = "dedup me", .text_len = 8};
    assert_int_equal(eng_chunk_register(engine, &d, &z, &existed), BI_OK);
    assert_false(existed);
    assert_memory_not_equal(&x, &z, sizeof x);
    eng_chunk_info info;
    assert_int_equal(eng_chunk_get(engine, "tenant-b", &x, &info), BI_NOT_FOUND);
    assert_int_equal(eng_chunk_get(engine, "tenant-b", &z, &info), BI_OK);
    char hex[65];
    eng_chunk_id parsed;
    eng_chunk_id_hex(&z, hex);
    assert_int_equal(eng_chunk_id_parse(hex, &parsed), BI_OK);
    assert_memory_equal(&parsed, &z, sizeof z);
    assert_int_equal(eng_chunk_id_parse("xyz", &parsed), BI_INVALID_ARGUMENT);
    assert_int_equal(eng_chunk_pin(engine, "tenant-b", &z, true), BI_OK);
    assert_int_equal(eng_chunk_delete(engine, "tenant-b", &z), BI_OK);
    assert_int_equal(eng_chunk_delete(engine, "tenant-b", &z), BI_NOT_FOUND);
    eng_chunk_info *list;
    size_t n;
    assert_int_equal(eng_chunk_list(engine, "tenant-b", &list, &n), BI_OK);
    assert_int_equal(n, 0);
    bi_free(list);
}

static void test_engine_independent_and_output_chunk(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_chunk_id a, b;
    bool existed;
    register_text(ENG_ROLE_CONTEXT, doc_b, &b, &existed);
    register_text(ENG_ROLE_CONTEXT, doc_a, &a, &existed);
    eng_part parts[] = {chunk_part(&b), chunk_part(&a),
                        text_part(ENG_ROLE_USER, "Which fruit ripens last?")};
    eng_gen_params p;
    greedy(&p, parts, 3, 12);
    p.reuse = ENG_REUSE_INDEPENDENT;
    p.retain_output = true;
    collect c1, c2;
    run(&p, &c1);
    assert_int_equal(c1.status, BI_OK);
    assert_true(c1.usage.has_output_chunk);
    /* Reversed order reuses the same independent KV. */
    eng_part rev[] = {chunk_part(&a), chunk_part(&b),
                      text_part(ENG_ROLE_USER, "Which fruit ripens last?")};
    greedy(&p, rev, 3, 4);
    p.reuse = ENG_REUSE_INDEPENDENT;
    run(&p, &c2);
    assert_int_equal(c2.status, BI_OK);
    assert_true(c2.usage.cached_tokens >= c2.usage.prompt_tokens - 20);
    /* The output chunk composes like any other. */
    eng_part follow[] = {chunk_part(&c1.usage.output_chunk),
                         text_part(ENG_ROLE_USER, "Say it again.")};
    greedy(&p, follow, 2, 4);
    collect c3;
    run(&p, &c3);
    assert_int_equal(c3.status, BI_OK);
}

static void test_engine_cancel_mid_stream(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_part parts[] = {text_part(ENG_ROLE_USER, "Count from one to one hundred.")};
    eng_gen_params p;
    greedy(&p, parts, 1, 200);
    p.ignore_eos = true;
    collect c;
    collect_init(&c);
    c.cancel_engine = engine;
    c.cancel_after = 3;
    char err[256];
    uint64_t id;
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err), BI_OK);
    collect_wait(&c);
    assert_int_equal(c.finish, ENG_FINISH_CANCELLED);
    assert_true(c.n_tokens >= 3 && c.n_tokens < 10);
    assert_int_equal(eng_cancel(engine, id), BI_NOT_FOUND);
}

static void test_engine_bad_requests(void **state)
{
    (void)state;
    NEED_MODEL();
    char err[256];
    uint64_t id;
    collect c;
    collect_init(&c);
    eng_chunk_id missing;
    memset(&missing, 0xab, sizeof missing);
    eng_part parts[] = {chunk_part(&missing), text_part(ENG_ROLE_USER, "hi")};
    eng_gen_params p;
    greedy(&p, parts, 2, 4);
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err), BI_NOT_FOUND);
    assert_non_null(strstr(err, "not found"));
    greedy(&p, parts + 1, 1, 4);
    p.sampling.temperature = -1;
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    p.sampling.temperature = 0.0f / 0.0f;
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    greedy(&p, parts + 1, 1, 0);
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    greedy(&p, parts + 1, 1, 1 << 30);
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    /* A composition longer than the context. */
    size_t big = 40000;
    char *text = malloc(big + 1);
    for (size_t i = 0; i < big; i++)
        text[i] = "abcdefgh "[i % 9];
    text[big] = '\0';
    eng_part huge[] = {text_part(ENG_ROLE_USER, text)};
    greedy(&p, huge, 1, 4);
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err), BI_OUT_OF_RANGE);
    eng_chunk_id hid;
    eng_chunk_desc d = {.role = ENG_ROLE_CONTEXT, .text = text, .text_len = big};
    assert_int_equal(eng_chunk_register(engine, &d, &hid, NULL), BI_OUT_OF_RANGE);
    free(text);
    /* Token ids out of the vocabulary. */
    int32_t ids[2] = {1, 1 << 20};
    eng_part idp[] = {{.role = ENG_ROLE_USER, .ids = ids, .n_ids = 2}};
    greedy(&p, idp, 1, 4);
    assert_int_equal(eng_generate(engine, &p, on_event, &c, &id, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_int_equal(c.finals, 0);
}

/* Two generations that together need more pages than the pool has: the newer
 * one is preempted (its tail recomputed later) instead of failing, and both
 * produce exactly the tokens they produce alone. */
static void test_engine_preempts_when_pool_full(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_config cfg = {
        .model_path = BRAID_SMOLLM2_GGUF, .n_threads = 2, .kv_tokens = 160, .page_size = 16};
    char err[512];
    eng_engine *small;
    assert_int_equal(eng_engine_create(&cfg, &small, err, sizeof err), BI_OK);
    eng_engine *saved = engine;
    engine = small;
    eng_part pa[] = {text_part(ENG_ROLE_USER, "List the planets of the solar system.")};
    eng_part pb[] = {text_part(ENG_ROLE_USER, "Name some famous painters.")};
    eng_gen_params a, b;
    greedy(&a, pa, 1, 90);
    greedy(&b, pb, 1, 90);
    a.ignore_eos = b.ignore_eos = true;
    collect ra, rb, ca, cb;
    run(&a, &ra); /* alone */
    run(&b, &rb);
    collect_init(&ca);
    collect_init(&cb);
    uint64_t ia, ib;
    assert_int_equal(eng_generate(small, &a, on_event, &ca, &ia, err, sizeof err), BI_OK);
    assert_int_equal(eng_generate(small, &b, on_event, &cb, &ib, err, sizeof err), BI_OK);
    collect_wait(&ca);
    collect_wait(&cb);
    eng_stats st;
    eng_stats_get(small, &st);
    print_message("preemptions %llu; statuses %d %d\n", (unsigned long long)st.preemptions,
                  ca.status, cb.status);
    assert_int_equal(ca.status, BI_OK);
    assert_int_equal(cb.status, BI_OK);
    assert_true(st.preemptions > 0);
    assert_int_equal(ca.n_tokens, ra.n_tokens);
    assert_memory_equal(ca.tokens, ra.tokens, (size_t)ra.n_tokens * sizeof(int32_t));
    assert_int_equal(cb.n_tokens, rb.n_tokens);
    assert_memory_equal(cb.tokens, rb.tokens, (size_t)rb.n_tokens * sizeof(int32_t));
    engine = saved;
    eng_engine_destroy(small);
}

/* kv_memory_fraction: out of [0, 1) is refused; on the CPU backend (no device
 * memory to size from) it is ignored and the pool comes from kv_tokens. */
static void test_engine_kv_memory_fraction(void **state)
{
    (void)state;
    NEED_MODEL();
    char err[512];
    eng_engine *e = NULL;
    const float bad[] = {-0.1f, 1.0f, 1.5f, 0.0f / 0.0f};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        eng_config cfg = {.model_path = BRAID_SMOLLM2_GGUF,
                          .n_threads = 2,
                          .kv_tokens = 256,
                          .kv_memory_fraction = bad[i]};
        assert_int_equal(eng_engine_create(&cfg, &e, err, sizeof err), BI_INVALID_ARGUMENT);
        assert_non_null(strstr(err, "kv_memory_fraction"));
    }
    eng_config cfg = {.model_path = BRAID_SMOLLM2_GGUF,
                      .n_threads = 2,
                      .kv_tokens = 256,
                      .kv_memory_fraction = 0.5f,
                      .backend = "cpu"};
    assert_int_equal(eng_engine_create(&cfg, &e, err, sizeof err), BI_OK);
    eng_stats st;
    eng_stats_get(e, &st);
    assert_int_equal(st.kv_pages_total, 256 / 16);
    eng_engine_destroy(e);
    assert_true(eng_kv_memory_fraction_default("cpu", 0) == 0.0f);
    assert_true(eng_kv_memory_fraction_default("cuda", 4096) == 0.0f);
    assert_true(eng_kv_memory_fraction_default("cuda", 0) == 0.85f);
}

/* Seeded sampling repeats itself; logprobs and stop strings reach the events. */
static void test_engine_sampling_seed_logprobs_stop(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_part parts[] = {text_part(ENG_ROLE_USER, "Write a short poem about the sea.")};
    eng_gen_params p;
    greedy(&p, parts, 1, 16);
    p.sampling.temperature = 0.9f;
    p.sampling.top_p = 0.95f;
    p.sampling.seed = 42;
    p.sampling.n_logprobs = 3;
    collect a, b, c;
    run(&p, &a);
    run(&p, &b);
    assert_int_equal(a.n_tokens, b.n_tokens);
    assert_memory_equal(a.tokens, b.tokens, (size_t)a.n_tokens * sizeof(int32_t));
    assert_int_equal(a.n_logprobs, a.n_tokens);
    assert_true(a.first_logprob <= 0.0f);
    p.sampling.seed = 43;
    run(&p, &c);
    assert_true(c.n_tokens != a.n_tokens ||
                memcmp(c.tokens, a.tokens, (size_t)a.n_tokens * sizeof(int32_t)) != 0);
    /* A stop string ends the answer before it, and is not emitted. */
    eng_part q[] = {text_part(ENG_ROLE_USER, "What is the capital of France?")};
    greedy(&p, q, 1, 24);
    const char *stops[] = {"Paris"};
    p.stop = stops;
    p.n_stop = 1;
    collect d;
    run(&p, &d);
    print_message("stopped text: '%s'\n", d.text);
    assert_int_equal(d.finish, ENG_FINISH_STOP);
    assert_null(strstr(d.text, "Paris"));
    assert_non_null(strstr(d.text, "capital"));
}

/* A small pool: idle chunk KV is evicted LRU so new requests still run, pinned
 * chunks keep theirs, and stats count the evictions. */
static void test_engine_evicts_idle_chunks(void **state)
{
    (void)state;
    NEED_MODEL();
    eng_config cfg = {
        .model_path = BRAID_SMOLLM2_GGUF, .n_threads = 2, .kv_tokens = 256, .page_size = 16};
    char err[512];
    eng_engine *small;
    assert_int_equal(eng_engine_create(&cfg, &small, err, sizeof err), BI_OK);
    eng_engine *saved = engine;
    engine = small;
    eng_chunk_id pinned, ids[6];
    eng_chunk_desc pd = {.role = ENG_ROLE_SYSTEM, .text = "Be brief.", .text_len = 9, .pin = true};
    assert_int_equal(eng_chunk_register(small, &pd, &pinned, NULL), BI_OK);
    for (int i = 0; i < 6; i++) {
        char doc[160];
        snprintf(doc, sizeof doc,
                 "Document %d: the number of the day is %d, and the colour of the day is "
                 "described in detail right here for padding.",
                 i, i * 7);
        eng_chunk_desc d = {.role = ENG_ROLE_CONTEXT, .text = doc, .text_len = strlen(doc)};
        assert_int_equal(eng_chunk_register(small, &d, &ids[i], NULL), BI_OK);
        eng_part parts[] = {chunk_part(&pinned), chunk_part(&ids[i]),
                            text_part(ENG_ROLE_USER, "Number?")};
        eng_gen_params p;
        greedy(&p, parts, 3, 2);
        collect c;
        run(&p, &c);
        assert_int_equal(c.status, BI_OK);
    }
    eng_stats st;
    assert_int_equal(eng_stats_get(small, &st), BI_OK);
    print_message("evictions %llu, free pages %d of %d\n", (unsigned long long)st.evictions,
                  st.kv_pages_free, st.kv_pages_total);
    assert_true(st.evictions > 0);
    eng_chunk_info info;
    assert_int_equal(eng_chunk_get(small, NULL, &pinned, &info), BI_OK);
    assert_true(info.kv_resident);
    assert_int_equal(eng_chunk_get(small, NULL, &ids[0], &info), BI_OK);
    assert_false(info.kv_resident);
    engine = saved;
    eng_engine_destroy(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_engine_answers_paris),
        cmocka_unit_test(test_engine_exact_reuse_identical),
        cmocka_unit_test(test_engine_register_dedup_and_namespaces),
        cmocka_unit_test(test_engine_independent_and_output_chunk),
        cmocka_unit_test(test_engine_cancel_mid_stream),
        cmocka_unit_test(test_engine_bad_requests),
        cmocka_unit_test(test_engine_evicts_idle_chunks),
        cmocka_unit_test(test_engine_sampling_seed_logprobs_stop),
        cmocka_unit_test(test_engine_preempts_when_pool_full),
        cmocka_unit_test(test_engine_kv_memory_fraction),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
