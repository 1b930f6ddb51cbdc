/*
 * test_stream.c - libbraid without braidd: the stream's event buffer and
 * iterator (order, resent replies, gaps, the end), UTF-8 checking, request
 * checking before anything is sent, and the long-poll resume against a fake
 * braidd (an nng REP socket in a thread) that drops one poll's reply.
 */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "braid.h"
#include "braid.pb-c.h"
#include "client_internal.h"

/* Packs a StreamNextReply holding token events first..last (token id = seq*10,
 * text "t<seq>") and, if final_seq, a final event with that seq. */
static size_t pack_events(uint8_t *buf, size_t cap, uint64_t first, uint64_t last,
                          uint64_t final_seq)
{
    Braid__V1__StreamEvent ev[16], *evp[16];
    Braid__V1__TokenEvent tok[16];
    char text[16][16];
    Braid__V1__FinalEvent fin = BRAID__V1__FINAL_EVENT__INIT;
    Braid__V1__Usage usage = BRAID__V1__USAGE__INIT;
    Braid__V1__Status ok = BRAID__V1__STATUS__INIT;
    size_t n = 0;
    for (uint64_t s = first; s && s <= last; s++, n++) {
        braid__v1__stream_event__init(&ev[n]);
        braid__v1__token_event__init(&tok[n]);
        snprintf(text[n], sizeof text[n], "t%llu", (unsigned long long)s);
        tok[n].token_id = (int32_t)(s * 10);
        tok[n].text = text[n];
        ev[n].seq = s;
        ev[n].event_case = BRAID__V1__STREAM_EVENT__EVENT_TOKEN;
        ev[n].token = &tok[n];
        evp[n] = &ev[n];
    }
    if (final_seq) {
        usage.completion_tokens = (uint32_t)(final_seq - 1);
        usage.prompt_tokens = 7;
        fin.finish_reason = BRAID__V1__FINISH_REASON__FINISH_REASON_LENGTH;
        fin.status = &ok;
        fin.usage = &usage;
        fin.text = "!";
        braid__v1__stream_event__init(&ev[n]);
        ev[n].seq = final_seq;
        ev[n].event_case = BRAID__V1__STREAM_EVENT__EVENT_FINAL;
        ev[n].final = &fin;
        evp[n] = &ev[n];
        n++;
    }
    Braid__V1__StreamNextReply r = BRAID__V1__STREAM_NEXT_REPLY__INIT;
    r.n_events = n;
    r.events = evp;
    size_t len = braid__v1__stream_next_reply__get_packed_size(&r);
    assert_true(len <= cap);
    braid__v1__stream_next_reply__pack(&r, buf);
    return len;
}

static void feed(braid_stream *s, uint64_t first, uint64_t last, uint64_t final_seq,
                 braid_status want)
{
    uint8_t buf[4096];
    size_t len = pack_events(buf, sizeof buf, first, last, final_seq);
    assert_int_equal(braid__stream_feed(s, buf, len), want);
}

static void expect_token(braid_stream *s, uint64_t seq)
{
    braid_event ev;
    char want[16];
    assert_int_equal(braid_stream_next(s, &ev), BRAID_OK);
    assert_int_equal(ev.kind, BRAID_EVENT_TOKEN);
    assert_int_equal(ev.seq, seq);
    assert_int_equal(ev.token_id, (int)(seq * 10));
    snprintf(want, sizeof want, "t%llu", (unsigned long long)seq);
    assert_string_equal(ev.text, want);
    assert_int_equal(ev.text_len, strlen(want));
    assert_int_equal(braid_stream_last_seq(s), seq);
}

static void expect_final(braid_stream *s, uint64_t seq)
{
    braid_event ev;
    assert_int_equal(braid_stream_next(s, &ev), BRAID_OK);
    assert_int_equal(ev.kind, BRAID_EVENT_FINAL);
    assert_int_equal(ev.seq, seq);
    assert_int_equal(ev.final.finish_reason, BRAID_FINISH_LENGTH);
    assert_int_equal(ev.final.status, BRAID_OK);
    assert_int_equal(ev.final.usage.completion_tokens, seq - 1);
    assert_string_equal(ev.text, "!");
    assert_int_equal(braid_stream_next(s, &ev), BRAID_OUT_OF_RANGE);
}

