/* svc_streaming.c - Generate, StreamNext long polls, Cancel, and idle streams. */
#define BI_LOG_MODULE "svc" /* before any include: see common/log.h */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/hash.h"
#include "common/log.h"
#include "core/engine.h"
#include "svc_priv.h"
#include "svc_validate.h"
#include "tokenizer/tokenizer.h"

#define DEFAULT_WAIT_MS 10000
/* Below nng REQ's default resend time (60 s), so a long poll is never resent. */
#define MAX_WAIT_MS 30000

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct retry_find {
    const char *rid;
    uint64_t digest;
    svc_stream *found;
} retry_find;

static void retry_match(void *user, svc_stream *st)
{
    retry_find *f = user;
    if (!f->found && !st->abandoned && st->digest == f->digest && !strcmp(st->rid, f->rid))
        f->found = st;
}

/* The open stream of an earlier Generate with the same client_request_id
 * and the same request bytes, or NULL: nng resends a request whose reply a
 * dropped connection lost, and the retry must not start a second generation. */
static svc_stream *generate_retry(svc_server *s, const char *rid, uint64_t digest)
{
    retry_find f = {rid, digest, NULL};
    if (rid && rid[0])
        svc_streams_each(&s->streams, retry_match, &f);
    return f.found;
}

void svc_generate(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    if (s->phase_now != SVC_SERVING) {
        svc_fail(res, BI_UNAVAILABLE, "braidd is shutting down; no new generations");
        return;
    }
    Braid__V1__GenerateRequest *rq =
        svc_unpack(&braid__v1__generate_request__descriptor, &env->payload, res);
    if (!rq)
        return;
    const uint64_t digest = bi_fnv1a(env->payload.data, env->payload.len);
    svc_stream *prev = generate_retry(s, rq->client_request_id, digest);
    if (prev) {
        Braid__V1__GenerateReply *reply = svc_arena_alloc(res, sizeof *reply);
        if (reply) {
            braid__v1__generate_reply__init(reply);
            reply->stream_id = prev->id;
            res->reply = &reply->base;
        }
        BI_LOGI(prev->rid, "Generate repeated (same client_request_id and request): stream %016llx",
                (unsigned long long)prev->id);
        braid__v1__generate_request__free_unpacked(rq, NULL);
        return;
    }
    svc_gen g;
    svc_stream *st = NULL;
    eng_stats es;
    uint64_t seed = ++s->seed_counter ^ (uint64_t)mono_ms() * 0x9e3779b97f4a7c15ULL;
    bi_status rc = svc_gen_from_wire(rq, eng_engine_max_ctx(s->eng), seed, mono_ms(), &g,
                                     res->message, sizeof res->message);
    if (rc != BI_OK) {
        res->status = rc;
    } else {
        if (s->streams.n >= (size_t)s->cfg->max_streams)
            svc_fail(res, BI_RESOURCE_EXHAUSTED,
                     "%zu streams are open, the limit (braidd --max-streams); drain or cancel "
                     "some",
                     s->streams.n);
        else if (eng_stats_get(s->eng, &es) == BI_OK && es.queued >= s->cfg->max_queued)
            svc_fail(res, BI_RESOURCE_EXHAUSTED,
                     "%d generations are queued, the limit (braidd --max-queued)", es.queued);
        else if ((rc = svc_streams_open(&s->streams, rq->client_request_id, &st)) != BI_OK)
            svc_fail(res, rc, "cannot open a stream");
        if (st) {
            uint64_t gen_id = 0;
            st->last_poll_ms = uv_now(s->loop);
            st->digest = digest;
            rc = eng_generate(s->eng, &g.p, svc_stream_on_event, st, &gen_id, res->message,
                              sizeof res->message);
            if (rc != BI_OK) {
                res->status = rc; /* no event follows a refused generation */
                svc_streams_close(&s->streams, st);
            } else {
                st->gen_id = gen_id;
                Braid__V1__GenerateReply *reply = svc_arena_alloc(res, sizeof *reply);
                if (reply) {
                    braid__v1__generate_reply__init(reply);
                    reply->stream_id = st->id;
                    res->reply = &reply->base;
                }
                BI_LOGD(st->rid[0] ? st->rid : NULL, "stream %016llx: generation %llu",
                        (unsigned long long)st->id, (unsigned long long)gen_id);
            }
        }
        svc_gen_fini(&g);
    }
    braid__v1__generate_request__free_unpacked(rq, NULL);
}

