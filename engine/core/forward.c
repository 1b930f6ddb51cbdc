/* forward.c - one forward pass for every architecture and backend. */
#define BI_LOG_MODULE "forward"
#include "core/forward.h"

#include <string.h>

#include "common/alloc.h"

struct eng_forward {
    const eng_model *m;
    eng_backend *b;
    eng_kv_pool *kv;
    int32_t max_tokens;
    eng_rope rope;
    /* scratch, sized for max_tokens */
    float *x, *h, *q, *k, *v, *att, *gate, *up;
    int32_t *tok_seq, *tok_pos, *tok_idx, *logit_tok;
};

void eng_forward_destroy(eng_forward *f)
{
    if (!f)
        return;
    eng_rope_fini(&f->rope);
    float *bufs[] = {f->x, f->h, f->q, f->k, f->v, f->att, f->gate, f->up};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        bi_free(bufs[i]);
    bi_free(f->tok_seq);
    bi_free(f->tok_pos);
    bi_free(f->tok_idx);
    bi_free(f->logit_tok);
    bi_free(f);
}

bi_status eng_forward_create(const eng_model *m, eng_backend *b, eng_kv_pool *kv,
                             int32_t max_tokens, eng_forward **out)
{
    const eng_model_config *c = &m->cfg;
    if (max_tokens <= 0 || c->head_dim > ENG_CPU_MAX_HEAD_DIM || c->head_dim % 2)
        return BI_INVALID_ARGUMENT;
    if (kv->n_layer != c->n_layer || kv->n_kv_head != c->n_kv_head || kv->head_dim != c->head_dim)
        return BI_INVALID_ARGUMENT;
    eng_forward *f = bi_calloc(1, sizeof *f);
    if (!f)
        return BI_NOMEM;
    f->m = m;
    f->b = b;
    f->kv = kv;
    f->max_tokens = max_tokens;
    size_t n = (size_t)max_tokens, qd = (size_t)c->n_head * c->head_dim,
           kvd = (size_t)c->n_kv_head * c->head_dim;
    size_t wide = (size_t)c->d_model > qd ? (size_t)c->d_model : qd;
    f->x = bi_mallocarray(n * c->d_model, sizeof(float));
    f->h = bi_mallocarray(n * wide, sizeof(float));
    f->q = bi_mallocarray(n * qd, sizeof(float));
    f->k = bi_mallocarray(n * kvd, sizeof(float));
    f->v = bi_mallocarray(n * kvd, sizeof(float));
    f->att = bi_mallocarray(n * qd, sizeof(float));
    f->gate = bi_mallocarray(n * c->d_ff, sizeof(float));
    f->up = bi_mallocarray(n * c->d_ff, sizeof(float));
    f->tok_seq = bi_mallocarray(n, sizeof(int32_t));
    f->tok_pos = bi_mallocarray(n, sizeof(int32_t));
    f->tok_idx = bi_mallocarray(n, sizeof(int32_t));
    f->logit_tok = bi_mallocarray(n, sizeof(int32_t));
    bi_status st = eng_rope_init(&f->rope, c);
    if (st != BI_OK || !f->x || !f->h || !f->q || !f->k || !f->v || !f->att || !f->gate || !f->up ||
        !f->tok_seq || !f->tok_pos || !f->tok_idx || !f->logit_tok) {
        eng_forward_destroy(f);
        return BI_NOMEM;
    }
    *out = f;
    return BI_OK;
}

int32_t eng_forward_logit_rows(const eng_fwd_batch *b)
{
    int32_t rows = 0;
    for (int i = 0; i < b->n_seqs; i++)
        rows += b->seqs[i].logits == ENG_LOGITS_ALL ? b->seqs[i].n_new
                                                    : b->seqs[i].logits == ENG_LOGITS_LAST;
    return rows;
}

/* Checks the batch and fills the per-token plan; the number of logit rows
 * goes to *rows. */