static void test_stream_buffer_drops_resent_events(void **state)
{
    (void)state;
    braid_stream *s = braid__stream_new_detached(9, 0);
    assert_non_null(s);
    feed(s, 1, 3, 0, BRAID_OK);
    feed(s, 2, 5, 0, BRAID_OK); /* a resent reply overlapping what is buffered */
    feed(s, 1, 5, 0, BRAID_OK); /* nothing new at all */
    for (uint64_t q = 1; q <= 5; q++)
        expect_token(s, q);
    braid_event ev;
    assert_int_equal(braid_stream_next(s, &ev), BRAID_UNAVAILABLE); /* empty, no client */
    feed(s, 4, 6, 7, BRAID_OK);
    expect_token(s, 6);
    expect_final(s, 7);
    braid_stream_detach(s);
}

static void test_stream_buffer_refuses_gaps_and_garbage(void **state)
{
    (void)state;
    braid_stream *s = braid__stream_new_detached(9, 10); /* attached after seq 10 */
    feed(s, 12, 13, 0, BRAID_DATA_LOSS);
    feed(s, 11, 12, 0, BRAID_OK);
    expect_token(s, 11);
    feed(s, 14, 14, 0, BRAID_DATA_LOSS);
    uint8_t junk[] = {0xff, 0xff, 0xff, 0x0f, 0x12};
    assert_int_equal(braid__stream_feed(s, junk, sizeof junk), BRAID_INTERNAL);
    expect_token(s, 12);
    assert_int_equal(braid_stream_id(s), 9);
    braid_stream_detach(s);
}

static void test_stream_utf8(void **state)
{
    (void)state;
    const char *good[] = {
        "", "plain", "caf\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf"};
    const char *bad[] = {"\xc3",         "\xc0\xaf",         "\xe0\x80\xaf",
                         "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80",
                         "\x80",         "a\xe2\x82"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++)
        assert_true(braid__utf8_valid(good[i], strlen(good[i])));
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_false(braid__utf8_valid(bad[i], strlen(bad[i])));
}

/* Every request here is refused before it is sent (no server listens). */
static void test_stream_request_checks(void **state)
{
    (void)state;
    braid_client *c;
    assert_int_equal(braid_client_create("tcp://127.0.0.1:1", 200, &c), BRAID_OK);
    braid_stream *s = NULL;
    static const char id[] = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    braid_part p = {.text = "hi"};
    braid_gen_request r = {.parts = &p, .n_parts = 1};
    struct {
        braid_part part;
        void (*edit)(braid_gen_request *);
    } cases[] = {
        {{.text = "hi", .chunk_id = id}, NULL},
        {{.role = BRAID_ROLE_USER}, NULL},
        {{.chunk_id = "ABC"}, NULL},
        {{.chunk_id = "0123"}, NULL},
        {{.text = "bad \xff utf8"}, NULL},
        {{.text = "hi", .role = (braid_role)9}, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        p = cases[i].part;
        assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
        assert_true(strlen(braid_last_error()) > 0);
    }
    p = (braid_part){.text = "hi"};
    float bad_floats[] = {NAN, -1, 101};
    for (size_t i = 0; i < 3; i++) {
        r.sampling = (braid_sampling){.has_temperature = 1, .temperature = bad_floats[i]};
        assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    }
    r.sampling = (braid_sampling){.has_top_p = 1, .top_p = 0};
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    r.sampling = (braid_sampling){.has_logprobs = 1, .logprobs = 21};
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    r.sampling = (braid_sampling){.min_p = 1};
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    r.sampling = (braid_sampling){0};
    const char *stops[] = {NULL};
    r.stop = stops;
    r.n_stop = 1;
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    r = (braid_gen_request){.parts = &p, .n_parts = 0};
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_INVALID_ARGUMENT);
    assert_null(s);

    braid_chunk_info info;
    int32_t toks[] = {1, 2};
    braid_chunk_desc d = {.text = "x", .tokens = toks, .n_tokens = 2};
    assert_int_equal(braid_chunk_register(c, &d, &info, NULL), BRAID_INVALID_ARGUMENT);
    d = (braid_chunk_desc){
        .text = "x", .ns = "0123456789012345678901234567890123456789012345678901234567890123"};
    assert_int_equal(braid_chunk_register(c, &d, &info, NULL), BRAID_INVALID_ARGUMENT);
    assert_int_equal(braid_chunk_delete(c, NULL, "nope"), BRAID_INVALID_ARGUMENT);
    assert_int_equal(braid_chunk_get(c, NULL, NULL, &info, NULL), BRAID_INVALID_ARGUMENT);
    assert_int_equal(braid_client_set_poll_wait(c, 0), BRAID_INVALID_ARGUMENT);
    /* And a real call to nobody times out as UNAVAILABLE. */
    braid_stats st;
    assert_int_equal(braid_stats_get(c, &st), BRAID_UNAVAILABLE);
    braid_client_destroy(c);
    assert_int_equal(braid_client_create("nonsense://x", 0, &c), BRAID_INVALID_ARGUMENT);
}

