/* svc_server.c - nng REP contexts, the loop-thread dispatch, replies and shutdown. */
#define BI_LOG_MODULE "svc" /* before any include: see common/log.h */
#include "svc_server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/supplemental/tls/tls.h>

#include "common/alloc.h"
#include "common/log.h"
#include "svc_priv.h"
#include "svc_validate.h"

#define LINGER_MS      200  /* after the last reply, before the socket closes */
#define CANCEL_WAIT_MS 5000 /* for cancelled generations to report before closing anyway */

void svc_fail(svc_result *res, bi_status status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->message, sizeof res->message, fmt, ap);
    va_end(ap);
    res->status = status;
}

void *svc_arena_alloc(svc_result *res, size_t n)
{
    svc_arena *a = &res->arena;
    if (bi_array_reserve((void **)&a->ptrs, &a->cap, a->n + 1, sizeof *a->ptrs) != BI_OK)
        return NULL;
    void *p = bi_calloc(1, n);
    if (p)
        a->ptrs[a->n++] = p;
    return p;
}

char *svc_wire_str(svc_result *res, const char *s, size_t len)
{
    if (!s)
        return (char *)"";
    if (bi_utf8_valid(s, len) && s[len] == 0)
        return (char *)s;
    char *c = svc_utf8_sanitize(s, len);
    svc_arena *a = &res->arena;
    if (!c || bi_array_reserve((void **)&a->ptrs, &a->cap, a->n + 1, sizeof *a->ptrs) != BI_OK) {
        bi_free(c);
        return (char *)"";
    }
    a->ptrs[a->n++] = c;
    return c;
}

static void arena_free(svc_arena *a)
{
    for (size_t i = 0; i < a->n; i++)
        bi_free(a->ptrs[i]);
    bi_free(a->ptrs);
    memset(a, 0, sizeof *a);
}

void *svc_unpack(const ProtobufCMessageDescriptor *d, const ProtobufCBinaryData *payload,
                 svc_result *res)
{
    void *m = protobuf_c_message_unpack(d, NULL, payload->len, payload->data);
    if (!m)
        svc_fail(res, BI_INVALID_ARGUMENT, "payload is not a %s (%zu bytes)", d->name,
                 payload->len);
    return m;
}

bool svc_need_engine(svc_server *s, svc_result *res)
{
    if (s->eng)
        return true;
    svc_fail(res, BI_UNAVAILABLE, "no model loaded (start braidd with --model or --dummy)");
    return false;
}

static void call_recv(svc_call *c)
{
    c->state = CALL_RECV;
    nng_ctx_recv(c->ctx, c->aio);
}

/* nng thread: hand a received request to the loop, or re-arm after a send. */
static void call_aio_cb(void *arg)
{
    svc_call *c = arg;
    svc_server *s = c->srv;
    int rv = nng_aio_result(c->aio);
    pthread_mutex_lock(&s->lock);
    bool closing = s->closing;
    pthread_mutex_unlock(&s->lock);

    if (c->state == CALL_SEND) {
        if (rv != 0)
            nng_msg_free(nng_aio_get_msg(c->aio));
        c->state = CALL_IDLE;
        if (!closing)
            call_recv(c);
        return;
    }
    if (rv != 0) {
        c->state = CALL_IDLE;
        if (rv != NNG_ECLOSED && rv != NNG_ECANCELED && !closing)
            call_recv(c);
        return;
    }
    c->req = nng_aio_get_msg(c->aio);
    c->state = CALL_BUSY;
    c->next = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->ready_tail)
        s->ready_tail->next = c;
    else
        s->ready_head = c;
    s->ready_tail = c;
    pthread_mutex_unlock(&s->lock);
    uv_async_send(&s->wake);
}

