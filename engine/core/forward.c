/* forward.c - one forward pass for every architecture and backend. */
#define BI_LOG_MODULE "forward"
#include "core/forward.h"

#include <string.h>

#include "common/alloc.h"

/* The step's activations, in the backend's memory, sized for max_tokens. */
enum {
    ACT_X,    /* F32 [n][d_model]: the residual stream */
    ACT_H,    /* IN  [n][d_model]: normed input of a projection */
    ACT_Q,    /* F32 [n][n_head * head_dim] */
    ACT_K,    /* F32 [n][n_kv_head * head_dim] */
    ACT_V,    /* F32 [n][n_kv_head * head_dim] */
    ACT_ATT,  /* IN  [n][n_head * head_dim]: attention output */
    ACT_O,    /* F32 [n][d_model]: output projections */
    ACT_GATE, /* F32 [n][d_ff] */
    ACT_UP,   /* F32 [n][d_ff] */
    ACT_MLP,  /* IN  [n][d_ff]: silu(gate) * up */
    ACT_COUNT_
};

struct eng_forward {
    const eng_model *m;
    eng_backend *b;
    eng_kv_pool *kv;
    int32_t max_tokens;
    eng_rope rope;
    eng_weights *w;
    eng_act *act[ACT_COUNT_];
    int32_t *tok_seq, *tok_pos, *tok_idx, *logit_tok;
};

void eng_forward_destroy(eng_forward *f)
{
    if (!f)
        return;
    eng_rope_fini(&f->rope);
    for (int i = 0; i < ACT_COUNT_; i++)
        f->b->ops->act_free(f->b, f->act[i]);
    if (f->w)
        f->b->ops->release(f->b, f->w);
    bi_free(f->tok_seq);
    bi_free(f->tok_pos);
    bi_free(f->tok_idx);
    bi_free(f->logit_tok);
    bi_free(f);
}

static bi_status forward_alloc_acts(eng_forward *f)
{
    const eng_model_config *c = &f->m->cfg;
    size_t n = (size_t)f->max_tokens, qd = (size_t)c->n_head * c->head_dim,
           kvd = (size_t)c->n_kv_head * c->head_dim;
    const struct {
        eng_act_kind kind;
        size_t width;
    } spec[ACT_COUNT_] = {
        [ACT_X] = {ENG_ACT_F32, (size_t)c->d_model},
        [ACT_H] = {ENG_ACT_IN, (size_t)c->d_model},
        [ACT_Q] = {ENG_ACT_F32, qd},
        [ACT_K] = {ENG_ACT_F32, kvd},
        [ACT_V] = {ENG_ACT_F32, kvd},
        [ACT_ATT] = {ENG_ACT_IN, qd},
        [ACT_O] = {ENG_ACT_F32, (size_t)c->d_model},
        [ACT_GATE] = {ENG_ACT_F32, (size_t)c->d_ff},
        [ACT_UP] = {ENG_ACT_F32, (size_t)c->d_ff},
        [ACT_MLP] = {ENG_ACT_IN, (size_t)c->d_ff},
    };
    for (int i = 0; i < ACT_COUNT_; i++) {
        size_t elems;
        if (!bi_size_mul(n, spec[i].width, &elems))
            return BI_NOMEM;
        bi_status st = f->b->ops->act_alloc(f->b, spec[i].kind, elems, &f->act[i]);
        if (st != BI_OK)
            return st;
    }
    return BI_OK;
}

