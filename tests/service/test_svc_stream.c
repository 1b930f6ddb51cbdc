/* test_svc_stream.c - the stream table: ids, event buffers, acknowledgement, dirty list. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/alloc.h"
#include "svc_stream.h"

static int notified;

static void count_notify(void *user)
{
    (void)user;
    notified++;
}

static void push_token(svc_stream *s, int32_t tok, const char *text)
{
    eng_event ev = {.token = tok, .text = text, .text_len = strlen(text)};
    svc_stream_on_event(s, &ev);
}

static void push_final(svc_stream *s, eng_finish f)
{
    eng_usage u = {.prompt_tokens = 5, .generated_tokens = 2};
    eng_event ev = {
        .final = true, .finish = f, .message = "", .usage = &u, .text = "!", .text_len = 1};
    svc_stream_on_event(s, &ev);
}

static void test_svc_stream_ids_are_unique_and_found(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *a, *b;
    assert_int_equal(svc_streams_open(&t, "req-a", &a), BI_OK);
    assert_int_equal(svc_streams_open(&t, NULL, &b), BI_OK);
    assert_true(a->id != 0 && b->id != 0 && a->id != b->id);
    /* not a plain counter: another client cannot guess its neighbour's id */
    assert_true(b->id != a->id + 1);
    assert_ptr_equal(svc_streams_find(&t, a->id), a);
    assert_ptr_equal(svc_streams_find(&t, b->id), b);
    assert_string_equal(a->rid, "req-a");
    assert_string_equal(b->rid, "");
    assert_int_equal(t.n, 2);
    uint64_t a_id = a->id;
    svc_streams_close(&t, a);
    assert_null(svc_streams_find(&t, a_id));
    assert_ptr_equal(svc_streams_find(&t, b->id), b);
    assert_int_equal(t.n, 1);
    svc_streams_fini(&t);
}

static void test_svc_stream_many_streams_share_buckets(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 1, NULL, NULL), BI_OK);
    svc_stream *s[300];
    for (int i = 0; i < 300; i++)
        assert_int_equal(svc_streams_open(&t, "", &s[i]), BI_OK);
    for (int i = 0; i < 300; i += 2)
        svc_streams_close(&t, s[i]);
    for (int i = 1; i < 300; i += 2)
        assert_ptr_equal(svc_streams_find(&t, s[i]->id), s[i]);
    assert_int_equal(t.n, 150);
    svc_streams_fini(&t); /* frees the rest; ASan checks nothing leaks */
}

static void test_svc_stream_events_get_contiguous_seqs(void **state)
{
    (void)state;
    svc_streams t;
    notified = 0;
    assert_int_equal(svc_streams_init(&t, 4, count_notify, NULL), BI_OK);
    svc_stream *s;
    assert_int_equal(svc_streams_open(&t, "", &s), BI_OK);
    push_token(s, 10, "Hel");
    push_token(s, 11, "");
    push_token(s, 12, "lo");
    push_final(s, ENG_FINISH_LENGTH);
    assert_int_equal(notified, 4);
    assert_int_equal(s->n_ev, 4);
    for (size_t i = 0; i < s->n_ev; i++)
        assert_int_equal(s->ev[i].seq, i + 1);
    assert_string_equal(s->ev[0].text, "Hel");
    assert_null(s->ev[1].text);
    assert_true(s->ev[3].final);
    assert_int_equal(s->ev[3].finish, ENG_FINISH_LENGTH);
    assert_int_equal(s->ev[3].usage.prompt_tokens, 5);
    assert_string_equal(s->ev[3].text, "!");
    assert_true(s->finished);
    svc_streams_fini(&t);
}

static void test_svc_stream_ack_drops_only_acknowledged(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *s;
    assert_int_equal(svc_streams_open(&t, "", &s), BI_OK);
    for (int i = 0; i < 5; i++)
        push_token(s, i, "x");
    assert_false(svc_stream_ack(s, 0)); /* nothing acknowledged yet */
    assert_int_equal(s->n_ev, 5);
    assert_false(svc_stream_ack(s, 3));
    assert_int_equal(s->n_ev, 2);
    assert_int_equal(s->ev[0].seq, 4);
    /* a resumed poll with an older ack (its reply was lost) changes nothing */
    assert_false(svc_stream_ack(s, 1));
    assert_int_equal(s->n_ev, 2);
    assert_int_equal(s->ev[0].seq, 4);
    /* acking beyond what exists drops all, but the stream is not finished */
    assert_false(svc_stream_ack(s, 99));
    assert_int_equal(s->n_ev, 0);
    push_token(s, 7, "y");
    assert_int_equal(s->ev[0].seq, 6); /* seqs continue */
    svc_streams_fini(&t);
}

