/*
 * stream.c - libbraid's generation streams: request building and checking,
 * the event buffer behind braid_stream_next, the StreamNext long polls that
 * fill it (resent with the same ack_seq after a transport failure, which is
 * what makes a stream lose no token), cancel, attach, and braid_generate.
 */
#include "braid.h"

#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/supplemental/util/platform.h>

#include "client_internal.h"
#include "common/alloc.h"
#include "common/utf8.h"

#define POLL_ATTEMPTS 3 /* consecutive transport failures before giving up */

/* A buffered StreamNextReply; events are read from the head of the queue. */
typedef struct reply_node {
    Braid__V1__StreamNextReply *reply;
    size_t pos; /* next event to return */
    struct reply_node *next;
} reply_node;

struct braid_stream {
    braid_client *c; /* NULL for a detached test stream */
    uint64_t id;
    uint64_t last_seq;     /* seq of the last event returned */
    uint64_t buffered_seq; /* highest seq buffered; the ack of the next poll */
    reply_node *head, *tail;
    bool finished; /* the final event was returned */
    bool final_acked;
    braid_logprob *top; /* scratch for the current event's alternatives */
    size_t top_cap;
};

bool braid__utf8_valid(const char *s, size_t len)
{
    return bi_utf8_valid(s, len);
}

/* --- request --- */

/* Everything a packed GenerateRequest points to, so one free releases it. */
typedef struct gen_msg {
    Braid__V1__GenerateRequest req;
    Braid__V1__SamplingParams sp;
    Braid__V1__FloatValue temperature, top_p, rep;
    Braid__V1__UInt64Value seed;
    Braid__V1__Int32Value logprobs;
    Braid__V1__Part *parts;
    Braid__V1__Part **part_ptrs;
    Braid__V1__TokenIds *toks;
    char rid[24]; /* the generated client_request_id when the caller gave none */
} gen_msg;

static void gen_msg_free(gen_msg *g)
{
    bi_free(g->parts);
    bi_free(g->part_ptrs);
    bi_free(g->toks);
}

static braid_status check_text(const char *what, size_t i, const char *s)
{
    if (!braid__utf8_valid(s, strlen(s)))
        return braid__error(BRAID_INVALID_ARGUMENT, "%s %zu is not valid UTF-8", what, i);
    return BRAID_OK;
}

static braid_status build_part(const braid_part *p, size_t i, Braid__V1__Part *dst,
                               Braid__V1__TokenIds *toks)
{
    int n = (p->chunk_id != NULL) + (p->text != NULL) + (p->n_tokens > 0);
    if (n != 1)
        return braid__error(BRAID_INVALID_ARGUMENT,
                            "part %zu needs exactly one of chunk_id, text or tokens", i);
    if ((unsigned)p->role > BRAID_ROLE_ASSISTANT)
        return braid__error(BRAID_INVALID_ARGUMENT, "part %zu: unknown role %d", i, (int)p->role);
    braid__v1__part__init(dst);
    dst->role = (Braid__V1__Role)p->role;
    braid_status st;
    if (p->chunk_id) {
        if ((st = braid__check_chunk_id(p->chunk_id)) != BRAID_OK)
            return braid__error(st, "part %zu: '%.80s' is not a chunk id (64 lower-case hex)", i,
                                p->chunk_id);
        dst->content_case = BRAID__V1__PART__CONTENT_CHUNK_ID;
        dst->chunk_id = (char *)p->chunk_id;
    } else if (p->text) {
        if ((st = check_text("part", i, p->text)) != BRAID_OK)
            return st;
        dst->content_case = BRAID__V1__PART__CONTENT_TEXT;
        dst->text = (char *)p->text;
    } else {
        braid__v1__token_ids__init(toks);
        toks->ids = (int32_t *)p->tokens;
        toks->n_ids = p->n_tokens;
        dst->content_case = BRAID__V1__PART__CONTENT_TOKENS;
        dst->tokens = toks;
    }
    return BRAID_OK;
}

static bool in(float v, float lo, float hi)
{
    return v >= lo && v <= hi; /* false for NaN */
}

