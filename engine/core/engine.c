/* engine.c - engine lifetime, chunk API, request admission and the worker loop. */
#define BI_LOG_MODULE "engine"
#include "core/engine.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <mbedtls/sha256.h>

#include "common/alloc.h"
#include "common/log.h"
#include "core/catalog.h"
#include "core/forward.h"
#include "tokenizer/tokenizer.h"

#define ENG_MAX_SEQS_PER_STEP 256
#define ENG_TEXT_MAX          1024

/* A read-only level of a sequence: a chunk's KV variant at a position. */
typedef struct eng_level {
    eng_kvent *kv;
    int32_t pos;
} eng_level;

struct eng_req;

/* Anything that runs through the forward pass: a chunk fill (computes a KV
 * variant) or a request's private tail (prompt remainder, then generation). */
typedef struct eng_seq {
    struct eng_req *req; /* NULL for a fill */
    eng_kvent *fill;     /* the variant being filled */
    eng_level *levels;
    int n_levels;
    eng_seg *segs; /* n_levels, rebuilt per step */
    int32_t tail_pos;
    int32_t done;   /* tokens of the tail already in the pool */
    int32_t *pages; /* request: own pages; fill: the variant's */
    int32_t n_pages, cap_pages;
    struct eng_seq *next;
    /* per step */
    int32_t step_n;
} eng_seq;

typedef enum req_state { REQ_QUEUED, REQ_ADMITTED, REQ_FINISHED } req_state;

typedef struct eng_req {
    uint64_t id;
    char rid[64];
    char ns[64];
    eng_event_fn fn;
    void *user;
    atomic_bool cancel;
    req_state state;
    eng_reuse_mode reuse;
    eng_chunk_id *chunk_ids;
    int n_chunks;
    int32_t *tail; /* private prompt tokens, then generated tokens */
    int32_t n_tail, cap_tail, n_prompt_tail;
    int32_t prompt_tokens;
    eng_sampler *sampler;
    bool want_logprobs;
    eng_stop_matcher *stops;
    int32_t *stop_ids;
    size_t n_stop_ids;
    int32_t max_tokens;
    bool ignore_eos, retain_output;
    int64_t deadline_ms;
    eng_detok detok;
    eng_seq seq;
    eng_usage usage;
    int64_t t_submit_us;
    eng_finish finish;
    bi_status status;
    char message[256];
    struct eng_req *next;
} eng_req;

struct eng_engine {
    eng_config cfg;
    eng_model *model;
    eng_tokenizer *tok;
    eng_chat_format chat;
    eng_backend *backend;
    eng_store_dtype dtype; /* cfg.dtype, parsed */
    eng_kv_pool pool;
    eng_forward *fwd;
    eng_catalog cat;
    eng_chunk *bos_chunk;
    int32_t max_ctx, max_batch;

    pthread_mutex_t lock;
    pthread_cond_t wake;
    pthread_t worker;
    bool worker_started, stopping;
    eng_req *queue_head, *queue_tail; /* submitted, not admitted */
    eng_req *running;                 /* admitted (worker-owned list, guarded by lock) */
    eng_seq *fills;                   /* chunk fills in flight */
    uint64_t next_id;
    eng_stats stats;

    /* worker-private step buffers */
    bool device_sampling; /* the backend samples (eng_forward_run_sampled) */
    float *logits;        /* host sampling: the step's logit rows */
    size_t logits_cap;
    eng_sampler **step_samplers; /* device sampling: each row's sampler */
    eng_sample_out *step_out;    /* and its result */
    int32_t *step_tokens;
    eng_fwd_seq *step_fseq;
    eng_seq **step_seqs;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *eng_finish_name(eng_finish f)
{
    static const char *const names[] = {"none", "stop", "length", "cancelled", "deadline", "error"};
    return f <= ENG_FINISH_ERROR ? names[f] : "?";
}

void eng_chunk_id_hex(const eng_chunk_id *id, char out[65])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[id->b[i] >> 4];
        out[2 * i + 1] = hex[id->b[i] & 15];
    }
    out[64] = '\0';
}

bi_status eng_chunk_id_parse(const char *s, eng_chunk_id *out)
{
    if (!s || strlen(s) != 64)
        return BI_INVALID_ARGUMENT;
    for (int i = 0; i < 64; i++) {
        char ch = s[i];
        int v = ch >= '0' && ch <= '9'   ? ch - '0'
                : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                         : -1;
        if (v < 0)
            return BI_INVALID_ARGUMENT;
        if (i % 2 == 0)
            out->b[i / 2] = (uint8_t)(v << 4);
        else
            out->b[i / 2] |= (uint8_t)v;
    }
    return BI_OK;
}

/* --- tokens: framing and ids --- */

/* Appends n ids to a growable array. */
static bi_status ids_append(int32_t **arr, int32_t *len, int32_t *cap, const int32_t *ids, size_t n)
{
    size_t need;
    if (!bi_size_add((size_t)*len, n, &need) || need > INT32_MAX)
        return BI_OUT_OF_RANGE;
    size_t c = (size_t)*cap;
    bi_status st = bi_array_reserve((void **)arr, &c, need, sizeof(int32_t));
    if (st != BI_OK)
        return st;
    *cap = (int32_t)c;
    if (n)
        memcpy(*arr + *len, ids, n * sizeof(int32_t));
    *len = (int32_t)need;
    return BI_OK;
}

static bi_status encode_append(const eng_tokenizer *t, const char *s, size_t len, bool special,
                               int32_t **arr, int32_t *n, int32_t *cap)
{
    int32_t *ids = NULL;
    size_t k = 0;
    if (len == 0)
        return BI_OK;
    bi_status st = eng_tokenizer_encode(t, s, len, special, &ids, &k);
    if (st == BI_OK)
        st = ids_append(arr, n, cap, ids, k);
    bi_free(ids);
    return st;
}

/* Tokens of one message framed for its role. The template's own markers are
 * parsed as special tokens; the content is not, so text cannot inject them. */
static bi_status frame_tokens(eng_engine *e, eng_role role, const char *text, size_t len,
                              int32_t **arr, int32_t *n, int32_t *cap, char *err, size_t err_size)
{
    if (!e->tok) {
        snprintf(err, err_size, "this model has no tokenizer (dummy weights): send token ids");
        return BI_INVALID_ARGUMENT;
    }
    static const char mark[] = "\x01\x02BRAID\x02\x01";
    char *framed = NULL;
    size_t flen = 0;
    bi_status st = eng_chat_frame(e->chat, role, mark, sizeof mark - 1, &framed, &flen);
    if (st != BI_OK) {
        snprintf(err, err_size, "cannot frame a message for this chat template: %s",
                 bi_strerror(st));
        return st;
    }
    const char *at = strstr(framed, mark);
    if (!at) {
        bi_free(framed);
        return BI_INTERNAL;
    }
    size_t pre = (size_t)(at - framed), post_off = pre + sizeof mark - 1;
    st = encode_append(e->tok, framed, pre, true, arr, n, cap);
    if (st == BI_OK)
        st = encode_append(e->tok, text, len, false, arr, n, cap);
    if (st == BI_OK)
        st = encode_append(e->tok, framed + post_off, flen - post_off, true, arr, n, cap);
    bi_free(framed);
    if (st != BI_OK)
        snprintf(err, err_size, "tokenization failed: %s", bi_strerror(st));
    return st;
}

static bi_status check_ids(eng_engine *e, const int32_t *ids, size_t n, char *err, size_t err_size)
{
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= e->model->cfg.vocab_size) {
            snprintf(err, err_size, "token id %d at index %zu is outside the vocabulary [0, %d)",
                     ids[i], i, e->model->cfg.vocab_size);
            return BI_INVALID_ARGUMENT;
        }
    }
    return BI_OK;
}

/* --- chunks --- */

static void chunk_id_compute(eng_engine *e, const char *ns, eng_role role, const int32_t *ids,
                             int32_t n, eng_chunk_id *out)
{
    mbedtls_sha256_context ctx;
    mbedtls_sha256_init(&ctx);
    mbedtls_sha256_starts_ret(&ctx, 0);
    uint8_t head[4 + 64 + 65 + 4 + 4] = {0};
    memcpy(head, "bchk", 4);
    snprintf((char *)head + 4, 64, "%s", ns ? ns : "");
    memcpy(head + 68, e->model->fingerprint, 64);
    uint32_t r = (uint32_t)role, len = (uint32_t)n;
    memcpy(head + 133, &r, 4);
    memcpy(head + 137, &len, 4);
    mbedtls_sha256_update_ret(&ctx, head, sizeof head);
    mbedtls_sha256_update_ret(&ctx, (const uint8_t *)ids, (size_t)n * sizeof(int32_t));
    mbedtls_sha256_finish_ret(&ctx, out->b);
    mbedtls_sha256_free(&ctx);
}

