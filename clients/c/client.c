/* client.c - libbraid: the RPC envelope over nng REQ contexts, and the unary calls. */
#include "braid.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <nng/supplemental/util/platform.h>

#include "client_internal.h"
#include "common/alloc.h"
#include "common/status.h"

#define DEFAULT_TIMEOUT_MS   30000
#define DEFAULT_POLL_WAIT_MS 10000

static _Thread_local char last_error[512];

braid_status braid__error(braid_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return st;
}

const char *braid_strerror(braid_status s)
{
    return bi_strerror((bi_status)s);
}

const char *braid_status_name(braid_status s)
{
    return bi_status_name((bi_status)s);
}

const char *braid_last_error(void)
{
    return last_error;
}

void braid_free(void *p)
{
    bi_free(p);
}

/* How the client's connection attempts ended so far, from nng's statistics of
 * its dialer. Returns false (all zero) when nng keeps no statistics. */
typedef struct dial_counts {
    uint64_t connect, refused, auth, dropped;
} dial_counts;

static bool dial_counts_get(const braid_client *c, dial_counts *n)
{
    nng_stat *all = NULL, *d;
    memset(n, 0, sizeof *n);
    if (nng_stats_get(&all) != 0)
        return false;
    if ((d = nng_stat_find_dialer(all, c->dialer)) != NULL) {
        for (nng_stat *st = nng_stat_child(d); st; st = nng_stat_next(st)) {
            const char *name = nng_stat_name(st);
            uint64_t v = nng_stat_value(st);
            if (strcmp(name, "connect") == 0)
                n->connect = v;
            else if (strcmp(name, "refused") == 0)
                n->refused = v;
            else if (strcmp(name, "auth") == 0)
                n->auth = v;
            else if (strcmp(name, "proto") == 0 || strcmp(name, "other") == 0 ||
                     strcmp(name, "disconnect") == 0)
                n->dropped += v;
        }
    }
    nng_stats_free(all);
    return d != NULL;
}

/* Why calls may get no reply, as far as the dialer's counters tell. */
static const char *dial_hint(const braid_client *c, char *buf, size_t size)
{
    dial_counts n;
    dial_counts_get(c, &n);
    if (n.auth && !n.connect)
        snprintf(buf, size,
                 "the TLS handshake failed: the server's certificate is not signed by a CA in "
                 "the CA file or not issued to the server name (%s%s)",
                 c->tls_desc,
                 c->tls_name_is_ip ? "; an IP address never matches: name a DNS entry of the "
                                     "certificate"
                                   : "");
    else if (n.dropped && !n.connect)
        snprintf(buf, size,
                 "the server drops the connection during the handshake: a tls+tcp:// "
                 "listener dialled as tcp://, or the reverse?");
    else if (n.refused)
        snprintf(buf, size, "connection refused: is braidd running at that address?");
    else
        snprintf(buf, size, "is it running at that address? try `braid health`");
    return buf;
}

/* The dialer's TLS configuration: verify the server against the CA file under
 * the server name (the URL's host unless given). */