static void test_svc_stream_final_stays_until_acknowledged(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *s;
    assert_int_equal(svc_streams_open(&t, "", &s), BI_OK);
    push_token(s, 1, "a");
    push_final(s, ENG_FINISH_STOP);
    assert_false(svc_stream_ack(s, 1)); /* the final event (seq 2) is still unread */
    assert_int_equal(s->n_ev, 1);
    assert_true(s->ev[0].final);
    assert_true(svc_stream_ack(s, 2));
    assert_int_equal(s->n_ev, 0);
    assert_true(svc_stream_ack(s, 2)); /* asked again: still done */
    svc_streams_fini(&t);
}

static void test_svc_stream_logprobs_are_copied(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *s;
    assert_int_equal(svc_streams_open(&t, "", &s), BI_OK);
    eng_logprobs lp = {.chosen = {3, -0.5f}, .n_top = 2, .top = {{3, -0.5f}, {4, -1.5f}}};
    eng_event ev = {.token = 3, .text = "t", .text_len = 1, .logprobs = &lp};
    svc_stream_on_event(s, &ev);
    lp.n_top = 0; /* the engine's buffer is reused after the call */
    assert_non_null(s->ev[0].lp);
    assert_int_equal(s->ev[0].lp->n_top, 2);
    assert_true(s->ev[0].lp->top[1].logprob == -1.5f);
    svc_streams_fini(&t);
}

static void test_svc_stream_dirty_list_pops_each_once(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *a, *b;
    assert_int_equal(svc_streams_open(&t, "", &a), BI_OK);
    assert_int_equal(svc_streams_open(&t, "", &b), BI_OK);
    push_token(a, 1, "x");
    push_token(a, 2, "y");
    push_token(b, 1, "z");
    svc_stream *p1 = svc_streams_pop_dirty(&t), *p2 = svc_streams_pop_dirty(&t);
    assert_true((p1 == a && p2 == b) || (p1 == b && p2 == a));
    assert_null(svc_streams_pop_dirty(&t));
    push_token(a, 3, "w");
    svc_streams_close(&t, a); /* closing unlinks it from the dirty list */
    assert_null(svc_streams_pop_dirty(&t));
    svc_streams_fini(&t);
}

static void test_svc_stream_out_of_memory_keeps_the_final(void **state)
{
    (void)state;
    svc_streams t;
    assert_int_equal(svc_streams_init(&t, 4, NULL, NULL), BI_OK);
    svc_stream *s;
    assert_int_equal(svc_streams_open(&t, "", &s), BI_OK);
    push_token(s, 1, "a"); /* grows the buffer */
    bi_alloc_fail_after(0);
    push_token(s, 2, "b"); /* its text copy fails: the event is lost */
    bi_alloc_fail_after(-1);
    assert_true(s->lost);
    bi_alloc_fail_after(0);
    push_final(s, ENG_FINISH_STOP); /* its text copy fails: kept without strings */
    bi_alloc_fail_after(-1);
    assert_true(s->finished);
    assert_true(s->ev[s->n_ev - 1].final);
    assert_int_equal(s->ev[s->n_ev - 1].status, BI_NOMEM);
    svc_streams_fini(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_stream_ids_are_unique_and_found),
        cmocka_unit_test(test_svc_stream_many_streams_share_buckets),
        cmocka_unit_test(test_svc_stream_events_get_contiguous_seqs),
        cmocka_unit_test(test_svc_stream_ack_drops_only_acknowledged),
        cmocka_unit_test(test_svc_stream_final_stays_until_acknowledged),
        cmocka_unit_test(test_svc_stream_logprobs_are_copied),
        cmocka_unit_test(test_svc_stream_dirty_list_pops_each_once),
        cmocka_unit_test(test_svc_stream_out_of_memory_keeps_the_final),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