static bi_status check_ns(const char *ns, char *err, size_t err_size)
{
    if (ns && strlen(ns) > 63) {
        snprintf(err, err_size, "namespace longer than 63 bytes");
        return BI_INVALID_ARGUMENT;
    }
    return BI_OK;
}

/* Tokens of a chunk or an inline part: framed text or raw ids. */
static bi_status content_tokens(eng_engine *e, eng_role role, const char *text, size_t text_len,
                                const int32_t *ids, size_t n_ids, int32_t **arr, int32_t *n,
                                int32_t *cap, char *err, size_t err_size)
{
    if (role < 0 || role >= ENG_ROLE_COUNT_) {
        snprintf(err, err_size, "unknown role %d", (int)role);
        return BI_INVALID_ARGUMENT;
    }
    if (ids && n_ids) {
        bi_status st = check_ids(e, ids, n_ids, err, err_size);
        return st != BI_OK ? st : ids_append(arr, n, cap, ids, n_ids);
    }
    if (!text || !text_len) {
        snprintf(err, err_size, "empty content: give text or token ids");
        return BI_INVALID_ARGUMENT;
    }
    return frame_tokens(e, role, text, text_len, arr, n, cap, err, err_size);
}

/* Registers tokens (taking ownership) as a chunk under the lock. */
static bi_status chunk_insert(eng_engine *e, const char *ns, eng_role role, int32_t *toks,
                              int32_t n, bool pin, eng_chunk_id *id, bool *existed, eng_chunk **out)
{
    chunk_id_compute(e, ns, role, toks, n, id);
    eng_chunk *ch = eng_catalog_find(&e->cat, ns, id);
    if (ch) {
        bi_free(toks);
        ch->pinned |= pin;
        if (existed)
            *existed = true;
        if (out)
            *out = ch;
        return BI_OK;
    }
    bi_status st = eng_catalog_add(&e->cat, id, ns, role, toks, n, &ch);
    if (st != BI_OK) {
        bi_free(toks);
        return st;
    }
    ch->pinned = pin;
    if (existed)
        *existed = false;
    if (out)
        *out = ch;
    return BI_OK;
}

static bi_status prefetch_chunk(eng_engine *e, eng_chunk *ch);

bi_status eng_chunk_register(eng_engine *e, const eng_chunk_desc *d, eng_chunk_id *id,
                             bool *existed)
{
    char err[256];
    if (!e || !d || !id)
        return BI_INVALID_ARGUMENT;
    bi_status st = check_ns(d->ns, err, sizeof err);
    int32_t *toks = NULL, n = 0, cap = 0;
    if (st == BI_OK)
        st = content_tokens(e, d->role, d->text, d->text_len, d->ids, d->n_ids, &toks, &n, &cap,
                            err, sizeof err);
    if (st == BI_OK && n >= e->max_ctx)
        st = BI_OUT_OF_RANGE;
    if (st != BI_OK) {
        bi_free(toks);
        return st;
    }
    pthread_mutex_lock(&e->lock);
    eng_chunk *ch = NULL;
    st = chunk_insert(e, d->ns, d->role, toks, n, d->pin, id, existed, &ch);
    if (st == BI_OK && d->precompute)
        st = prefetch_chunk(e, ch);
    pthread_mutex_unlock(&e->lock);
    return st;
}

bi_status eng_chunk_get(eng_engine *e, const char *ns, const eng_chunk_id *id, eng_chunk_info *info)
{
    pthread_mutex_lock(&e->lock);
    eng_chunk *ch = eng_catalog_find(&e->cat, ns, id);
    if (ch && !ch->hidden)
        eng_catalog_info(&e->cat, ch, info);
    pthread_mutex_unlock(&e->lock);
    return ch && !ch->hidden ? BI_OK : BI_NOT_FOUND;
}

bi_status eng_chunk_tokens(eng_engine *e, const char *ns, const eng_chunk_id *id, int32_t **ids,
                           size_t *n)
{
    bi_status st = BI_NOT_FOUND;
    pthread_mutex_lock(&e->lock);
    eng_chunk *ch = eng_catalog_find(&e->cat, ns, id);
    if (ch && !ch->hidden) {
        *ids = bi_mallocarray((size_t)ch->n_tokens, sizeof(int32_t));
        st = *ids ? BI_OK : BI_NOMEM;
        if (*ids) {
            memcpy(*ids, ch->tokens, (size_t)ch->n_tokens * sizeof(int32_t));
            *n = (size_t)ch->n_tokens;
        }
    }
    pthread_mutex_unlock(&e->lock);
    return st;
}

bi_status eng_chunk_list(eng_engine *e, const char *ns, eng_chunk_info **infos, size_t *n)
{
    pthread_mutex_lock(&e->lock);
    size_t cap = e->cat.chunks.n, k = 0;
    eng_chunk_info *out = bi_calloc(cap ? cap : 1, sizeof *out);
    if (!out) {
        pthread_mutex_unlock(&e->lock);
        return BI_NOMEM;
    }
    for (size_t i = 0; i < e->cat.chunks.cap; i++) {
        eng_chunk *ch = e->cat.chunks.vals[i];
        if (!ch || (uintptr_t)ch == 1 || ch->hidden || (ns && strcmp(ch->ns, ns) != 0))
            continue;
        eng_catalog_info(&e->cat, ch, &out[k++]);
    }
    pthread_mutex_unlock(&e->lock);
    *infos = out;
    *n = k;
    return BI_OK;
}

bi_status eng_chunk_delete(eng_engine *e, const char *ns, const eng_chunk_id *id)
{
    pthread_mutex_lock(&e->lock);
    eng_chunk *ch = eng_catalog_find(&e->cat, ns, id);
    bool ok = ch && !ch->hidden;
    if (ok)
        eng_catalog_delete(&e->cat, ch);
    pthread_mutex_unlock(&e->lock);
    return ok ? BI_OK : BI_NOT_FOUND;
}

bi_status eng_chunk_pin(eng_engine *e, const char *ns, const eng_chunk_id *id, bool pin)
{
    pthread_mutex_lock(&e->lock);
    eng_chunk *ch = eng_catalog_find(&e->cat, ns, id);
    bool ok = ch && !ch->hidden;
    if (ok)
        ch->pinned = pin;
    pthread_mutex_unlock(&e->lock);
    return ok ? BI_OK : BI_NOT_FOUND;
}

/* --- sequences --- */

static void seq_release(eng_engine *e, eng_seq *s)
{
    for (int i = 0; i < s->n_levels; i++)
        eng_catalog_kvent_release(&e->cat, s->levels[i].kv);
    bi_free(s->levels);
    bi_free(s->segs);
    s->levels = NULL;
    s->segs = NULL;
    s->n_levels = 0;
    if (s->fill) {
        eng_catalog_kvent_release(&e->cat, s->fill); /* the pages are the variant's */
        s->fill = NULL;
    } else if (s->pages) {
        eng_kv_unref(&e->pool, s->pages, s->n_pages);
        bi_free(s->pages);
    }
    s->pages = NULL;
    s->n_pages = s->cap_pages = 0;
}

static bool seq_ready(const eng_seq *s)
{
    for (int i = 0; i < s->n_levels; i++)
        if (s->levels[i].kv->state != ENG_KVENT_READY)
            return false;
    return true;
}

/* Tokens the sequence has to have in the pool (all it knows so far). */
static int32_t seq_len(const eng_seq *s)
{
    return s->req ? s->req->n_tail : s->fill->len;
}

static const int32_t *seq_tokens(const eng_seq *s)
{
    return s->req ? s->req->tail : s->fill->chunk->tokens;
}

/* Starts filling variant kv: a sequence over levels[0..n_levels) (each gets a
 * user reference) whose tail is the variant's pages. */
static bi_status fill_start(eng_engine *e, eng_kvent *kv, const eng_level *levels, int n_levels,
                            int32_t pos)
{
    eng_seq *s = bi_calloc(1, sizeof *s);
    if (!s)
        return BI_NOMEM;
    if (n_levels) {
        s->levels = bi_mallocarray((size_t)n_levels, sizeof *s->levels);
        s->segs = bi_mallocarray((size_t)n_levels, sizeof *s->segs);
        if (!s->levels || !s->segs) {
            bi_free(s->levels);
            bi_free(s->segs);
            bi_free(s);
            return BI_NOMEM;
        }
        memcpy(s->levels, levels, (size_t)n_levels * sizeof *levels);
        for (int i = 0; i < n_levels; i++)
            eng_catalog_kvent_use(&e->cat, levels[i].kv);
    }
    s->n_levels = n_levels;
    s->fill = kv; /* holds the creator's user reference */
    s->pages = kv->pages;
    s->n_pages = s->cap_pages = kv->n_pages;
    s->tail_pos = pos;
    s->next = e->fills;
    e->fills = s;
    return BI_OK;
}

