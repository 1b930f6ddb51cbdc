/*
 * catalog.h - the chunk catalogue and its KV variants (engine-internal).
 *
 * A chunk (eng_chunk) is registered content: namespace, role, token ids. Its
 * KV lives in KV variants (eng_kvent), each keyed by a 32-byte key:
 *   EXACT        key = H(previous key or zeros, chunk id), computed after
 *                the chunks before it in a composition
 *   INDEPENDENT  key = H(zeros, chunk id), computed alone at positions 0..:
 *                the same KV as an EXACT chunk with nothing before it
 * A variant owns its pages (starting on a fresh page) once READY. Running
 * sequences hold `users` references on the variants they read; idle variants
 * of unpinned chunks are evicted least-recently-used first.
 *
 * Not thread-safe: the engine's lock guards every call.
 */
#ifndef ENG_CATALOG_H
#define ENG_CATALOG_H

#include <stdbool.h>
#include <stdint.h>

#include "core/engine.h"
#include "core/kv.h"

typedef struct eng_chunk eng_chunk;

typedef enum eng_kv_state { ENG_KVENT_COMPUTING = 0, ENG_KVENT_READY = 1 } eng_kv_state;

typedef struct eng_kvent {
    uint8_t key[32];
    eng_chunk *chunk;
    eng_kv_state state;
    int32_t *pages;
    int32_t n_pages;
    int32_t len;      /* == chunk->n_tokens */
    int32_t rot_base; /* position its first key was rotated at */
    uint32_t users;   /* sequences reading (or filling) it */
    uint64_t last_used;
    struct eng_kvent *next_of_chunk;
} eng_kvent;

struct eng_chunk {
    eng_chunk_id id;
    char ns[64];
    eng_role role;
    int32_t *tokens;
    int32_t n_tokens;
    bool pinned;
    bool hidden;  /* internal (the BOS chunk): not listed, not deletable */
    bool deleted; /* removed from the table; freed with its last variant */
    uint64_t hits, tokens_saved;
    eng_kvent *kvents;
};

/* Open-addressing table from 32-byte digests to pointers. */
typedef struct eng_dtable {
    uint8_t (*keys)[32];
    void **vals; /* NULL = empty, TOMB = deleted */
    size_t cap, n, used;
} eng_dtable;

typedef struct eng_catalog {
    eng_dtable chunks; /* chunk id -> eng_chunk */
    eng_dtable kvents; /* kv key -> eng_kvent */
    eng_kv_pool *pool;
    uint64_t clock; /* LRU ticks */
    uint64_t evictions;
} eng_catalog;

void eng_sha256(const void *data, size_t len, uint8_t out[32]);

bi_status eng_catalog_init(eng_catalog *c, eng_kv_pool *pool);
void eng_catalog_fini(eng_catalog *c);

/* Finds a chunk visible in namespace ns (hidden chunks are visible from every
 * namespace). NULL when absent. */
eng_chunk *eng_catalog_find(eng_catalog *c, const char *ns, const eng_chunk_id *id);
/* Adds a chunk (takes ownership of tokens, a bi_malloc'ed array). */
bi_status eng_catalog_add(eng_catalog *c, const eng_chunk_id *id, const char *ns, eng_role role,
                          int32_t *tokens, int32_t n_tokens, eng_chunk **out);
/* Removes a chunk: variants nobody uses are freed now, the rest when their
 * last user releases them. */
void eng_catalog_delete(eng_catalog *c, eng_chunk *ch);

/* The KV key of a chunk's variant: EXACT chains on prev (NULL = first). */
void eng_kv_key(eng_reuse_mode mode, const uint8_t *prev, const eng_chunk_id *id, uint8_t out[32]);
eng_kvent *eng_catalog_kvent_find(eng_catalog *c, const uint8_t key[32]);
/* Creates a COMPUTING variant with its pages allocated (evicting idle
 * variants if needed); the caller is its first user. BI_KV_FULL if the pool
 * cannot hold it even after eviction. */
bi_status eng_catalog_kvent_new(eng_catalog *c, eng_chunk *ch, const uint8_t key[32],
                                int32_t rot_base, eng_kvent **out);
void eng_catalog_kvent_use(eng_catalog *c, eng_kvent *kv);
/* Drops one user; frees the variant when it was never completed (failed
 * fill), or when its chunk was deleted and this was the last user. */
void eng_catalog_kvent_release(eng_catalog *c, eng_kvent *kv);
/* Allocates n pages, evicting idle variants LRU if needed. */
bi_status eng_catalog_alloc_pages(eng_catalog *c, int32_t n, int32_t *ids);

/* Fills info from a chunk. */
void eng_catalog_info(const eng_catalog *c, const eng_chunk *ch, eng_chunk_info *info);

#endif
