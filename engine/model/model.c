/*
 * model.c - loads a model's weights into fp32 whatever the file format.
 *
 * One table (ROLES) names every weight in both formats, with its expected
 * shape and when it is present; loading is the same walk over that table for
 * GGUF and safetensors: find each tensor, check its shape against the
 * configuration, dequantize it into one fp32 block, un-permute llama GGUF Q/K
 * rows. Architectures differ only by flags (model_config.c).
 */
#define BI_LOG_MODULE "model"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <mbedtls/sha256.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "model/model_int.h"
#include "model/mutil.h"
#include "model/safetensors.h"

/* ---- the weight table ---- */

typedef enum dimk { DK_1, DK_D, DK_Q, DK_KV, DK_FF, DK_VOCAB, DK_HEAD } dimk;
typedef enum needk { NEED_ALWAYS, NEED_UNTIED, NEED_QKV_BIAS, NEED_QK_NORM } needk;
typedef enum permk { PERM_NONE, PERM_Q, PERM_K } permk;

typedef struct role {
    const char *gguf, *hf; /* names; %d is the layer for per-layer weights */
    bool layer;
    dimk rows, cols; /* cols DK_1: a vector of rows elements */
    needk need;
    permk perm;   /* rows to un-permute in llama GGUFs */
    size_t field; /* offset of the float * in eng_model or eng_layer_weights */
} role;

#define G(f) offsetof(eng_model, f)
#define L(f) offsetof(eng_layer_weights, f)
static const role ROLES[] = {
    {"token_embd.weight", "model.embed_tokens.weight", false, DK_VOCAB, DK_D, NEED_ALWAYS,
     PERM_NONE, G(tok_embd)},
    {"output_norm.weight", "model.norm.weight", false, DK_D, DK_1, NEED_ALWAYS, PERM_NONE,
     G(out_norm)},
    {"output.weight", "lm_head.weight", false, DK_VOCAB, DK_D, NEED_UNTIED, PERM_NONE, G(lm_head)},
    {"blk.%d.attn_norm.weight", "model.layers.%d.input_layernorm.weight", true, DK_D, DK_1,
     NEED_ALWAYS, PERM_NONE, L(attn_norm)},
    {"blk.%d.attn_q.weight", "model.layers.%d.self_attn.q_proj.weight", true, DK_Q, DK_D,
     NEED_ALWAYS, PERM_Q, L(wq)},
    {"blk.%d.attn_k.weight", "model.layers.%d.self_attn.k_proj.weight", true, DK_KV, DK_D,
     NEED_ALWAYS, PERM_K, L(wk)},
    {"blk.%d.attn_v.weight", "model.layers.%d.self_attn.v_proj.weight", true, DK_KV, DK_D,
     NEED_ALWAYS, PERM_NONE, L(wv)},
    {"blk.%d.attn_q.bias", "model.layers.%d.self_attn.q_proj.bias", true, DK_Q, DK_1, NEED_QKV_BIAS,
     PERM_Q, L(bq)},
    {"blk.%d.attn_k.bias", "model.layers.%d.self_attn.k_proj.bias", true, DK_KV, DK_1,
     NEED_QKV_BIAS, PERM_K, L(bk)},
    {"blk.%d.attn_v.bias", "model.layers.%d.self_attn.v_proj.bias", true, DK_KV, DK_1,
     NEED_QKV_BIAS, PERM_NONE, L(bv)},
    {"blk.%d.attn_q_norm.weight", "model.layers.%d.self_attn.q_norm.weight", true, DK_HEAD, DK_1,
     NEED_QK_NORM, PERM_NONE, L(q_norm)},
    {"blk.%d.attn_k_norm.weight", "model.layers.%d.self_attn.k_norm.weight", true, DK_HEAD, DK_1,
     NEED_QK_NORM, PERM_NONE, L(k_norm)},
    {"blk.%d.attn_output.weight", "model.layers.%d.self_attn.o_proj.weight", true, DK_D, DK_Q,
     NEED_ALWAYS, PERM_NONE, L(wo)},
    {"blk.%d.ffn_norm.weight", "model.layers.%d.post_attention_layernorm.weight", true, DK_D, DK_1,
     NEED_ALWAYS, PERM_NONE, L(ffn_norm)},
    {"blk.%d.ffn_gate.weight", "model.layers.%d.mlp.gate_proj.weight", true, DK_FF, DK_D,
     NEED_ALWAYS, PERM_NONE, L(w_gate)},
    {"blk.%d.ffn_up.weight", "model.layers.%d.mlp.up_proj.weight", true, DK_FF, DK_D, NEED_ALWAYS,
     PERM_NONE, L(w_up)},
    {"blk.%d.ffn_down.weight", "model.layers.%d.mlp.down_proj.weight", true, DK_D, DK_FF,
     NEED_ALWAYS, PERM_NONE, L(w_down)},
};
#undef G
#undef L
#define N_ROLES (sizeof ROLES / sizeof ROLES[0])