/* Computes a chunk's KV as the leading chunk of a composition (after BOS). */
static bi_status prefetch_chunk(eng_engine *e, eng_chunk *ch)
{
    uint8_t key[32];
    eng_level lv[1];
    int n = 0;
    int32_t pos = 0;
    const uint8_t *prev = NULL;
    if (e->bos_chunk && ch != e->bos_chunk) {
        uint8_t bkey[32];
        eng_kv_key(ENG_REUSE_EXACT, NULL, &e->bos_chunk->id, bkey);
        eng_kvent *b = eng_catalog_kvent_find(&e->cat, bkey);
        if (!b || b->state != ENG_KVENT_READY)
            return BI_OK; /* BOS is computed at start-up; without it, compute on first use */
        lv[n++] = (eng_level){b, 0};
        pos = b->len;
        prev = bkey;
        memcpy(key, bkey, 32);
    }
    uint8_t k2[32];
    eng_kv_key(ENG_REUSE_EXACT, prev ? key : NULL, &ch->id, k2);
    if (eng_catalog_kvent_find(&e->cat, k2))
        return BI_OK;
    eng_kvent *kv;
    bi_status st = eng_catalog_kvent_new(&e->cat, ch, k2, pos, &kv);
    if (st == BI_OK && (st = fill_start(e, kv, lv, n, pos)) != BI_OK)
        eng_catalog_kvent_release(&e->cat, kv);
    pthread_cond_signal(&e->wake);
    return st;
}

/* --- requests --- */

static void req_free(eng_req *r)
{
    if (!r)
        return;
    bi_free(r->chunk_ids);
    bi_free(r->tail);
    bi_free(r->stop_ids);
    eng_sampler_destroy(r->sampler);
    eng_stop_matcher_destroy(r->stops);
    bi_free(r);
}

static void emit_final(eng_req *r, const char *text, size_t len)
{
    eng_event ev = {.gen_id = r->id,
                    .final = true,
                    .token = -1,
                    .text = text ? text : "",
                    .text_len = len,
                    .finish = r->finish,
                    .status = r->status,
                    .message = r->message,
                    .usage = &r->usage};
    r->usage.total_ms = (double)(now_us() - r->t_submit_us) / 1000.0;
    r->fn(r->user, &ev);
}

static void req_fail(eng_req *r, eng_finish f, bi_status st, const char *msg)
{
    r->finish = f;
    r->status = st;
    snprintf(r->message, sizeof r->message, "%s", msg ? msg : "");
}

/* Inline parts that precede a chunk become chunks themselves (a composition is
 * chunks followed by one private tail); this collects them, under the lock. */
typedef struct part_toks {
    int32_t *ids;
    int32_t n, cap;
} part_toks;

static bi_status req_resolve(eng_engine *e, eng_req *r, const eng_gen_params *p, part_toks *pt,
                             char *err, size_t err_size)
{
    int last_chunk = -1;
    for (size_t i = 0; i < p->n_parts; i++)
        if (p->parts[i].is_chunk)
            last_chunk = (int)i;
    r->chunk_ids = bi_calloc(p->n_parts ? p->n_parts : 1, sizeof *r->chunk_ids);
    if (!r->chunk_ids)
        return BI_NOMEM;
    int32_t total = e->bos_chunk ? e->bos_chunk->n_tokens : 0;
    part_toks pending = {0};
    eng_role pending_role = ENG_ROLE_USER;
    bi_status st = BI_OK;
    for (size_t i = 0; i < p->n_parts && st == BI_OK; i++) {
        const eng_part *pp = &p->parts[i];
        if (!pp->is_chunk && (int)i > last_chunk) {
            st = ids_append(&r->tail, &r->n_tail, &r->cap_tail, pt[i].ids, (size_t)pt[i].n);
            continue;
        }
        if (!pp->is_chunk) {
            if (!pending.n)
                pending_role = pp->role;
            st = ids_append(&pending.ids, &pending.n, &pending.cap, pt[i].ids, (size_t)pt[i].n);
            continue;
        }
        if (pending.n) {
            eng_chunk_id aid;
            eng_chunk *ch;
            st = chunk_insert(e, r->ns, pending_role, pending.ids, pending.n, false, &aid, NULL,
                              &ch);
            pending = (part_toks){0};
            if (st != BI_OK)
                break;
            r->chunk_ids[r->n_chunks++] = aid;
            total += ch->n_tokens;
        }
        eng_chunk *ch = eng_catalog_find(&e->cat, r->ns, &pp->chunk);
        if (!ch || ch->hidden) {
            char hex[65];
            eng_chunk_id_hex(&pp->chunk, hex);
            snprintf(err, err_size, "chunk %s not found in namespace '%s'", hex, r->ns);
            st = BI_NOT_FOUND;
            break;
        }
        r->chunk_ids[r->n_chunks++] = pp->chunk;
        total += ch->n_tokens;
    }
    bi_free(pending.ids);
    if (st != BI_OK)
        return st;
    r->prompt_tokens = total + r->n_tail;
    return BI_OK;
}

static bi_status req_validate(eng_engine *e, const eng_gen_params *p, char *err, size_t err_size)
{
    bi_status st = check_ns(p->ns, err, err_size);
    if (st != BI_OK)
        return st;
    if (!p->parts || p->n_parts == 0 || p->n_parts > 4096) {
        snprintf(err, err_size, "a generation needs 1 to 4096 parts");
        return BI_INVALID_ARGUMENT;
    }
    if (p->max_tokens < 1 || p->max_tokens > e->max_ctx) {
        snprintf(err, err_size, "max_tokens must be in [1, %d]", e->max_ctx);
        return BI_INVALID_ARGUMENT;
    }
    if (p->reuse != ENG_REUSE_EXACT && p->reuse != ENG_REUSE_INDEPENDENT) {
        snprintf(err, err_size, "unknown reuse mode %d", (int)p->reuse);
        return BI_INVALID_ARGUMENT;
    }
    if (p->n_stop > 64 || p->n_stop_ids > 1024) {
        snprintf(err, err_size, "at most 64 stop strings and 1024 stop ids");
        return BI_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < p->n_stop; i++) {
        if (!p->stop[i] || strlen(p->stop[i]) > 256) {
            snprintf(err, err_size, "stop string %zu is missing or longer than 256 bytes", i);
            return BI_INVALID_ARGUMENT;
        }
    }
    if ((st = check_ids(e, p->stop_ids, p->n_stop_ids, err, err_size)) != BI_OK)
        return st;
    return eng_sampling_params_validate(&p->sampling, err, err_size);
}

static bi_status req_create(eng_engine *e, const eng_gen_params *p, eng_event_fn fn, void *user,
                            eng_req **out, char *err, size_t err_size)
{
    eng_req *r = bi_calloc(1, sizeof *r);
    if (!r)
        return BI_NOMEM;
    snprintf(r->ns, sizeof r->ns, "%s", p->ns ? p->ns : "");
    snprintf(r->rid, sizeof r->rid, "%s", p->request_id ? p->request_id : "");
    r->fn = fn;
    r->user = user;
    atomic_init(&r->cancel, false);
    r->reuse = p->reuse;
    r->max_tokens = p->max_tokens;
    r->ignore_eos = p->ignore_eos;
    r->retain_output = p->retain_output;
    r->deadline_ms = p->deadline_ms;
    r->want_logprobs = p->sampling.n_logprobs >= 0;
    r->t_submit_us = now_us();
    eng_detok_init(&r->detok);
    bi_status st = eng_sampler_create(&p->sampling, e->model->cfg.vocab_size, &r->sampler);
    if (st == BI_OK)
        st = eng_stop_matcher_create(p->stop, p->n_stop, &r->stops);
    if (st == BI_OK && p->n_stop_ids) {
        r->stop_ids = bi_mallocarray(p->n_stop_ids, sizeof(int32_t));
        st = r->stop_ids ? BI_OK : BI_NOMEM;
        if (st == BI_OK)
            memcpy(r->stop_ids, p->stop_ids, p->n_stop_ids * sizeof(int32_t));
        r->n_stop_ids = p->n_stop_ids;
    }
    if (st != BI_OK) {
        snprintf(err, err_size, "cannot set up sampling: %s", bi_strerror(st));
        req_free(r);
        return st;
    }
    *out = r;
    return BI_OK;
}

