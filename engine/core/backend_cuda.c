/*
 * backend_cuda.c - the CUDA backend: bf16 weights and paged KV in device
 * memory, the fp32 residual stream, cuBLAS projections and the kernels of
 * kernels/cuda, all on one stream.
 *
 * prepare() uploads the weights once (matrices converted to bf16 on the
 * device through an fp32 staging buffer; norms and biases stay fp32) into one
 * allocation and allocates K and V for the bound pool, with the pool's page
 * ids. begin() packs the step's plan (tokens, positions, tail slots, segment
 * tables, page lists) into one int32 buffer and uploads it with one copy;
 * every layer then reads it on the device. Ops only enqueue work: the first
 * failure of a step is kept and reported by finish(), which waits for the
 * stream; nothing here aborts.
 */
#define BI_LOG_MODULE "cuda"
#include <math.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "common/alloc.h"
#include "common/log.h"
#include "core/backend.h"
#include "core/forward.h"
#include "core/kv.h"
#include "cuda/krn_attn.h"
#include "cuda/krn_elem.h"
#include "cuda/krn_gemm.h"
#include "cuda/krn_norm.h"
#include "model/model.h"

#define STAGE_ELEMS ((size_t)16 << 20) /* fp32 staging for weight conversion: 64 MiB */

typedef struct cuda_backend {
    eng_backend base;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    bi_status st; /* first failure of the current step */
    /* bound by prepare */
    const eng_model *m;
    eng_kv_pool *kv;
    krn_bf16 *kv_k, *kv_v;
    size_t kv_layer_elems;
    float *inv_freq;
    void *wmem; /* every weight tensor */
    /* the step's plan: host packing buffer and its device copy */
    int32_t *meta_h, *meta_d;
    size_t meta_h_cap, meta_d_cap; /* int32 elements */
    krn_step step;
    float *logits_d;
    size_t logits_cap; /* floats */
} cuda_backend;

static cuda_backend *cuda_of(eng_backend *b)
{
    return (cuda_backend *)b;
}

/* Records the first failure of the step (and logs it once). */
static void note(cuda_backend *cb, bi_status s, const char *what)
{
    if (s == BI_OK || cb->st != BI_OK)
        return;
    cb->st = s;
    cudaError_t e = cudaGetLastError();
    BI_LOGE(NULL, "%s failed: %s (%s)", what, bi_strerror(s),
            e == cudaSuccess ? "no CUDA error" : cudaGetErrorString(e));
}

static bi_status cuda_status(cudaError_t e)
{
    return e == cudaSuccess ? BI_OK : e == cudaErrorMemoryAllocation ? BI_NOMEM : BI_DEVICE;
}

static void note_cuda(cuda_backend *cb, cudaError_t e, const char *what)
{
    if (e != cudaSuccess && cb->st == BI_OK) {
        cb->st = cuda_status(e);
        BI_LOGE(NULL, "%s failed: %s", what, cudaGetErrorString(e));
    }
}

/* ---- weights ---- */

/* Walks the model's tensors twice: once to size the allocation (base NULL),
 * once to fill it. */
typedef struct upload {
    cuda_backend *cb;
    char *base;
    size_t off;
    float *stage;
} upload;

static size_t align256(size_t n)
{
    return (n + 255) & ~(size_t)255;
}

/* An fp32 vector (norm weights, biases), copied as is. */
static const eng_wt *up_vec(upload *u, const float *src, size_t n)
{
    if (!src)
        return NULL;
    char *dst = u->base + u->off;
    u->off += align256(n * sizeof(float));
    if (!u->base)
        return NULL;
    note_cuda(u->cb,
              cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyHostToDevice, u->cb->stream),
              "weight upload");
    return (const eng_wt *)dst;
}