static int64_t dim_of(const eng_model_config *c, dimk d)
{
    switch (d) {
    case DK_D:
        return c->d_model;
    case DK_Q:
        return (int64_t)c->n_head * c->head_dim;
    case DK_KV:
        return (int64_t)c->n_kv_head * c->head_dim;
    case DK_FF:
        return c->d_ff;
    case DK_VOCAB:
        return c->vocab_size;
    case DK_HEAD:
        return c->head_dim;
    default:
        return 1;
    }
}

static bool role_needed(const eng_model_config *c, const role *r)
{
    switch (r->need) {
    case NEED_UNTIED:
        return !c->tie_embeddings;
    case NEED_QKV_BIAS:
        return c->qkv_bias;
    case NEED_QK_NORM:
        return c->qk_norm;
    default:
        return true;
    }
}

static size_t role_elems(const eng_model_config *c, const role *r)
{
    return (size_t)dim_of(c, r->rows) * (size_t)dim_of(c, r->cols);
}

static float **role_field(eng_model *m, const role *r, int layer)
{
    char *base = r->layer ? (char *)&m->layers[layer] : (char *)m;
    return (float **)(base + r->field);
}

/* Sums the floats every needed weight takes; validate() bounds it. */
static size_t total_elems(const eng_model_config *c)
{
    size_t n = 0;
    for (size_t i = 0; i < N_ROLES; i++)
        if (role_needed(c, &ROLES[i]))
            n += role_elems(c, &ROLES[i]) * (ROLES[i].layer ? (size_t)c->n_layer : 1);
    return n;
}

/* Allocates the model and its one fp32 block and points every weight into it. */
static bi_status model_alloc(const eng_model_config *c, eng_model **out, char *err, size_t err_size)
{
    eng_model *m = bi_calloc(1, sizeof *m);
    float *buf = bi_mallocarray(total_elems(c), sizeof(float));
    if (m)
        m->layers = bi_calloc((size_t)c->n_layer, sizeof *m->layers);
    if (!m || !buf || !m->layers) {
        if (m)
            bi_free(m->layers);
        bi_free(m);
        bi_free(buf);
        return eng_errf(err, err_size, BI_NOMEM, "model: cannot allocate %zu weights",
                        total_elems(c));
    }
    m->cfg = *c;
    m->priv_ = buf;
    for (size_t i = 0; i < N_ROLES; i++) {
        const role *r = &ROLES[i];
        if (!role_needed(c, r))
            continue;
        for (int l = 0; l < (r->layer ? c->n_layer : 1); l++) {
            *role_field(m, r, l) = buf;
            buf += role_elems(c, r);
        }
    }
    if (c->tie_embeddings)
        m->lm_head = m->tok_embd;
    *out = m;
    return BI_OK;
}

void eng_model_destroy(eng_model *m)
{
    if (!m)
        return;
    bi_free(m->priv_);
    bi_free(m->layers);
    bi_free(m);
}