bi_status eng_generate(eng_engine *e, const eng_gen_params *p, eng_event_fn fn, void *user,
                       uint64_t *gen_id, char *err, size_t err_size)
{
    if (!e || !p || !fn) {
        snprintf(err, err_size, "engine, parameters and callback are required");
        return BI_INVALID_ARGUMENT;
    }
    bi_status st = req_validate(e, p, err, err_size);
    if (st != BI_OK)
        return st;
    /* Tokenize outside the lock. */
    part_toks *pt = bi_calloc(p->n_parts + 1, sizeof *pt);
    if (!pt)
        return BI_NOMEM;
    for (size_t i = 0; i < p->n_parts && st == BI_OK; i++)
        if (!p->parts[i].is_chunk)
            st = content_tokens(e, p->parts[i].role, p->parts[i].text, p->parts[i].text_len,
                                p->parts[i].ids, p->parts[i].n_ids, &pt[i].ids, &pt[i].n,
                                &pt[i].cap, err, err_size);
    eng_req *r = NULL;
    if (st == BI_OK)
        st = req_create(e, p, fn, user, &r, err, err_size);
    if (st == BI_OK && !p->no_generation_prompt && e->tok) {
        const char *gp = eng_chat_generation_prompt(e->chat);
        part_toks *g = &pt[p->n_parts];
        st = encode_append(e->tok, gp, strlen(gp), true, &g->ids, &g->n, &g->cap);
    }
    if (st == BI_OK) {
        pthread_mutex_lock(&e->lock);
        st = req_resolve(e, r, p, pt, err, err_size);
        if (st == BI_OK)
            st = ids_append(&r->tail, &r->n_tail, &r->cap_tail, pt[p->n_parts].ids,
                            (size_t)pt[p->n_parts].n);
        if (st == BI_OK) {
            r->n_prompt_tail = r->n_tail;
            r->prompt_tokens += pt[p->n_parts].n;
            if (r->n_tail == 0) {
                snprintf(err, err_size,
                         "the composition ends with a chunk: add an inline part "
                         "or the generation prompt after it");
                st = BI_INVALID_ARGUMENT;
            } else if (r->prompt_tokens >= e->max_ctx) {
                snprintf(err, err_size, "the composition has %d tokens; the context holds %d",
                         r->prompt_tokens, e->max_ctx);
                st = BI_OUT_OF_RANGE;
            }
        }
        if (st == BI_OK &&
            (st = eng_sampler_add_prompt(r->sampler, r->tail, (size_t)r->n_tail)) == BI_OK) {
            r->id = ++e->next_id;
            r->state = REQ_QUEUED;
            if (e->queue_tail)
                e->queue_tail->next = r;
            else
                e->queue_head = r;
            e->queue_tail = r;
            e->stats.queued++;
            *gen_id = r->id;
            pthread_cond_signal(&e->wake);
        }
        pthread_mutex_unlock(&e->lock);
    }
    for (size_t i = 0; i <= p->n_parts; i++)
        bi_free(pt[i].ids);
    bi_free(pt);
    if (st != BI_OK) {
        if (!err[0])
            snprintf(err, err_size, "%s", bi_strerror(st));
        req_free(r);
    }
    return st;
}

bi_status eng_cancel(eng_engine *e, uint64_t gen_id)
{
    bi_status st = BI_NOT_FOUND;
    pthread_mutex_lock(&e->lock);
    for (eng_req *r = e->queue_head; r && st; r = r->next)
        if (r->id == gen_id) {
            atomic_store(&r->cancel, true);
            st = BI_OK;
        }
    for (eng_req *r = e->running; r && st; r = r->next)
        if (r->id == gen_id && r->state != REQ_FINISHED) {
            atomic_store(&r->cancel, true);
            st = BI_OK;
        }
    pthread_cond_signal(&e->wake);
    pthread_mutex_unlock(&e->lock);
    return st;
}

/* --- worker: admission --- */

/* Takes a level on chunk ch for request r: an existing variant or a new one
 * with a fill. levels[0..n) precede it. */
static bi_status admit_level(eng_engine *e, eng_req *r, eng_chunk *ch, const uint8_t key[32],
                             eng_level *levels, int n, int32_t pos)
{
    eng_kvent *kv = eng_catalog_kvent_find(&e->cat, key);
    bool indep = r->reuse == ENG_REUSE_INDEPENDENT && ch != e->bos_chunk;
    if (kv) {
        eng_catalog_kvent_use(&e->cat, kv);
        if (kv->state == ENG_KVENT_READY) {
            r->usage.cached_tokens += kv->len;
            ch->hits++;
            ch->tokens_saved += (uint64_t)kv->len;
        }
    } else {
        int32_t base = indep ? 0 : pos;
        bi_status st = eng_catalog_kvent_new(&e->cat, ch, key, base, &kv);
        if (st != BI_OK)
            return st;
        /* An INDEPENDENT variant is computed alone at local positions. */
        st = fill_start(e, kv, indep ? NULL : levels, indep ? 0 : n, base);
        if (st != BI_OK) {
            eng_catalog_kvent_release(&e->cat, kv);
            return st;
        }
        eng_catalog_kvent_use(&e->cat, kv); /* the request's own reference */
    }
    levels[n] = (eng_level){kv, pos};
    return BI_OK;
}

/* Resolves a queued request's chunks into levels. BI_KV_FULL leaves it queued. */
static bi_status admit(eng_engine *e, eng_req *r)
{
    eng_seq *s = &r->seq;
    int max_levels = r->n_chunks + 1;
    s->levels = bi_mallocarray((size_t)max_levels, sizeof *s->levels);
    s->segs = bi_mallocarray((size_t)max_levels, sizeof *s->segs);
    if (!s->levels || !s->segs)
        return BI_NOMEM;
    uint8_t key[32], prev[32];
    bool have_prev = false;
    int32_t pos = 0;
    bi_status st = BI_OK;
    for (int i = -1; i < r->n_chunks && st == BI_OK; i++) {
        eng_chunk *ch = i < 0 ? e->bos_chunk : eng_catalog_find(&e->cat, r->ns, &r->chunk_ids[i]);
        if (i < 0 && !ch)
            continue;
        if (!ch) {
            char hex[65];
            eng_chunk_id_hex(&r->chunk_ids[i], hex);
            req_fail(r, ENG_FINISH_ERROR, BI_NOT_FOUND, "a chunk of the composition was deleted");
            return BI_NOT_FOUND;
        }
        bool exact = r->reuse == ENG_REUSE_EXACT || ch == e->bos_chunk;
        eng_kv_key(exact ? ENG_REUSE_EXACT : ENG_REUSE_INDEPENDENT, have_prev ? prev : NULL,
                   &ch->id, key);
        st = admit_level(e, r, ch, key, s->levels, s->n_levels, pos);
        if (st == BI_OK) {
            s->n_levels++;
            pos += ch->n_tokens;
            memcpy(prev, key, 32);
            have_prev = true;
        }
    }
    s->req = r;
    s->tail_pos = pos;
    return st;
}

static void running_push(eng_engine *e, eng_req *r)
{
    r->next = NULL;
    eng_req **p = &e->running;
    while (*p)
        p = &(*p)->next;
    *p = r;
}

/* Admits queued requests in order while the pool has room. Requests that
 * fail go to *done. Called with the lock held. */
static void admit_queue(eng_engine *e, eng_req **done)
{
    while (e->queue_head) {
        eng_req *r = e->queue_head;
        if (atomic_load(&r->cancel)) {
            req_fail(r, ENG_FINISH_CANCELLED, BI_CANCELLED, "cancelled before it started");
        } else {
            bi_status st = admit(e, r);
            if (st == BI_KV_FULL && (e->running || e->fills)) {
                seq_release(e, &r->seq); /* retry once running work frees pages */
                r->usage.cached_tokens = 0;
                return;
            }
            if (st != BI_OK && r->finish == ENG_FINISH_NONE)
                req_fail(r, ENG_FINISH_ERROR, st == BI_KV_FULL ? BI_RESOURCE_EXHAUSTED : st,
                         st == BI_KV_FULL ? "the KV pool cannot hold this composition"
                                          : bi_strerror(st));
        }
        e->queue_head = r->next;
        if (!e->queue_head)
            e->queue_tail = NULL;
        e->stats.queued--;
        if (r->finish != ENG_FINISH_NONE) {
            seq_release(e, &r->seq);
            r->next = *done;
            *done = r;
            continue;
        }
        r->state = REQ_ADMITTED;
        running_push(e, r);
        e->stats.running++;
    }
}

/* --- worker: one step --- */