/* A matrix, converted to bf16 on the device chunk by chunk. */
static const eng_wt *up_mat(upload *u, const float *src, size_t n)
{
    if (!src)
        return NULL;
    krn_bf16 *dst = (krn_bf16 *)(u->base + u->off);
    u->off += align256(n * sizeof(krn_bf16));
    if (!u->base)
        return NULL;
    for (size_t i = 0; i < n && u->cb->st == BI_OK; i += STAGE_ELEMS) {
        size_t c = n - i < STAGE_ELEMS ? n - i : STAGE_ELEMS;
        note_cuda(u->cb,
                  cudaMemcpyAsync(u->stage, src + i, c * sizeof(float), cudaMemcpyHostToDevice,
                                  u->cb->stream),
                  "weight upload");
        if (u->cb->st == BI_OK)
            note(u->cb, krn_f32_to_bf16(dst + i, u->stage, c, u->cb->stream), "bf16 conversion");
    }
    return (const eng_wt *)dst;
}

static void walk_weights(upload *u, const eng_model *m, eng_weights *w)
{
    const eng_model_config *c = &m->cfg;
    const size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    const size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd;
    w->tok_embd = up_mat(u, m->tok_embd, (size_t)c->vocab_size * d);
    w->out_norm = up_vec(u, m->out_norm, d);
    w->lm_head =
        m->lm_head == m->tok_embd ? w->tok_embd : up_mat(u, m->lm_head, (size_t)c->vocab_size * d);
    for (int l = 0; l < c->n_layer; l++) {
        const eng_layer_weights *s = &m->layers[l];
        eng_wlayer *o = &w->layers[l];
        o->attn_norm = up_vec(u, s->attn_norm, d);
        o->wq = up_mat(u, s->wq, qd * d);
        o->wk = up_mat(u, s->wk, kvd * d);
        o->wv = up_mat(u, s->wv, kvd * d);
        o->bq = up_vec(u, s->bq, qd);
        o->bk = up_vec(u, s->bk, kvd);
        o->bv = up_vec(u, s->bv, kvd);
        o->q_norm = up_vec(u, s->q_norm, hd);
        o->k_norm = up_vec(u, s->k_norm, hd);
        o->wo = up_mat(u, s->wo, d * qd);
        o->ffn_norm = up_vec(u, s->ffn_norm, d);
        o->w_gate = up_mat(u, s->w_gate, ff * d);
        o->w_up = up_mat(u, s->w_up, ff * d);
        o->w_down = up_mat(u, s->w_down, d * ff);
    }
}

static void cuda_release(eng_backend *b, eng_weights *w)
{
    cuda_backend *cb = cuda_of(b);
    cudaSetDevice(cb->device);
    cudaStreamSynchronize(cb->stream);
    cudaFree(cb->wmem);
    cudaFree(cb->kv_k);
    cudaFree(cb->kv_v);
    cudaFree(cb->inv_freq);
    cb->wmem = cb->kv_k = cb->kv_v = NULL;
    cb->inv_freq = NULL;
    cb->m = NULL;
    cb->kv = NULL;
    if (w)
        bi_free(w->layers);
    bi_free(w);
}

static bi_status upload_weights(cuda_backend *cb, const eng_model *m, eng_weights *w)
{
    upload u = {cb, NULL, 0, NULL};
    walk_weights(&u, m, w);
    size_t bytes = u.off;
    cudaError_t e = cudaMalloc(&cb->wmem, bytes);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&u.stage, STAGE_ELEMS * sizeof(float));
    if (e != cudaSuccess) {
        BI_LOGE(NULL, "cannot allocate %.2f GiB of weights on the device: %s", bytes / 1073741824.0,
                cudaGetErrorString(e));
        cudaFree(u.stage);
        return cuda_status(e);
    }
    u.base = cb->wmem;
    u.off = 0;
    cb->st = BI_OK;
    walk_weights(&u, m, w);
    note_cuda(cb, cudaStreamSynchronize(cb->stream), "weight upload");
    cudaFree(u.stage);
    BI_LOGI(NULL, "weights on the device: %.1f MiB (bf16 matrices)", bytes / 1048576.0);
    return cb->st;
}