/* ---- parallel work ---- */

typedef struct par_job {
    void (*fn)(void *ctx, size_t task);
    void *ctx;
    size_t n_tasks;
    size_t next;
    pthread_mutex_t mu;
} par_job;

static void *par_worker(void *arg)
{
    par_job *j = arg;
    for (;;) {
        pthread_mutex_lock(&j->mu);
        size_t t = j->next++;
        pthread_mutex_unlock(&j->mu);
        if (t >= j->n_tasks)
            return NULL;
        j->fn(j->ctx, t);
    }
}

/* Runs fn(ctx, 0..n_tasks) on up to one thread per CPU (the caller's thread
 * included); falls back to the caller alone when threads cannot start. */
static void par_for(size_t n_tasks, void (*fn)(void *, size_t), void *ctx)
{
    enum { MAX_THREADS = 16 };
    par_job j = {fn, ctx, n_tasks, 0, PTHREAD_MUTEX_INITIALIZER};
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    size_t nt = ncpu < 1 ? 1 : ncpu > MAX_THREADS ? MAX_THREADS : (size_t)ncpu;
    if (nt > n_tasks)
        nt = n_tasks;
    pthread_t th[MAX_THREADS];
    size_t started = 0;
    for (size_t i = 1; i < nt; i++, started++)
        if (pthread_create(&th[started], NULL, par_worker, &j) != 0)
            break;
    par_worker(&j);
    for (size_t i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_mutex_destroy(&j.mu);
}

/* ---- tensor sources ---- */

typedef struct src_view {
    eng_dtype dtype;
    const char *dtype_name;
    int n_dims;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} src_view;

typedef struct source {
    eng_gguf *gguf;   /* GGUF file, or */
    eng_st_set *st;   /* safetensors set */
    bool permuted_qk; /* GGUF Q/K rows in llama.cpp's order */
    cJSON *hf_config; /* config.json (fingerprinted) */
    const char *path;
} source;

static bool source_find(const source *s, const char *name, src_view *v)
{
    if (s->gguf) {
        const eng_gguf_tensor *t = eng_gguf_tensor_find(s->gguf, name);
        if (!t)
            return false;
        *v = (src_view){t->dtype, eng_dtype_name(t->dtype), t->n_dims, {0}, t->data, t->nbytes};
        memcpy(v->shape, t->shape, sizeof v->shape);
        return true;
    }
    const eng_st_tensor *t = eng_st_set_find(s->st, name);
    if (!t)
        return false;
    *v = (src_view){t->dtype, t->dtype_name, t->n_dims, {0}, t->data, t->nbytes};
    memcpy(v->shape, t->shape, sizeof v->shape);
    return true;
}

/* One weight to load: where from, where to. */
typedef struct load_item {
    const role *r;
    char name[96];
    src_view v;
    float *dst;
    size_t n;
} load_item;

static void shape_str(char *buf, size_t n, int n_dims, const int64_t *shape)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < n_dims && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (len < n)
        snprintf(buf + len, n - len, "]");
}

static bi_status check_shape(const eng_model_config *c, const load_item *it, char *err,
                             size_t err_size)
{
    int64_t want[2] = {dim_of(c, it->r->rows), dim_of(c, it->r->cols)};
    int want_dims = it->r->cols == DK_1 ? 1 : 2;
    bool ok = it->v.n_dims == want_dims && it->v.shape[0] == want[0] &&
              (want_dims == 1 || it->v.shape[1] == want[1]);
    if (!ok) {
        char got_s[96], want_s[64];
        shape_str(got_s, sizeof got_s, it->v.n_dims, it->v.shape);
        shape_str(want_s, sizeof want_s, want_dims, want);
        return eng_errf(err, err_size, BI_BAD_FORMAT, "model: tensor %s has shape %s, expected %s",
                        it->name, got_s, want_s);
    }
    if (!eng_dtype_supported(it->v.dtype))
        return eng_errf(err, err_size, BI_UNSUPPORTED, "model: tensor %s has unsupported type %s",
                        it->name, it->v.dtype_name);
    return BI_OK;
}