bi_status eng_forward_create(const eng_model *m, eng_backend *b, eng_kv_pool *kv,
                             int32_t max_tokens, eng_forward **out)
{
    const eng_model_config *c = &m->cfg;
    if (max_tokens <= 0 || c->head_dim % 2)
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
    size_t n = (size_t)max_tokens;
    f->tok_seq = bi_mallocarray(n, sizeof(int32_t));
    f->tok_pos = bi_mallocarray(n, sizeof(int32_t));
    f->tok_idx = bi_mallocarray(n, sizeof(int32_t));
    f->logit_tok = bi_mallocarray(n, sizeof(int32_t));
    bi_status st = eng_rope_init(&f->rope, c);
    if (st == BI_OK && (!f->tok_seq || !f->tok_pos || !f->tok_idx || !f->logit_tok))
        st = BI_NOMEM;
    if (st == BI_OK)
        st = b->ops->prepare(b, m, kv, max_tokens, &f->w);
    if (st == BI_OK)
        st = forward_alloc_acts(f);
    if (st != BI_OK) {
        eng_forward_destroy(f);
        return st;
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

/* Checks the batch and fills the per-token plan. */
static bi_status forward_plan(eng_forward *f, const eng_fwd_batch *b, eng_plan *plan)
{
    if (b->n_tokens <= 0 || b->n_tokens > f->max_tokens || b->n_seqs <= 0)
        return BI_INVALID_ARGUMENT;
    int32_t t = 0, r = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        if (q->n_new < 1 || q->tail_len < 0 || q->n_new > b->n_tokens - t || !q->tail_pages ||
            q->n_segs < 0 || (q->n_segs > 0 && !q->segs))
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
    plan->logit_tok = f->logit_tok;
    plan->n_logits = r;
    return BI_OK;
}

/* The residual add that closes a sublayer, fused with the norm that opens
 * the next one (norm NULL: the last layer's output, normed by norm_rows). */
static void forward_add_norm(eng_forward *f, const eng_wt *norm, int32_t n)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_backend_ops *o = f->b->ops;
    eng_act **a = f->act;
    if (norm && o->add_rmsnorm) {
        o->add_rmsnorm(f->b, a[ACT_H], a[ACT_X], a[ACT_O], norm, n, c->d_model, c->norm_eps);
        return;
    }
    o->add(f->b, a[ACT_X], a[ACT_O], (size_t)n * c->d_model);
    if (norm)
        o->rmsnorm(f->b, a[ACT_H], a[ACT_X], norm, n, c->d_model, c->norm_eps);
}

/* Which fusions a step takes (eng_backend's small_max, norm_qkv_max). */
typedef struct fwd_path {
    bool small; /* matmul_add and norm_mlp_in, where the backend has them */
    bool add;   /* matmul_add (small steps, or from the backend's add_from tokens) */
    bool qkv;   /* norm_qkv: the attention input normalises x itself */
} fwd_path;

/* Closes a sublayer: x += in . w^T (w [d_model][K]), then h = rmsnorm(x) *
 * norm; norm NULL where the next op norms x itself (or after the last
 * layer). */
static void forward_close(eng_forward *f, const fwd_path *p, eng_act *in, const eng_wt *w, int K,
                          const eng_wt *norm, int32_t n)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_backend_ops *o = f->b->ops;
    eng_act **a = f->act;
    if (p->add && o->matmul_add) {
        o->matmul_add(f->b, a[ACT_X], in, w, n, c->d_model, K);
        if (norm)
            o->rmsnorm(f->b, a[ACT_H], a[ACT_X], norm, n, c->d_model, c->norm_eps);
        return;
    }
    o->matmul(f->b, a[ACT_O], in, w, NULL, n, c->d_model, K);
    forward_add_norm(f, norm, n);
}

/* The attention input: q, and k and v written to the pool. Fused: from x
 * in one op; else from ACT_H, which holds rmsnorm(x) * attn_norm on entry
 * (the previous layer, or the embedding, normed it). */
static void forward_qkv(eng_forward *f, const eng_plan *plan, int l, int32_t n, bool fused)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_wlayer *w = &f->w->layers[l];
    const eng_backend_ops *o = f->b->ops;
    eng_backend *b = f->b;
    eng_act **a = f->act;
    const int d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;

    if (fused) {
        o->norm_qkv(b, plan, &f->rope, f->kv, l, a[ACT_Q], a[ACT_K], a[ACT_V], a[ACT_H], a[ACT_X],
                    w, n, c->norm_eps);
        return;
    }
    if (o->qkv) {
        o->qkv(b, a[ACT_Q], a[ACT_K], a[ACT_V], a[ACT_H], w, n, qd, kvd, d);
    } else {
        o->matmul(b, a[ACT_Q], a[ACT_H], w->wq, w->bq, n, qd, d);
        o->matmul(b, a[ACT_K], a[ACT_H], w->wk, w->bk, n, kvd, d);
        o->matmul(b, a[ACT_V], a[ACT_H], w->wv, w->bv, n, kvd, d);
    }
    if (c->qk_norm) {
        o->head_norm(b, a[ACT_Q], w->q_norm, n * c->n_head, hd, c->norm_eps);
        o->head_norm(b, a[ACT_K], w->k_norm, n * c->n_kv_head, hd, c->norm_eps);
    }
    o->store_kv(b, plan, &f->rope, f->kv, l, a[ACT_K], a[ACT_V]);
}

/* One layer. With p->qkv the attention inputs come from norm_qkv, which
 * norms x itself, so no layer leaves a normed ACT_H for the next. */
