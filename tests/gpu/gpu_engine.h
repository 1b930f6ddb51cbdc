/*
 * gpu_engine.h - a model on the CUDA backend for the whole-model GPU tests:
 * the model (from a fixture path or a dummy config), the CUDA backend in the
 * type under test (gpu_dt), a bookkeeping-only KV pool and the forward pass.
 */
#ifndef GPU_ENGINE_H
#define GPU_ENGINE_H

#include "gpu_util.h"

#include "core/backend.h"
#include "core/forward.h"
#include "model/model.h"

typedef struct gpu_model {
    eng_model *m;
    eng_backend *b;
    eng_kv_pool kv;
    eng_forward *f;
} gpu_model;

/* Opens model (already loaded, taken over) on backend name ("cuda" or
 * "cpu"; cuda in gpu_dt) with n_pages pages of 16 tokens. Exits 1 on failure. */
static inline void gpu_model_open(gpu_model *g, eng_model *m, const char *backend, int32_t n_pages,
                                  int32_t max_tokens)
{
    const eng_model_config *c = &m->cfg;
    g->m = m;
    bi_status st = eng_backend_create(backend, 2, 8192, gpu_store(gpu_dt), &g->b);
    if (st == BI_OK)
        st = eng_kv_pool_init_opt(&g->kv, c->n_layer, c->n_kv_head, c->head_dim, 16, n_pages,
                                  g->b->host_kv);
    if (st == BI_OK)
        st = eng_forward_create(m, g->b, &g->kv, max_tokens, &g->f);
    if (st == BI_OK && !g->b->host_kv && g->b->store != gpu_store(gpu_dt))
        st = BI_INTERNAL; /* the backend did not take the type asked for */
    if (st != BI_OK) {
        printf("FAIL setting up %s on %s: %s\n", c->name, backend, bi_strerror(st));
        exit(1);
    }
}

static inline void gpu_model_close(gpu_model *g)
{
    eng_forward_destroy(g->f);
    eng_kv_pool_fini(&g->kv);
    eng_backend_destroy(g->b);
    eng_model_destroy(g->m);
}

/* n tokens of one sequence whose tail starts at pages[0]; no segments. */
static inline bi_status gpu_model_run(gpu_model *g, const int32_t *pages, int32_t tail_len,
                                      const int32_t *tok, int32_t n, int mode, float *logits)
{
    eng_fwd_seq s = {NULL, 0, pages, 0, tail_len, n, mode};
    eng_fwd_batch b = {tok, n, &s, 1};
    return eng_forward_run(g->f, &b, logits);
}

#endif
