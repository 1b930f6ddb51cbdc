/* backend_cpu.c - the CPU backend (fp32 ops on host memory over a thread pool)
 * and backend selection by name. */
#define BI_LOG_MODULE "cpu"
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "core/attention.h"
#include "core/backend.h"
#include "core/forward.h"
#include "cpu/krn_cpu.h"
#include "model/model.h"

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

/* On the CPU, activations and weights are plain fp32 host arrays. */
static float *F(eng_act *a)
{
    return (float *)a;
}
static const float *CF(const eng_act *a)
{
    return (const float *)a;
}
static const float *W(const eng_wt *w)
{
    return (const float *)w;
}
static const eng_wt *wt(const float *p)
{
    return (const eng_wt *)p;
}

static bi_status cpu_prepare(eng_backend *b, const eng_model *m, eng_kv_pool *kv,
                             int32_t max_tokens, eng_weights **out)
{
    (void)b;
    (void)max_tokens;
    const eng_model_config *c = &m->cfg;
    if (c->head_dim > CPU_MAX_HEAD_DIM || !kv->k || !kv->v)
        return BI_INVALID_ARGUMENT;
    eng_weights *w = bi_calloc(1, sizeof *w);
    if (!w || !(w->layers = bi_calloc((size_t)c->n_layer, sizeof *w->layers))) {
        bi_free(w);
        return BI_NOMEM;
    }
    w->tok_embd = wt(m->tok_embd);
    w->out_norm = wt(m->out_norm);
    w->lm_head = wt(m->lm_head);
    for (int l = 0; l < c->n_layer; l++) {
        const eng_layer_weights *s = &m->layers[l];
        w->layers[l] = (eng_wlayer){
            .attn_norm = wt(s->attn_norm),
            .wq = wt(s->wq),
            .wk = wt(s->wk),
            .wv = wt(s->wv),
            .bq = wt(s->bq),
            .bk = wt(s->bk),
            .bv = wt(s->bv),
            .q_norm = wt(s->q_norm),
            .k_norm = wt(s->k_norm),
            .wo = wt(s->wo),
            .ffn_norm = wt(s->ffn_norm),
            .w_gate = wt(s->w_gate),
            .w_up = wt(s->w_up),
            .w_down = wt(s->w_down),
        };
    }
    *out = w;
    return BI_OK;
}

static void cpu_release(eng_backend *b, eng_weights *w)
{
    (void)b;
    if (w)
        bi_free(w->layers);
    bi_free(w);
}

static bi_status cpu_act_alloc(eng_backend *b, eng_act_kind kind, size_t n, eng_act **out)
{
    (void)b;
    (void)kind; /* F32 and IN are both fp32 here */
    *out = bi_mallocarray(n ? n : 1, sizeof(float));
    return *out ? BI_OK : BI_NOMEM;
}

static void cpu_act_free(eng_backend *b, eng_act *a)
{
    (void)b;
    bi_free(a);
}

static bi_status cpu_begin(eng_backend *b, const eng_plan *plan)
{
    (void)b;
    (void)plan;
    return BI_OK;
}

static bi_status cpu_finish(eng_backend *b)
{
    (void)b;
    return BI_OK;
}

static void cpu_embed(eng_backend *b, const eng_plan *plan, eng_act *x, const eng_wt *table, int d)
{
    (void)b;
    const int32_t *tokens = plan->batch->tokens;
    for (int32_t i = 0; i < plan->batch->n_tokens; i++)
        memcpy(F(x) + (size_t)i * d, W(table) + (size_t)tokens[i] * d, (size_t)d * sizeof(float));
}

static void cpu_rmsnorm(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w, int M, int D,
                        float eps)
{
    (void)b;
    krn_cpu_rmsnorm(F(y), CF(x), W(w), M, D, eps);
}

static void cpu_head_norm(eng_backend *b, eng_act *x, const eng_wt *w, int M, int D, float eps)
{
    (void)b;
    krn_cpu_rmsnorm(F(x), F(x), W(w), M, D, eps);
}

static void cpu_norm_rows(eng_backend *b, const eng_plan *plan, eng_act *y, const eng_act *x,
                          const eng_wt *w, int D, float eps)
{
    (void)b;
    for (int32_t r = 0; r < plan->n_logits; r++)
        krn_cpu_rmsnorm(F(y) + (size_t)r * D, CF(x) + (size_t)plan->logit_tok[r] * D, W(w), 1, D,
                        eps);
}

