/*
 * test_c_client.c - libbraid against a real braidd (started by
 * test_c_client.sh, address in argv[1]) with SmolLM2: chunk reuse reports
 * cached prompt tokens, a stream's events arrive in order, cancel ends a
 * stream early, 32 concurrent streams from threads each match the same
 * request run alone (greedy), and a stream resumes on a new connection after
 * the first one is dropped, with no gap and no duplicate.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "braid.h"

#define MAX_TOK 64

static const char *addr;

static braid_client *connect_(void)
{
    braid_client *c;
    assert_int_equal(braid_client_create(addr, 30000, &c), BRAID_OK);
    return c;
}

/* A greedy request over parts; the caller sets the rest. */
static braid_gen_request greedy(const braid_part *parts, size_t n, uint32_t max_tokens)
{
    return (braid_gen_request){.parts = parts,
                               .n_parts = n,
                               .max_tokens = max_tokens,
                               .ignore_eos = 1,
                               .sampling = {.has_temperature = 1, .temperature = 0}};
}

/* Reads a stream to its end: token ids into ids (at most MAX_TOK), checking
 * that seqs run from first_seq without a gap. Returns the token count. */
static int drain(braid_stream *s, uint64_t first_seq, int32_t *ids, braid_final *fin)
{
    braid_event ev;
    int n = 0;
    uint64_t want = first_seq;
    for (;;) {
        braid_status st = braid_stream_next(s, &ev);
        if (st != BRAID_OK)
            fail_msg("stream_next: %s: %s", braid_status_name(st), braid_last_error());
        assert_int_equal(ev.seq, want++);
        if (ev.kind == BRAID_EVENT_FINAL) {
            *fin = ev.final;
            return n;
        }
        assert_true(n < MAX_TOK);
        ids[n++] = ev.token_id;
    }
}

/* Runs req alone to its end; returns the token count. */
static int run_alone(braid_client *c, const braid_gen_request *req, int32_t *ids, braid_final *fin)
{
    braid_stream *s;
    assert_int_equal(braid_generate_start(c, req, &s), BRAID_OK);
    int n = drain(s, 1, ids, fin);
    braid_stream_close(s);
    return n;
}

static void test_c_chunk_reuse(void **state)
{
    (void)state;
    braid_client *c = connect_();
    braid_chunk_info sys, doc, got;
    braid_chunk_desc d = {.role = BRAID_ROLE_SYSTEM, .text = "You are a terse assistant."};
    assert_int_equal(braid_chunk_register(c, &d, &sys, NULL), BRAID_OK);
    d = (braid_chunk_desc){.role = BRAID_ROLE_CONTEXT,
                           .text = "The capital of France is Paris. Its river is the Seine."};
    int existed = -1;
    assert_int_equal(braid_chunk_register(c, &d, &doc, &existed), BRAID_OK);
    assert_int_equal(strlen(doc.id), 64);
    assert_true(doc.num_tokens > 5);
    assert_int_equal(braid_chunk_register(c, &d, &got, &existed), BRAID_OK);
    assert_int_equal(existed, 1);
    assert_string_equal(got.id, doc.id);

    braid_part parts[] = {{.chunk_id = sys.id},
                          {.chunk_id = doc.id},
                          {.role = BRAID_ROLE_USER, .text = "What is the capital of France?"}};
    braid_gen_request req = greedy(parts, 3, 8);
    int32_t ids[MAX_TOK];
    braid_final f1, f2;
    run_alone(c, &req, ids, &f1);
    run_alone(c, &req, ids, &f2);
    /* no client_request_id given: each call carried one of its own */
    assert_memory_equal(f1.client_request_id, "c-", 2);
    assert_int_equal(strlen(f1.client_request_id), 18);
    assert_string_not_equal(f1.client_request_id, f2.client_request_id);
    assert_int_equal(f2.usage.prompt_tokens, f1.usage.prompt_tokens);
    assert_true(f2.usage.cached_prompt_tokens >= sys.num_tokens + doc.num_tokens);
    assert_true(f2.usage.cached_prompt_tokens > f1.usage.cached_prompt_tokens);

    braid_chunk_content content;
    assert_int_equal(braid_chunk_get(c, NULL, doc.id, &got, &content), BRAID_OK);
    assert_int_equal(content.n_tokens, doc.num_tokens);
    assert_non_null(strstr(content.text, "Seine"));
    assert_true(got.hits >= 1);
    braid_chunk_content_free(&content);
    assert_int_equal(braid_chunk_pin(c, NULL, doc.id, 1, &got), BRAID_OK);
    assert_true(got.pinned);
    braid_chunk_info *list;
    size_t n;
    assert_int_equal(braid_chunk_list(c, NULL, 0, &list, &n), BRAID_OK);
    bool found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(list[i].id, doc.id) == 0;
    assert_true(found);
    braid_free(list);
    /* An unknown chunk in a composition is NOT_FOUND, from the server. */
    static const char zero[] = "0000000000000000000000000000000000000000000000000000000000000000";
    braid_part bad = {.chunk_id = zero};
    req = greedy(&bad, 1, 4);
    braid_final fb;
    assert_int_equal(braid_generate(c, &req, NULL, NULL, &fb), BRAID_NOT_FOUND);
    assert_int_equal(braid_chunk_get(c, NULL, zero, &got, NULL), BRAID_NOT_FOUND);
    braid_client_destroy(c);
}