static braid_status tls_setup(braid_client *c, const char *url, const braid_client_opts *o)
{
    nng_url *u = NULL;
    int rv;
    if (!o->tls_ca_file)
        return braid__error(BRAID_INVALID_ARGUMENT,
                            "a tls+tcp:// address needs a CA file to verify the server "
                            "(tls_ca_file; braid --tls-ca FILE)");
    if ((rv = nng_url_parse(&u, url)) != 0)
        return braid__error(BRAID_INVALID_ARGUMENT, "cannot parse '%s': %s", url, nng_strerror(rv));
    const char *name = o->tls_server_name ? o->tls_server_name : u->u_hostname;
    snprintf(c->tls_desc, sizeof c->tls_desc, "CA file %s, server name '%s'", o->tls_ca_file, name);
    c->tls_name_is_ip = strspn(name, "0123456789.") == strlen(name) || strchr(name, ':');
    braid_status st = BRAID_OK;
    if ((rv = nng_tls_config_alloc(&c->tls, NNG_TLS_MODE_CLIENT)) != 0)
        st = braid__error(BRAID_UNIMPLEMENTED, "TLS is not available in this nng: %s",
                          nng_strerror(rv));
    else if ((rv = nng_tls_config_ca_file(c->tls, o->tls_ca_file)) != 0)
        st = braid__error(BRAID_INVALID_ARGUMENT, "cannot load the CA file %s: %s (want PEM)",
                          o->tls_ca_file, nng_strerror(rv));
    else if ((rv = nng_tls_config_server_name(c->tls, name)) != 0 ||
             (rv = nng_tls_config_auth_mode(c->tls, NNG_TLS_AUTH_MODE_REQUIRED)) != 0 ||
             (rv = nng_dialer_set_ptr(c->dialer, NNG_OPT_TLS_CONFIG, c->tls)) != 0)
        st = braid__error(BRAID_INTERNAL, "cannot configure TLS: %s", nng_strerror(rv));
    nng_url_free(u);
    return st;
}

/* tls+tcp://: waits (up to the timeout) for the first handshake to end, so
 * that a certificate the CA file does not vouch for is reported here rather
 * than as calls that time out. A refused connection is left to the redialler. */
static braid_status tls_first_dial(braid_client *c)
{
    dial_counts n;
    for (int waited = 0; waited < c->timeout_ms && dial_counts_get(c, &n); waited += 5) {
        if (n.auth && !n.connect) {
            char hint[512];
            return braid__error(BRAID_UNAVAILABLE, "cannot connect securely: %s",
                                dial_hint(c, hint, sizeof hint));
        }
        if (n.connect || n.refused || n.dropped)
            break;
        nng_msleep(5);
    }
    return BRAID_OK;
}

static braid_status client_dial(braid_client *c, const char *url, const braid_client_opts *o)
{
    int rv;
    bool tls = strncmp(url, "tls+", 4) == 0;
    if (!tls && (o->tls_ca_file || o->tls_server_name))
        return braid__error(BRAID_INVALID_ARGUMENT,
                            "TLS options given for '%s', which is not a tls+tcp:// address", url);
    if ((rv = nng_dialer_create(&c->dialer, c->sock, url)) != 0)
        return braid__error(BRAID_INVALID_ARGUMENT,
                            "cannot dial '%s': %s (use tcp://HOST:PORT, ipc:///PATH or "
                            "tls+tcp://HOST:PORT)",
                            url, nng_strerror(rv));
    braid_status st;
    if (tls && (st = tls_setup(c, url, o)) != BRAID_OK)
        return st;
    if ((rv = nng_dialer_start(c->dialer, NNG_FLAG_NONBLOCK)) != 0)
        return braid__error(BRAID_INVALID_ARGUMENT, "cannot dial '%s': %s", url, nng_strerror(rv));
    return tls ? tls_first_dial(c) : BRAID_OK;
}

braid_status braid_client_create_opts(const char *url, const braid_client_opts *opts,
                                      braid_client **out)
{
    braid_client_opts o = opts ? *opts : (braid_client_opts){0};
    if (o.tls_ca_file && !*o.tls_ca_file)
        o.tls_ca_file = NULL; /* "" as from an empty environment variable: not given */
    if (o.tls_server_name && !*o.tls_server_name)
        o.tls_server_name = NULL;
    int rv;
    last_error[0] = '\0';
    if (!url || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "url and out are required");
    if (o.poll_wait_ms > 600000)
        return braid__error(BRAID_INVALID_ARGUMENT, "poll wait must be 1..600000 ms");
    braid_client *c = bi_calloc(1, sizeof *c);
    if (!c)
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    c->timeout_ms = o.timeout_ms > 0 ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
    c->poll_wait_ms = o.poll_wait_ms > 0 ? o.poll_wait_ms : DEFAULT_POLL_WAIT_MS;
    atomic_init(&c->next_call_id, 1);
    if ((rv = nng_req0_open(&c->sock)) != 0) {
        bi_free(c);
        return braid__error(BRAID_INTERNAL, "cannot open socket: %s", nng_strerror(rv));
    }
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMINT, 50);
    nng_socket_set_ms(c->sock, NNG_OPT_RECONNMAXT, 1000);
    nng_socket_set_size(c->sock, NNG_OPT_RECVMAXSZ, 0); /* replies may be large (chunk text) */
    braid_status st = client_dial(c, url, &o);
    if (st != BRAID_OK) {
        braid_client_destroy(c);
        return st;
    }
    *out = c;
    return BRAID_OK;
}