static Braid__V1__TokenLogprob *logprob_wire(svc_server *s, svc_result *res,
                                             const eng_logprob_entry *e)
{
    Braid__V1__TokenLogprob *lp = svc_arena_alloc(res, sizeof *lp);
    if (!lp)
        return NULL;
    braid__v1__token_logprob__init(lp);
    lp->token_id = e->token;
    lp->logprob = e->logprob;
    const struct eng_tokenizer *tok = eng_engine_tokenizer(s->eng);
    const char *bytes;
    size_t n;
    if (tok && eng_tokenizer_token_bytes(tok, e->token, &bytes, &n) == BI_OK) {
        char *t = svc_arena_alloc(res, n + 1);
        if (t) {
            memcpy(t, bytes, n);
            lp->text = svc_wire_str(res, t, n);
        }
    }
    return lp;
}

static void token_wire(svc_server *s, svc_result *res, const svc_event *e,
                       Braid__V1__TokenEvent *te)
{
    braid__v1__token_event__init(te);
    te->token_id = e->token;
    te->text = svc_wire_str(res, e->text, e->text_len);
    if (!e->lp)
        return;
    te->logprob = logprob_wire(s, res, &e->lp->chosen);
    te->top_logprobs = svc_arena_alloc(res, (size_t)e->lp->n_top * sizeof *te->top_logprobs);
    if (!te->top_logprobs)
        return;
    for (int i = 0; i < e->lp->n_top; i++)
        if ((te->top_logprobs[te->n_top_logprobs] = logprob_wire(s, res, &e->lp->top[i])))
            te->n_top_logprobs++;
}

static Braid__V1__FinishReason finish_wire(eng_finish f)
{
    switch (f) {
    case ENG_FINISH_STOP:
        return BRAID__V1__FINISH_REASON__FINISH_REASON_STOP;
    case ENG_FINISH_LENGTH:
        return BRAID__V1__FINISH_REASON__FINISH_REASON_LENGTH;
    case ENG_FINISH_CANCELLED:
        return BRAID__V1__FINISH_REASON__FINISH_REASON_CANCELLED;
    case ENG_FINISH_DEADLINE:
    case ENG_FINISH_ERROR:
        return BRAID__V1__FINISH_REASON__FINISH_REASON_ERROR;
    default:
        return BRAID__V1__FINISH_REASON__FINISH_REASON_UNSPECIFIED;
    }
}

/* The final event's wire form; NULL when out of memory. */
static Braid__V1__FinalEvent *final_wire(svc_result *res, const svc_stream *st, const svc_event *e)
{
    Braid__V1__FinalEvent *fe = svc_arena_alloc(res, sizeof *fe);
    Braid__V1__Status *status = svc_arena_alloc(res, sizeof *status);
    Braid__V1__Usage *u = svc_arena_alloc(res, sizeof *u);
    char *chunk = svc_arena_alloc(res, 65);
    if (!fe || !status || !u || !chunk)
        return NULL;
    braid__v1__final_event__init(fe);
    braid__v1__status__init(status);
    braid__v1__usage__init(u);
    bi_status code = e->finish == ENG_FINISH_DEADLINE    ? BI_DEADLINE_EXCEEDED
                     : e->finish == ENG_FINISH_CANCELLED ? BI_CANCELLED
                                                         : e->status;
    if (st->lost && code == BI_OK)
        code = BI_DATA_LOSS;
    status->code = (Braid__V1__Code)bi_status_rpc_code(code);
    const char *msg = e->message ? e->message
                      : st->lost ? "events were lost: the server ran out of memory"
                                 : "";
    status->message = svc_wire_str(res, msg, strlen(msg));
    u->prompt_tokens = (uint32_t)e->usage.prompt_tokens;
    u->cached_prompt_tokens = (uint32_t)e->usage.cached_tokens;
    u->completion_tokens = (uint32_t)e->usage.generated_tokens;
    u->time_to_first_token_ms = e->usage.ttft_ms;
    u->total_time_ms = e->usage.total_ms;
    fe->finish_reason = finish_wire(e->finish);
    fe->status = status;
    fe->usage = u;
    if (e->usage.has_output_chunk) {
        eng_chunk_id_hex(&e->usage.output_chunk, chunk);
        fe->output_chunk_id = chunk;
    }
    fe->text = svc_wire_str(res, e->text, e->text_len);
    fe->client_request_id = st->rid;
    return fe;
}