/* Packs an RpcReply into a fresh nng message; NULL when out of memory. */
static nng_msg *reply_pack(uint64_t call_id, svc_result *res)
{
    Braid__V1__RpcReply env = BRAID__V1__RPC_REPLY__INIT;
    Braid__V1__Status st = BRAID__V1__STATUS__INIT;
    bi_status wire = bi_status_rpc_code(res->status);
    st.code = (Braid__V1__Code)wire;
    const char *msg = res->message[0] ? res->message : (wire ? bi_strerror(res->status) : "");
    st.message = svc_wire_str(res, msg, strlen(msg));
    env.call_id = call_id;
    env.status = &st;
    uint8_t *body = NULL;
    if (wire == BI_OK && res->reply) {
        size_t n = protobuf_c_message_get_packed_size(res->reply);
        if (!(body = bi_malloc(n)))
            return NULL;
        protobuf_c_message_pack(res->reply, body);
        env.payload.data = body;
        env.payload.len = n;
    }
    nng_msg *m = NULL;
    size_t n = braid__v1__rpc_reply__get_packed_size(&env);
    if (nng_msg_alloc(&m, n) == 0)
        braid__v1__rpc_reply__pack(&env, nng_msg_body(m));
    bi_free(body);
    return m;
}

void svc_call_reply(svc_server *s, svc_call *c, svc_result *res)
{
    if (res->status != BI_OK)
        BI_LOGD(NULL, "call %llu: %s: %s", (unsigned long long)c->call_id,
                bi_status_name(res->status), res->message);
    nng_msg *reply = reply_pack(c->call_id, res);
    arena_free(&res->arena);
    s->calls_in_flight--;
    c->stream = NULL;
    if (!reply) {
        BI_LOGE(NULL, "out of memory packing a reply; dropping call %llu",
                (unsigned long long)c->call_id);
        call_recv(c);
        return;
    }
    c->state = CALL_SEND;
    nng_aio_set_msg(c->aio, reply);
    nng_ctx_send(c->ctx, c->aio);
}

/* Loop thread: decode one request, run its handler, send the reply. */
static void call_dispatch(svc_server *s, svc_call *c)
{
    svc_result res = {.status = BI_OK};
    size_t len = nng_msg_len(c->req);
    Braid__V1__RpcRequest *env = NULL;
    c->call_id = 0;
    s->calls_in_flight++;

    /* nng bounds len at twice the limit, so an oversized envelope is still
     * decoded: its reply then carries the right call_id. */
    if (!(env = braid__v1__rpc_request__unpack(NULL, len, nng_msg_body(c->req)))) {
        svc_fail(&res, BI_INVALID_ARGUMENT, "request is not a braid.v1.RpcRequest (%zu bytes)",
                 len);
    } else if ((c->call_id = env->call_id), len > s->cfg->max_msg_bytes) {
        svc_fail(&res, BI_RESOURCE_EXHAUSTED,
                 "request of %zu bytes exceeds the limit of %zu (braidd --max-message)", len,
                 s->cfg->max_msg_bytes);
    } else {
        svc_handler fn = svc_method_find(env->method);
        if (fn)
            fn(s, c, env, &res);
        else
            svc_fail(&res, BI_UNIMPLEMENTED, "unknown method '%.120s'", env->method);
    }
    nng_msg_free(c->req);
    c->req = NULL;
    if (res.parked) { /* the handler answered or parked the call itself */
        arena_free(&res.arena);
    } else {
        svc_call_reply(s, c, &res);
    }
    if (env)
        braid__v1__rpc_request__free_unpacked(env, NULL);
}

static void wake_cb(uv_async_t *h)
{
    svc_server *s = h->data;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        svc_call *c = s->ready_head;
        if (c) {
            s->ready_head = c->next;
            if (!s->ready_head)
                s->ready_tail = NULL;
        }
        pthread_mutex_unlock(&s->lock);
        if (!c)
            break;
        call_dispatch(s, c);
    }
    svc_streams_deliver(s);
    svc_shutdown_progress(s);
}

/* Worker thread (through svc_stream_on_event, under the table lock). */
static void streams_notify(void *user)
{
    svc_server *s = user;
    uv_async_send(&s->wake);
}

bi_status svc_server_create(uv_loop_t *loop, const svc_config *cfg, eng_engine *engine,
                            svc_server **out)
{
    svc_server *s = bi_calloc(1, sizeof *s);
    if (!s)
        return BI_NOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->eng = engine;
    s->n_calls = cfg->max_calls;
    pthread_mutex_init(&s->lock, NULL);
    if (!(s->calls = bi_calloc((size_t)s->n_calls, sizeof *s->calls)) ||
        svc_streams_init(&s->streams, (size_t)cfg->max_streams / 2, streams_notify, s) != BI_OK) {
        svc_server_destroy(s);
        return BI_NOMEM;
    }
    uv_async_init(loop, &s->wake, wake_cb);
    uv_timer_init(loop, &s->sweep);
    uv_timer_init(loop, &s->phase);
    for (int i = 0; i < s->n_calls; i++) {
        uv_timer_init(loop, &s->calls[i].timer);
        s->calls[i].timer.data = &s->calls[i];
        s->calls[i].srv = s;
    }
    s->wake.data = s->sweep.data = s->phase.data = s;
    s->handles_open = true;
    s->start_ms = uv_now(loop);
    *out = s;
    return BI_OK;
}