/* Makes room in a request's own pages for n more tokens. */
static bi_status seq_reserve(eng_engine *e, eng_seq *s, int32_t n)
{
    int32_t need = eng_kv_pages_for(&e->pool, s->done + n);
    if (need <= s->n_pages)
        return BI_OK;
    if (need > s->cap_pages) {
        size_t cap = (size_t)s->cap_pages;
        bi_status st = bi_array_reserve((void **)&s->pages, &cap, (size_t)need, sizeof(int32_t));
        if (st != BI_OK)
            return st;
        s->cap_pages = (int32_t)cap;
    }
    bi_status st = eng_catalog_alloc_pages(&e->cat, need - s->n_pages, s->pages + s->n_pages);
    if (st == BI_OK)
        s->n_pages = need;
    return st;
}

/* Frees the tail pages of the newest running request after r that is not in
 * this step (r itself when none is and r may give up its own), so it will
 * recompute its tail later: preemption instead of failure when the pool is
 * full. Its chunk levels stay held. Returns whether pages were freed. */
static bool preempt_newer(eng_engine *e, eng_req *r, bool self_ok)
{
    eng_req *victim = NULL;
    for (eng_req *q = r->next; q; q = q->next)
        if (q->state != REQ_FINISHED && !q->seq.step_n && q->seq.n_pages > 0)
            victim = q;
    if (!victim && self_ok && r->seq.n_pages > 0)
        victim = r;
    if (!victim)
        return false;
    eng_seq *s = &victim->seq;
    BI_LOGD(victim->rid[0] ? victim->rid : NULL,
            "preempting generation %llu: %d pages freed, %d tokens to recompute",
            (unsigned long long)victim->id, s->n_pages, s->done);
    eng_kv_unref(&e->pool, s->pages, s->n_pages);
    s->n_pages = 0;
    s->done = 0;
    e->stats.preemptions++;
    return true;
}

/* Adds n tokens of s to the step. */
static void step_add(eng_engine *e, eng_seq *s, int32_t n, int *n_seqs, int32_t *n_tokens)
{
    for (int i = 0; i < s->n_levels; i++) {
        const eng_level *lv = &s->levels[i];
        s->segs[i] = (eng_seg){lv->kv->pages, lv->kv->len, lv->pos, lv->kv->rot_base};
    }
    s->step_n = n;
    memcpy(e->step_tokens + *n_tokens, seq_tokens(s) + s->done, (size_t)n * sizeof(int32_t));
    e->step_fseq[*n_seqs] = (eng_fwd_seq){
        .segs = s->segs,
        .n_segs = s->n_levels,
        .tail_pages = s->pages,
        .tail_pos = s->tail_pos,
        .tail_len = s->done,
        .n_new = n,
        .logits = s->req && s->done + n == seq_len(s) ? ENG_LOGITS_LAST : ENG_LOGITS_NONE,
    };
    e->step_seqs[(*n_seqs)++] = s;
    *n_tokens += n;
}

static int64_t now_ms_mono(void)
{
    return now_us() / 1000;
}

/* Builds the step's batch under the lock: decodes first, then prefill pieces
 * and chunk fills in arrival order, under the token budget. Requests that end
 * here (cancelled, expired, no room) go to *done. */
static void step_build(eng_engine *e, int *n_seqs, int32_t *n_tokens, eng_req **done)
{
    *n_seqs = 0;
    *n_tokens = 0;
    int64_t now = now_ms_mono();
    for (int pass = 0; pass < 2; pass++) {
        for (eng_req *r = e->running; r; r = r->next) {
            eng_seq *s = &r->seq;
            if (r->state == REQ_FINISHED || s->step_n)
                continue;
            if (atomic_load(&r->cancel))
                req_fail(r, ENG_FINISH_CANCELLED, BI_CANCELLED, "");
            else if (r->deadline_ms && now >= r->deadline_ms)
                req_fail(r, ENG_FINISH_DEADLINE, BI_DEADLINE_EXCEEDED, "deadline exceeded");
            if (r->finish != ENG_FINISH_NONE) {
                r->state = REQ_FINISHED;
                continue;
            }
            int32_t left = seq_len(s) - s->done;
            bool decode = left == 1 && r->n_tail > r->n_prompt_tail;
            if ((pass == 0) != decode || !seq_ready(s) || *n_seqs >= ENG_MAX_SEQS_PER_STEP)
                continue;
            int32_t n = left < e->max_batch - *n_tokens ? left : e->max_batch - *n_tokens;
            if (n <= 0)
                continue;
            bi_status st = seq_reserve(e, s, n);
            while (st == BI_KV_FULL && preempt_newer(e, r, false))
                st = seq_reserve(e, s, n);
            if (st == BI_KV_FULL && decode && preempt_newer(e, r, true))
                continue; /* r gave up its pages: it recomputes when there is room */
            if (st == BI_KV_FULL && !e->running->next) {
                req_fail(r, ENG_FINISH_ERROR, BI_RESOURCE_EXHAUSTED,
                         "the KV pool is full (no idle chunk left to evict)");
                r->state = REQ_FINISHED;
            } else if (st != BI_OK && st != BI_KV_FULL) {
                req_fail(r, ENG_FINISH_ERROR, st, bi_strerror(st));
                r->state = REQ_FINISHED;
            } else if (st == BI_OK) {
                step_add(e, s, n, n_seqs, n_tokens);
            }
        }
        if (pass == 0) {
            for (eng_seq *f = e->fills; f; f = f->next) {
                int32_t left = seq_len(f) - f->done;
                int32_t n = left < e->max_batch - *n_tokens ? left : e->max_batch - *n_tokens;
                if (n > 0 && !f->step_n && seq_ready(f) && *n_seqs < ENG_MAX_SEQS_PER_STEP)
                    step_add(e, f, n, n_seqs, n_tokens);
            }
        }
    }
    /* Unlink finished requests. */
    for (eng_req **p = &e->running; *p;) {
        eng_req *r = *p;
        if (r->state == REQ_FINISHED && !r->seq.step_n) {
            *p = r->next;
            seq_release(e, &r->seq);
            e->stats.running--;
            r->next = *done;
            *done = r;
        } else {
            p = &r->next;
        }
    }
}

static bool is_stop_id(const eng_req *r, int32_t t)
{
    for (size_t i = 0; i < r->n_stop_ids; i++)
        if (r->stop_ids[i] == t)
            return true;
    return false;
}

/* Turns a sampled token into a text delta through the detokenizer and the
 * stop matcher; sets *stopped when a stop string completed. */
static void token_text(eng_engine *e, eng_req *r, int32_t t, char *out, size_t *out_len,
                       bool *stopped)
{
    char piece[ENG_TEXT_MAX];
    size_t n = 0;
    *out_len = 0;
    *stopped = false;
    if (!e->tok || eng_detok_push(e->tok, &r->detok, t, piece, sizeof piece, &n) != BI_OK)
        return;
    eng_stop_matcher_feed(r->stops, piece, n, out, 2 * ENG_TEXT_MAX, out_len, stopped);
}

/* Emits the token t sampled for request r (already recorded by its sampler),
 * with its logprobs lp when asked for. */
static void req_emit_token(eng_engine *e, eng_req *r, int32_t t, const eng_logprobs *lp)
{
    int32_t generated = r->n_tail - r->n_prompt_tail;
    if (generated == 0)
        r->usage.ttft_ms = (double)(now_us() - r->t_submit_us) / 1000.0;
    bool eog = !r->ignore_eos && e->tok && eng_tokenizer_is_eog(e->tok, t);
    if (eog || is_stop_id(r, t)) {
        r->finish = ENG_FINISH_STOP;
        return;
    }
    if (ids_append(&r->tail, &r->n_tail, &r->cap_tail, &t, 1) != BI_OK) {
        req_fail(r, ENG_FINISH_ERROR, BI_NOMEM, "out of memory");
        return;
    }
    r->usage.generated_tokens = ++generated;
    char text[2 * ENG_TEXT_MAX];
    size_t len;
    bool stopped;
    token_text(e, r, t, text, &len, &stopped);
    eng_event ev = {.gen_id = r->id,
                    .token = t,
                    .text = text,
                    .text_len = len,
                    .logprobs = r->want_logprobs ? lp : NULL};
    r->fn(r->user, &ev);
    if (stopped)
        r->finish = ENG_FINISH_STOP;
    else if (generated >= r->max_tokens || r->prompt_tokens + generated >= e->max_ctx)
        r->finish = ENG_FINISH_LENGTH;
}

static bi_status step_logits_reserve(eng_engine *e, int n_seqs);

static const char *const sampling_failed = "sampling failed: the logits are not finite";

/* Samples the next token of request r from its logits row and emits it. */
static void req_step_token(eng_engine *e, eng_req *r, float *row)
{
    int32_t t;
    eng_logprobs lp;
    bi_status st = eng_sampler_sample(r->sampler, row, &t, r->want_logprobs ? &lp : NULL);
    if (st != BI_OK) {
        req_fail(r, ENG_FINISH_ERROR, BI_INTERNAL, sampling_failed);
        return;
    }
    req_emit_token(e, r, t, &lp);
}