/* Builds the StreamNext reply from the buffer (held under the table lock by
 * the caller, until the reply is packed). */
static void events_wire(svc_server *s, svc_result *res, svc_stream *st, uint32_t max_events)
{
    Braid__V1__StreamNextReply *reply = svc_arena_alloc(res, sizeof *reply);
    size_t n = st->n_ev;
    if (max_events && n > max_events)
        n = max_events;
    Braid__V1__StreamEvent *evs = svc_arena_alloc(res, (n ? n : 1) * sizeof *evs);
    Braid__V1__StreamEvent **ptrs = svc_arena_alloc(res, (n ? n : 1) * sizeof *ptrs);
    Braid__V1__TokenEvent *toks = svc_arena_alloc(res, (n ? n : 1) * sizeof *toks);
    if (!reply || !evs || !ptrs || !toks) {
        svc_fail(res, BI_NOMEM, "out of memory building events");
        return;
    }
    braid__v1__stream_next_reply__init(reply);
    for (size_t i = 0; i < n; i++) {
        const svc_event *e = &st->ev[i];
        Braid__V1__StreamEvent *we = &evs[i];
        braid__v1__stream_event__init(we);
        we->seq = e->seq;
        if (e->final) {
            we->event_case = BRAID__V1__STREAM_EVENT__EVENT_FINAL;
            if (!(we->final = final_wire(res, st, e))) {
                svc_fail(res, BI_NOMEM, "out of memory building events");
                return;
            }
        } else {
            we->event_case = BRAID__V1__STREAM_EVENT__EVENT_TOKEN;
            token_wire(s, res, e, &toks[i]);
            we->token = &toks[i];
        }
        ptrs[i] = we;
        if (e->seq > st->delivered_seq)
            st->delivered_seq = e->seq;
    }
    reply->events = ptrs;
    reply->n_events = n;
    res->reply = &reply->base;
}

/* Answers c (a poll on st) with what st holds, now. */
static void poll_reply(svc_server *s, svc_call *c, svc_stream *st, uint32_t max_events)
{
    svc_result res = {.status = BI_OK};
    if (st->waiter == c)
        st->waiter = NULL;
    uv_timer_stop(&c->timer);
    st->last_poll_ms = uv_now(s->loop);
    svc_streams_lock(&s->streams);
    events_wire(s, &res, st, max_events);
    svc_call_reply(s, c, &res); /* packs under the lock: the buffer may not move */
    svc_streams_unlock(&s->streams);
}

void svc_poll_answer(svc_server *s, svc_call *c)
{
    poll_reply(s, c, c->stream, c->max_events);
}

static void poll_timeout(uv_timer_t *t)
{
    svc_call *c = t->data;
    if (c->state == CALL_PARKED && c->stream)
        svc_poll_answer(c->srv, c);
}

static bool stream_has_events(svc_server *s, svc_stream *st)
{
    svc_streams_lock(&s->streams);
    bool any = st->n_ev > 0;
    svc_streams_unlock(&s->streams);
    return any;
}

void svc_stream_next(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res)
{
    Braid__V1__StreamNextRequest *rq =
        svc_unpack(&braid__v1__stream_next_request__descriptor, &env->payload, res);
    if (!rq)
        return;
    svc_stream *st = svc_streams_find(&s->streams, rq->stream_id);
    if (!st) {
        svc_fail(res, BI_NOT_FOUND,
                 "no stream %016llx (finished and acknowledged, dropped after the idle "
                 "timeout, or never opened)",
                 (unsigned long long)rq->stream_id);
    } else if (svc_stream_ack(st, rq->ack_seq)) {
        /* The client has the final event: the stream is done. */
        if (st->waiter)
            svc_poll_answer(s, st->waiter);
        svc_streams_close(&s->streams, st);
        Braid__V1__StreamNextReply *reply = svc_arena_alloc(res, sizeof *reply);
        if (reply) {
            braid__v1__stream_next_reply__init(reply);
            res->reply = &reply->base;
        }
    } else {
        if (st->waiter) /* a newer poll (e.g. after a reconnect) replaces it */
            svc_poll_answer(s, st->waiter);
        uint64_t wait = rq->max_wait_ms ? rq->max_wait_ms : DEFAULT_WAIT_MS;
        if (env->timeout_ms && env->timeout_ms < wait)
            wait = env->timeout_ms;
        if (wait > MAX_WAIT_MS)
            wait = MAX_WAIT_MS;
        st->last_poll_ms = uv_now(s->loop);
        c->stream = st;
        c->max_events = rq->max_events;
        if (stream_has_events(s, st) || s->phase_now >= SVC_CLOSING) {
            res->parked = true; /* answered right here */
            poll_reply(s, c, st, rq->max_events);
        } else {
            st->waiter = c;
            c->state = CALL_PARKED;
            res->parked = true;
            uv_timer_start(&c->timer, poll_timeout, wait, 0);
        }
    }
    braid__v1__stream_next_request__free_unpacked(rq, NULL);
}

