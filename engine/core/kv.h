/*
 * kv.h - the paged KV pool.
 *
 * One allocation holds K and V for every layer, split into pages of
 * page_size tokens. A page id names the same slot in every layer, so one page
 * list describes a sequence's KV in all layers. Pages are refcounted: a chunk
 * owns its pages, and every running request that attends to the chunk holds a
 * reference, so a chunk can be deleted or evicted while in use and its pages
 * are only freed when the last reader lets go. Chunk pages are immutable once
 * written; a request's tail pages are its own.
 *
 * Layout: K[layer][page][kv_head][slot][head_dim], V likewise; fp32 host
 * arrays for the CPU backend. A device backend keeps K/V in its own memory
 * (bf16 for CUDA) with the same layout and page ids, and the pool holds only
 * the bookkeeping (k and v are NULL). Keys are stored rotated (RoPE) at the
 * position they were computed at.
 *
 * Thread safety: none; the engine worker owns the pool (the catalogue lock
 * guards it where other threads reach it).
 */
#ifndef ENG_KV_H
#define ENG_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

typedef struct eng_kv_pool {
    int n_layer, n_kv_head, head_dim, page_size;
    int elem_bytes; /* bytes per K or V element: 4 (host fp32) or 2 (device bf16) */
    int32_t n_pages;
    float *k;          /* n_layer * n_pages * n_kv_head * page_size * head_dim; NULL when
                          the K/V live on a device */
    float *v;          /* same */
    uint32_t *refs;    /* per page; 0 = free */
    int32_t *free_ids; /* stack of free page ids */
    int32_t n_free;
} eng_kv_pool;

/* Allocates a pool of n_pages pages with host K/V. BI_NOMEM if the host
 * cannot hold it, BI_INVALID_ARGUMENT for non-positive sizes. */
bi_status eng_kv_pool_init(eng_kv_pool *p, int n_layer, int n_kv_head, int head_dim, int page_size,
                           int32_t n_pages);
/* Same, with host K/V only when host_kv (pass the backend's host_kv): without
 * them the pool is page bookkeeping for a backend that stores K/V itself, as
 * bf16 (the CUDA backend). */
bi_status eng_kv_pool_init_opt(eng_kv_pool *p, int n_layer, int n_kv_head, int head_dim,
                               int page_size, int32_t n_pages, bool host_kv);
void eng_kv_pool_fini(eng_kv_pool *p);

/* Bytes one page takes over all layers (K and V), host or device. */
size_t eng_kv_page_bytes(const eng_kv_pool *p);

/* Takes n free pages (refcount 1 each) into ids. All or nothing: BI_KV_FULL
 * when fewer than n are free. */
bi_status eng_kv_alloc(eng_kv_pool *p, int32_t n, int32_t *ids);
/* Adds one reference to each page. */
void eng_kv_ref(eng_kv_pool *p, const int32_t *ids, int32_t n);
/* Drops one reference from each page; pages reaching 0 return to the pool. */
void eng_kv_unref(eng_kv_pool *p, const int32_t *ids, int32_t n);

/* Pages needed for n tokens. */
static inline int32_t eng_kv_pages_for(const eng_kv_pool *p, int32_t n_tokens)
{
    return (n_tokens + p->page_size - 1) / p->page_size;
}

/* Address of the K (or V) vector of (layer, page, kv_head, slot). */
static inline float *eng_kv_k(const eng_kv_pool *p, int layer, int32_t page, int kvh, int slot)
{
    size_t i = (((size_t)layer * p->n_pages + page) * p->n_kv_head + kvh) * p->page_size + slot;
    return p->k + i * p->head_dim;
}
static inline float *eng_kv_v(const eng_kv_pool *p, int layer, int32_t page, int kvh, int slot)
{
    size_t i = (((size_t)layer * p->n_pages + page) * p->n_kv_head + kvh) * p->page_size + slot;
    return p->v + i * p->head_dim;
}

#endif