/* Finds every needed tensor and checks it before anything is allocated. */
static bi_status plan(const source *s, eng_model *m, load_item **out, size_t *n_out,
                      uint64_t *bytes, char *err, size_t err_size)
{
    const eng_model_config *c = &m->cfg;
    size_t cap = N_ROLES * ((size_t)c->n_layer + 1), n = 0;
    load_item *items = bi_calloc(cap, sizeof *items);
    if (!items)
        return eng_errf(err, err_size, BI_NOMEM, "model: out of memory");
    *bytes = 0;
    for (size_t i = 0; i < N_ROLES; i++) {
        const role *r = &ROLES[i];
        if (!role_needed(c, r))
            continue;
        for (int l = 0; l < (r->layer ? c->n_layer : 1); l++) {
            load_item *it = &items[n++];
            it->r = r;
            snprintf(it->name, sizeof it->name, s->gguf ? r->gguf : r->hf, l);
            it->dst = *role_field(m, r, l);
            it->n = role_elems(c, r);
            bi_status st = BI_OK;
            if (!source_find(s, it->name, &it->v))
                st = eng_errf(err, err_size, BI_BAD_FORMAT, "model: missing tensor %s", it->name);
            else
                st = check_shape(c, it, err, err_size);
            if (st != BI_OK) {
                bi_free(items);
                return st;
            }
            *bytes += it->v.nbytes;
        }
    }
    *out = items;
    *n_out = n;
    return BI_OK;
}

/* Undoes convert_hf_to_gguf.py's permute(): within each head, GGUF row
 * 2j + s holds HF row s * head_dim/2 + j. */
static bi_status unpermute(float *w, int64_t rows, int64_t cols, int n_heads, float *tmp)
{
    int64_t hd = rows / n_heads;
    for (int h = 0; h < n_heads; h++) {
        float *head = w + (size_t)h * hd * cols;
        memcpy(tmp, head, (size_t)(hd * cols) * sizeof(float));
        for (int64_t j = 0; j < hd / 2; j++)
            for (int s = 0; s < 2; s++)
                memcpy(head + (size_t)(s * hd / 2 + j) * cols, tmp + (size_t)(2 * j + s) * cols,
                       (size_t)cols * sizeof(float));
    }
    return BI_OK;
}

/* A slice of one tensor to dequantize. */
typedef struct chunk {
    eng_dtype dtype;
    const uint8_t *src;
    size_t n;
    float *dst;
} chunk;

typedef struct chunk_list {
    chunk *c;
    size_t n, cap;
} chunk_list;

static void chunk_run(void *ctx, size_t i)
{
    const chunk *c = &((chunk_list *)ctx)->c[i];
    eng_dequant_f32(c->dtype, c->src, c->n, c->dst); /* type and size checked in plan */
}

#define CHUNK_ELEMS ((size_t)1 << 20) /* a multiple of every block size */

static void report(const eng_model_load_opts *o, const char *stage, uint64_t done, uint64_t total)
{
    if (o && o->progress)
        o->progress(o->progress_user, stage, done, total);
}

/* Dequantizes every item, a batch of about 1% of the bytes at a time spread
 * over the CPUs, reporting progress between batches. */