braid_status braid_client_create(const char *url, int timeout_ms, braid_client **out)
{
    braid_client_opts o = {.timeout_ms = timeout_ms};
    return braid_client_create_opts(url, &o, out);
}

void braid_client_destroy(braid_client *c)
{
    if (!c)
        return;
    nng_close(c->sock);
    if (c->tls)
        nng_tls_config_free(c->tls);
    bi_free(c);
}

braid_status braid_client_set_poll_wait(braid_client *c, int wait_ms)
{
    if (!c || wait_ms < 1 || wait_ms > 600000)
        return braid__error(BRAID_INVALID_ARGUMENT, "poll wait must be 1..600000 ms");
    c->poll_wait_ms = wait_ms;
    return BRAID_OK;
}

/* Packs req into an RpcRequest envelope message. */
static braid_status pack_envelope(const char *method, uint64_t call_id, int timeout_ms,
                                  const ProtobufCMessage *req, nng_msg **out)
{
    Braid__V1__RpcRequest env = BRAID__V1__RPC_REQUEST__INIT;
    size_t plen = protobuf_c_message_get_packed_size(req);
    uint8_t *payload = bi_malloc(plen ? plen : 1);
    if (!payload)
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    protobuf_c_message_pack(req, payload);
    env.method = (char *)method;
    env.call_id = call_id;
    env.payload.data = payload;
    env.payload.len = plen;
    env.timeout_ms = (uint64_t)timeout_ms;
    nng_msg *m;
    if (nng_msg_alloc(&m, braid__v1__rpc_request__get_packed_size(&env)) != 0) {
        bi_free(payload);
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    }
    braid__v1__rpc_request__pack(&env, nng_msg_body(m));
    bi_free(payload);
    *out = m;
    return BRAID_OK;
}

/* Unpacks a reply envelope and its payload; consumes m. */
static braid_status unpack_reply(nng_msg *m, uint64_t call_id, const char *method,
                                 const ProtobufCMessageDescriptor *type, ProtobufCMessage **out)
{
    Braid__V1__RpcReply *r = braid__v1__rpc_reply__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
    if (!r)
        return braid__error(BRAID_INTERNAL, "reply to %s does not parse as RpcReply", method);
    braid_status st = BRAID_OK;
    if (r->call_id != call_id || !r->status) {
        st = braid__error(BRAID_INTERNAL, "reply to %s does not match the call", method);
    } else if (r->status->code != 0) {
        st = braid__error((braid_status)r->status->code, "%s", r->status->message);
    } else if (!(*out = protobuf_c_message_unpack(type, NULL, r->payload.len, r->payload.data))) {
        st = braid__error(BRAID_INTERNAL, "reply to %s: payload does not parse as %s", method,
                          type->name);
    }
    braid__v1__rpc_reply__free_unpacked(r, NULL);
    return st;
}

