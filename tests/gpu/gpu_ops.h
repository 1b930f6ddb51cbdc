/*
 * gpu_ops.h - a harness for the attention-path GPU tests: the same KV-write
 * and attention ops run on the CPU backend (fp32 reference, host pool) and on
 * the CUDA backend (KV on the device in the type under test, gpu_dt;
 * bookkeeping-only pool), through the op table the forward pass uses, with
 * the same plan and inputs.
 */
#ifndef GPU_OPS_H
#define GPU_OPS_H

#include "gpu_util.h"

#include "core/backend.h"
#include "core/forward.h"
#include "model/model.h"

typedef struct ops_side {
    eng_backend *b;
    eng_kv_pool kv;
    eng_weights *w;
    eng_act *q, *k, *v, *out;
    bool gpu;
} ops_side;

typedef struct ops_fx {
    eng_model *m;
    eng_rope rope;
    int n_head, n_kv_head, head_dim, max_tokens;
    ops_side cpu, gpu;
} ops_fx;

static inline void ops_side_init(ops_fx *x, ops_side *s, bool gpu, int page_size, int n_pages)
{
    const eng_model_config *c = &x->m->cfg;
    s->gpu = gpu;
    bi_status st = gpu ? eng_backend_cuda_create(0, gpu_store(gpu_dt), &s->b)
                       : eng_backend_cpu_create(2, 4096, &s->b);
    if (st == BI_OK)
        st = eng_kv_pool_init_opt(&s->kv, 1, c->n_kv_head, c->head_dim, page_size, n_pages,
                                  s->b->host_kv);
    if (st == BI_OK)
        st = s->b->ops->prepare(s->b, x->m, &s->kv, x->max_tokens, &s->w);
    if (st == BI_OK && gpu && s->b->store != gpu_store(gpu_dt))
        st = BI_INTERNAL; /* the backend did not take the type asked for */
    size_t qn = (size_t)x->max_tokens * c->n_head * c->head_dim,
           kvn = (size_t)x->max_tokens * c->n_kv_head * c->head_dim;
    if (st == BI_OK)
        st = s->b->ops->act_alloc(s->b, ENG_ACT_F32, qn, &s->q);
    if (st == BI_OK)
        st = s->b->ops->act_alloc(s->b, ENG_ACT_F32, kvn, &s->k);
    if (st == BI_OK)
        st = s->b->ops->act_alloc(s->b, ENG_ACT_F32, kvn, &s->v);
    if (st == BI_OK)
        st = s->b->ops->act_alloc(s->b, ENG_ACT_IN, qn, &s->out);
    if (st != BI_OK) {
        printf("FAIL setting up the %s side: %s\n", gpu ? "cuda" : "cpu", bi_strerror(st));
        exit(1);
    }
}

/* One layer, n_head query heads over n_kv_head heads of head_dim. */
static inline void ops_fx_init(ops_fx *x, int n_head, int n_kv_head, int head_dim, int page_size,
                               int n_pages, int max_tokens)
{
    eng_model_config c = {0};
    c.arch = ENG_ARCH_LLAMA;
    c.n_layer = 1;
    c.n_head = n_head;
    c.n_kv_head = n_kv_head;
    c.head_dim = head_dim;
    c.d_model = 64;
    c.d_ff = 64;
    c.vocab_size = 16;
    c.max_ctx = 8192;
    c.norm_eps = 1e-5f;
    c.rope_theta = 10000.0f;
    c.bos_id = c.eos_id = -1;
    char err[256];
    if (eng_model_dummy(&c, 1, &x->m, err, sizeof err) != BI_OK ||
        eng_rope_init(&x->rope, &c) != BI_OK) {
        printf("FAIL dummy model: %s\n", err);
        exit(1);
    }
    x->n_head = n_head;
    x->n_kv_head = n_kv_head;
    x->head_dim = head_dim;
    x->max_tokens = max_tokens;
    ops_side_init(x, &x->cpu, false, page_size, n_pages);
    ops_side_init(x, &x->gpu, true, page_size, n_pages);
}