/* Checks the sampling ranges of proto/braid.proto and fills the message. */
static braid_status build_sampling(const braid_sampling *s, gen_msg *g)
{
    const char *bad = NULL;
    if (s->has_temperature && !in(s->temperature, 0, 100))
        bad = "temperature must be in [0, 100]";
    else if (s->has_top_p && !(in(s->top_p, 0, 1) && s->top_p > 0))
        bad = "top_p must be in (0, 1]";
    else if (!(in(s->min_p, 0, 1) && s->min_p < 1))
        bad = "min_p must be in [0, 1)";
    else if (s->has_repetition_penalty &&
             !(in(s->repetition_penalty, 0, 10) && s->repetition_penalty > 0))
        bad = "repetition_penalty must be in (0, 10]";
    else if (!in(s->presence_penalty, -2, 2) || !in(s->frequency_penalty, -2, 2))
        bad = "presence and frequency penalties must be in [-2, 2]";
    else if (s->has_logprobs && (s->logprobs < 0 || s->logprobs > 20))
        bad = "logprobs must be in 0..20";
    if (bad)
        return braid__error(BRAID_INVALID_ARGUMENT, "%s", bad);
    Braid__V1__SamplingParams *sp = &g->sp;
    braid__v1__sampling_params__init(sp);
    braid__v1__float_value__init(&g->temperature);
    braid__v1__float_value__init(&g->top_p);
    braid__v1__float_value__init(&g->rep);
    braid__v1__uint64_value__init(&g->seed);
    braid__v1__int32_value__init(&g->logprobs);
    g->temperature.value = s->temperature;
    g->top_p.value = s->top_p;
    g->rep.value = s->repetition_penalty;
    g->seed.value = s->seed;
    g->logprobs.value = s->logprobs;
    sp->temperature = s->has_temperature ? &g->temperature : NULL;
    sp->top_p = s->has_top_p ? &g->top_p : NULL;
    sp->repetition_penalty = s->has_repetition_penalty ? &g->rep : NULL;
    sp->seed = s->has_seed ? &g->seed : NULL;
    sp->logprobs = s->has_logprobs ? &g->logprobs : NULL;
    sp->top_k = s->top_k;
    sp->min_p = s->min_p;
    sp->presence_penalty = s->presence_penalty;
    sp->frequency_penalty = s->frequency_penalty;
    return BRAID_OK;
}

static braid_status build_request(const braid_gen_request *r, gen_msg *g)
{
    memset(g, 0, sizeof *g);
    Braid__V1__GenerateRequest *q = &g->req;
    braid__v1__generate_request__init(q);
    if (!r->parts || r->n_parts == 0)
        return braid__error(BRAID_INVALID_ARGUMENT, "a generation needs at least one part");
    if (r->ns && strlen(r->ns) > 63)
        return braid__error(BRAID_INVALID_ARGUMENT, "namespace is longer than 63 bytes");
    if ((unsigned)r->reuse > BRAID_REUSE_REPAIR)
        return braid__error(BRAID_INVALID_ARGUMENT, "unknown reuse mode %d", (int)r->reuse);
    if ((r->n_stop && !r->stop) || (r->n_stop_token_ids && !r->stop_token_ids))
        return braid__error(BRAID_INVALID_ARGUMENT, "n_stop/n_stop_token_ids without an array");
    for (size_t i = 0; i < r->n_stop; i++) {
        braid_status st = r->stop[i] ? check_text("stop string", i, r->stop[i])
                                     : braid__error(BRAID_INVALID_ARGUMENT, "stop string is NULL");
        if (st != BRAID_OK)
            return st;
    }
    if (r->client_request_id &&
        !braid__utf8_valid(r->client_request_id, strlen(r->client_request_id)))
        return braid__error(BRAID_INVALID_ARGUMENT, "client_request_id is not valid UTF-8");
    g->parts = bi_mallocarray(r->n_parts, sizeof *g->parts);
    g->part_ptrs = bi_mallocarray(r->n_parts, sizeof *g->part_ptrs);
    g->toks = bi_mallocarray(r->n_parts, sizeof *g->toks);
    if (!g->parts || !g->part_ptrs || !g->toks)
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    for (size_t i = 0; i < r->n_parts; i++) {
        braid_status st = build_part(&r->parts[i], i, &g->parts[i], &g->toks[i]);
        if (st != BRAID_OK)
            return st;
        g->part_ptrs[i] = &g->parts[i];
    }
    braid_status st = build_sampling(&r->sampling, g);
    if (st != BRAID_OK)
        return st;
    q->namespace_ = (char *)(r->ns ? r->ns : "");
    q->n_parts = r->n_parts;
    q->parts = g->part_ptrs;
    q->sampling = &g->sp;
    q->max_tokens = r->max_tokens;
    q->n_stop = r->n_stop;
    q->stop = (char **)r->stop;
    q->n_stop_token_ids = r->n_stop_token_ids;
    q->stop_token_ids = (int32_t *)r->stop_token_ids;
    q->ignore_eos = r->ignore_eos != 0;
    q->reuse_mode = (Braid__V1__ReuseMode)r->reuse;
    q->retain_output = r->retain_output != 0;
    q->no_generation_prompt = r->no_generation_prompt != 0;
    q->timeout_ms = r->timeout_ms;
    if (r->client_request_id) {
        q->client_request_id = (char *)r->client_request_id;
    } else {
        /* an id of our own, so that braidd recognises this call if nng
         * resends it after a dropped connection */
        snprintf(g->rid, sizeof g->rid, "c-%08x%08x", nng_random(), nng_random());
        q->client_request_id = g->rid;
    }
    return BRAID_OK;
}