static bi_status dequant_all(const load_item *items, size_t n_items, uint64_t total,
                             const eng_model_load_opts *o, char *err, size_t err_size)
{
    chunk_list cl = {0};
    uint64_t done = 0, batch = 0, step = total / 100 + 1;
    report(o, "dequantizing", 0, total);
    for (size_t i = 0; i < n_items; i++) {
        const load_item *it = &items[i];
        size_t n = it->n;
        for (size_t off = 0; off < n; off += CHUNK_ELEMS) {
            size_t k = n - off < CHUNK_ELEMS ? n - off : CHUNK_ELEMS, src_off = 0, b = 0;
            eng_dtype_nbytes(it->v.dtype, off, &src_off); /* whole blocks: checked in plan */
            eng_dtype_nbytes(it->v.dtype, k, &b);
            if (bi_array_reserve((void **)&cl.c, &cl.cap, cl.n + 1, sizeof *cl.c) != BI_OK) {
                bi_free(cl.c);
                return eng_errf(err, err_size, BI_NOMEM, "model: out of memory");
            }
            cl.c[cl.n++] =
                (chunk){it->v.dtype, (const uint8_t *)it->v.data + src_off, k, it->dst + off};
            batch += b;
            done += b;
            if (batch >= step || (i + 1 == n_items && off + k >= n)) {
                par_for(cl.n, chunk_run, &cl);
                cl.n = 0;
                batch = 0;
                report(o, "dequantizing", done < total ? done : total, total);
            }
        }
    }
    bi_free(cl.c);
    return BI_OK;
}

/* ---- fingerprints ---- */

#define FP_SAMPLE ((size_t)1 << 20)

static void sha_u64(mbedtls_sha256_context *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    mbedtls_sha256_update_ret(h, b, 8);
}

/* Hashes a file's size, its whole header and the first and last MiB of its
 * data: cheap for big files, and any re-quantization or different export
 * changes the header or the sampled bytes. */
static void sha_file(mbedtls_sha256_context *h, const uint8_t *p, size_t size, size_t header)
{
    sha_u64(h, size);
    if (header > size)
        header = size;
    mbedtls_sha256_update_ret(h, p, header);
    size_t data = size - header;
    size_t first = data < FP_SAMPLE ? data : FP_SAMPLE;
    mbedtls_sha256_update_ret(h, p + header, first);
    size_t last = data - first < FP_SAMPLE ? data - first : FP_SAMPLE;
    mbedtls_sha256_update_ret(h, p + size - last, last);
}

static void sha_hex(mbedtls_sha256_context *h, char out[65])
{
    uint8_t d[32];
    mbedtls_sha256_finish_ret(h, d);
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    mbedtls_sha256_free(h);
}

static void fingerprint_source(const source *s, char out[65])
{
    mbedtls_sha256_context h;
    mbedtls_sha256_init(&h);
    mbedtls_sha256_starts_ret(&h, 0);
    const uint8_t *p;
    size_t size, header;
    if (s->gguf) {
        mbedtls_sha256_update_ret(&h, (const uint8_t *)"gguf", 4);
        eng_gguf_bytes(s->gguf, &p, &size, &header);
        sha_file(&h, p, size, header);
    } else {
        mbedtls_sha256_update_ret(&h, (const uint8_t *)"safetensors", 11);
        char *cfg = cJSON_PrintUnformatted(s->hf_config);
        if (cfg)
            mbedtls_sha256_update_ret(&h, (const uint8_t *)cfg, strlen(cfg));
        cJSON_free(cfg);
        for (size_t i = 0; i < eng_st_set_n_files(s->st); i++) {
            eng_st_bytes(eng_st_set_file(s->st, i), &p, &size, &header);
            sha_file(&h, p, size, header);
        }
    }
    sha_hex(&h, out);
}

/* ---- loading ---- */

/* The type every weight matrix of the plan is stored in, or ENG_DTYPE_INVALID
 * when they differ (a quantized GGUF often keeps some in another type). */
static eng_dtype matrix_dtype(const load_item *items, size_t n)
{
    eng_dtype t = ENG_DTYPE_INVALID;
    bool first = true;
    for (size_t i = 0; i < n; i++) {
        if (items[i].r->cols == DK_1)
            continue; /* a norm or a bias */
        if (first)
            t = items[i].v.dtype;
        else if (items[i].v.dtype != t)
            return ENG_DTYPE_INVALID;
        first = false;
    }
    return t;
}