static void cpu_matmul(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w,
                       const eng_wt *bias, int M, int N, int K)
{
    krn_cpu_matmul(cpu_of(b)->pool, F(y), CF(x), W(w), W(bias), M, N, K);
}

static void cpu_logits(eng_backend *b, float *logits, const eng_act *h, const eng_wt *lm_head,
                       int rows, int vocab, int d)
{
    krn_cpu_matmul(cpu_of(b)->pool, logits, CF(h), W(lm_head), NULL, rows, vocab, d);
}

static void cpu_add(eng_backend *b, eng_act *x, const eng_act *y, size_t n)
{
    (void)b;
    float *xs = F(x);
    const float *ys = CF(y);
    for (size_t i = 0; i < n; i++)
        xs[i] += ys[i];
}

static void cpu_silu_mul(eng_backend *b, eng_act *out, const eng_act *gate, const eng_act *up,
                         size_t n)
{
    (void)b;
    krn_cpu_silu_mul(F(out), CF(gate), CF(up), n);
}

static void cpu_store_kv(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                         eng_kv_pool *kv, int layer, eng_act *ka, const eng_act *va)
{
    (void)b;
    float *k = F(ka);
    const float *v = CF(va);
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
                          const eng_kv_pool *kv, int layer, int n_head, eng_act *out,
                          const eng_act *q)
{
    attn_job j = {cpu_of(b), plan, rope, kv, layer, n_head, F(out), CF(q)};
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
    .prepare = cpu_prepare,
    .release = cpu_release,
    .act_alloc = cpu_act_alloc,
    .act_free = cpu_act_free,
    .begin = cpu_begin,
    .embed = cpu_embed,
    .rmsnorm = cpu_rmsnorm,
    .head_norm = cpu_head_norm,
    .matmul = cpu_matmul,
    .add = cpu_add,
    .silu_mul = cpu_silu_mul,
    .store_kv = cpu_store_kv,
    .attention = cpu_attention,
    .norm_rows = cpu_norm_rows,
    .logits = cpu_logits,
    .finish = cpu_finish,
};

bi_status eng_backend_cpu_create(int n_threads, int32_t max_ctx, eng_backend **out)
{
    if (max_ctx <= 0)
        return BI_INVALID_ARGUMENT;
    cpu_backend *c = bi_calloc(1, sizeof *c);
    if (!c)
        return BI_NOMEM;
    c->base.ops = &cpu_ops;
    c->base.host_kv = true;
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

#ifndef BRAID_HAVE_CUDA
bi_status eng_backend_cuda_create(int device, eng_store_dtype dtype, eng_backend **out)
{
    (void)device;
    (void)dtype;
    *out = NULL;
    return BI_UNSUPPORTED;
}

bool eng_backend_cuda_available(void)
{
    return false;
}
#endif

bi_status eng_backend_create(const char *name, int n_threads, int32_t max_ctx,
                             eng_store_dtype dtype, eng_backend **out)
{
    *out = NULL;
    if (!name || !strcmp(name, "cpu"))
        return eng_backend_cpu_create(n_threads, max_ctx, out);
    if (!strcmp(name, "cuda"))
        return eng_backend_cuda_create(0, dtype, out);
    if (!strcmp(name, "auto"))
        return eng_backend_cuda_available() ? eng_backend_cuda_create(0, dtype, out)
                                            : eng_backend_cpu_create(n_threads, max_ctx, out);
    return BI_INVALID_ARGUMENT;
}

static const char *const STORE_NAMES[] = {"auto", "bf16", "fp16"};

bi_status eng_store_dtype_parse(const char *name, eng_store_dtype *out)
{
    if (!name) {
        *out = ENG_STORE_AUTO;
        return BI_OK;
    }
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, STORE_NAMES[i])) {
            *out = (eng_store_dtype)i;
            return BI_OK;
        }
    return BI_INVALID_ARGUMENT;
}

const char *eng_store_dtype_name(eng_store_dtype d)
{
    return d >= ENG_STORE_AUTO && d <= ENG_STORE_FP16 ? STORE_NAMES[d] : "?";
}

eng_store_dtype eng_store_dtype_resolve(eng_store_dtype asked, const eng_model *m)
{
    if (asked != ENG_STORE_AUTO)
        return asked;
    return m->weight_dtype == ENG_DTYPE_F16 ? ENG_STORE_FP16 : ENG_STORE_BF16;
}

void eng_backend_destroy(eng_backend *b)
{
    if (b)
        b->ops->destroy(b);
}