static bi_status alloc_kv(cuda_backend *cb, const eng_kv_pool *kv)
{
    size_t per_layer = (size_t)kv->n_pages * kv->n_kv_head * kv->page_size * kv->head_dim, total;
    if (!bi_size_mul(per_layer, (size_t)kv->n_layer, &total) ||
        !bi_size_mul(total, sizeof(krn_bf16), &total))
        return BI_NOMEM;
    cudaError_t e = cudaMalloc((void **)&cb->kv_k, total);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&cb->kv_v, total);
    if (e != cudaSuccess) {
        BI_LOGE(NULL, "cannot allocate a KV pool of 2 x %.2f GiB on the device: %s",
                total / 1073741824.0, cudaGetErrorString(e));
        return cuda_status(e);
    }
    cb->kv_layer_elems = per_layer;
    return BI_OK;
}

static bi_status cuda_prepare(eng_backend *b, const eng_model *m, eng_kv_pool *kv,
                              int32_t max_tokens, eng_weights **out)
{
    (void)max_tokens;
    cuda_backend *cb = cuda_of(b);
    const eng_model_config *c = &m->cfg;
    if (cb->m)
        return BI_UNSUPPORTED; /* one model and pool per backend */
    if (c->head_dim > KRN_ATTN_MAX_HEAD_DIM || c->head_dim % 2 || c->n_head % c->n_kv_head)
        return BI_UNSUPPORTED;
    if (cudaSetDevice(cb->device) != cudaSuccess)
        return BI_DEVICE;
    eng_weights *w = bi_calloc(1, sizeof *w);
    if (!w || !(w->layers = bi_calloc((size_t)c->n_layer, sizeof *w->layers))) {
        bi_free(w);
        return BI_NOMEM;
    }
    cb->m = m;
    cb->kv = kv;
    eng_rope rope;
    bi_status st = eng_rope_init(&rope, c);
    if (st == BI_OK) {
        size_t bytes = (size_t)(c->head_dim / 2) * sizeof(float);
        st = cuda_status(cudaMalloc((void **)&cb->inv_freq, bytes));
        if (st == BI_OK)
            st =
                cuda_status(cudaMemcpy(cb->inv_freq, rope.inv_freq, bytes, cudaMemcpyHostToDevice));
        eng_rope_fini(&rope);
    }
    if (st == BI_OK)
        st = upload_weights(cb, m, w);
    if (st == BI_OK)
        st = alloc_kv(cb, kv);
    if (st != BI_OK) {
        cuda_release(b, w);
        return st;
    }
    *out = w;
    return BI_OK;
}

static bi_status cuda_act_alloc(eng_backend *b, eng_act_kind kind, size_t n, eng_act **out)
{
    size_t bytes;
    *out = NULL;
    if (!bi_size_mul(n ? n : 1, kind == ENG_ACT_F32 ? sizeof(float) : sizeof(krn_bf16), &bytes))
        return BI_NOMEM;
    if (cudaSetDevice(cuda_of(b)->device) != cudaSuccess)
        return BI_DEVICE;
    return cuda_status(cudaMalloc((void **)out, bytes));
}

static void cuda_act_free(eng_backend *b, eng_act *a)
{
    (void)b;
    cudaFree(a);
}

/* ---- the step's plan ---- */

/* Grows a device buffer (contents dropped); the previous step is finished. */
static bi_status grow_device(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return BI_OK;
    size_t n = need + need / 2, bytes;
    if (!bi_size_mul(n, elem, &bytes))
        return BI_NOMEM;
    cudaFree(*p);
    *p = NULL;
    *cap = 0;
    cudaError_t e = cudaMalloc(p, bytes);
    if (e != cudaSuccess)
        return cuda_status(e);
    *cap = n;
    return BI_OK;
}

/* Int32 elements the packed plan needs; BI_INVALID_ARGUMENT for a segment or
 * tail that names pages outside the pool (on the device that would be a wild
 * write, so it is checked here). */