/* Takes the token the device sampled for request r: recorded by r's sampler
 * (so that its penalties and draw counter stay in step), then emitted. */
static void req_device_token(eng_engine *e, eng_req *r, const eng_sample_out *o)
{
    if (o->status != BI_OK) {
        req_fail(r, ENG_FINISH_ERROR, BI_INTERNAL, sampling_failed);
        return;
    }
    if (eng_sampler_accept(r->sampler, o->token) != BI_OK) {
        req_fail(r, ENG_FINISH_ERROR, BI_INTERNAL, "sampling failed: a bad token id");
        return;
    }
    req_emit_token(e, r, o->token, &o->lp);
}

/* After the forward pass, without the lock: advance every sequence, sample
 * (or take the device's samples) and emit tokens. */
static void step_finish(eng_engine *e, int n_seqs)
{
    int32_t row = 0;
    const int32_t vocab = e->model->cfg.vocab_size;
    for (int i = 0; i < n_seqs; i++) {
        eng_seq *s = e->step_seqs[i];
        s->done += s->step_n;
        bool has_row = e->step_fseq[i].logits == ENG_LOGITS_LAST;
        if (s->req && has_row && s->req->finish == ENG_FINISH_NONE) {
            if (e->device_sampling)
                req_device_token(e, s->req, &e->step_out[row]);
            else
                req_step_token(e, s->req, e->logits + (size_t)row * vocab);
        }
        row += has_row;
    }
}

/* Runs the step's batch: logit rows to the host, or sampled on the device
 * with each row's request sampler. */
static bi_status step_run(eng_engine *e, const eng_fwd_batch *b, int n_seqs)
{
    if (!e->device_sampling) {
        bi_status st = step_logits_reserve(e, n_seqs);
        return st == BI_OK ? eng_forward_run(e->fwd, b, e->logits) : st;
    }
    int32_t rows = 0;
    for (int i = 0; i < n_seqs; i++)
        if (e->step_fseq[i].logits == ENG_LOGITS_LAST)
            e->step_samplers[rows++] = e->step_seqs[i]->req ? e->step_seqs[i]->req->sampler : NULL;
    return eng_forward_run_sampled(e->fwd, b, e->step_samplers, e->step_out);
}

/* Final text, output chunk and the final event of a finished request. */
static void req_complete(eng_engine *e, eng_req *r)
{
    char text[2 * ENG_TEXT_MAX + 64];
    size_t len = 0;
    if (e->tok && r->finish != ENG_FINISH_STOP) {
        char piece[64];
        size_t n = 0;
        eng_detok_flush(&r->detok, piece, sizeof piece, &n);
        bool stopped = false;
        eng_stop_matcher_feed(r->stops, piece, n, text, sizeof text, &len, &stopped);
        size_t more = 0;
        if (!stopped)
            eng_stop_matcher_flush(r->stops, text + len, sizeof text - len, &more);
        len += more;
    }
    int32_t n_gen = r->n_tail - r->n_prompt_tail;
    if (r->retain_output && r->status == BI_OK && n_gen > 0 && e->tok) {
        char *answer = NULL;
        size_t alen = 0;
        int32_t *toks = NULL, n = 0, cap = 0;
        char err[128];
        if (eng_tokenizer_decode(e->tok, r->tail + r->n_prompt_tail, (size_t)n_gen, &answer,
                                 &alen) == BI_OK &&
            frame_tokens(e, ENG_ROLE_ASSISTANT, answer, alen, &toks, &n, &cap, err, sizeof err) ==
                BI_OK) {
            pthread_mutex_lock(&e->lock);
            if (chunk_insert(e, r->ns, ENG_ROLE_ASSISTANT, toks, n, false, &r->usage.output_chunk,
                             NULL, NULL) == BI_OK)
                r->usage.has_output_chunk = true;
            pthread_mutex_unlock(&e->lock);
        } else {
            bi_free(toks);
        }
        bi_free(answer);
    }
    r->usage.prompt_tokens = r->prompt_tokens;
    if (r->finish == ENG_FINISH_NONE)
        r->finish = ENG_FINISH_STOP;
    emit_final(r, text, len);
}

/* Under the lock after a step: completed fills become READY variants, and
 * requests that finished leave the running list for *done. */
static void step_settle(eng_engine *e, int n_seqs, eng_req **done)
{
    for (int i = 0; i < n_seqs; i++)
        e->step_seqs[i]->step_n = 0;
    for (eng_seq **p = &e->fills; *p;) {
        eng_seq *f = *p;
        if (f->done == seq_len(f)) {
            f->fill->state = ENG_KVENT_READY;
            *p = f->next;
            seq_release(e, f); /* drops the fill's reference; READY variants stay */
            bi_free(f);
        } else {
            p = &f->next;
        }
    }
    for (eng_req **p = &e->running; *p;) {
        eng_req *r = *p;
        if (r->finish != ENG_FINISH_NONE) {
            *p = r->next;
            r->state = REQ_FINISHED;
            seq_release(e, &r->seq);
            e->stats.running--;
            e->stats.generations++;
            e->stats.generated_tokens += (uint64_t)r->usage.generated_tokens;
            e->stats.prompt_tokens += (uint64_t)r->prompt_tokens;
            e->stats.cached_tokens += (uint64_t)r->usage.cached_tokens;
            r->next = *done;
            *done = r;
        } else {
            p = &r->next;
        }
    }
}

static void complete_all(eng_engine *e, eng_req *done)
{
    while (done) {
        eng_req *next = done->next;
        req_complete(e, done);
        req_free(done);
        done = next;
    }
}

static bool has_work(const eng_engine *e)
{
    return e->queue_head || e->running || e->fills;
}

static bi_status step_logits_reserve(eng_engine *e, int n_seqs)
{
    size_t need = (size_t)n_seqs * (size_t)e->model->cfg.vocab_size;
    if (need <= e->logits_cap)
        return BI_OK;
    float *l = bi_reallocarray(e->logits, need, sizeof(float));
    if (!l)
        return BI_NOMEM;
    e->logits = l;
    e->logits_cap = need;
    return BI_OK;
}

/* Fails every request still queued or running (shutdown or a broken step). */
static void fail_everything(eng_engine *e, eng_finish f, bi_status st, const char *msg,
                            eng_req **done)
{
    for (eng_req *r = e->queue_head; r; r = r->next)
        req_fail(r, f, st, msg);
    admit_queue(e, done); /* moves them out, failed */
    for (eng_req *r = e->running; r; r = r->next)
        req_fail(r, f, st, msg);
    step_settle(e, 0, done);
    while (e->fills) {
        eng_seq *s = e->fills;
        e->fills = s->next;
        seq_release(e, s);
        bi_free(s);
    }
}

/* A forward step failed: the requests in it end with the error, the others
 * go on. A chunk fill in the step cannot be trusted either, and requests may
 * wait on it, so then everything fails. */
static void fail_step(eng_engine *e, int n_seqs, bi_status st, eng_req **done)
{
    char msg[160];
    snprintf(msg, sizeof msg, "the forward step on the %s backend failed (%s); request stopped",
             e->backend->ops->name, bi_strerror(st));
    for (int i = 0; i < n_seqs; i++)
        if (!e->step_seqs[i]->req) {
            fail_everything(e, ENG_FINISH_ERROR, BI_INTERNAL, msg, done);
            return;
        }
    for (int i = 0; i < n_seqs; i++)
        req_fail(e->step_seqs[i]->req, ENG_FINISH_ERROR, BI_INTERNAL, msg);
    step_settle(e, n_seqs, done);
}

static void *worker_main(void *arg)
{
    eng_engine *e = arg;
    pthread_mutex_lock(&e->lock);
    for (;;) {
        while (!e->stopping && !has_work(e))
            pthread_cond_wait(&e->wake, &e->lock);
        eng_req *done = NULL;
        if (e->stopping) {
            fail_everything(e, ENG_FINISH_CANCELLED, BI_CANCELLED, "the engine is shutting down",
                            &done);
            pthread_mutex_unlock(&e->lock);
            complete_all(e, done);
            return NULL;
        }
        admit_queue(e, &done);
        int n_seqs;
        int32_t n_tokens;
        step_build(e, &n_seqs, &n_tokens, &done);
        if (n_tokens == 0 && e->running && !e->fills) {
            /* Everyone waits for pages nobody will free: fail the newest. */
            eng_req *last = e->running;
            while (last->next)
                last = last->next;
            req_fail(last, ENG_FINISH_ERROR, BI_RESOURCE_EXHAUSTED,
                     "the KV pool is full (no idle chunk left to evict)");
        }
        pthread_mutex_unlock(&e->lock);
        complete_all(e, done);
        done = NULL;

        bi_status st = BI_OK;
        if (n_tokens > 0) {
            eng_fwd_batch b = {e->step_tokens, n_tokens, e->step_fseq, n_seqs};
            st = step_run(e, &b, n_seqs);
            if (st == BI_OK)
                step_finish(e, n_seqs);
        }
        pthread_mutex_lock(&e->lock);
        e->stats.steps += n_tokens > 0;
        if (st != BI_OK) {
            BI_LOGE(NULL, "forward step failed: %s", bi_strerror(st));
            fail_step(e, n_seqs, st, &done);
        } else {
            step_settle(e, n_seqs, &done);
        }
        pthread_mutex_unlock(&e->lock);
        complete_all(e, done);
        pthread_mutex_lock(&e->lock);
    }
}