/* --- stream objects --- */

static braid_stream *stream_new(braid_client *c, uint64_t id, uint64_t last_seq)
{
    braid_stream *s = bi_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->c = c;
    s->id = id;
    s->last_seq = s->buffered_seq = last_seq;
    return s;
}

braid_stream *braid__stream_new_detached(uint64_t id, uint64_t last_seq)
{
    return stream_new(NULL, id, last_seq);
}

braid_status braid_generate_start(braid_client *c, const braid_gen_request *req, braid_stream **out)
{
    if (!c || !req || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client, request and out are required");
    gen_msg g;
    braid_status st = build_request(req, &g);
    Braid__V1__GenerateReply *r = NULL;
    if (st == BRAID_OK)
        st = braid__call(c, "braid.v1.Braid/Generate", &g.req.base,
                         &braid__v1__generate_reply__descriptor, c->timeout_ms,
                         (ProtobufCMessage **)&r, NULL);
    gen_msg_free(&g);
    if (st != BRAID_OK)
        return st;
    uint64_t id = r->stream_id;
    braid__v1__generate_reply__free_unpacked(r, NULL);
    if (!(*out = stream_new(c, id, 0)))
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    return BRAID_OK;
}

braid_status braid_stream_attach(braid_client *c, uint64_t stream_id, uint64_t last_seq,
                                 braid_stream **out)
{
    if (!c || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client and out are required");
    if (!(*out = stream_new(c, stream_id, last_seq)))
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    return BRAID_OK;
}

uint64_t braid_stream_id(const braid_stream *s)
{
    return s ? s->id : 0;
}

uint64_t braid_stream_last_seq(const braid_stream *s)
{
    return s ? s->last_seq : 0;
}

/* --- the buffer --- */

/* Queues an unpacked reply (taking it), keeping only the events past
 * buffered_seq, which must follow it without a gap. */
static braid_status feed_reply(braid_stream *s, Braid__V1__StreamNextReply *r)
{
    size_t skip = 0;
    while (skip < r->n_events && r->events[skip]->seq <= s->buffered_seq)
        skip++;
    braid_status st = BRAID_OK;
    for (size_t i = skip; i < r->n_events && st == BRAID_OK; i++) {
        const Braid__V1__StreamEvent *e = r->events[i];
        if (e->seq != s->buffered_seq + 1 + (i - skip))
            st =
                braid__error(BRAID_DATA_LOSS, "stream %llu: event seq %llu where %llu was expected",
                             (unsigned long long)s->id, (unsigned long long)e->seq,
                             (unsigned long long)(s->buffered_seq + 1 + (i - skip)));
        else if (e->event_case != BRAID__V1__STREAM_EVENT__EVENT_TOKEN &&
                 e->event_case != BRAID__V1__STREAM_EVENT__EVENT_FINAL)
            st = braid__error(BRAID_INTERNAL, "stream %llu: event %llu is empty",
                              (unsigned long long)s->id, (unsigned long long)e->seq);
    }
    reply_node *n = NULL;
    if (st == BRAID_OK && skip < r->n_events && !(n = bi_calloc(1, sizeof *n)))
        st = braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    if (!n) {
        braid__v1__stream_next_reply__free_unpacked(r, NULL);
        return st;
    }
    n->reply = r;
    n->pos = skip;
    s->buffered_seq = r->events[r->n_events - 1]->seq;
    if (s->tail)
        s->tail->next = n;
    else
        s->head = n;
    s->tail = n;
    return BRAID_OK;
}

braid_status braid__stream_feed(braid_stream *s, const uint8_t *buf, size_t len)
{
    Braid__V1__StreamNextReply *r = braid__v1__stream_next_reply__unpack(NULL, len, buf);
    if (!r)
        return braid__error(BRAID_INTERNAL, "StreamNextReply does not parse");
    return feed_reply(s, r);
}

/* Frees the head reply once every event in it was returned. */
static void drop_consumed(braid_stream *s)
{
    reply_node *h = s->head;
    if (!h || h->pos < h->reply->n_events)
        return;
    s->head = h->next;
    if (!s->head)
        s->tail = NULL;
    braid__v1__stream_next_reply__free_unpacked(h->reply, NULL);
    bi_free(h);
}

static void logprob_from(braid_logprob *dst, const Braid__V1__TokenLogprob *src)
{
    dst->token_id = src->token_id;
    dst->logprob = src->logprob;
    dst->text = src->text ? src->text : "";
}

static void final_from(braid_final *f, const Braid__V1__FinalEvent *e)
{
    memset(f, 0, sizeof *f);
    f->finish_reason = (braid_finish_reason)e->finish_reason;
    if (e->status) {
        f->status = (braid_status)e->status->code;
        snprintf(f->message, sizeof f->message, "%s", e->status->message ? e->status->message : "");
    }
    if (e->usage) {
        f->usage = (braid_usage){.prompt_tokens = e->usage->prompt_tokens,
                                 .cached_prompt_tokens = e->usage->cached_prompt_tokens,
                                 .completion_tokens = e->usage->completion_tokens,
                                 .ttft_ms = e->usage->time_to_first_token_ms,
                                 .total_ms = e->usage->total_time_ms};
    }
    snprintf(f->output_chunk_id, sizeof f->output_chunk_id, "%s",
             e->output_chunk_id ? e->output_chunk_id : "");
    snprintf(f->client_request_id, sizeof f->client_request_id, "%s",
             e->client_request_id ? e->client_request_id : "");
}

/* Converts the head's next event into *ev. */
static braid_status take_event(braid_stream *s, braid_event *ev)
{
    const Braid__V1__StreamEvent *e = s->head->reply->events[s->head->pos++];
    memset(ev, 0, sizeof *ev);
    ev->seq = e->seq;
    s->last_seq = e->seq;
    if (e->event_case == BRAID__V1__STREAM_EVENT__EVENT_FINAL) {
        ev->kind = BRAID_EVENT_FINAL;
        final_from(&ev->final, e->final);
        ev->text = e->final->text ? e->final->text : "";
        ev->text_len = strlen(ev->text);
        s->finished = true;
        return BRAID_OK;
    }
    const Braid__V1__TokenEvent *t = e->token;
    ev->kind = BRAID_EVENT_TOKEN;
    ev->token_id = t->token_id;
    ev->text = t->text ? t->text : "";
    ev->text_len = strlen(ev->text);
    if (t->logprob) {
        ev->has_logprob = 1;
        logprob_from(&ev->logprob, t->logprob);
    }
    if (t->n_top_logprobs) {
        if (bi_array_reserve((void **)&s->top, &s->top_cap, t->n_top_logprobs, sizeof *s->top) !=
            BI_OK)
            return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
        for (size_t i = 0; i < t->n_top_logprobs; i++)
            logprob_from(&s->top[i], t->top_logprobs[i]);
        ev->top_logprobs = s->top;
        ev->n_top_logprobs = t->n_top_logprobs;
    }
    return BRAID_OK;
}

/* One StreamNext call acknowledging buffered_seq. */
static braid_status poll_once(braid_stream *s, int wait_ms, int timeout_ms, bool *transport)
{
    Braid__V1__StreamNextRequest req = BRAID__V1__STREAM_NEXT_REQUEST__INIT;
    req.stream_id = s->id;
    req.ack_seq = s->buffered_seq;
    req.max_wait_ms = (uint32_t)wait_ms;
    Braid__V1__StreamNextReply *r = NULL;
    braid_status st = braid__call(s->c, "braid.v1.Braid/StreamNext", &req.base,
                                  &braid__v1__stream_next_reply__descriptor, timeout_ms,
                                  (ProtobufCMessage **)&r, transport);
    return st == BRAID_OK ? feed_reply(s, r) : st;
}

/* Polls until something is buffered. A poll that gets no reply is sent again
 * with the same ack_seq: the server still holds every event after it. */
static braid_status fill(braid_stream *s)
{
    if (!s->head && !s->c)
        return braid__error(BRAID_UNAVAILABLE, "stream has no client and nothing buffered");
    int failures = 0;
    while (!s->head) {
        bool transport;
        int wait = s->c->poll_wait_ms;
        braid_status st = poll_once(s, wait, wait + s->c->timeout_ms, &transport);
        if (st == BRAID_OK)
            failures = 0;
        else if (!transport || ++failures >= POLL_ATTEMPTS)
            return st;
    }
    return BRAID_OK;
}

braid_status braid_stream_next(braid_stream *s, braid_event *ev)
{
    if (!s || !ev)
        return braid__error(BRAID_INVALID_ARGUMENT, "stream and ev are required");
    drop_consumed(s);
    if (s->finished)
        return braid__error(BRAID_OUT_OF_RANGE, "stream %llu has ended", (unsigned long long)s->id);
    braid_status st = fill(s);
    return st == BRAID_OK ? take_event(s, ev) : st;
}

braid_status braid_stream_cancel(braid_stream *s)
{
    if (!s || !s->c)
        return braid__error(BRAID_INVALID_ARGUMENT, "stream with a client is required");
    Braid__V1__CancelRequest req = BRAID__V1__CANCEL_REQUEST__INIT;
    req.stream_id = s->id;
    Braid__V1__CancelReply *r = NULL;
    braid_status st =
        braid__call(s->c, "braid.v1.Braid/Cancel", &req.base, &braid__v1__cancel_reply__descriptor,
                    s->c->timeout_ms, (ProtobufCMessage **)&r, NULL);
    if (st == BRAID_OK)
        braid__v1__cancel_reply__free_unpacked(r, NULL);
    return st;
}

static void stream_free(braid_stream *s)
{
    while (s->head) {
        s->head->pos = s->head->reply->n_events;
        drop_consumed(s);
    }
    bi_free(s->top);
    bi_free(s);
}

void braid_stream_detach(braid_stream *s)
{
    if (s)
        stream_free(s);
}

void braid_stream_close(braid_stream *s)
{
    if (!s)
        return;
    if (s->c && !s->finished) {
        braid_stream_cancel(s);
    } else if (s->c) {
        /* Acknowledge the final event so the server forgets the stream now
         * rather than after its idle timeout; NOT_FOUND is the expected answer. */
        drop_consumed(s);
        bool transport;
        poll_once(s, 1, s->c->timeout_ms, &transport);
    }
    stream_free(s);
}

/* --- the callback form --- */

braid_status braid_generate(braid_client *c, const braid_gen_request *req, braid_event_cb cb,
                            void *user, braid_final *final)
{
    braid_stream *s;
    braid_status st = braid_generate_start(c, req, &s);
    if (st != BRAID_OK)
        return st;
    bool cancelled = false;
    braid_event ev;
    while ((st = braid_stream_next(s, &ev)) == BRAID_OK) {
        if (cb && cb(user, &ev) && !cancelled) {
            cancelled = true;
            braid_stream_cancel(s);
        }
        if (ev.kind == BRAID_EVENT_FINAL) {
            if (final)
                *final = ev.final;
            st = ev.final.status;
            if (st != BRAID_OK)
                braid__error(st, "%s", ev.final.message);
            break;
        }
    }
    /* Closing polls or cancels; keep the message of what went wrong. */
    char msg[256];
    snprintf(msg, sizeof msg, "%s", braid_last_error());
    braid_stream_close(s);
    braid__error(st, "%s", st == BRAID_OK ? "" : msg);
    return st;
}

const char *braid_finish_reason_name(braid_finish_reason r)
{
    static const char *const names[] = {"unspecified", "stop", "length", "cancelled", "error"};
    return (unsigned)r < 5 ? names[r] : "unknown";
}
