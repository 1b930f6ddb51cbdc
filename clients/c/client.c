/* client.c - libbraid: the RPC envelope over nng REQ contexts, and the unary calls. */
#define _POSIX_C_SOURCE 200809L
#include "braid.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "braid.pb-c.h"
#include "common/alloc.h"
#include "common/status.h"

struct braid_client {
    nng_socket sock;
    int timeout_ms;
    atomic_ullong next_call_id;
};

static _Thread_local char last_error[512];

static braid_status set_error(braid_status st, const char *fmt, const char *detail)
{
    snprintf(last_error, sizeof last_error, fmt, detail);
    return st;
}

const char *braid_strerror(braid_status s)
{
    return bi_strerror((bi_status)s);
}

const char *braid_last_error(void)
{
    return last_error;
}

braid_status braid_client_create(const char *url, int timeout_ms, braid_client **out)
{
    int rv;
    last_error[0] = '\0';
    if (!url || !out)
        return set_error(BRAID_INVALID_ARGUMENT, "%s", "url and out are required");
    braid_client *c = bi_calloc(1, sizeof *c);
    if (!c)
        return set_error(BRAID_RESOURCE_EXHAUSTED, "%s", "out of memory");
    c->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    atomic_init(&c->next_call_id, 1);
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        bi_free(c);
        return set_error(BRAID_INTERNAL, "cannot open socket: %s", nng_strerror(rv));
    }
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 1000);
    if ((rv = nng_dial(c->sock, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
        nng_close(c->sock);
        bi_free(c);
        return set_error(BRAID_INVALID_ARGUMENT, "cannot dial: %s", nng_strerror(rv));
    }
    *out = c;
    return BRAID_OK;
}

void braid_client_destroy(braid_client *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    bi_free(c);
}

/* Synchronous send/receive on a context through an aio (nng 1.5 has no
 * nng_ctx_sendmsg). On a failed send the message stays the caller's. */
static int ctx_send_wait(nng_ctx ctx, nng_aio *aio, nng_msg *m)
{
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    return nng_aio_result(aio);
}

static int ctx_recv_wait(nng_ctx ctx, nng_aio *aio, nng_msg **m)
{
    nng_ctx_recv(ctx, aio);
    nng_aio_wait(aio);
    int rv = nng_aio_result(aio);
    if (rv == 0)
        *m = nng_aio_get_msg(aio);
    return rv;
}

/* Sends one request envelope and waits for its reply. On BRAID_OK the caller
 * owns *reply_out (free with braid__v1__rpc_reply__free_unpacked). */
static braid_status rpc_call(braid_client *c, const char *method, const ProtobufCMessage *req,
                             Braid__V1__RpcReply **reply_out)
{
    Braid__V1__RpcRequest env = BRAID__V1__RPC_REQUEST__INIT;
    uint8_t *payload = NULL;
    nng_msg *m = NULL;
    nng_ctx ctx;
    nng_aio *aio = NULL;
    int rv;
    braid_status st = BRAID_OK;

    last_error[0] = '\0';
    size_t plen = protobuf_c_message_get_packed_size(req);
    if (!(payload = bi_malloc(plen)))
        return set_error(BRAID_RESOURCE_EXHAUSTED, "%s", "out of memory");
    protobuf_c_message_pack(req, payload);
    env.method = (char *)method;
    env.call_id = atomic_fetch_add(&c->next_call_id, 1);
    env.payload.data = payload;
    env.payload.len = plen;
    env.timeout_ms = (uint64_t)c->timeout_ms;

    if ((rv = nng_ctx_open(&ctx, c->sock)) != 0) {
        bi_free(payload);
        return set_error(BRAID_INTERNAL, "cannot open context: %s", nng_strerror(rv));
    }
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        st = set_error(BRAID_RESOURCE_EXHAUSTED, "%s", "out of memory");
        goto out;
    }
    nng_aio_set_timeout(aio, c->timeout_ms);
    if ((rv = nng_msg_alloc(&m, braid__v1__rpc_request__get_packed_size(&env))) != 0) {
        st = set_error(BRAID_RESOURCE_EXHAUSTED, "%s", "out of memory");
        goto out;
    }
    braid__v1__rpc_request__pack(&env, nng_msg_body(m));
    if ((rv = ctx_send_wait(ctx, aio, m)) != 0) {
        nng_msg_free(m);
        st = set_error(BRAID_UNAVAILABLE, "send failed: %s", nng_strerror(rv));
        goto out;
    }
    if ((rv = ctx_recv_wait(ctx, aio, &m)) != 0) {
        st = set_error(rv == NNG_ETIMEDOUT ? BRAID_UNAVAILABLE : BRAID_UNKNOWN,
                       "no reply from braidd: %s (is it running at that address?)",
                       nng_strerror(rv));
        goto out;
    }
    Braid__V1__RpcReply *r = braid__v1__rpc_reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    if (!r) {
        st = set_error(BRAID_INTERNAL, "%s", "reply does not parse as braid.v1.RpcReply");
        goto out;
    }
    if (r->call_id != env.call_id || !r->status) {
        braid__v1__rpc_reply__free_unpacked(r, NULL);
        st = set_error(BRAID_INTERNAL, "%s", "reply does not match the call");
        goto out;
    }
    if (r->status->code != 0) {
        st = set_error((braid_status)r->status->code, "%s", r->status->message);
        braid__v1__rpc_reply__free_unpacked(r, NULL);
        goto out;
    }
    *reply_out = r;
out:
    if (aio)
        nng_aio_free(aio);
    nng_ctx_close(ctx);
    bi_free(payload);
    return st;
}

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

braid_status braid_health_check(braid_client *c, braid_health *out)
{
    if (!c || !out)
        return set_error(BRAID_INVALID_ARGUMENT, "%s", "client and out are required");
    Braid__V1__HealthRequest req = BRAID__V1__HEALTH_REQUEST__INIT;
    Braid__V1__RpcReply *r = NULL;
    braid_status st = rpc_call(c, "braid.v1.Braid/Health", &req.base, &r);
    if (st != BRAID_OK)
        return st;
    Braid__V1__HealthReply *h =
        braid__v1__health_reply__unpack(NULL, r->payload.len, r->payload.data);
    braid__v1__rpc_reply__free_unpacked(r, NULL);
    if (!h)
        return set_error(BRAID_INTERNAL, "%s", "HealthReply does not parse");
    memset(out, 0, sizeof *out);
    out->serving = h->serving_status == BRAID__V1__HEALTH_REPLY__SERVING_STATUS__SERVING;
    copy_str(out->version, sizeof out->version, h->version);
    copy_str(out->backend, sizeof out->backend, h->backend);
    copy_str(out->model, sizeof out->model, h->model);
    out->uptime_ms = h->uptime_ms;
    braid__v1__health_reply__free_unpacked(h, NULL);
    return BRAID_OK;
}