static void test_c_stream_and_cancel(void **state)
{
    (void)state;
    braid_client *c = connect_();
    braid_part p = {.role = BRAID_ROLE_USER, .text = "Tell me a long story about a cat."};
    braid_gen_request req = greedy(&p, 1, 12);
    int32_t ids[MAX_TOK];
    braid_final f;
    assert_int_equal(run_alone(c, &req, ids, &f), 12);
    assert_int_equal(f.finish_reason, BRAID_FINISH_LENGTH);
    assert_int_equal(f.usage.completion_tokens, 12);
    assert_true(f.usage.ttft_ms > 0);

    req.max_tokens = 2000;
    braid_stream *s;
    assert_int_equal(braid_generate_start(c, &req, &s), BRAID_OK);
    braid_event ev;
    for (int i = 0; i < 3; i++)
        assert_int_equal(braid_stream_next(s, &ev), BRAID_OK);
    assert_int_equal(braid_stream_cancel(s), BRAID_OK);
    int n = 3;
    while (braid_stream_next(s, &ev) == BRAID_OK && ev.kind == BRAID_EVENT_TOKEN)
        n++;
    assert_int_equal(ev.kind, BRAID_EVENT_FINAL);
    assert_int_equal(ev.final.finish_reason, BRAID_FINISH_CANCELLED);
    assert_true(n < 2000);
    braid_stream_close(s);
    braid_client_destroy(c);
}

#define N_THREADS 32

typedef struct job {
    braid_client *c;
    char prompt[64];
    int32_t ids[MAX_TOK];
    int n;
    braid_final fin;
} job;

static braid_gen_request job_request(job *j, braid_part *p)
{
    *p = (braid_part){.role = BRAID_ROLE_USER, .text = j->prompt};
    return greedy(p, 1, 6);
}

static void *job_main(void *arg)
{
    job *j = arg;
    braid_part p;
    braid_gen_request req = job_request(j, &p);
    j->n = run_alone(j->c, &req, j->ids, &j->fin);
    return NULL;
}

static void test_c_concurrent_streams(void **state)
{
    (void)state;
    braid_client *c = connect_();
    static job jobs[N_THREADS], alone[N_THREADS];
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        jobs[i] = (job){.c = c};
        snprintf(jobs[i].prompt, sizeof jobs[i].prompt, "Say the number %d in words.", i * 7);
        alone[i] = jobs[i];
        job_main(&alone[i]);
    }
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, job_main, &jobs[i]), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < N_THREADS; i++) {
        assert_int_equal(jobs[i].n, alone[i].n);
        assert_memory_equal(jobs[i].ids, alone[i].ids, (size_t)alone[i].n * sizeof(int32_t));
    }
    braid_client_destroy(c);
}

static void test_c_resume_on_new_connection(void **state)
{
    (void)state;
    braid_client *c = connect_();
    braid_part p = {.role = BRAID_ROLE_USER, .text = "List the planets of the solar system."};
    braid_gen_request req = greedy(&p, 1, 16);
    int32_t ref[MAX_TOK], got[MAX_TOK];
    braid_final f;
    int n_ref = run_alone(c, &req, ref, &f);
    braid_stream *s;
    assert_int_equal(braid_generate_start(c, &req, &s), BRAID_OK);
    braid_event ev;
    for (int i = 0; i < 5; i++) {
        assert_int_equal(braid_stream_next(s, &ev), BRAID_OK);
        got[i] = ev.token_id;
    }
    uint64_t id = braid_stream_id(s), last = braid_stream_last_seq(s);
    assert_int_equal(last, 5);
    braid_stream_detach(s);
    braid_client_destroy(c); /* the connection drops */

    c = connect_();
    assert_int_equal(braid_stream_attach(c, id, last, &s), BRAID_OK);
    int n = 5 + drain(s, last + 1, got + 5, &f);
    assert_int_equal(n, n_ref);
    assert_memory_equal(got, ref, (size_t)n * sizeof(int32_t));
    braid_stream_close(s);
    braid_client_destroy(c);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BRAIDD_URL\n", argv[0]);
        return 2;
    }
    addr = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_c_chunk_reuse),
        cmocka_unit_test(test_c_stream_and_cancel),
        cmocka_unit_test(test_c_concurrent_streams),
        cmocka_unit_test(test_c_resume_on_new_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