/* Reads a whole file into a NUL-terminated buffer (PEM text). */
static char *read_file(const char *path, char *err, size_t err_size)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && n < (1 << 20) &&
        fseek(f, 0, SEEK_SET) == 0 && (buf = bi_malloc((size_t)n + 1)) &&
        fread(buf, 1, (size_t)n, f) == (size_t)n) {
        buf[n] = 0;
    } else {
        snprintf(err, err_size, "cannot read %s", path);
        bi_free(buf);
        buf = NULL;
    }
    if (f)
        fclose(f);
    return buf;
}

/* The server's TLS configuration from --tls-cert/--tls-key. */
static bi_status tls_setup(svc_server *s, char *err, size_t err_size)
{
    if (!s->cfg->tls_cert) {
        snprintf(err, err_size, "tls+tcp:// listeners need --tls-cert and --tls-key");
        return BI_INVALID_ARGUMENT;
    }
    char *cert = read_file(s->cfg->tls_cert, err, err_size);
    char *key = cert ? read_file(s->cfg->tls_key, err, err_size) : NULL;
    int rv = -1;
    if (cert && key && (rv = nng_tls_config_alloc(&s->tls, NNG_TLS_MODE_SERVER)) == 0 &&
        (rv = nng_tls_config_own_cert(s->tls, cert, key, NULL)) != 0)
        snprintf(err, err_size, "TLS certificate %s / key %s rejected: %s", s->cfg->tls_cert,
                 s->cfg->tls_key, nng_strerror(rv));
    else if (rv > 0)
        snprintf(err, err_size, "TLS is not available in this nng: %s", nng_strerror(rv));
    bi_free(cert);
    bi_free(key);
    return rv == 0 ? BI_OK : BI_INVALID_ARGUMENT;
}

static bi_status listen_one(svc_server *s, const char *url, char *err, size_t err_size)
{
    nng_listener l;
    int rv;
    bool tls = strncmp(url, "tls+", 4) == 0;
    bi_status st;
    if (tls && !s->tls && (st = tls_setup(s, err, err_size)) != BI_OK)
        return st;
    if ((rv = nng_listener_create(&l, s->sock, url)) == 0 && tls)
        rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, s->tls);
    if (rv == 0)
        rv = nng_listener_start(l, 0);
    if (rv != 0) {
        snprintf(err, err_size, "cannot listen on %s: %s%s", url, nng_strerror(rv),
                 rv == NNG_EADDRINUSE ? " (is another braidd running there?)" : "");
        return rv == NNG_EADDRINUSE ? BI_UNAVAILABLE : BI_INVALID_ARGUMENT;
    }
    BI_LOGI(NULL, "listening on %s", url);
    return BI_OK;
}

bi_status svc_server_start(svc_server *s, char *err, size_t err_size)
{
    int rv;
    bi_status st;
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        snprintf(err, err_size, "cannot open a REP socket: %s", nng_strerror(rv));
        return BI_INTERNAL;
    }
    s->sock_open = true;
    /* nng would silently drop a larger message; accept up to twice the limit so
     * the loop can answer RESOURCE_EXHAUSTED instead. */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->cfg->max_msg_bytes * 2);
    for (int i = 0; i < s->cfg->n_listen; i++)
        if ((st = listen_one(s, s->cfg->listen[i], err, err_size)) != BI_OK)
            return st;
    for (int i = 0; i < s->n_calls; i++) {
        svc_call *c = &s->calls[i];
        if ((rv = nng_aio_alloc(&c->aio, call_aio_cb, c)) != 0 ||
            (rv = nng_ctx_open(&c->ctx, s->sock)) != 0) {
            snprintf(err, err_size, "cannot set up call context %d: %s", i, nng_strerror(rv));
            return BI_NOMEM;
        }
        call_recv(c);
    }
    double idle_ms = s->cfg->stream_idle_s * 1000;
    uint64_t every = idle_ms / 4 < 50 ? 50 : idle_ms / 4 > 1000 ? 1000 : (uint64_t)(idle_ms / 4);
    uv_timer_start(&s->sweep, svc_streams_sweep, every, every);
    return BI_OK;
}

