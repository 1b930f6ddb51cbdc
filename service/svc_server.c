/* svc_server.c - nng REP contexts, the loop-thread dispatch and the unary methods. */
#define BI_LOG_MODULE "svc" /* before any include: see common/log.h */
#include "svc_server.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "braid.pb-c.h"
#include "common/alloc.h"
#include "common/log.h"

#ifndef BRAID_VERSION
#define BRAID_VERSION "0.0.0"
#endif

enum call_state { CALL_IDLE, CALL_RECV, CALL_SEND };

/* One in-flight call slot: an nng context and its aio, reused call after call. */
typedef struct svc_call {
    svc_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    enum call_state state;
    nng_msg *req;          /* received request, owned until dispatched */
    struct svc_call *next; /* ready-queue link */
} svc_call;

struct svc_server {
    uv_loop_t *loop;
    const svc_config *cfg;
    uv_async_t wake;
    bool wake_open;
    nng_socket sock;
    bool sock_open;
    svc_call *calls;
    int n_calls;
    pthread_mutex_t lock; /* guards the ready queue and closing */
    svc_call *ready_head, *ready_tail;
    bool closing;
    uint64_t start_ms;
};

/* The result of a handler: a status and, on OK, a reply message to pack. */
typedef struct svc_result {
    bi_status status;
    char message[256];
    const ProtobufCMessage *reply;
} svc_result;

typedef void (*svc_handler)(svc_server *s, const ProtobufCBinaryData *payload, svc_result *res);

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

static uint64_t now_ms(svc_server *s)
{
    return uv_now(s->loop);
}

static void handle_health(svc_server *s, const ProtobufCBinaryData *payload, svc_result *res)
{
    static Braid__V1__HealthReply reply;
    Braid__V1__HealthRequest *req =
        braid__v1__health_request__unpack(NULL, payload->len, payload->data);
    if (!req) {
        res->status = BI_INVALID_ARGUMENT;
        snprintf(res->message, sizeof res->message, "HealthRequest does not parse");
        return;
    }
    braid__v1__health_request__free_unpacked(req, NULL);
    braid__v1__health_reply__init(&reply);
    reply.serving_status = BRAID__V1__HEALTH_REPLY__SERVING_STATUS__SERVING;
    reply.version = (char *)BRAID_VERSION;
    reply.backend = (char *)"none";
    reply.model = (char *)"";
    reply.uptime_ms = now_ms(s) - s->start_ms;
    res->status = BI_OK;
    res->reply = &reply.base;
}

static const struct {
    const char *method;
    svc_handler fn;
} methods[] = {
    {"braid.v1.Braid/Health", handle_health},
};

/* Packs an RpcReply into a fresh nng message; NULL when out of memory. */
static nng_msg *reply_pack(uint64_t call_id, const svc_result *res)
{
    Braid__V1__RpcReply env = BRAID__V1__RPC_REPLY__INIT;
    Braid__V1__Status st = BRAID__V1__STATUS__INIT;
    bi_status wire = bi_status_rpc_code(res->status);
    st.code = (Braid__V1__Code)wire;
    st.message = (char *)(res->message[0] ? res->message : (wire ? bi_strerror(wire) : ""));
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

/* Loop thread: decode one request, run its handler, send the reply. */
static void call_dispatch(svc_server *s, svc_call *c)
{
    svc_result res = {.status = BI_OK};
    uint64_t call_id = 0;
    size_t len = nng_msg_len(c->req);
    Braid__V1__RpcRequest *env = NULL;

    if (len > s->cfg->max_msg_bytes) {
        res.status = BI_RESOURCE_EXHAUSTED;
        snprintf(res.message, sizeof res.message,
                 "request of %zu bytes exceeds the limit of %zu (braidd --max-message)", len,
                 s->cfg->max_msg_bytes);
    } else if (!(env = braid__v1__rpc_request__unpack(NULL, len, nng_msg_body(c->req)))) {
        res.status = BI_INVALID_ARGUMENT;
        snprintf(res.message, sizeof res.message,
                 "request is not a braid.v1.RpcRequest (%zu bytes)", len);
    } else {
        call_id = env->call_id;
        svc_handler fn = NULL;
        for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
            if (strcmp(env->method, methods[i].method) == 0)
                fn = methods[i].fn;
        if (fn) {
            fn(s, &env->payload, &res);
        } else {
            res.status = BI_UNIMPLEMENTED;
            snprintf(res.message, sizeof res.message, "unknown method '%.120s'", env->method);
        }
    }
    if (res.status != BI_OK)
        BI_LOGD(NULL, "call %llu: %s: %s", (unsigned long long)call_id, bi_status_name(res.status),
                res.message);
    if (env)
        braid__v1__rpc_request__free_unpacked(env, NULL);
    nng_msg_free(c->req);
    c->req = NULL;

    nng_msg *reply = reply_pack(call_id, &res);
    if (!reply) {
        BI_LOGE(NULL, "out of memory packing a reply; dropping call %llu",
                (unsigned long long)call_id);
        call_recv(c);
        return;
    }
    c->state = CALL_SEND;
    nng_aio_set_msg(c->aio, reply);
    nng_ctx_send(c->ctx, c->aio);
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
            return;
        call_dispatch(s, c);
    }
}