void svc_streams_deliver(svc_server *s)
{
    svc_stream *st;
    while ((st = svc_streams_pop_dirty(&s->streams)))
        if (st->waiter)
            svc_poll_answer(s, st->waiter);
}

void svc_cancel(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res)
{
    (void)c;
    Braid__V1__CancelRequest *rq =
        svc_unpack(&braid__v1__cancel_request__descriptor, &env->payload, res);
    if (!rq)
        return;
    svc_stream *st = svc_streams_find(&s->streams, rq->stream_id);
    if (!st) {
        svc_fail(res, BI_NOT_FOUND, "no stream %016llx", (unsigned long long)rq->stream_id);
    } else {
        /* NOT_FOUND from the engine means it finished already: nothing to do. */
        eng_cancel(s->eng, st->gen_id);
        Braid__V1__CancelReply *reply = svc_arena_alloc(res, sizeof *reply);
        if (reply) {
            braid__v1__cancel_reply__init(reply);
            res->reply = &reply->base;
        }
    }
    braid__v1__cancel_request__free_unpacked(rq, NULL);
}

static bool stream_finished(svc_server *s, svc_stream *st, uint64_t *last_seq)
{
    svc_streams_lock(&s->streams);
    bool f = st->finished;
    *last_seq = st->last_seq;
    svc_streams_unlock(&s->streams);
    return f;
}

static void sweep_one(void *user, svc_stream *st)
{
    svc_server *s = user;
    uint64_t last;
    if (st->waiter || (double)(uv_now(s->loop) - st->last_poll_ms) < s->cfg->stream_idle_s * 1000)
        return;
    if (stream_finished(s, st, &last)) {
        BI_LOGD(st->rid[0] ? st->rid : NULL, "stream %016llx: dropped after the idle timeout",
                (unsigned long long)st->id);
        svc_streams_close(&s->streams, st);
    } else if (!st->abandoned) {
        BI_LOGI(st->rid[0] ? st->rid : NULL,
                "stream %016llx: nobody polled it for %.1f s; cancelling its generation",
                (unsigned long long)st->id, s->cfg->stream_idle_s);
        st->abandoned = true;
        eng_cancel(s->eng, st->gen_id);
    }
}

void svc_streams_sweep(uv_timer_t *t)
{
    svc_server *s = t->data;
    svc_streams_each(&s->streams, sweep_one, s);
    svc_shutdown_progress(s);
}

static void cancel_one(void *user, svc_stream *st)
{
    svc_server *s = user;
    uint64_t last;
    if (!stream_finished(s, st, &last))
        eng_cancel(s->eng, st->gen_id);
}

void svc_streams_cancel_all(svc_server *s)
{
    svc_streams_each(&s->streams, cancel_one, s);
}

typedef struct settle_ctx {
    svc_server *s;
    bool delivered_too, settled;
} settle_ctx;

static void settle_one(void *user, svc_stream *st)
{
    settle_ctx *x = user;
    uint64_t last;
    if (!stream_finished(x->s, st, &last) || (x->delivered_too && st->delivered_seq < last))
        x->settled = false;
}

bool svc_streams_settled(svc_server *s, bool delivered_too)
{
    settle_ctx x = {s, delivered_too, true};
    svc_streams_each(&s->streams, settle_one, &x);
    return x.settled;
}
