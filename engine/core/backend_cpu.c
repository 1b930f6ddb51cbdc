/* backend_cpu.c - the CPU backend: fp32 ops on host memory over a thread pool. */
#define BI_LOG_MODULE "cpu"
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "core/attention.h"
#include "core/backend.h"
#include "core/forward.h"
#include "cpu/krn_cpu.h"

#define CPU_MAX_HEAD_DIM ENG_CPU_MAX_HEAD_DIM

typedef struct cpu_backend {
    eng_backend base;
    krn_pool *pool;
    int32_t max_ctx;
    size_t scratch_per_thread; /* floats */
    float *scratch;
} cpu_backend;

static cpu_backend *cpu_of(eng_backend *b)
{
    return (cpu_backend *)b;
}

static void cpu_embed(eng_backend *b, float *x, const float *table, const int32_t *tokens, int n,
                      int d)
{
    (void)b;
    for (int i = 0; i < n; i++)
        memcpy(x + (size_t)i * d, table + (size_t)tokens[i] * d, (size_t)d * sizeof(float));
}

static void cpu_rmsnorm(eng_backend *b, float *y, const float *x, const float *w, int M, int D,
                        float eps)
{
    (void)b;
    krn_cpu_rmsnorm(y, x, w, M, D, eps);
}

static void cpu_matmul(eng_backend *b, float *y, const float *x, const float *w, const float *bias,
                       int M, int N, int K)
{
    krn_cpu_matmul(cpu_of(b)->pool, y, x, w, bias, M, N, K);
}

static void cpu_add(eng_backend *b, float *x, const float *y, size_t n)
{
    (void)b;
    for (size_t i = 0; i < n; i++)
        x[i] += y[i];
}

static void cpu_silu_mul(eng_backend *b, float *out, const float *gate, const float *up, size_t n)
{
    (void)b;
    krn_cpu_silu_mul(out, gate, up, n);
}

static void cpu_store_kv(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                         eng_kv_pool *kv, int layer, float *k, const float *v)
{
    (void)b;
    const int hd = kv->head_dim, nkv = kv->n_kv_head, ps = kv->page_size;
    for (int32_t t = 0; t < plan->batch->n_tokens; t++) {
        const eng_fwd_seq *s = &plan->batch->seqs[plan->tok_seq[t]];
        int32_t idx = plan->tok_idx[t];
        int32_t page = s->tail_pages[idx / ps];
        for (int h = 0; h < nkv; h++) {
            float *kt = k + ((size_t)t * nkv + h) * hd;
            eng_rope_apply(rope, kt, plan->tok_pos[t]);
            memcpy(eng_kv_k(kv, layer, page, h, idx % ps), kt, (size_t)hd * sizeof(float));
            memcpy(eng_kv_v(kv, layer, page, h, idx % ps), v + ((size_t)t * nkv + h) * hd,
                   (size_t)hd * sizeof(float));
        }
    }
}

typedef struct attn_job {
    cpu_backend *cpu;
    const eng_plan *plan;
    const eng_rope *rope;
    const eng_kv_pool *kv;
    int layer, n_head;
    float *out;
    const float *q;
} attn_job;

/* One (token, head) pair: every level of the token's sequence, merged. */
static void attn_task(void *arg, int task, int n_tasks, int thread)
{
    (void)n_tasks;
    attn_job *j = arg;
    const eng_kv_pool *kv = j->kv;
    const int hd = kv->head_dim, group = j->n_head / kv->n_kv_head;
    const int t = task / j->n_head, h = task % j->n_head, kvh = h / group;
    const eng_fwd_seq *s = &j->plan->batch->seqs[j->plan->tok_seq[t]];
    const int32_t pos = j->plan->tok_pos[t];
    const float scale = 1.0f / sqrtf((float)hd);

    float *scr = j->cpu->scratch + (size_t)thread * j->cpu->scratch_per_thread;
    float *qrot = scr, *acc = scr + CPU_MAX_HEAD_DIM, *lacc = acc + CPU_MAX_HEAD_DIM;
    float *scores = lacc + CPU_MAX_HEAD_DIM;
    const float *qh = j->q + ((size_t)t * j->n_head + h) * hd;
    eng_attn_state st = {.acc = acc}, lv = {.acc = lacc};
    eng_attn_state_clear(&st, hd);

    for (int i = 0; i < s->n_segs; i++) {
        const eng_seg *g = &s->segs[i];
        memcpy(qrot, qh, (size_t)hd * sizeof(float));
        eng_rope_apply(j->rope, qrot, pos - g->pos + g->rot_base);
        eng_attn_level(kv, j->layer, kvh, qrot, g->pages, g->len, scale, scores, &lv);
        eng_attn_merge(&st, &lv, hd);
    }
    memcpy(qrot, qh, (size_t)hd * sizeof(float));
    eng_rope_apply(j->rope, qrot, pos);
    eng_attn_level(kv, j->layer, kvh, qrot, s->tail_pages, j->plan->tok_idx[t] + 1, scale, scores,
                   &lv);
    eng_attn_merge(&st, &lv, hd);
    eng_attn_finish(&st, j->out + ((size_t)t * j->n_head + h) * hd, hd);
}

static void cpu_attention(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                          const eng_kv_pool *kv, int layer, int n_head, float *out, const float *q)
{
    attn_job j = {cpu_of(b), plan, rope, kv, layer, n_head, out, q};
    krn_pool_run(cpu_of(b)->pool, plan->batch->n_tokens * n_head, attn_task, &j);
}

static void cpu_destroy(eng_backend *b)
{
    cpu_backend *c = cpu_of(b);
    krn_pool_destroy(c->pool);
    bi_free(c->scratch);
    bi_free(c);
}

static const eng_backend_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .matmul = cpu_matmul,
    .add = cpu_add,
    .silu_mul = cpu_silu_mul,
    .store_kv = cpu_store_kv,
    .attention = cpu_attention,
};

bi_status eng_backend_cpu_create(int n_threads, int32_t max_ctx, eng_backend **out)
{
    if (max_ctx <= 0)
        return BI_INVALID_ARGUMENT;
    cpu_backend *c = bi_calloc(1, sizeof *c);
    if (!c)
        return BI_NOMEM;
    c->base.ops = &cpu_ops;
    c->max_ctx = max_ctx;
    bi_status st = krn_pool_create(n_threads, &c->pool);
    if (st != BI_OK) {
        bi_free(c);
        return st;
    }
    c->scratch_per_thread = 3 * CPU_MAX_HEAD_DIM + (size_t)max_ctx;
    c->scratch =
        bi_mallocarray(c->scratch_per_thread * (size_t)krn_pool_size(c->pool), sizeof(float));
    if (!c->scratch) {
        eng_backend_destroy(&c->base);
        return BI_NOMEM;
    }
    *out = &c->base;
    return BI_OK;
}

void eng_backend_destroy(eng_backend *b)
{
    if (b)
        b->ops->destroy(b);
}