braid_status braid__call(braid_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *type, int timeout_ms,
                         ProtobufCMessage **payload_out, bool *transport)
{
    nng_ctx ctx;
    nng_aio *aio = NULL;
    nng_msg *m = NULL;
    int rv;
    last_error[0] = '\0';
    if (transport)
        *transport = false;
    uint64_t call_id = atomic_fetch_add(&c->next_call_id, 1);
    braid_status st = pack_envelope(method, call_id, timeout_ms, req, &m);
    if (st != BRAID_OK)
        return st;
    if ((rv = nng_ctx_open(&ctx, c->sock)) != 0) {
        nng_msg_free(m);
        return braid__error(BRAID_INTERNAL, "cannot open an nng context: %s", nng_strerror(rv));
    }
    /* nng resends a request whose reply has not come within the resend time;
     * a long poll or a slow call must not be sent twice, so the timer is set
     * past the call's own deadline. A dropped connection still resends. */
    nng_ctx_set_ms(ctx, NNG_OPT_REQ_RESENDTIME, timeout_ms + 1000);
    if ((rv = nng_aio_alloc(&aio, NULL, NULL)) != 0) {
        nng_msg_free(m);
        st = braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    nng_aio_set_timeout(aio, timeout_ms);
    nng_aio_set_msg(aio, m);
    nng_ctx_send(ctx, aio);
    nng_aio_wait(aio);
    if ((rv = nng_aio_result(aio)) == 0) {
        nng_ctx_recv(ctx, aio);
        nng_aio_wait(aio);
        rv = nng_aio_result(aio);
    } else {
        nng_msg_free(m); /* a failed send leaves the message with us */
    }
    if (rv != 0) {
        if (transport)
            *transport = rv == NNG_ETIMEDOUT || rv == NNG_ECONNRESET || rv == NNG_ECONNREFUSED ||
                         rv == NNG_ECONNSHUT || rv == NNG_ECLOSED;
        char hint[512];
        st = braid__error(rv == NNG_ETIMEDOUT ? BRAID_UNAVAILABLE : BRAID_UNKNOWN,
                          "%s: no reply from braidd within %d ms: %s (%s)", method, timeout_ms,
                          nng_strerror(rv), dial_hint(c, hint, sizeof hint));
        goto out;
    }
    st = unpack_reply(nng_aio_get_msg(aio), call_id, method, type, payload_out);
out:
    if (aio)
        nng_aio_free(aio);
    nng_ctx_close(ctx);
    return st;
}

/* A unary call with the client's timeout; *out is of type `type`. */
#define CALL(c, name, req, type, out)                                                              \
    braid__call((c), "braid.v1.Braid/" name, &(req).base, &(type), (c)->timeout_ms,                \
                (ProtobufCMessage **)(out), NULL)

static void copy_str(char *dst, size_t size, const char *src)
{
    snprintf(dst, size, "%s", src ? src : "");
}

braid_status braid_health_check(braid_client *c, braid_health *out)
{
    if (!c || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client and out are required");
    Braid__V1__HealthRequest req = BRAID__V1__HEALTH_REQUEST__INIT;
    Braid__V1__HealthReply *h = NULL;
    braid_status st = CALL(c, "Health", req, braid__v1__health_reply__descriptor, &h);
    if (st != BRAID_OK)
        return st;
    memset(out, 0, sizeof *out);
    out->serving = h->serving_status == BRAID__V1__HEALTH_REPLY__SERVING_STATUS__SERVING;
    copy_str(out->version, sizeof out->version, h->version);
    copy_str(out->backend, sizeof out->backend, h->backend);
    copy_str(out->model, sizeof out->model, h->model);
    out->uptime_ms = h->uptime_ms;
    braid__v1__health_reply__free_unpacked(h, NULL);
    return BRAID_OK;
}

braid_status braid_stats_get(braid_client *c, braid_stats *out)
{
    if (!c || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client and out are required");
    Braid__V1__StatsRequest req = BRAID__V1__STATS_REQUEST__INIT;
    Braid__V1__StatsReply *r = NULL;
    braid_status st = CALL(c, "Stats", req, braid__v1__stats_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    *out = (braid_stats){.kv_pages_total = r->kv_pages_total,
                         .kv_pages_free = r->kv_pages_free,
                         .kv_page_tokens = r->kv_page_tokens,
                         .kv_page_bytes = r->kv_page_bytes,
                         .chunks = r->chunks,
                         .running = r->running,
                         .queued = r->queued,
                         .generations = r->generations,
                         .prompt_tokens = r->prompt_tokens,
                         .cached_prompt_tokens = r->cached_prompt_tokens,
                         .generated_tokens = r->generated_tokens,
                         .steps = r->steps,
                         .evictions = r->evictions,
                         .open_streams = r->open_streams,
                         .calls_in_flight = r->calls_in_flight,
                         .uptime_ms = r->uptime_ms,
                         .preemptions = r->preemptions};
    braid__v1__stats_reply__free_unpacked(r, NULL);
    return BRAID_OK;
}

braid_status braid_model_info_get(braid_client *c, braid_model_info *out)
{
    if (!c || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client and out are required");
    Braid__V1__ModelInfoRequest req = BRAID__V1__MODEL_INFO_REQUEST__INIT;
    Braid__V1__ModelInfoReply *r = NULL;
    braid_status st = CALL(c, "ModelInfo", req, braid__v1__model_info_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    memset(out, 0, sizeof *out);
    copy_str(out->name, sizeof out->name, r->name);
    copy_str(out->architecture, sizeof out->architecture, r->architecture);
    copy_str(out->chat_format, sizeof out->chat_format, r->chat_format);
    copy_str(out->backend, sizeof out->backend, r->backend);
    copy_str(out->fingerprint, sizeof out->fingerprint, r->fingerprint);
    out->num_layers = r->num_layers;
    out->hidden_size = r->hidden_size;
    out->num_heads = r->num_heads;
    out->num_kv_heads = r->num_kv_heads;
    out->head_dim = r->head_dim;
    out->vocab_size = r->vocab_size;
    out->max_context = r->max_context;
    out->bos_token_id = r->bos_token_id;
    out->eos_token_id = r->eos_token_id;
    braid__v1__model_info_reply__free_unpacked(r, NULL);
    return BRAID_OK;
}

/* Copies n int32 ids into a new array for the caller (NULL when n is 0). */
static braid_status copy_ids(const int32_t *src, size_t n, int32_t **out)
{
    *out = NULL;
    if (n == 0)
        return BRAID_OK;
    if (!(*out = bi_mallocarray(n, sizeof **out)))
        return braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    memcpy(*out, src, n * sizeof **out);
    return BRAID_OK;
}

braid_status braid_tokenize(braid_client *c, const char *text, int parse_special, int32_t **ids,
                            size_t *n_ids)
{
    if (!c || !text || !ids || !n_ids)
        return braid__error(BRAID_INVALID_ARGUMENT, "client, text, ids and n_ids are required");
    if (!braid__utf8_valid(text, strlen(text)))
        return braid__error(BRAID_INVALID_ARGUMENT, "text is not valid UTF-8");
    Braid__V1__TokenizeRequest req = BRAID__V1__TOKENIZE_REQUEST__INIT;
    req.text = (char *)text;
    req.parse_special = parse_special != 0;
    Braid__V1__TokenizeReply *r = NULL;
    braid_status st = CALL(c, "Tokenize", req, braid__v1__tokenize_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    st = copy_ids(r->token_ids, r->n_token_ids, ids);
    *n_ids = st == BRAID_OK ? r->n_token_ids : 0;
    braid__v1__tokenize_reply__free_unpacked(r, NULL);
    return st;
}

/* --- chunks --- */

static const char *const role_names[] = {"unspecified", "system", "context", "user", "assistant"};

const char *braid_role_name(braid_role r)
{
    return (unsigned)r < 5 ? role_names[r] : "unknown";
}

int braid_role_parse(const char *name)
{
    for (int i = 0; name && i < 5; i++)
        if (strcmp(name, role_names[i]) == 0)
            return i;
    return name && strcmp(name, "output") == 0 ? BRAID_ROLE_ASSISTANT : -1;
}

static void chunk_info_from(braid_chunk_info *dst, const Braid__V1__ChunkInfo *src)
{
    memset(dst, 0, sizeof *dst);
    if (!src)
        return;
    copy_str(dst->id, sizeof dst->id, src->id);
    copy_str(dst->ns, sizeof dst->ns, src->namespace_);
    dst->role = (braid_role)src->role;
    dst->num_tokens = src->num_tokens;
    dst->pinned = src->pinned;
    dst->kv_resident = src->kv_resident;
    dst->users = src->users;
    dst->hits = src->hits;
    dst->tokens_saved = src->tokens_saved;
    dst->kv_bytes = src->kv_bytes;
}

/* The namespace to send: "" for NULL; refuses names the server would. */
static braid_status check_ns(const char *ns, char **out)
{
    *out = (char *)(ns ? ns : "");
    if (strlen(*out) > 63)
        return braid__error(BRAID_INVALID_ARGUMENT, "namespace is longer than 63 bytes");
    return BRAID_OK;
}

braid_status braid__check_chunk_id(const char *id)
{
    if (!id)
        return braid__error(BRAID_INVALID_ARGUMENT, "a chunk id is required");
    size_t n = strspn(id, "0123456789abcdef");
    if (n != BRAID_CHUNK_ID_LEN || id[n])
        return braid__error(BRAID_INVALID_ARGUMENT,
                            "'%.80s' is not a chunk id (64 lower-case hex digits)", id);
    return BRAID_OK;
}

braid_status braid_chunk_register(braid_client *c, const braid_chunk_desc *d, braid_chunk_info *out,
                                  int *existed)
{
    if (!c || !d || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client, desc and out are required");
    Braid__V1__RegisterChunkRequest req = BRAID__V1__REGISTER_CHUNK_REQUEST__INIT;
    Braid__V1__TokenIds toks = BRAID__V1__TOKEN_IDS__INIT;
    braid_status st = check_ns(d->ns, &req.namespace_);
    if (st != BRAID_OK)
        return st;
    if ((d->text != NULL) == (d->n_tokens > 0))
        return braid__error(BRAID_INVALID_ARGUMENT, "a chunk needs exactly one of text or tokens");
    if ((unsigned)d->role > BRAID_ROLE_ASSISTANT)
        return braid__error(BRAID_INVALID_ARGUMENT, "unknown role %d", (int)d->role);
    if (d->text) {
        if (!braid__utf8_valid(d->text, strlen(d->text)))
            return braid__error(BRAID_INVALID_ARGUMENT, "chunk text is not valid UTF-8");
        req.content_case = BRAID__V1__REGISTER_CHUNK_REQUEST__CONTENT_TEXT;
        req.text = (char *)d->text;
    } else {
        toks.ids = (int32_t *)d->tokens;
        toks.n_ids = d->n_tokens;
        req.content_case = BRAID__V1__REGISTER_CHUNK_REQUEST__CONTENT_TOKENS;
        req.tokens = &toks;
    }
    req.role = (Braid__V1__Role)d->role;
    req.pin = d->pin != 0;
    req.precompute = d->precompute != 0;
    Braid__V1__RegisterChunkReply *r = NULL;
    st = CALL(c, "RegisterChunk", req, braid__v1__register_chunk_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    chunk_info_from(out, r->chunk);
    if (existed)
        *existed = r->existed;
    braid__v1__register_chunk_reply__free_unpacked(r, NULL);
    return BRAID_OK;
}

braid_status braid_chunk_get(braid_client *c, const char *ns, const char *id, braid_chunk_info *out,
                             braid_chunk_content *content)
{
    if (!c || !out)
        return braid__error(BRAID_INVALID_ARGUMENT, "client and out are required");
    Braid__V1__GetChunkRequest req = BRAID__V1__GET_CHUNK_REQUEST__INIT;
    braid_status st = check_ns(ns, &req.namespace_);
    if (st != BRAID_OK || (st = braid__check_chunk_id(id)) != BRAID_OK)
        return st;
    req.id = (char *)id;
    req.include_tokens = content != NULL;
    Braid__V1__GetChunkReply *r = NULL;
    st = CALL(c, "GetChunk", req, braid__v1__get_chunk_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    chunk_info_from(out, r->chunk);
    if (content) {
        memset(content, 0, sizeof *content);
        st = copy_ids(r->token_ids, r->n_token_ids, &content->token_ids);
        content->n_tokens = content->token_ids ? r->n_token_ids : 0;
        if (st == BRAID_OK && !(content->text = bi_strdup(r->text ? r->text : ""))) {
            braid_chunk_content_free(content);
            st = braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
        }
    }
    braid__v1__get_chunk_reply__free_unpacked(r, NULL);
    return st;
}

void braid_chunk_content_free(braid_chunk_content *content)
{
    if (!content)
        return;
    bi_free(content->token_ids);
    bi_free(content->text);
    memset(content, 0, sizeof *content);
}

braid_status braid_chunk_list(braid_client *c, const char *ns, int all_namespaces,
                              braid_chunk_info **out, size_t *n)
{
    if (!c || !out || !n)
        return braid__error(BRAID_INVALID_ARGUMENT, "client, out and n are required");
    *out = NULL;
    *n = 0;
    Braid__V1__ListChunksRequest req = BRAID__V1__LIST_CHUNKS_REQUEST__INIT;
    braid_status st = check_ns(ns, &req.namespace_);
    if (st != BRAID_OK)
        return st;
    req.all_namespaces = all_namespaces != 0;
    Braid__V1__ListChunksReply *r = NULL;
    st = CALL(c, "ListChunks", req, braid__v1__list_chunks_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    if (r->n_chunks && !(*out = bi_mallocarray(r->n_chunks, sizeof **out))) {
        st = braid__error(BRAID_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < r->n_chunks; i++)
            chunk_info_from(&(*out)[i], r->chunks[i]);
        *n = r->n_chunks;
    }
    braid__v1__list_chunks_reply__free_unpacked(r, NULL);
    return st;
}

braid_status braid_chunk_delete(braid_client *c, const char *ns, const char *id)
{
    if (!c)
        return braid__error(BRAID_INVALID_ARGUMENT, "client is required");
    Braid__V1__DeleteChunkRequest req = BRAID__V1__DELETE_CHUNK_REQUEST__INIT;
    braid_status st = check_ns(ns, &req.namespace_);
    if (st != BRAID_OK || (st = braid__check_chunk_id(id)) != BRAID_OK)
        return st;
    req.id = (char *)id;
    Braid__V1__DeleteChunkReply *r = NULL;
    st = CALL(c, "DeleteChunk", req, braid__v1__delete_chunk_reply__descriptor, &r);
    if (st == BRAID_OK)
        braid__v1__delete_chunk_reply__free_unpacked(r, NULL);
    return st;
}

braid_status braid_chunk_pin(braid_client *c, const char *ns, const char *id, int pinned,
                             braid_chunk_info *out)
{
    if (!c)
        return braid__error(BRAID_INVALID_ARGUMENT, "client is required");
    Braid__V1__PinChunkRequest req = BRAID__V1__PIN_CHUNK_REQUEST__INIT;
    braid_status st = check_ns(ns, &req.namespace_);
    if (st != BRAID_OK || (st = braid__check_chunk_id(id)) != BRAID_OK)
        return st;
    req.id = (char *)id;
    req.pinned = pinned != 0;
    Braid__V1__PinChunkReply *r = NULL;
    st = CALL(c, "PinChunk", req, braid__v1__pin_chunk_reply__descriptor, &r);
    if (st != BRAID_OK)
        return st;
    if (out)
        chunk_info_from(out, r->chunk);
    braid__v1__pin_chunk_reply__free_unpacked(r, NULL);
    return BRAID_OK;
}