static bi_status plan_size(const cuda_backend *cb, const eng_plan *plan, size_t *n_segs,
                           size_t *n_pages)
{
    const eng_fwd_batch *b = plan->batch;
    const eng_kv_pool *kv = cb->kv;
    size_t segs = 0, pages = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        for (int i = 0; i < q->n_segs; i++) {
            const eng_seg *g = &q->segs[i];
            int32_t np = eng_kv_pages_for(kv, g->len);
            if (g->len < 0 || (np > 0 && !g->pages))
                return BI_INVALID_ARGUMENT;
            for (int32_t p = 0; p < np; p++)
                if (g->pages[p] < 0 || g->pages[p] >= kv->n_pages)
                    return BI_INVALID_ARGUMENT;
            pages += (size_t)np;
        }
        int32_t np = eng_kv_pages_for(kv, q->tail_len + q->n_new);
        for (int32_t p = 0; p < np; p++)
            if (q->tail_pages[p] < 0 || q->tail_pages[p] >= kv->n_pages)
                return BI_INVALID_ARGUMENT;
        segs += (size_t)q->n_segs;
        pages += (size_t)np;
    }
    *n_segs = segs;
    *n_pages = pages;
    return BI_OK;
}

/* Packs the plan into meta_h in the order of krn_step's arrays. */
static void plan_pack(cuda_backend *cb, const eng_plan *plan, int32_t **at)
{
    const eng_fwd_batch *b = plan->batch;
    const size_t n = (size_t)b->n_tokens;
    int32_t *p = cb->meta_h;
    memcpy(p, b->tokens, n * sizeof *p);
    memcpy(p + n, plan->tok_seq, n * sizeof *p);
    memcpy(p + 2 * n, plan->tok_pos, n * sizeof *p);
    memcpy(p + 3 * n, plan->tok_idx, n * sizeof *p);
    memcpy(p + 4 * n, plan->logit_tok, (size_t)plan->n_logits * sizeof *p);
    int32_t *seq = p + 4 * n + plan->n_logits;
    int32_t *seg = seq + (size_t)b->n_seqs * KRN_SEQ_FIELDS;
    size_t n_segs = 0;
    for (int s = 0; s < b->n_seqs; s++)
        n_segs += (size_t)b->seqs[s].n_segs;
    int32_t *pages = seg + n_segs * KRN_SEG_FIELDS, *pg = pages;
    int32_t first = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        for (int i = 0; i < q->n_segs; i++, seg += KRN_SEG_FIELDS) {
            const eng_seg *g = &q->segs[i];
            int32_t np = eng_kv_pages_for(cb->kv, g->len);
            seg[KRN_SEG_PAGES] = (int32_t)(pg - pages);
            seg[KRN_SEG_LEN] = g->len;
            seg[KRN_SEG_POS] = g->pos;
            seg[KRN_SEG_ROT_BASE] = g->rot_base;
            memcpy(pg, g->pages, (size_t)np * sizeof *pg);
            pg += np;
        }
        int32_t np = eng_kv_pages_for(cb->kv, q->tail_len + q->n_new);
        seq[(size_t)s * KRN_SEQ_FIELDS + KRN_SEQ_TAIL_PAGES] = (int32_t)(pg - pages);
        seq[(size_t)s * KRN_SEQ_FIELDS + KRN_SEQ_FIRST_SEG] = first;
        seq[(size_t)s * KRN_SEQ_FIELDS + KRN_SEQ_N_SEGS] = q->n_segs;
        first += q->n_segs;
        memcpy(pg, q->tail_pages, (size_t)np * sizeof *pg);
        pg += np;
    }
    at[0] = p + 4 * n + plan->n_logits;               /* seq_info */
    at[1] = seq + (size_t)b->n_seqs * KRN_SEQ_FIELDS; /* seg_info */
    at[2] = pages;
    at[3] = pg; /* end */
}

