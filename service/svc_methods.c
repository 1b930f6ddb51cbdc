/* svc_methods.c - the unary methods (Health, chunks, Tokenize, Stats, ModelInfo) and the method
 * table. */
#define BI_LOG_MODULE "svc" /* before any include: see common/log.h */
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "core/engine.h"
#include "svc_priv.h"
#include "svc_validate.h"
#include "tokenizer/chat.h"
#include "tokenizer/tokenizer.h"

#ifndef BRAID_VERSION
#define BRAID_VERSION "0.0.0"
#endif

/* Unpacks the payload as message type T into a variable `rq`, or returns. */
#define UNPACK(T, lower)                                                                           \
    T *rq = svc_unpack(&lower##__descriptor, &env->payload, res);                                  \
    if (!rq)                                                                                       \
        return;

/* Allocates and inits reply message `reply` of type T in the arena, or fails. */
#define REPLY(T, lower)                                                                            \
    T *reply = svc_arena_alloc(res, sizeof *reply);                                                \
    if (!reply) {                                                                                  \
        svc_fail(res, BI_NOMEM, "out of memory");                                                  \
        goto out;                                                                                  \
    }                                                                                              \
    lower##__init(reply);                                                                          \
    res->reply = &reply->base;

static const char *backend_name(svc_server *s)
{
    return s->eng ? eng_engine_backend_name(s->eng) : "none";
}

static void handle_health(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                          svc_result *res)
{
    (void)c;
    UNPACK(Braid__V1__HealthRequest, braid__v1__health_request)
    REPLY(Braid__V1__HealthReply, braid__v1__health_reply)
    reply->serving_status = s->phase_now == SVC_SERVING
                                ? BRAID__V1__HEALTH_REPLY__SERVING_STATUS__SERVING
                                : BRAID__V1__HEALTH_REPLY__SERVING_STATUS__NOT_SERVING;
    reply->version = (char *)BRAID_VERSION;
    reply->backend = (char *)backend_name(s);
    reply->model = s->eng ? svc_wire_str(res, eng_engine_model(s->eng)->name,
                                         strlen(eng_engine_model(s->eng)->name))
                          : (char *)"";
    reply->uptime_ms = uv_now(s->loop) - s->start_ms;
out:
    braid__v1__health_request__free_unpacked(rq, NULL);
}

static Braid__V1__ChunkInfo *chunk_info_wire(svc_result *res, const eng_chunk_info *ci)
{
    Braid__V1__ChunkInfo *w = svc_arena_alloc(res, sizeof *w);
    char *id = svc_arena_alloc(res, 65);
    char *ns = svc_arena_alloc(res, sizeof ci->ns);
    if (!w || !id || !ns)
        return NULL;
    braid__v1__chunk_info__init(w);
    eng_chunk_id_hex(&ci->id, id);
    memcpy(ns, ci->ns, sizeof ci->ns);
    w->id = id;
    w->namespace_ = svc_wire_str(res, ns, strlen(ns));
    static const Braid__V1__Role roles[] = {
        [ENG_ROLE_SYSTEM] = BRAID__V1__ROLE__ROLE_SYSTEM,
        [ENG_ROLE_CONTEXT] = BRAID__V1__ROLE__ROLE_CONTEXT,
        [ENG_ROLE_USER] = BRAID__V1__ROLE__ROLE_USER,
        [ENG_ROLE_ASSISTANT] = BRAID__V1__ROLE__ROLE_ASSISTANT,
    };
    w->role = ci->role < ENG_ROLE_COUNT_ ? roles[ci->role] : BRAID__V1__ROLE__ROLE_UNSPECIFIED;
    w->num_tokens = (uint32_t)ci->n_tokens;
    w->pinned = ci->pinned;
    w->kv_resident = ci->kv_resident;
    w->users = ci->users;
    w->hits = ci->hits;
    w->tokens_saved = ci->tokens_saved;
    w->kv_bytes = ci->kv_bytes;
    return w;
}

/* Fills *ci for (ns, id) and returns its wire form, or sets res on failure. */
static Braid__V1__ChunkInfo *chunk_lookup(svc_server *s, svc_result *res, const char *ns,
                                          const eng_chunk_id *id)
{
    eng_chunk_info ci;
    bi_status st = eng_chunk_get(s->eng, ns, id, &ci);
    if (st != BI_OK) {
        char hex[65];
        eng_chunk_id_hex(id, hex);
        svc_fail(res, st, "%s: chunk %s in namespace '%s'",
                 st == BI_NOT_FOUND ? "no such chunk" : bi_strerror(st), hex, ns);
        return NULL;
    }
    Braid__V1__ChunkInfo *w = chunk_info_wire(res, &ci);
    if (!w)
        svc_fail(res, BI_NOMEM, "out of memory");
    return w;
}

/* Checks the namespace and chunk id fields shared by the chunk requests. */
static bool chunk_ref_check(svc_server *s, svc_result *res, const char *ns, const char *hex,
                            eng_chunk_id *id)
{
    bi_status st;
    if (!svc_need_engine(s, res))
        return false;
    if ((st = svc_check_text("namespace", ns, SVC_MAX_NS, res->message, sizeof res->message)) ||
        (st = svc_chunk_id_from_wire("id", hex, id, res->message, sizeof res->message))) {
        res->status = st;
        return false;
    }
    return true;
}

static void handle_register_chunk(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                                  svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    UNPACK(Braid__V1__RegisterChunkRequest, braid__v1__register_chunk_request)
    eng_chunk_desc d = {.ns = rq->namespace_, .pin = rq->pin, .precompute = rq->precompute};
    eng_chunk_id id;
    bool existed = false;
    bi_status st;
    if ((st = svc_check_text("namespace", rq->namespace_, SVC_MAX_NS, res->message,
                             sizeof res->message)) ||
        (st = svc_role_from_wire("role", (int)rq->role, ENG_ROLE_CONTEXT, &d.role, res->message,
                                 sizeof res->message))) {
        res->status = st;
        goto out;
    }
    if (rq->content_case == BRAID__V1__REGISTER_CHUNK_REQUEST__CONTENT_TEXT) {
        d.text = rq->text;
        d.text_len = strlen(rq->text);
        if ((st = svc_check_text("text", rq->text, 0, res->message, sizeof res->message))) {
            res->status = st;
            goto out;
        }
    } else if (rq->content_case == BRAID__V1__REGISTER_CHUNK_REQUEST__CONTENT_TOKENS) {
        d.ids = rq->tokens->ids;
        d.n_ids = rq->tokens->n_ids;
    }
    if ((st = eng_chunk_register(s->eng, &d, &id, &existed)) != BI_OK) {
        svc_fail(
            res, st, "cannot register the chunk: %s",
            st == BI_INVALID_ARGUMENT
                ? "empty content, text without a tokenizer, or token ids outside the vocabulary"
            : st == BI_OUT_OF_RANGE ? "longer than the context"
                                    : bi_strerror(st));
        goto out;
    }
    REPLY(Braid__V1__RegisterChunkReply, braid__v1__register_chunk_reply)
    reply->existed = existed;
    reply->chunk = chunk_lookup(s, res, rq->namespace_, &id);
out:
    braid__v1__register_chunk_request__free_unpacked(rq, NULL);
}

/* Adds the chunk's tokens and their text to a GetChunk reply. */
static void chunk_tokens_wire(svc_server *s, svc_result *res, const char *ns,
                              const eng_chunk_id *id, Braid__V1__GetChunkReply *reply)
{
    int32_t *ids = NULL;
    size_t n = 0;
    char *text = NULL;
    size_t len = 0;
    bi_status st = eng_chunk_tokens(s->eng, ns, id, &ids, &n);
    const struct eng_tokenizer *tok = eng_engine_tokenizer(s->eng);
    if (st == BI_OK && tok)
        st = eng_tokenizer_decode(tok, ids, n, &text, &len);
    int32_t *wire_ids = st == BI_OK ? svc_arena_alloc(res, (n ? n : 1) * sizeof *ids) : NULL;
    if (st != BI_OK || !wire_ids) {
        svc_fail(res, st != BI_OK ? st : BI_NOMEM, "cannot read the chunk's tokens");
    } else {
        memcpy(wire_ids, ids, n * sizeof *ids);
        reply->token_ids = wire_ids;
        reply->n_token_ids = n;
        if (text) {
            char *t = svc_arena_alloc(res, len + 1);
            if (t) {
                memcpy(t, text, len);
                reply->text = svc_wire_str(res, t, len);
            }
        }
    }
    bi_free(ids);
    bi_free(text);
}

static void handle_get_chunk(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                             svc_result *res)
{
    (void)c;
    UNPACK(Braid__V1__GetChunkRequest, braid__v1__get_chunk_request)
    eng_chunk_id id;
    if (!chunk_ref_check(s, res, rq->namespace_, rq->id, &id))
        goto out;
    REPLY(Braid__V1__GetChunkReply, braid__v1__get_chunk_reply)
    if ((reply->chunk = chunk_lookup(s, res, rq->namespace_, &id)) && rq->include_tokens)
        chunk_tokens_wire(s, res, rq->namespace_, &id, reply);
out:
    braid__v1__get_chunk_request__free_unpacked(rq, NULL);
}

static void handle_list_chunks(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                               svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    UNPACK(Braid__V1__ListChunksRequest, braid__v1__list_chunks_request)
    eng_chunk_info *infos = NULL;
    size_t n = 0;
    bi_status st;
    if ((st = svc_check_text("namespace", rq->namespace_, SVC_MAX_NS, res->message,
                             sizeof res->message))) {
        res->status = st;
        goto out;
    }
    if ((st = eng_chunk_list(s->eng, rq->all_namespaces ? NULL : rq->namespace_, &infos, &n))) {
        svc_fail(res, st, "cannot list chunks");
        goto out;
    }
    REPLY(Braid__V1__ListChunksReply, braid__v1__list_chunks_reply)
    reply->chunks = svc_arena_alloc(res, (n ? n : 1) * sizeof *reply->chunks);
    for (size_t i = 0; reply->chunks && i < n; i++)
        if (!(reply->chunks[reply->n_chunks++] = chunk_info_wire(res, &infos[i])))
            reply->chunks = NULL;
    if (!reply->chunks)
        svc_fail(res, BI_NOMEM, "out of memory listing %zu chunks", n);
out:
    bi_free(infos);
    braid__v1__list_chunks_request__free_unpacked(rq, NULL);
}

static void handle_delete_chunk(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                                svc_result *res)
{
    (void)c;
    UNPACK(Braid__V1__DeleteChunkRequest, braid__v1__delete_chunk_request)
    eng_chunk_id id;
    bi_status st;
    if (!chunk_ref_check(s, res, rq->namespace_, rq->id, &id))
        goto out;
    if ((st = eng_chunk_delete(s->eng, rq->namespace_, &id)) != BI_OK) {
        svc_fail(res, st, "no chunk %s in namespace '%s'", rq->id, rq->namespace_);
        goto out;
    }
    REPLY(Braid__V1__DeleteChunkReply, braid__v1__delete_chunk_reply)
out:
    braid__v1__delete_chunk_request__free_unpacked(rq, NULL);
}

static void handle_pin_chunk(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                             svc_result *res)
{
    (void)c;
    UNPACK(Braid__V1__PinChunkRequest, braid__v1__pin_chunk_request)
    eng_chunk_id id;
    bi_status st;
    if (!chunk_ref_check(s, res, rq->namespace_, rq->id, &id))
        goto out;
    if ((st = eng_chunk_pin(s->eng, rq->namespace_, &id, rq->pinned)) != BI_OK) {
        svc_fail(res, st, "no chunk %s in namespace '%s'", rq->id, rq->namespace_);
        goto out;
    }
    REPLY(Braid__V1__PinChunkReply, braid__v1__pin_chunk_reply)
    reply->chunk = chunk_lookup(s, res, rq->namespace_, &id);
out:
    braid__v1__pin_chunk_request__free_unpacked(rq, NULL);
}

static void handle_tokenize(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                            svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    UNPACK(Braid__V1__TokenizeRequest, braid__v1__tokenize_request)
    const struct eng_tokenizer *tok = eng_engine_tokenizer(s->eng);
    int32_t *ids = NULL;
    size_t n = 0;
    bi_status st;
    if ((st = svc_check_text("text", rq->text, 0, res->message, sizeof res->message))) {
        res->status = st;
        goto out;
    }
    if (!tok) {
        svc_fail(res, BI_FAILED_PRECONDITION, "the model has no tokenizer (dummy weights)");
        goto out;
    }
    if ((st = eng_tokenizer_encode(tok, rq->text, strlen(rq->text), rq->parse_special, &ids, &n))) {
        svc_fail(res, st, "cannot tokenize");
        goto out;
    }
    REPLY(Braid__V1__TokenizeReply, braid__v1__tokenize_reply)
    if (!(reply->token_ids = svc_arena_alloc(res, (n ? n : 1) * sizeof *ids))) {
        svc_fail(res, BI_NOMEM, "out of memory");
        goto out;
    }
    memcpy(reply->token_ids, ids, n * sizeof *ids);
    reply->n_token_ids = n;
out:
    bi_free(ids);
    braid__v1__tokenize_request__free_unpacked(rq, NULL);
}

static void handle_stats(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                         svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    UNPACK(Braid__V1__StatsRequest, braid__v1__stats_request)
    eng_stats es;
    bi_status st = eng_stats_get(s->eng, &es);
    if (st != BI_OK) {
        svc_fail(res, st, "cannot read the engine's statistics");
        goto out;
    }
    REPLY(Braid__V1__StatsReply, braid__v1__stats_reply)
    reply->kv_pages_total = (uint32_t)es.kv_pages_total;
    reply->kv_pages_free = (uint32_t)es.kv_pages_free;
    reply->kv_page_tokens = (uint32_t)es.page_size;
    reply->kv_page_bytes = es.kv_page_bytes;
    reply->chunks = (uint32_t)es.n_chunks;
    reply->running = (uint32_t)es.running;
    reply->queued = (uint32_t)es.queued;
    reply->generations = es.generations;
    reply->prompt_tokens = es.prompt_tokens;
    reply->cached_prompt_tokens = es.cached_tokens;
    reply->generated_tokens = es.generated_tokens;
    reply->steps = es.steps;
    reply->evictions = es.evictions;
    reply->preemptions = es.preemptions;
    reply->open_streams = (uint32_t)s->streams.n;
    reply->calls_in_flight = (uint32_t)s->calls_in_flight;
    reply->uptime_ms = uv_now(s->loop) - s->start_ms;
out:
    braid__v1__stats_request__free_unpacked(rq, NULL);
}

static void handle_model_info(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                              svc_result *res)
{
    (void)c;
    if (!svc_need_engine(s, res))
        return;
    UNPACK(Braid__V1__ModelInfoRequest, braid__v1__model_info_request)
    const eng_model_config *m = eng_engine_model(s->eng);
    const struct eng_tokenizer *tok = eng_engine_tokenizer(s->eng);
    REPLY(Braid__V1__ModelInfoReply, braid__v1__model_info_reply)
    reply->name = svc_wire_str(res, m->name, strlen(m->name));
    reply->architecture = (char *)eng_arch_name(m->arch);
    reply->num_layers = (uint32_t)m->n_layer;
    reply->hidden_size = (uint32_t)m->d_model;
    reply->num_heads = (uint32_t)m->n_head;
    reply->num_kv_heads = (uint32_t)m->n_kv_head;
    reply->head_dim = (uint32_t)m->head_dim;
    reply->vocab_size = (uint32_t)m->vocab_size;
    reply->max_context = (uint32_t)eng_engine_max_ctx(s->eng);
    reply->chat_format = (char *)(tok ? eng_chat_format_name(eng_engine_chat_format(s->eng)) : "");
    reply->fingerprint = (char *)eng_engine_fingerprint(s->eng);
    reply->backend = (char *)backend_name(s);
    reply->bos_token_id = tok ? eng_tokenizer_bos(tok) : m->bos_id;
    reply->eos_token_id = tok ? eng_tokenizer_eos(tok) : m->eos_id;
out:
    braid__v1__model_info_request__free_unpacked(rq, NULL);
}

static const struct {
    const char *method;
    svc_handler fn;
} methods[] = {
    {"braid.v1.Braid/Health", handle_health},
    {"braid.v1.Braid/RegisterChunk", handle_register_chunk},
    {"braid.v1.Braid/GetChunk", handle_get_chunk},
    {"braid.v1.Braid/ListChunks", handle_list_chunks},
    {"braid.v1.Braid/DeleteChunk", handle_delete_chunk},
    {"braid.v1.Braid/PinChunk", handle_pin_chunk},
    {"braid.v1.Braid/Generate", svc_generate},
    {"braid.v1.Braid/StreamNext", svc_stream_next},
    {"braid.v1.Braid/Cancel", svc_cancel},
    {"braid.v1.Braid/Tokenize", handle_tokenize},
    {"braid.v1.Braid/Stats", handle_stats},
    {"braid.v1.Braid/ModelInfo", handle_model_info},
};

svc_handler svc_method_find(const char *name)
{
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(name, methods[i].method) == 0)
            return methods[i].fn;
    return NULL;
}