/* --- a fake braidd --- */

typedef struct fake {
    nng_socket sock;
    pthread_t thread;
    uint64_t acks[32]; /* ack_seq of every StreamNext, in arrival order */
    int n_acks;
    int drop_poll; /* the index of the StreamNext whose reply is dropped */
    pthread_mutex_t mu;
} fake;

static void fake_reply(fake *f, uint64_t call_id, const uint8_t *payload, size_t len)
{
    Braid__V1__Status ok = BRAID__V1__STATUS__INIT;
    Braid__V1__RpcReply r = BRAID__V1__RPC_REPLY__INIT;
    r.call_id = call_id;
    r.status = &ok;
    r.payload.data = (uint8_t *)payload;
    r.payload.len = len;
    nng_msg *m;
    assert_int_equal(nng_msg_alloc(&m, braid__v1__rpc_reply__get_packed_size(&r)), 0);
    braid__v1__rpc_reply__pack(&r, nng_msg_body(m));
    assert_int_equal(nng_sendmsg(f->sock, m, 0), 0);
}

/* Serves Generate (stream 42) and StreamNext over a stream of 4 tokens and a
 * final event, two events per reply; drops the reply of poll drop_poll. */
static void *fake_main(void *arg)
{
    fake *f = arg;
    nng_msg *m;
    while (nng_recvmsg(f->sock, &m, 0) == 0) {
        Braid__V1__RpcRequest *q =
            braid__v1__rpc_request__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
        nng_msg_free(m);
        assert_non_null(q);
        uint8_t buf[4096];
        size_t len = 0;
        bool reply = true;
        if (strcmp(q->method, "braid.v1.Braid/Generate") == 0) {
            Braid__V1__GenerateReply g = BRAID__V1__GENERATE_REPLY__INIT;
            g.stream_id = 42;
            len = braid__v1__generate_reply__pack(&g, buf);
        } else if (strcmp(q->method, "braid.v1.Braid/StreamNext") == 0) {
            Braid__V1__StreamNextRequest *sn =
                braid__v1__stream_next_request__unpack(NULL, q->payload.len, q->payload.data);
            assert_non_null(sn);
            assert_int_equal(sn->stream_id, 42);
            pthread_mutex_lock(&f->mu);
            reply = f->n_acks != f->drop_poll;
            if (f->n_acks < 32)
                f->acks[f->n_acks++] = sn->ack_seq;
            pthread_mutex_unlock(&f->mu);
            uint64_t a = sn->ack_seq;
            len = pack_events(buf, sizeof buf, a < 4 ? a + 1 : 0, a + 2 < 4 ? a + 2 : 4,
                              a + 2 >= 5 && a < 5 ? 5 : 0);
            braid__v1__stream_next_request__free_unpacked(sn, NULL);
        } else {
            reply = strcmp(q->method, "braid.v1.Braid/Cancel") == 0;
        }
        if (reply)
            fake_reply(f, q->call_id, buf, len);
        braid__v1__rpc_request__free_unpacked(q, NULL);
    }
    return NULL;
}