/* --- lifetime --- */

static bi_status engine_load(eng_engine *e, char *err, size_t err_size)
{
    const eng_config *c = &e->cfg;
    bi_status st;
    if (c->dummy_preset) {
        eng_model_config mc;
        if ((st = eng_model_config_preset(c->dummy_preset, &mc)) != BI_OK) {
            snprintf(err, err_size, "unknown dummy preset '%s'", c->dummy_preset);
            return st;
        }
        return eng_model_dummy(&mc, c->dummy_seed, &e->model, err, err_size);
    }
    if (!c->model_path) {
        snprintf(err, err_size, "no model: give a model path or a dummy preset");
        return BI_INVALID_ARGUMENT;
    }
    eng_model_load_opts lo = {c->progress, c->progress_user};
    if ((st = eng_model_load(c->model_path, &lo, &e->model, err, err_size)) != BI_OK)
        return st;
    if ((st = eng_tokenizer_load(c->model_path, &e->tok, err, err_size)) != BI_OK)
        return st;
    if (eng_tokenizer_vocab_size(e->tok) > e->model->cfg.vocab_size) {
        snprintf(err, err_size, "the tokenizer has %d tokens but the model only %d",
                 eng_tokenizer_vocab_size(e->tok), e->model->cfg.vocab_size);
        return BI_BAD_FORMAT;
    }
    if (c->chat_format) {
        if ((st = eng_chat_format_parse(c->chat_format, &e->chat)) != BI_OK) {
            snprintf(err, err_size, "unknown chat format '%s'", c->chat_format);
            return st;
        }
    } else {
        const char *tmpl = eng_tokenizer_chat_template(e->tok);
        if (!tmpl || eng_chat_detect(tmpl, &e->chat) != BI_OK) {
            snprintf(err, err_size,
                     "the model's chat template is %s; pass a chat format (chatml, llama2, "
                     "llama3, zephyr, mistral, gemma)",
                     tmpl ? "not one we recognise" : "missing");
            return BI_UNSUPPORTED;
        }
    }
    return BI_OK;
}

/* The longest composition a pool of n_pages pages allows: the model's context,
 * capped by the configuration (which may raise it for random weights), with
 * one page of slack. */
static int32_t ctx_for_pool(const eng_engine *e, int32_t n_pages, int page)
{
    const eng_model_config *mc = &e->model->cfg;
    int32_t ctx = mc->max_ctx > 0 ? mc->max_ctx : 4096;
    if (e->cfg.max_ctx > 0 && (e->cfg.max_ctx < ctx || e->cfg.dummy_preset))
        ctx = e->cfg.max_ctx;
    int64_t room = (int64_t)n_pages * page - page;
    return ctx > room ? (int32_t)room : ctx;
}

/* Re-sizes the (bound, still unused) pool to kv_memory_fraction of the device
 * memory left after prepare() uploaded the weights and allocated the step's
 * buffers, and has the backend reallocate its K/V. */
static bi_status kv_size_from_memory(eng_engine *e, int page, char *err, size_t err_size)
{
    const eng_model_config *mc = &e->model->cfg;
    const eng_backend_ops *ops = e->backend->ops;
    size_t free_b = 0, total_b = 0, page_bytes = eng_kv_page_bytes(&e->pool);
    bi_status st = ops->mem_info(e->backend, &free_b, &total_b);
    if (st != BI_OK) {
        snprintf(err, err_size, "cannot read the device memory: %s", bi_strerror(st));
        return st;
    }
    /* The provisional one-page pool's storage is part of what we may use. */
    double want = (double)e->cfg.kv_memory_fraction * (double)(free_b + page_bytes);
    double pages = want / (double)page_bytes;
    if (pages > INT32_MAX / page)
        pages = INT32_MAX / page;
    int32_t n_pages = (int32_t)pages;
    if (n_pages < 2) {
        snprintf(err, err_size,
                 "%.2f of the free device memory (%.1f MiB) holds no KV pool (a page is %.1f "
                 "KiB)",
                 e->cfg.kv_memory_fraction, free_b / 1048576.0, page_bytes / 1024.0);
        return BI_RESOURCE_EXHAUSTED;
    }
    eng_kv_pool_fini(&e->pool);
    st = eng_kv_pool_init_opt(&e->pool, mc->n_layer, mc->n_kv_head, mc->head_dim, page, n_pages,
                              e->backend->host_kv);
    if (st == BI_OK)
        st = ops->kv_realloc(e->backend);
    if (st != BI_OK) {
        snprintf(err, err_size, "cannot allocate a KV pool of %d pages (%.2f GiB): %s", n_pages,
                 (double)n_pages * page_bytes / 1073741824.0, bi_strerror(st));
        return st;
    }
    BI_LOGI(NULL,
            "KV pool from %.2f of free device memory (%.2f of %.2f GiB free after the weights): "
            "%d pages, %lld tokens, %.2f GiB",
            e->cfg.kv_memory_fraction, free_b / 1073741824.0, total_b / 1073741824.0, n_pages,
            (long long)n_pages * page, (double)n_pages * page_bytes / 1073741824.0);
    return BI_OK;
}

float eng_kv_memory_fraction_default(const char *backend, int32_t kv_tokens)
{
    if (kv_tokens > 0 || !backend)
        return 0.0f;
    bool gpu = strcmp(backend, "cuda") == 0 ||
               (strcmp(backend, "auto") == 0 && eng_backend_cuda_available());
    return gpu ? 0.85f : 0.0f;
}

/* Bytes of the model's matrices in a 16-bit type (what a device backend
 * uploads, norms and biases aside). */
static double weight_bytes16(const eng_model *m)
{
    const eng_model_config *c = &m->cfg;
    const double d = c->d_model, qd = (double)c->n_head * c->head_dim,
                 kvd = (double)c->n_kv_head * c->head_dim;
    double n = (double)c->vocab_size * d * (m->lm_head == m->tok_embd ? 1 : 2);
    n += c->n_layer * (2 * qd * d + 2 * kvd * d + 3 * (double)c->d_ff * d);
    return 2 * n;
}