static bi_status load_weights(const source *s, const eng_model_config *cfg,
                              const eng_model_load_opts *o, eng_model **out, char *err,
                              size_t err_size)
{
    eng_model *m;
    load_item *items = NULL;
    size_t n_items = 0;
    uint64_t bytes = 0;
    float *tmp = NULL;
    bi_status st = model_alloc(cfg, &m, err, err_size);
    if (st != BI_OK)
        return st;
    if ((st = plan(s, m, &items, &n_items, &bytes, err, err_size)) != BI_OK)
        goto fail;
    m->weight_dtype = matrix_dtype(items, n_items);
    if ((st = dequant_all(items, n_items, bytes, o, err, err_size)) != BI_OK)
        goto fail;
    if (s->permuted_qk) {
        tmp = bi_mallocarray((size_t)cfg->head_dim * cfg->d_model, sizeof *tmp);
        if (!tmp) {
            st = eng_errf(err, err_size, BI_NOMEM, "model: out of memory");
            goto fail;
        }
        for (size_t i = 0; i < n_items; i++) {
            const load_item *it = &items[i];
            if (it->r->perm != PERM_NONE)
                unpermute(it->dst, dim_of(cfg, it->r->rows), dim_of(cfg, it->r->cols),
                          it->r->perm == PERM_Q ? cfg->n_head : cfg->n_kv_head, tmp);
        }
    }
    report(o, "fingerprinting", bytes, bytes);
    fingerprint_source(s, m->fingerprint);
    bi_free(tmp);
    bi_free(items);
    *out = m;
    return BI_OK;
fail:
    bi_free(tmp);
    bi_free(items);
    eng_model_destroy(m);
    return st;
}

static bi_status load_gguf(const char *path, const eng_model_load_opts *o, eng_model **out,
                           char *err, size_t err_size)
{
    source s = {.path = path};
    eng_model_config cfg;
    bi_status st = eng_gguf_open(path, &s.gguf, err, err_size);
    if (st != BI_OK)
        return st;
    if ((st = eng_config_from_gguf(s.gguf, &cfg, err, err_size)) == BI_OK) {
        s.permuted_qk = eng_arch_get(cfg.arch)->gguf_permuted_qk;
        st = load_weights(&s, &cfg, o, out, err, err_size);
    }
    eng_gguf_close(s.gguf);
    return st;
}

static bi_status load_hf(const char *dir, const eng_model_load_opts *o, eng_model **out, char *err,
                         size_t err_size)
{
    source s = {.path = dir};
    eng_model_config cfg;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    bi_status st = eng_read_json(path, 1u << 20, &s.hf_config, err, err_size);
    if (st == BI_NOT_FOUND)
        return eng_errf(err, err_size, BI_NOT_FOUND, "model: %s has no config.json", dir);
    if (st != BI_OK)
        return st;
    if ((st = eng_config_from_hf(s.hf_config, dir, &cfg, err, err_size)) == BI_OK &&
        (st = eng_st_set_open(dir, &s.st, err, err_size)) == BI_OK) {
        if (eng_st_set_find(s.st, "model.layers.0.self_attn.o_proj.bias"))
            st = eng_errf(err, err_size, BI_UNSUPPORTED,
                          "model: attention output bias (o_proj.bias) is not supported");
        else
            st = load_weights(&s, &cfg, o, out, err, err_size);
    }
    eng_st_set_close(s.st);
    cJSON_Delete(s.hf_config);
    return st;
}

bi_status eng_model_load(const char *path, const eng_model_load_opts *opts, eng_model **out,
                         char *err, size_t err_size)
{
    struct stat sb;
    *out = NULL;
    if (err && err_size)
        err[0] = '\0';
    if (stat(path, &sb) != 0)
        return eng_errf(err, err_size, BI_NOT_FOUND, "model: %s does not exist", path);
    report(opts, "reading", 0, 0);
    if (S_ISDIR(sb.st_mode))
        return load_hf(path, opts, out, err, err_size);
    return load_gguf(path, opts, out, err, err_size);
}

