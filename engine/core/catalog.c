/* catalog.c - chunk table, KV variants, LRU eviction. */
#define BI_LOG_MODULE "catalog"
#include "core/catalog.h"

#include <stdio.h>
#include <string.h>

#include <mbedtls/sha256.h>

#include "common/alloc.h"
#include "common/log.h"

#define TOMB ((void *)1)

void eng_sha256(const void *data, size_t len, uint8_t out[32])
{
    mbedtls_sha256_ret(data, len, out, 0);
}

/* --- digest table --- */

static size_t dt_slot(const uint8_t key[32], size_t cap)
{
    uint64_t h;
    memcpy(&h, key, sizeof h); /* keys are SHA-256 digests: uniformly spread */
    return (size_t)(h & (cap - 1));
}

static void **dt_lookup(eng_dtable *t, const uint8_t key[32])
{
    if (!t->cap)
        return NULL;
    for (size_t i = dt_slot(key, t->cap), n = 0; n < t->cap; i = (i + 1) & (t->cap - 1), n++) {
        if (!t->vals[i])
            return NULL;
        if (t->vals[i] != TOMB && memcmp(t->keys[i], key, 32) == 0)
            return &t->vals[i];
    }
    return NULL;
}

static bi_status dt_put(eng_dtable *t, const uint8_t key[32], void *val);

static bi_status dt_grow(eng_dtable *t)
{
    eng_dtable n = {0};
    n.cap = t->cap ? t->cap * 2 : 64;
    n.keys = bi_calloc(n.cap, 32);
    n.vals = bi_calloc(n.cap, sizeof(void *));
    if (!n.keys || !n.vals) {
        bi_free(n.keys);
        bi_free(n.vals);
        return BI_NOMEM;
    }
    for (size_t i = 0; i < t->cap; i++)
        if (t->vals[i] && t->vals[i] != TOMB)
            dt_put(&n, t->keys[i], t->vals[i]);
    bi_free(t->keys);
    bi_free(t->vals);
    *t = n;
    return BI_OK;
}

static bi_status dt_put(eng_dtable *t, const uint8_t key[32], void *val)
{
    if ((t->used + 1) * 4 >= t->cap * 3) {
        bi_status st = dt_grow(t);
        if (st != BI_OK)
            return st;
    }
    size_t i = dt_slot(key, t->cap);
    while (t->vals[i] && t->vals[i] != TOMB)
        i = (i + 1) & (t->cap - 1);
    if (!t->vals[i])
        t->used++;
    memcpy(t->keys[i], key, 32);
    t->vals[i] = val;
    t->n++;
    return BI_OK;
}

static void dt_del(eng_dtable *t, const uint8_t key[32])
{
    void **v = dt_lookup(t, key);
    if (v) {
        *v = TOMB;
        t->n--;
    }
}

static void dt_fini(eng_dtable *t)
{
    bi_free(t->keys);
    bi_free(t->vals);
    memset(t, 0, sizeof *t);
}

/* --- catalogue --- */

bi_status eng_catalog_init(eng_catalog *c, eng_kv_pool *pool)
{
    memset(c, 0, sizeof *c);
    c->pool = pool;
    return BI_OK;
}

static void kvent_free(eng_catalog *c, eng_kvent *kv)
{
    eng_chunk *ch = kv->chunk;
    for (eng_kvent **p = &ch->kvents; *p; p = &(*p)->next_of_chunk) {
        if (*p == kv) {
            *p = kv->next_of_chunk;
            break;
        }
    }
    void **slot = dt_lookup(&c->kvents, kv->key);
    if (slot && *slot == kv)
        dt_del(&c->kvents, kv->key);
    eng_kv_unref(c->pool, kv->pages, kv->n_pages);
    bi_free(kv->pages);
    bi_free(kv);
    if (ch->deleted && !ch->kvents) {
        bi_free(ch->tokens);
        bi_free(ch);
    }
}

void eng_catalog_fini(eng_catalog *c)
{
    /* Every sequence has released its variants by now: free what is left. */
    for (size_t i = 0; i < c->chunks.cap; i++) {
        eng_chunk *ch = c->chunks.vals[i];
        if (!ch || (void *)ch == TOMB)
            continue;
        while (ch->kvents) {
            eng_kvent *kv = ch->kvents;
            ch->kvents = kv->next_of_chunk;
            eng_kv_unref(c->pool, kv->pages, kv->n_pages);
            bi_free(kv->pages);
            bi_free(kv);
        }
        bi_free(ch->tokens);
        bi_free(ch);
    }
    dt_fini(&c->chunks);
    dt_fini(&c->kvents);
}

eng_chunk *eng_catalog_find(eng_catalog *c, const char *ns, const eng_chunk_id *id)
{
    void **v = dt_lookup(&c->chunks, id->b);
    if (!v)
        return NULL;
    eng_chunk *ch = *v;
    if (!ch->hidden && strcmp(ch->ns, ns ? ns : "") != 0)
        return NULL;
    return ch;
}

bi_status eng_catalog_add(eng_catalog *c, const eng_chunk_id *id, const char *ns, eng_role role,
                          int32_t *tokens, int32_t n_tokens, eng_chunk **out)
{
    eng_chunk *ch = bi_calloc(1, sizeof *ch);
    if (!ch)
        return BI_NOMEM;
    ch->id = *id;
    snprintf(ch->ns, sizeof ch->ns, "%s", ns ? ns : "");
    ch->role = role;
    ch->tokens = tokens;
    ch->n_tokens = n_tokens;
    bi_status st = dt_put(&c->chunks, id->b, ch);
    if (st != BI_OK) {
        bi_free(ch);
        return st;
    }
    *out = ch;
    return BI_OK;
}