/* --- shutdown --- */

static void linger_done(uv_timer_t *t)
{
    svc_server_close(t->data);
}

/* Answers every parked poll, then closes after a short linger so that the
 * last replies leave the socket. */
static void begin_closing(svc_server *s)
{
    s->phase_now = SVC_CLOSING;
    for (int i = 0; i < s->n_calls; i++)
        if (s->calls[i].state == CALL_PARKED)
            svc_poll_answer(s, &s->calls[i]);
    BI_LOGI(NULL, "closing");
    uv_timer_start(&s->phase, linger_done, LINGER_MS, 0);
}

static void cancel_wait_done(uv_timer_t *t)
{
    svc_server *s = t->data;
    BI_LOGW(NULL, "cancelled generations did not all report in %d ms; closing anyway",
            CANCEL_WAIT_MS);
    begin_closing(s);
}

static void grace_done(uv_timer_t *t)
{
    svc_server *s = t->data;
    s->phase_now = SVC_CANCELLING;
    BI_LOGI(NULL, "grace period over; cancelling what still runs");
    svc_streams_cancel_all(s);
    uv_timer_start(&s->phase, cancel_wait_done, CANCEL_WAIT_MS, 0);
    svc_shutdown_progress(s);
}

void svc_shutdown_progress(svc_server *s)
{
    if ((s->phase_now == SVC_DRAINING && svc_streams_settled(s, true)) ||
        (s->phase_now == SVC_CANCELLING && svc_streams_settled(s, false))) {
        uv_timer_stop(&s->phase);
        begin_closing(s);
    }
}

void svc_server_shutdown(svc_server *s, void (*on_closed)(void *user), void *user)
{
    s->on_closed = on_closed;
    s->on_closed_user = user;
    if (s->phase_now == SVC_SERVING) {
        s->phase_now = SVC_DRAINING;
        BI_LOGI(NULL, "draining: %zu open streams, %.1f s grace", s->streams.n, s->cfg->grace_s);
        uv_timer_start(&s->phase, grace_done, (uint64_t)(s->cfg->grace_s * 1000), 0);
        svc_shutdown_progress(s);
    } else if (s->phase_now == SVC_DRAINING) {
        uv_timer_stop(&s->phase);
        grace_done(&s->phase);
    }
}

static void closed_cb(uv_handle_t *h)
{
    svc_server *s = h->data;
    if (s->on_closed)
        s->on_closed(s->on_closed_user);
}

void svc_server_close(svc_server *s)
{
    if (!s || s->phase_now == SVC_CLOSED)
        return;
    s->phase_now = SVC_CLOSED;
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    pthread_mutex_unlock(&s->lock);
    svc_streams_mute(&s->streams);
    if (s->sock_open) {
        nng_close(s->sock);
        s->sock_open = false;
    }
    for (int i = 0; s->calls && i < s->n_calls; i++)
        if (s->calls[i].aio)
            nng_aio_stop(s->calls[i].aio); /* waits for a running callback */
    for (svc_call *c = s->ready_head; c; c = c->next) {
        nng_msg_free(c->req);
        c->req = NULL;
    }
    s->ready_head = s->ready_tail = NULL;
    if (s->handles_open) {
        s->handles_open = false;
        for (int i = 0; i < s->n_calls; i++)
            uv_close((uv_handle_t *)&s->calls[i].timer, NULL);
        uv_close((uv_handle_t *)&s->sweep, NULL);
        uv_close((uv_handle_t *)&s->phase, NULL);
        uv_close((uv_handle_t *)&s->wake, closed_cb);
    }
}

void svc_server_destroy(svc_server *s)
{
    if (!s)
        return;
    for (int i = 0; s->calls && i < s->n_calls; i++)
        if (s->calls[i].aio)
            nng_aio_free(s->calls[i].aio);
    bi_free(s->calls);
    svc_streams_fini(&s->streams);
    if (s->tls)
        nng_tls_config_free(s->tls);
    pthread_mutex_destroy(&s->lock);
    bi_free(s);
}