static bi_status engine_setup(eng_engine *e, char *err, size_t err_size)
{
    const eng_model_config *mc = &e->model->cfg;
    int32_t kv_tokens = e->cfg.kv_tokens > 0 ? e->cfg.kv_tokens : 16384;
    int page = e->cfg.page_size > 0 ? e->cfg.page_size : 16;
    int32_t n_pages = (kv_tokens + page - 1) / page;
    float frac = e->cfg.kv_memory_fraction;
    if (!(frac >= 0.0f && frac < 1.0f)) {
        snprintf(err, err_size, "kv_memory_fraction must be in [0, 1), not %g", frac);
        return BI_INVALID_ARGUMENT;
    }
    e->max_batch = e->cfg.max_batch_tokens > 0 ? e->cfg.max_batch_tokens : 256;
    e->max_ctx = ctx_for_pool(e, n_pages, page);
    if (e->max_ctx < 16) {
        snprintf(err, err_size, "the KV pool (%d tokens) is too small", kv_tokens);
        return BI_INVALID_ARGUMENT;
    }
    const char *bname = e->cfg.backend ? e->cfg.backend : "cpu";
    eng_store_dtype dtype = e->dtype;
    bi_status st = eng_backend_create(bname, e->cfg.n_threads, e->max_ctx, dtype, &e->backend);
    if (st != BI_OK) {
        snprintf(err, err_size, "backend '%s': %s", bname,
                 st == BI_UNSUPPORTED        ? "this build has no CUDA"
                 : st == BI_INVALID_ARGUMENT ? "unknown (cpu, cuda or auto)"
                                             : bi_strerror(st));
        return st;
    }
    const eng_backend_ops *ops = e->backend->ops;
    bool by_memory = frac > 0.0f && ops->mem_info && ops->kv_realloc;
    if (frac > 0.0f && !by_memory)
        BI_LOGI(NULL, "kv_memory_fraction %.2f ignored on the %s backend: KV pool of %d tokens",
                frac, ops->name, kv_tokens);
    /* Sized by memory: a one-page pool until the weights are on the device. */
    st = eng_kv_pool_init_opt(&e->pool, mc->n_layer, mc->n_kv_head, mc->head_dim, page,
                              by_memory ? 1 : n_pages, e->backend->host_kv);
    if (st != BI_OK) {
        snprintf(err, err_size, "cannot allocate a KV pool of %d tokens: %s", kv_tokens,
                 bi_strerror(st));
        return st;
    }
    if ((st = eng_forward_create(e->model, e->backend, &e->pool, e->max_batch, &e->fwd)) != BI_OK) {
        size_t free_b = 0, total_b = 0;
        if (st == BI_NOMEM && ops->mem_info &&
            ops->mem_info(e->backend, &free_b, &total_b) == BI_OK)
            snprintf(err, err_size,
                     "the model does not fit on the %s device: %.2f GiB of its %.2f GiB are free "
                     "(the weights alone take %.2f GiB in 16 bits); use a smaller model or free "
                     "device memory",
                     ops->name, free_b / 1073741824.0, total_b / 1073741824.0,
                     weight_bytes16(e->model) / 1073741824.0);
        if (st == BI_NOMEM && ops->mem_info)
            st = BI_RESOURCE_EXHAUSTED; /* device memory, not the host's */
        else
            snprintf(err, err_size, "cannot set up the %s backend: %s", ops->name,
                     st == BI_OUT_OF_RANGE
                         ? "weights exceed the fp16 range (65504; the log names the tensor): use "
                           "dtype bf16 or auto"
                         : bi_strerror(st));
        return st;
    }
    if (dtype != ENG_STORE_AUTO && e->backend->store == ENG_STORE_AUTO)
        BI_LOGI(NULL, "dtype %s ignored on the %s backend: it keeps fp32",
                eng_store_dtype_name(dtype), ops->name);
    if (by_memory) {
        if ((st = kv_size_from_memory(e, page, err, err_size)) != BI_OK)
            return st;
        n_pages = e->pool.n_pages;
        e->max_ctx = ctx_for_pool(e, n_pages, page);
        if (e->max_ctx < 16) {
            snprintf(err, err_size, "the KV pool (%d pages) is too small", n_pages);
            return BI_RESOURCE_EXHAUSTED;
        }
    }
    e->step_tokens = bi_mallocarray((size_t)e->max_batch, sizeof(int32_t));
    e->step_fseq = bi_mallocarray(ENG_MAX_SEQS_PER_STEP, sizeof *e->step_fseq);
    e->step_seqs = bi_mallocarray(ENG_MAX_SEQS_PER_STEP, sizeof *e->step_seqs);
    if (!e->step_tokens || !e->step_fseq || !e->step_seqs)
        return BI_NOMEM;
    e->device_sampling = eng_forward_can_sample(e->fwd) && !e->cfg.host_sampling;
    if (e->device_sampling) {
        /* one logit row per sequence at most (ENG_LOGITS_LAST) */
        e->step_samplers = bi_mallocarray(ENG_MAX_SEQS_PER_STEP, sizeof *e->step_samplers);
        e->step_out = bi_mallocarray(ENG_MAX_SEQS_PER_STEP, sizeof *e->step_out);
        if (!e->step_samplers || !e->step_out)
            return BI_NOMEM;
    }
    BI_LOGI(NULL, "sampling on the %s", e->device_sampling ? "device" : "host");
    eng_catalog_init(&e->cat, &e->pool);
    e->stats.page_size = page;
    e->stats.kv_pages_total = n_pages;
    e->stats.kv_page_bytes = eng_kv_page_bytes(&e->pool);
    return BI_OK;
}

/* The BOS token as a hidden, pinned chunk every composition starts with. */
static bi_status engine_bos(eng_engine *e)
{
    if (!e->tok || !eng_tokenizer_add_bos(e->tok) || eng_tokenizer_bos(e->tok) < 0)
        return BI_OK;
    int32_t *t = bi_malloc(sizeof *t);
    if (!t)
        return BI_NOMEM;
    *t = eng_tokenizer_bos(e->tok);
    eng_chunk_id id;
    bi_status st = chunk_insert(e, "", ENG_ROLE_SYSTEM, t, 1, true, &id, NULL, &e->bos_chunk);
    if (st != BI_OK)
        return st;
    e->bos_chunk->hidden = true;
    uint8_t key[32];
    eng_kv_key(ENG_REUSE_EXACT, NULL, &id, key);
    eng_kvent *kv;
    if ((st = eng_catalog_kvent_new(&e->cat, e->bos_chunk, key, 0, &kv)) != BI_OK)
        return st;
    return fill_start(e, kv, NULL, 0, 0);
}

bi_status eng_engine_create(const eng_config *cfg, eng_engine **out, char *err, size_t err_size)
{
    err[0] = '\0';
    eng_engine *e = bi_calloc(1, sizeof *e);
    if (!e)
        return BI_NOMEM;
    e->cfg = *cfg;
    pthread_mutex_init(&e->lock, NULL);
    pthread_cond_init(&e->wake, NULL);
    bi_status st = BI_OK;
    if (eng_store_dtype_parse(cfg->dtype, &e->dtype) != BI_OK) {
        snprintf(err, err_size, "dtype '%s': unknown (auto, bf16 or fp16)", cfg->dtype);
        st = BI_INVALID_ARGUMENT;
    }
    if (st == BI_OK)
        st = engine_load(e, err, err_size);
    if (st == BI_OK)
        st = engine_setup(e, err, err_size);
    if (st == BI_OK)
        st = engine_bos(e);
    if (st == BI_OK && pthread_create(&e->worker, NULL, worker_main, e) != 0)
        st = BI_INTERNAL;
    if (st != BI_OK) {
        if (!err[0])
            snprintf(err, err_size, "engine start-up failed: %s", bi_strerror(st));
        eng_engine_destroy(e);
        return st;
    }
    e->worker_started = true;
    BI_LOGI(NULL,
            "engine ready: %s (%s), %d layers, d_model %d, vocab %d; KV pool %d pages x %d tokens, "
            "context %d",
            e->model->cfg.name, eng_arch_name(e->model->cfg.arch), e->model->cfg.n_layer,
            e->model->cfg.d_model, e->model->cfg.vocab_size, e->pool.n_pages, e->pool.page_size,
            e->max_ctx);
    *out = e;
    return BI_OK;
}

void eng_engine_destroy(eng_engine *e)
{
    if (!e)
        return;
    if (e->worker_started) {
        pthread_mutex_lock(&e->lock);
        e->stopping = true;
        pthread_cond_signal(&e->wake);
        pthread_mutex_unlock(&e->lock);
        pthread_join(e->worker, NULL);
    } else {
        eng_req *done = NULL;
        fail_everything(e, ENG_FINISH_CANCELLED, BI_CANCELLED, "", &done);
    }
    if (e->pool.refs)
        eng_catalog_fini(&e->cat);
    eng_forward_destroy(e->fwd);
    eng_backend_destroy(e->backend);
    eng_kv_pool_fini(&e->pool);
    eng_tokenizer_destroy(e->tok);
    eng_model_destroy(e->model);
    bi_free(e->logits);
    bi_free(e->step_tokens);
    bi_free(e->step_fseq);
    bi_free(e->step_seqs);
    bi_free(e->step_samplers);
    bi_free(e->step_out);
    pthread_cond_destroy(&e->wake);
    pthread_mutex_destroy(&e->lock);
    bi_free(e);
}

const eng_model_config *eng_engine_model(const eng_engine *e)
{
    return &e->model->cfg;
}

const struct eng_tokenizer *eng_engine_tokenizer(const eng_engine *e)
{
    return e->tok;
}

const char *eng_engine_backend_name(const eng_engine *e)
{
    return e->backend->ops->name;
}

bool eng_engine_device_sampling(const eng_engine *e)
{
    return e->device_sampling;
}

eng_chat_format eng_engine_chat_format(const eng_engine *e)
{
    return e->chat;
}

bi_status eng_stats_get(eng_engine *e, eng_stats *out)
{
    pthread_mutex_lock(&e->lock);
    *out = e->stats;
    out->kv_pages_free = e->pool.n_free;
    out->n_chunks = e->cat.chunks.n - (e->bos_chunk ? 1 : 0);
    out->evictions = e->cat.evictions;
    pthread_mutex_unlock(&e->lock);
    return BI_OK;
}

const char *eng_engine_fingerprint(const eng_engine *e)
{
    return e->model->fingerprint;
}

int32_t eng_engine_max_ctx(const eng_engine *e)
{
    return e->max_ctx;
}