static void forward_layer(eng_forward *f, const eng_plan *plan, int l, int32_t n, const fwd_path *p)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_wlayer *w = &f->w->layers[l];
    const eng_backend_ops *o = f->b->ops;
    eng_backend *b = f->b;
    eng_act **a = f->act;
    const int d = c->d_model, qd = c->n_head * c->head_dim;
    const bool norm_mlp = p->small && o->norm_mlp_in;

    forward_qkv(f, plan, l, n, p->qkv);
    o->attention(b, plan, &f->rope, f->kv, l, c->n_head, a[ACT_ATT], a[ACT_Q]);
    forward_close(f, p, a[ACT_ATT], w->wo, qd, norm_mlp ? NULL : w->ffn_norm, n);

    if (norm_mlp) {
        o->norm_mlp_in(b, a[ACT_MLP], a[ACT_H], a[ACT_GATE], a[ACT_UP], a[ACT_X], w->ffn_norm,
                       w->w_gate, w->w_up, n, c->d_ff, d, c->norm_eps);
    } else if (o->mlp_in) {
        o->mlp_in(b, a[ACT_MLP], a[ACT_GATE], a[ACT_UP], a[ACT_H], w->w_gate, w->w_up, n, c->d_ff,
                  d);
    } else {
        o->matmul(b, a[ACT_GATE], a[ACT_H], w->w_gate, NULL, n, c->d_ff, d);
        o->matmul(b, a[ACT_UP], a[ACT_H], w->w_up, NULL, n, c->d_ff, d);
        o->silu_mul(b, a[ACT_MLP], a[ACT_GATE], a[ACT_UP], (size_t)n * c->d_ff);
    }
    const eng_wt *next = l + 1 < c->n_layer && !p->qkv ? f->w->layers[l + 1].attn_norm : NULL;
    forward_close(f, p, a[ACT_MLP], w->w_down, c->d_ff, next, n);
}

/* One pass; the logit rows go to the host (logits) or are sampled on the
 * device (out, with samplers). */
static bi_status forward_run(eng_forward *f, const eng_fwd_batch *b, float *logits,
                             eng_sampler *const *samplers, eng_sample_out *out)
{
    const eng_model_config *c = &f->m->cfg;
    const eng_backend_ops *o = f->b->ops;
    eng_plan plan;
    bi_status st = forward_plan(f, b, &plan);
    if (st == BI_OK)
        st = o->begin(f->b, &plan);
    if (st != BI_OK)
        return st;
    const int d = c->d_model;
    const bool small = b->n_tokens <= f->b->small_max;
    const fwd_path path = {small, small || (f->b->add_from > 0 && b->n_tokens >= f->b->add_from),
                           o->norm_qkv && b->n_tokens <= f->b->norm_qkv_max};
    o->embed(f->b, &plan, f->act[ACT_X], f->w->tok_embd, d);
    if (!path.qkv)
        o->rmsnorm(f->b, f->act[ACT_H], f->act[ACT_X], f->w->layers[0].attn_norm, b->n_tokens, d,
                   c->norm_eps);
    for (int l = 0; l < c->n_layer; l++)
        forward_layer(f, &plan, l, b->n_tokens, &path);
    if (plan.n_logits > 0) {
        /* Only the rows that need logits go through the final norm and lm_head. */
        o->norm_rows(f->b, &plan, f->act[ACT_H], f->act[ACT_X], f->w->out_norm, d, c->norm_eps);
        if (out)
            o->sample(f->b, f->act[ACT_H], f->w->lm_head, plan.n_logits, c->vocab_size, d, samplers,
                      out);
        else
            o->logits(f->b, logits, f->act[ACT_H], f->w->lm_head, plan.n_logits, c->vocab_size, d);
    }
    return o->finish(f->b);
}

bi_status eng_forward_run(eng_forward *f, const eng_fwd_batch *b, float *logits)
{
    return forward_run(f, b, logits, NULL, NULL);
}

bool eng_forward_can_sample(const eng_forward *f)
{
    return f->b->ops->sample && f->m->cfg.vocab_size <= f->b->sample_max_vocab;
}

bi_status eng_forward_run_sampled(eng_forward *f, const eng_fwd_batch *b,
                                  eng_sampler *const *samplers, eng_sample_out *out)
{
    if (!eng_forward_can_sample(f))
        return BI_UNSUPPORTED;
    if (!out)
        return BI_INVALID_ARGUMENT;
    return forward_run(f, b, NULL, samplers, out);
}