static void fake_start(fake *f, const char *url, int drop_poll)
{
    memset(f, 0, sizeof *f);
    f->drop_poll = drop_poll;
    pthread_mutex_init(&f->mu, NULL);
    assert_int_equal(nng_rep0_open(&f->sock), 0);
    assert_int_equal(nng_listen(f->sock, url, NULL, 0), 0);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_main, f), 0);
}

static void fake_stop(fake *f)
{
    nng_close(f->sock);
    pthread_join(f->thread, NULL);
    pthread_mutex_destroy(&f->mu);
}

static void test_stream_resume_after_lost_reply(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "ipc:///tmp/braid-test-stream-%d.sock", (int)getpid());
    fake f;
    fake_start(&f, url, 1); /* the second poll's reply is lost */
    braid_client *c;
    assert_int_equal(braid_client_create(url, 300, &c), BRAID_OK);
    assert_int_equal(braid_client_set_poll_wait(c, 50), BRAID_OK);
    braid_part p = {.text = "hi"};
    braid_gen_request r = {.parts = &p, .n_parts = 1};
    braid_stream *s;
    assert_int_equal(braid_generate_start(c, &r, &s), BRAID_OK);
    assert_int_equal(braid_stream_id(s), 42);
    for (uint64_t q = 1; q <= 4; q++)
        expect_token(s, q);
    expect_final(s, 5);
    braid_stream_close(s); /* acknowledges the final event */
    pthread_mutex_lock(&f.mu);
    uint64_t want[] = {0, 2, 2, 4, 5}; /* the lost poll was resent with the same ack */
    assert_int_equal(f.n_acks, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(f.acks[i], want[i]);
    pthread_mutex_unlock(&f.mu);

    /* Another connection picks the stream up after seq 3. */
    braid_client *c2;
    assert_int_equal(braid_client_create(url, 300, &c2), BRAID_OK);
    assert_int_equal(braid_stream_attach(c2, 42, 3, &s), BRAID_OK);
    expect_token(s, 4);
    expect_final(s, 5);
    braid_stream_detach(s);
    braid_client_destroy(c2);
    braid_client_destroy(c);
    fake_stop(&f);
}

/* The callback form cancels when the callback asks, and reports the final. */
static int count_cb(void *user, const braid_event *ev)
{
    int *n = user;
    (*n)++;
    return ev->kind == BRAID_EVENT_TOKEN && ev->seq == 2;
}

static void test_stream_generate_callback(void **state)
{
    (void)state;
    char url[64];
    snprintf(url, sizeof url, "ipc:///tmp/braid-test-cb-%d.sock", (int)getpid());
    fake f;
    fake_start(&f, url, -1);
    braid_client *c;
    assert_int_equal(braid_client_create(url, 1000, &c), BRAID_OK);
    braid_part p = {.text = "hi"};
    braid_gen_request r = {.parts = &p, .n_parts = 1};
    braid_final fin;
    int n = 0;
    assert_int_equal(braid_generate(c, &r, count_cb, &n, &fin), BRAID_OK);
    assert_int_equal(n, 5);
    assert_int_equal(fin.finish_reason, BRAID_FINISH_LENGTH);
    assert_int_equal(fin.usage.prompt_tokens, 7);
    braid_client_destroy(c);
    fake_stop(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stream_buffer_drops_resent_events),
        cmocka_unit_test(test_stream_buffer_refuses_gaps_and_garbage),
        cmocka_unit_test(test_stream_utf8),
        cmocka_unit_test(test_stream_request_checks),
        cmocka_unit_test(test_stream_resume_after_lost_reply),
        cmocka_unit_test(test_stream_generate_callback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