static bi_status cuda_begin(eng_backend *b, const eng_plan *plan)
{
    cuda_backend *cb = cuda_of(b);
    const eng_fwd_batch *bt = plan->batch;
    cb->st = BI_OK;
    if (cudaSetDevice(cb->device) != cudaSuccess)
        return BI_DEVICE;
    size_t n_segs, n_pages;
    bi_status st = plan_size(cb, plan, &n_segs, &n_pages);
    if (st != BI_OK)
        return st;
    size_t need = 4 * (size_t)bt->n_tokens + (size_t)plan->n_logits +
                  (size_t)bt->n_seqs * KRN_SEQ_FIELDS + n_segs * KRN_SEG_FIELDS + n_pages;
    if (need > cb->meta_h_cap) {
        int32_t *h = bi_reallocarray(cb->meta_h, need, sizeof *h);
        if (!h)
            return BI_NOMEM;
        cb->meta_h = h;
        cb->meta_h_cap = need;
    }
    if ((st = grow_device((void **)&cb->meta_d, &cb->meta_d_cap, need, sizeof(int32_t))) != BI_OK)
        return st;
    int32_t *at[4];
    plan_pack(cb, plan, at);
    cudaError_t e = cudaMemcpyAsync(cb->meta_d, cb->meta_h, need * sizeof(int32_t),
                                    cudaMemcpyHostToDevice, cb->stream);
    if (e != cudaSuccess)
        return cuda_status(e);
    const size_t n = (size_t)bt->n_tokens;
    int32_t *d = cb->meta_d;
    cb->step = (krn_step){
        .tokens = d,
        .tok_seq = d + n,
        .tok_pos = d + 2 * n,
        .tok_idx = d + 3 * n,
        .logit_tok = d + 4 * n,
        .seq_info = d + (at[0] - cb->meta_h),
        .seg_info = d + (at[1] - cb->meta_h),
        .pages = d + (at[2] - cb->meta_h),
        .n_tokens = bt->n_tokens,
        .n_seqs = bt->n_seqs,
        .n_logits = plan->n_logits,
    };
    return BI_OK;
}

static bi_status cuda_finish(eng_backend *b)
{
    cuda_backend *cb = cuda_of(b);
    note_cuda(cb, cudaStreamSynchronize(cb->stream), "the step");
    bi_status st = cb->st;
    cb->st = BI_OK;
    return st;
}

/* ---- ops ---- */

static float *F(eng_act *a)
{
    return (float *)a;
}
static const float *CF(const eng_act *a)
{
    return (const float *)a;
}
static krn_bf16 *H(eng_act *a)
{
    return (krn_bf16 *)a;
}
static const krn_bf16 *CH(const eng_act *a)
{
    return (const krn_bf16 *)a;
}
static const krn_bf16 *WH(const eng_wt *w)
{
    return (const krn_bf16 *)w;
}
static const float *WF(const eng_wt *w)
{
    return (const float *)w;
}

static krn_kv_layer kv_layer(const cuda_backend *cb, int layer)
{
    return (krn_kv_layer){cb->kv_k + (size_t)layer * cb->kv_layer_elems,
                          cb->kv_v + (size_t)layer * cb->kv_layer_elems, cb->kv->n_kv_head,
                          cb->kv->head_dim, cb->kv->page_size};
}

static void cuda_embed(eng_backend *b, const eng_plan *plan, eng_act *x, const eng_wt *table, int d)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_embed(F(x), WH(table), cb->step.tokens, plan->batch->n_tokens, d, cb->stream),
             "embed");
}

static void cuda_rmsnorm(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w, int M,
                         int D, float eps)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_rmsnorm_bf16(H(y), CF(x), NULL, WF(w), M, D, eps, cb->stream), "rmsnorm");
}

static void cuda_head_norm(eng_backend *b, eng_act *x, const eng_wt *w, int M, int D, float eps)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_rmsnorm_f32(F(x), WF(w), M, D, eps, cb->stream), "qk-norm");
}

static void cuda_norm_rows(eng_backend *b, const eng_plan *plan, eng_act *y, const eng_act *x,
                           const eng_wt *w, int D, float eps)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb,
             krn_rmsnorm_bf16(H(y), CF(x), cb->step.logit_tok, WF(w), plan->n_logits, D, eps,
                              cb->stream),
             "final norm");
}

static void cuda_matmul(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w,
                        const eng_wt *bias, int M, int N, int K)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_gemm_bf16(cb->blas, F(y), CH(x), WH(w), M, N, K), "gemm");
    if (bias && cb->st == BI_OK)
        note(cb, krn_add_bias(F(y), WF(bias), M, N, cb->stream), "bias");
}

static void cuda_add(eng_backend *b, eng_act *x, const eng_act *y, size_t n)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_add(F(x), CF(y), n, cb->stream), "residual add");
}