void eng_catalog_delete(eng_catalog *c, eng_chunk *ch)
{
    dt_del(&c->chunks, ch->id.b);
    ch->deleted = true;
    if (!ch->kvents) {
        bi_free(ch->tokens);
        bi_free(ch);
        return;
    }
    /* Variants in use leave the table now (no new reader finds them) and are
     * freed by their last release; kvent_free frees the chunk with the last. */
    eng_kvent *idle = NULL;
    for (eng_kvent *kv = ch->kvents; kv; kv = kv->next_of_chunk) {
        void **slot = dt_lookup(&c->kvents, kv->key);
        if (slot && *slot == kv)
            dt_del(&c->kvents, kv->key);
    }
    do {
        idle = NULL;
        for (eng_kvent *kv = ch->kvents; kv; kv = kv->next_of_chunk)
            if (kv->users == 0)
                idle = kv;
        if (idle) {
            bool last = ch->kvents == idle && !idle->next_of_chunk;
            kvent_free(c, idle);
            if (last)
                return; /* the chunk went with it */
        }
    } while (idle);
}

void eng_kv_key(eng_reuse_mode mode, const uint8_t *prev, const eng_chunk_id *id, uint8_t out[32])
{
    /* A chunk computed alone at positions 0.. (INDEPENDENT) is the same KV as
     * an EXACT chunk with nothing before it, so both share one key. */
    uint8_t buf[6 + 32 + 32] = {0};
    memcpy(buf, "chain", 5);
    if (mode == ENG_REUSE_EXACT && prev)
        memcpy(buf + 6, prev, 32);
    memcpy(buf + 38, id->b, 32);
    eng_sha256(buf, sizeof buf, out);
}

eng_kvent *eng_catalog_kvent_find(eng_catalog *c, const uint8_t key[32])
{
    void **v = dt_lookup(&c->kvents, key);
    return v ? *v : NULL;
}

/* Evicts the least-recently-used idle variant of an unpinned chunk. */
static bool evict_one(eng_catalog *c)
{
    eng_kvent *best = NULL;
    for (size_t i = 0; i < c->kvents.cap; i++) {
        eng_kvent *kv = c->kvents.vals[i];
        if (!kv || (void *)kv == TOMB || kv->users || kv->chunk->pinned ||
            kv->state != ENG_KVENT_READY)
            continue;
        if (!best || kv->last_used < best->last_used)
            best = kv;
    }
    if (!best)
        return false;
    char hex[65];
    eng_chunk_id_hex(&best->chunk->id, hex);
    BI_LOGD(NULL, "evicting KV of chunk %.16s (%d pages)", hex, best->n_pages);
    kvent_free(c, best);
    c->evictions++;
    return true;
}

bi_status eng_catalog_alloc_pages(eng_catalog *c, int32_t n, int32_t *ids)
{
    while (c->pool->n_free < n)
        if (!evict_one(c))
            return BI_KV_FULL;
    return eng_kv_alloc(c->pool, n, ids);
}

bi_status eng_catalog_kvent_new(eng_catalog *c, eng_chunk *ch, const uint8_t key[32],
                                int32_t rot_base, eng_kvent **out)
{
    eng_kvent *kv = bi_calloc(1, sizeof *kv);
    if (!kv)
        return BI_NOMEM;
    kv->n_pages = eng_kv_pages_for(c->pool, ch->n_tokens);
    kv->pages = bi_mallocarray((size_t)kv->n_pages, sizeof(int32_t));
    bi_status st = kv->pages ? eng_catalog_alloc_pages(c, kv->n_pages, kv->pages) : BI_NOMEM;
    if (st == BI_OK && (st = dt_put(&c->kvents, key, kv)) != BI_OK)
        eng_kv_unref(c->pool, kv->pages, kv->n_pages);
    if (st != BI_OK) {
        bi_free(kv->pages);
        bi_free(kv);
        return st;
    }
    memcpy(kv->key, key, 32);
    kv->chunk = ch;
    kv->state = ENG_KVENT_COMPUTING;
    kv->len = ch->n_tokens;
    kv->rot_base = rot_base;
    kv->users = 1;
    kv->last_used = ++c->clock;
    kv->next_of_chunk = ch->kvents;
    ch->kvents = kv;
    *out = kv;
    return BI_OK;
}

void eng_catalog_kvent_use(eng_catalog *c, eng_kvent *kv)
{
    kv->users++;
    kv->last_used = ++c->clock;
}

void eng_catalog_kvent_release(eng_catalog *c, eng_kvent *kv)
{
    if (kv->users)
        kv->users--;
    kv->last_used = ++c->clock;
    if (kv->users == 0 && (kv->state != ENG_KVENT_READY || kv->chunk->deleted))
        kvent_free(c, kv);
}

void eng_catalog_info(const eng_catalog *c, const eng_chunk *ch, eng_chunk_info *info)
{
    memset(info, 0, sizeof *info);
    info->id = ch->id;
    snprintf(info->ns, sizeof info->ns, "%s", ch->ns);
    info->role = ch->role;
    info->n_tokens = ch->n_tokens;
    info->pinned = ch->pinned;
    info->hits = ch->hits;
    info->tokens_saved = ch->tokens_saved;
    size_t page_bytes = eng_kv_page_bytes(c->pool);
    for (const eng_kvent *kv = ch->kvents; kv; kv = kv->next_of_chunk) {
        info->users += kv->users;
        if (kv->state == ENG_KVENT_READY)
            info->kv_resident = true;
        info->kv_bytes += (uint64_t)kv->n_pages * page_bytes;
    }
}