bi_status svc_server_create(uv_loop_t *loop, const svc_config *cfg, svc_server **out)
{
    svc_server *s = bi_calloc(1, sizeof *s);
    if (!s)
        return BI_NOMEM;
    s->loop = loop;
    s->cfg = cfg;
    s->n_calls = cfg->max_calls;
    pthread_mutex_init(&s->lock, NULL);
    if (!(s->calls = bi_calloc((size_t)s->n_calls, sizeof *s->calls))) {
        svc_server_destroy(s);
        return BI_NOMEM;
    }
    if (uv_async_init(loop, &s->wake, wake_cb) != 0) {
        svc_server_destroy(s);
        return BI_INTERNAL;
    }
    s->wake.data = s;
    s->wake_open = true;
    s->start_ms = uv_now(loop);
    *out = s;
    return BI_OK;
}

bi_status svc_server_start(svc_server *s, char *err, size_t err_size)
{
    int rv;
    if ((rv = nng_rep0_open(&s->sock)) != 0) {
        snprintf(err, err_size, "cannot open a REP socket: %s", nng_strerror(rv));
        return BI_INTERNAL;
    }
    s->sock_open = true;
    /* nng would silently drop a larger message; accept up to twice the limit so
     * the loop can answer RESOURCE_EXHAUSTED instead. */
    nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, s->cfg->max_msg_bytes * 2);
    for (int i = 0; i < s->cfg->n_listen; i++) {
        if ((rv = nng_listen(s->sock, s->cfg->listen[i], NULL, 0)) != 0) {
            snprintf(err, err_size, "cannot listen on %s: %s (is another braidd running there?)",
                     s->cfg->listen[i], nng_strerror(rv));
            return rv == NNG_EADDRINUSE ? BI_UNAVAILABLE : BI_INVALID_ARGUMENT;
        }
        BI_LOGI(NULL, "listening on %s", s->cfg->listen[i]);
    }
    for (int i = 0; i < s->n_calls; i++) {
        svc_call *c = &s->calls[i];
        c->srv = s;
        if ((rv = nng_aio_alloc(&c->aio, call_aio_cb, c)) != 0 ||
            (rv = nng_ctx_open(&c->ctx, s->sock)) != 0) {
            snprintf(err, err_size, "cannot set up call context %d: %s", i, nng_strerror(rv));
            return BI_NOMEM;
        }
        call_recv(c);
    }
    return BI_OK;
}

void svc_server_close(svc_server *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->closing = true;
    pthread_mutex_unlock(&s->lock);
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
    if (s->wake_open) {
        uv_close((uv_handle_t *)&s->wake, NULL);
        s->wake_open = false;
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
    pthread_mutex_destroy(&s->lock);
    bi_free(s);
}