static bi_status forward_plan(eng_forward *f, const eng_fwd_batch *b, eng_plan *plan, int32_t *rows)
{
    if (b->n_tokens <= 0 || b->n_tokens > f->max_tokens || b->n_seqs <= 0)
        return BI_INVALID_ARGUMENT;
    int32_t t = 0, r = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        if (q->n_new < 1 || q->tail_len < 0 || q->n_new > b->n_tokens - t || !q->tail_pages)
            return BI_INVALID_ARGUMENT;
        for (int32_t i = 0; i < q->n_new; i++, t++) {
            if (b->tokens[t] < 0 || b->tokens[t] >= f->m->cfg.vocab_size)
                return BI_INVALID_ARGUMENT;
            f->tok_seq[t] = s;
            f->tok_idx[t] = q->tail_len + i;
            f->tok_pos[t] = q->tail_pos + q->tail_len + i;
            if (q->logits == ENG_LOGITS_ALL || (q->logits == ENG_LOGITS_LAST && i == q->n_new - 1))
                f->logit_tok[r++] = t;
        }
    }
    if (t != b->n_tokens)
        return BI_INVALID_ARGUMENT;
    plan->batch = b;
    plan->tok_seq = f->tok_seq;
    plan->tok_pos = f->tok_pos;
    plan->tok_idx = f->tok_idx;
    *rows = r;
    return BI_OK;
}

static void forward_layer(eng_forward *f, const eng_plan *plan, int l, int32_t n)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_layer_weights *w = &f->m->layers[l];
    const eng_backend_ops *o = f->b->ops;
    eng_backend *b = f->b;
    const int d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;

    o->rmsnorm(b, f->h, f->x, w->attn_norm, n, d, c->norm_eps);
    o->matmul(b, f->q, f->h, w->wq, w->bq, n, qd, d);
    o->matmul(b, f->k, f->h, w->wk, w->bk, n, kvd, d);
    o->matmul(b, f->v, f->h, w->wv, w->bv, n, kvd, d);
    if (c->qk_norm) {
        o->rmsnorm(b, f->q, f->q, w->q_norm, n * c->n_head, hd, c->norm_eps);
        o->rmsnorm(b, f->k, f->k, w->k_norm, n * c->n_kv_head, hd, c->norm_eps);
    }
    o->store_kv(b, plan, &f->rope, f->kv, l, f->k, f->v);
    o->attention(b, plan, &f->rope, f->kv, l, c->n_head, f->att, f->q);
    o->matmul(b, f->h, f->att, w->wo, NULL, n, d, qd);
    o->add(b, f->x, f->h, (size_t)n * d);

    o->rmsnorm(b, f->h, f->x, w->ffn_norm, n, d, c->norm_eps);
    o->matmul(b, f->gate, f->h, w->w_gate, NULL, n, c->d_ff, d);
    o->matmul(b, f->up, f->h, w->w_up, NULL, n, c->d_ff, d);
    o->silu_mul(b, f->gate, f->gate, f->up, (size_t)n * c->d_ff);
    o->matmul(b, f->h, f->gate, w->w_down, NULL, n, d, c->d_ff);
    o->add(b, f->x, f->h, (size_t)n * d);
}

bi_status eng_forward_run(eng_forward *f, const eng_fwd_batch *b, float *logits)
{
    const eng_model_config *c = &f->m->cfg;
    eng_plan plan;
    int32_t rows;
    bi_status st = forward_plan(f, b, &plan, &rows);
    if (st != BI_OK)
        return st;
    const int32_t n = b->n_tokens;
    const int d = c->d_model;
    f->b->ops->embed(f->b, f->x, f->m->tok_embd, b->tokens, n, d);
    for (int l = 0; l < c->n_layer; l++)
        forward_layer(f, &plan, l, n);
    if (rows == 0)
        return BI_OK;
    /* Only the rows that need logits go through the final norm and lm_head. */
    for (int32_t r = 0; r < rows; r++)
        memcpy(f->h + (size_t)r * d, f->x + (size_t)f->logit_tok[r] * d, (size_t)d * sizeof(float));
    f->b->ops->rmsnorm(f->b, f->h, f->h, f->m->out_norm, rows, d, c->norm_eps);
    f->b->ops->matmul(f->b, logits, f->h, f->m->lm_head, NULL, rows, c->vocab_size, d);
    return BI_OK;
}