static inline void ops_side_fini(ops_side *s)
{
    const eng_backend_ops *o = s->b->ops;
    o->act_free(s->b, s->q);
    o->act_free(s->b, s->k);
    o->act_free(s->b, s->v);
    o->act_free(s->b, s->out);
    o->release(s->b, s->w);
    eng_kv_pool_fini(&s->kv);
    eng_backend_destroy(s->b);
}

static inline void ops_fx_fini(ops_fx *x)
{
    ops_side_fini(&x->cpu);
    ops_side_fini(&x->gpu);
    eng_rope_fini(&x->rope);
    eng_model_destroy(x->m);
}

static inline void side_put(const ops_side *s, eng_act *dst, const float *src, size_t n)
{
    if (s->gpu)
        CUDA_OR_DIE(cudaMemcpy(dst, src, n * sizeof(float), cudaMemcpyHostToDevice));
    else
        memcpy(dst, src, n * sizeof(float));
}

/* Writes the batch's k, v (host fp32, unrotated) into the side's pool and
 * returns the attention of q (host fp32) in out (host fp32, from gpu_dt on the
 * GPU side). The output is poisoned first. */
static inline bi_status ops_side_step(ops_fx *x, ops_side *s, const eng_fwd_batch *b,
                                      const float *q, const float *k, const float *v, float *out)
{
    const int32_t n = b->n_tokens;
    int32_t *seq = malloc(sizeof(int32_t) * n), *pos = malloc(sizeof(int32_t) * n),
            *idx = malloc(sizeof(int32_t) * n);
    for (int i = 0, t = 0; i < b->n_seqs; i++)
        for (int32_t j = 0; j < b->seqs[i].n_new; j++, t++) {
            seq[t] = i;
            idx[t] = b->seqs[i].tail_len + j;
            pos[t] = b->seqs[i].tail_pos + idx[t];
        }
    int32_t no_logits = 0;
    eng_plan plan = {b, seq, pos, idx, &no_logits, 0};
    size_t qn = (size_t)n * x->n_head * x->head_dim, kvn = (size_t)n * x->n_kv_head * x->head_dim;
    side_put(s, s->q, q, qn);
    side_put(s, s->k, k, kvn);
    side_put(s, s->v, v, kvn);
    if (s->gpu)
        CUDA_OR_DIE(cudaMemset(s->out, 0xFF, qn * 2));
    else
        memset(s->out, 0xFF, qn * sizeof(float));
    const eng_backend_ops *o = s->b->ops;
    bi_status st = o->begin(s->b, &plan);
    if (st == BI_OK) {
        o->store_kv(s->b, &plan, &x->rope, &s->kv, 0, s->k, s->v);
        o->attention(s->b, &plan, &x->rope, &s->kv, 0, x->n_head, s->out, s->q);
        st = o->finish(s->b);
    }
    if (st == BI_OK && s->gpu) {
        download_half(out, s->out, qn, gpu_dt);
    } else if (st == BI_OK) {
        memcpy(out, s->out, qn * sizeof(float));
    }
    free(seq), free(pos), free(idx);
    return st;
}

/* Runs one batch on both sides with the same fresh random inputs; returns
 * the relative error of the GPU output (a failed step counts as a failed
 * check). */
static inline double ops_both(ops_fx *x, const eng_fwd_batch *b)
{
    size_t qn = (size_t)b->n_tokens * x->n_head * x->head_dim,
           kvn = (size_t)b->n_tokens * x->n_kv_head * x->head_dim;
    float *q = malloc(qn * 4), *k = malloc(kvn * 4), *v = malloc(kvn * 4), *ref = malloc(qn * 4),
          *out = malloc(qn * 4);
    fill_rand(q, qn, 2.0f);
    fill_rand(k, kvn, 2.0f);
    fill_rand(v, kvn, 1.0f);
    bi_status s1 = ops_side_step(x, &x->cpu, b, q, k, v, ref);
    bi_status s2 = ops_side_step(x, &x->gpu, b, q, k, v, out);
    EXPECT(s1 == BI_OK && s2 == BI_OK, "step: cpu %s, cuda %s", bi_strerror(s1), bi_strerror(s2));
    double e = rel_err(out, ref, qn);
    free(q), free(k), free(v), free(ref), free(out);
    return e;
}

#endif