static void cuda_silu_mul(eng_backend *b, eng_act *out, const eng_act *gate, const eng_act *up,
                          size_t n)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb, krn_silu_mul(H(out), CF(gate), CF(up), n, cb->stream), "silu_mul");
}

static void cuda_store_kv(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                          eng_kv_pool *kv, int layer, eng_act *k, const eng_act *v)
{
    (void)plan;
    (void)rope; /* the same frequencies live on the device (prepare) */
    (void)kv;
    cuda_backend *cb = cuda_of(b);
    if (cb->st == BI_OK)
        note(cb,
             krn_rope_store_kv(&cb->step, kv_layer(cb, layer), CF(k), CF(v), cb->inv_freq,
                               cb->stream),
             "kv write");
}

static void cuda_attention(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                           const eng_kv_pool *kv, int layer, int n_head, eng_act *out,
                           const eng_act *q)
{
    (void)plan;
    (void)rope;
    cuda_backend *cb = cuda_of(b);
    float scale = 1.0f / sqrtf((float)kv->head_dim);
    if (cb->st == BI_OK)
        note(cb,
             krn_paged_attention(&cb->step, kv_layer(cb, layer), H(out), CF(q), cb->inv_freq,
                                 n_head, scale, cb->stream),
             "attention");
}

static void cuda_logits(eng_backend *b, float *logits, const eng_act *h, const eng_wt *lm_head,
                        int rows, int vocab, int d)
{
    cuda_backend *cb = cuda_of(b);
    if (cb->st != BI_OK)
        return;
    size_t n = (size_t)rows * vocab;
    note(cb, grow_device((void **)&cb->logits_d, &cb->logits_cap, n, sizeof(float)),
         "logits buffer");
    if (cb->st == BI_OK)
        note(cb, krn_gemm_bf16(cb->blas, cb->logits_d, CH(h), WH(lm_head), rows, vocab, d),
             "lm_head");
    if (cb->st == BI_OK)
        note_cuda(cb,
                  cudaMemcpyAsync(logits, cb->logits_d, n * sizeof(float), cudaMemcpyDeviceToHost,
                                  cb->stream),
                  "logits copy");
}

static void cuda_destroy(eng_backend *b)
{
    cuda_backend *cb = cuda_of(b);
    cudaSetDevice(cb->device);
    if (cb->stream)
        cudaStreamSynchronize(cb->stream);
    cudaFree(cb->meta_d);
    cudaFree(cb->logits_d);
    if (cb->blas)
        cublasDestroy(cb->blas);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    bi_free(cb->meta_h);
    bi_free(cb);
}

static const eng_backend_ops cuda_ops = {
    .name = "cuda",
    .destroy = cuda_destroy,
    .prepare = cuda_prepare,
    .release = cuda_release,
    .act_alloc = cuda_act_alloc,
    .act_free = cuda_act_free,
    .begin = cuda_begin,
    .embed = cuda_embed,
    .rmsnorm = cuda_rmsnorm,
    .head_norm = cuda_head_norm,
    .matmul = cuda_matmul,
    .add = cuda_add,
    .silu_mul = cuda_silu_mul,
    .store_kv = cuda_store_kv,
    .attention = cuda_attention,
    .norm_rows = cuda_norm_rows,
    .logits = cuda_logits,
    .finish = cuda_finish,
};

bool eng_backend_cuda_available(void)
{
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* clear "no device" */
        return false;
    }
    return n > 0;
}

bi_status eng_backend_cuda_create(int device, eng_backend **out)
{
    *out = NULL;
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || device < 0 || device >= n) {
        cudaGetLastError();
        return BI_NO_DEVICE;
    }
    cuda_backend *cb = bi_calloc(1, sizeof *cb);
    if (!cb)
        return BI_NOMEM;
    cb->base.ops = &cuda_ops;
    cb->base.host_kv = false;
    cb->device = device;
    if (cudaSetDevice(device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&cb->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(cb->blas, cb->stream) != CUBLAS_STATUS_SUCCESS) {
        BI_LOGE(NULL, "cannot set up CUDA device %d", device);
        cuda_destroy(&cb->base);
        return BI_DEVICE;
    }
    *out = &cb->base;
    return BI_OK;
}