/* ---- dummy weights ---- */

typedef struct dummy_ctx {
    float *buf;
    size_t n;
    uint64_t seed;
} dummy_ctx;

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Each chunk has its own stream, so the weights do not depend on how many
 * threads filled them. A sum of four 16-bit uniforms (Irwin-Hall) is close
 * enough to normal for benchmark weights and costs one PRNG step. */
static void dummy_chunk(void *ctx, size_t i)
{
    const dummy_ctx *d = ctx;
    uint64_t s = d->seed ^ (0xD1B54A32D192ED03ull * (i + 1));
    size_t end = (i + 1) * CHUNK_ELEMS < d->n ? (i + 1) * CHUNK_ELEMS : d->n;
    /* var of a 16-bit uniform is 65536^2/12; four of them: 65536^2/3 */
    const float scale = 0.02f / (65536.0f / 1.7320508f);
    for (size_t k = i * CHUNK_ELEMS; k < end; k++) {
        uint64_t r = splitmix64(&s);
        int32_t sum = (int32_t)(r & 0xFFFF) + (int32_t)((r >> 16) & 0xFFFF) +
                      (int32_t)((r >> 32) & 0xFFFF) + (int32_t)(r >> 48) - 2 * 65535;
        d->buf[k] = (float)sum * scale;
    }
}

static void dummy_fingerprint(const eng_model_config *c, uint64_t seed, char out[65])
{
    mbedtls_sha256_context h;
    mbedtls_sha256_init(&h);
    mbedtls_sha256_starts_ret(&h, 0);
    char desc[512];
    int n =
        snprintf(desc, sizeof desc,
                 "dummy v1 seed=%llu arch=%d L=%d d=%d h=%d kv=%d hd=%d ff=%d V=%d ctx=%d "
                 "eps=%a theta=%a rs=%d %a %a %a %d tie=%d bias=%d qkn=%d",
                 (unsigned long long)seed, (int)c->arch, c->n_layer, c->d_model, c->n_head,
                 c->n_kv_head, c->head_dim, c->d_ff, c->vocab_size, c->max_ctx, (double)c->norm_eps,
                 (double)c->rope_theta, (int)c->rope_scaling, (double)c->rope_factor,
                 (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
                 c->rope_orig_ctx, c->tie_embeddings, c->qkv_bias, c->qk_norm);
    mbedtls_sha256_update_ret(&h, (const uint8_t *)desc, (size_t)n);
    sha_hex(&h, out);
}

static void fill_ones(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = 1.0f;
}

bi_status eng_model_dummy(const eng_model_config *cfg, uint64_t seed, eng_model **out, char *err,
                          size_t err_size)
{
    *out = NULL;
    eng_model *m;
    bi_status st = eng_model_config_validate(cfg, err, err_size);
    if (st == BI_OK)
        st = model_alloc(cfg, &m, err, err_size);
    if (st != BI_OK)
        return st;
    dummy_ctx d = {m->priv_, total_elems(cfg), seed};
    par_for((d.n + CHUNK_ELEMS - 1) / CHUNK_ELEMS, dummy_chunk, &d);
    fill_ones(m->out_norm, (size_t)cfg->d_model);
    for (int l = 0; l < cfg->n_layer; l++) {
        eng_layer_weights *w = &m->layers[l];
        fill_ones(w->attn_norm, (size_t)cfg->d_model);
        fill_ones(w->ffn_norm, (size_t)cfg->d_model);
        if (cfg->qk_norm) {
            fill_ones(w->q_norm, (size_t)cfg->head_dim);
            fill_ones(w->k_norm, (size_t)cfg->head_dim);
        }
    }
    dummy_fingerprint(cfg, seed, m->fingerprint);
    m->weight_dtype = ENG_DTYPE_F32;
    *out = m;
    return BI_OK;
}
