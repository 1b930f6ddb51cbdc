/* kv.c - page allocation and refcounting for the KV pool. */
#define BI_LOG_MODULE "kv"
#include "kv.h"

#include <string.h>

#include "common/alloc.h"

size_t eng_kv_page_bytes(const eng_kv_pool *p)
{
    return (size_t)2 * p->n_layer * p->n_kv_head * p->head_dim * p->page_size * p->elem_bytes;
}

bi_status eng_kv_pool_init(eng_kv_pool *p, int n_layer, int n_kv_head, int head_dim, int page_size,
                           int32_t n_pages)
{
    return eng_kv_pool_init_opt(p, n_layer, n_kv_head, head_dim, page_size, n_pages, true);
}

bi_status eng_kv_pool_init_opt(eng_kv_pool *p, int n_layer, int n_kv_head, int head_dim,
                               int page_size, int32_t n_pages, bool host_kv)
{
    memset(p, 0, sizeof *p);
    if (n_layer <= 0 || n_kv_head <= 0 || head_dim <= 0 || page_size <= 0 || n_pages <= 0)
        return BI_INVALID_ARGUMENT;
    size_t per_page = (size_t)n_layer * n_kv_head * head_dim * page_size, total;
    if (!bi_size_mul(per_page, (size_t)n_pages, &total))
        return BI_NOMEM;
    p->n_layer = n_layer;
    p->n_kv_head = n_kv_head;
    p->head_dim = head_dim;
    p->page_size = page_size;
    p->elem_bytes = host_kv ? (int)sizeof(float) : 2;
    p->n_pages = n_pages;
    if (host_kv) {
        p->k = bi_mallocarray(total, sizeof(float));
        p->v = bi_mallocarray(total, sizeof(float));
    }
    p->refs = bi_calloc((size_t)n_pages, sizeof *p->refs);
    p->free_ids = bi_mallocarray((size_t)n_pages, sizeof *p->free_ids);
    if ((host_kv && (!p->k || !p->v)) || !p->refs || !p->free_ids) {
        eng_kv_pool_fini(p);
        return BI_NOMEM;
    }
    /* Hand out low ids first: the stack pops from the end. */
    for (int32_t i = 0; i < n_pages; i++)
        p->free_ids[i] = n_pages - 1 - i;
    p->n_free = n_pages;
    return BI_OK;
}

void eng_kv_pool_fini(eng_kv_pool *p)
{
    bi_free(p->k);
    bi_free(p->v);
    bi_free(p->refs);
    bi_free(p->free_ids);
    memset(p, 0, sizeof *p);
}

bi_status eng_kv_alloc(eng_kv_pool *p, int32_t n, int32_t *ids)
{
    if (n < 0)
        return BI_INVALID_ARGUMENT;
    if (n > p->n_free)
        return BI_KV_FULL;
    for (int32_t i = 0; i < n; i++) {
        int32_t id = p->free_ids[--p->n_free];
        p->refs[id] = 1;
        ids[i] = id;
    }
    return BI_OK;
}

void eng_kv_ref(eng_kv_pool *p, const int32_t *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        p->refs[ids[i]]++;
}

void eng_kv_unref(eng_kv_pool *p, const int32_t *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (p->refs[id] == 0)
            continue; /* double free: a bug, but never corrupt the free list */
        if (--p->refs[id] == 0)
            p->free_ids[p->n_free++] = id;
    }
}
