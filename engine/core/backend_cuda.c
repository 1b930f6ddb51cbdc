/*
 * backend_cuda.c - the CUDA backend: 16-bit weights and paged KV in device
 * memory, the fp32 residual stream, cuBLAS projections and the kernels of
 * kernels/cuda, all on one stream.
 *
 * One 16-bit type serves the weight matrices, the matmul inputs and the KV
 * cache: bf16 or fp16 (eng_store_dtype, AUTO resolved against the model at
 * prepare()); every kernel is given it and computes in fp32.
 *
 * prepare() uploads the weights once (matrices converted to the 16-bit type on
 * the device through an fp32 staging buffer, fp16 overflow counted per matrix;
 * norms and biases stay fp32) into one
 * allocation and allocates K and V for the bound pool, with the pool's page
 * ids. begin() packs the step's plan (tokens, positions, tail slots, segment
 * tables, page lists) into one int32 buffer and uploads it with one copy;
 * every layer then reads it on the device.
 *
 * Ops do not launch anything: each appends a record (kind and arguments) to
 * the step's op log, and finish() runs the log. A step whose log (with the
 * plan's device layout) hashes to a key seen before is captured once as a
 * CUDA graph and replayed from then on, so a decode step costs one launch
 * instead of hundreds; the key covers every pointer and size the kernels are
 * given, so a replay does exactly what running the log would. Only the rows
 * asked for are computed; they come back through a pinned double buffer
 * (copy_logits), and the step ends with one stream synchronisation. The first failure of a step is
 * kept and reported by finish(); nothing here aborts.
 *
 * Fusions the forward pass asks for (qkv, mlp_in, add_rmsnorm) use one GEMM
 * over weights that upload placed back to back (wq|wk|wv, w_gate|w_up).
 *
 * Small steps (at most gemv_max_m tokens) project through krn_gemv instead
 * of cuBLAS: the weights stream once, with the residual add (matmul_add),
 * the RMSNorm and SwiGLU (norm_mlp_in) and the whole attention input
 * (norm_qkv: RMSNorm, QKV, bias, QK-norm, RoPE, KV write) folded into the
 * projection. prepare() checks norm_qkv's fused kernel against the op-by-op
 * path on layer 0 and keeps the latter on a mismatch (BRAID_FUSED_QKV=0
 * turns the fused kernel off; BRAID_GEMV_MAX_M, BRAID_PDL=0 and
 * BRAID_GEMV_BLOCKS_PER_SM tune the rest).
 */
#define BI_LOG_MODULE "cuda"
#include <math.h>
#include <stdlib.h>
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
#include "cuda/krn_gemv.h"
#include "cuda/krn_norm.h"
#include "cuda/krn_sample.h"
#include "model/model.h"

#define STAGE_ELEMS      ((size_t)16 << 20) /* fp32 staging for weight conversion: 64 MiB */
#define GRAPH_SLOTS      32                 /* captured steps kept (LRU) */
#define GRAPH_SEEN       16                 /* recent keys: capture on the second sight */
#define GRAPH_MAX_TOKENS 512 /* larger steps run eagerly (launches are cheap there) */
#define SPLIT_MIN_KEYS   32  /* fewest keys per attention slice */
#define SPLIT_MAX        64
#define BLAS_WORKSPACE   ((size_t)32 << 20)
#define LOGIT_CHUNK      ((size_t)1 << 20) /* floats per pinned half-buffer (4 MiB) */
#define MLP_HALF_ROWS    64 /* from this many rows the gate|up product is kept in 16 bits */
/* From this many tokens o_proj and down accumulate into the residual stream
 * (cuBLAS beta 1) before a plain RMSNorm (eng_backend.add_from). */
#define ADD_FROM_TOKENS 256
/* The attention split (plan_attention): a sequence's tokens become prefill
 * tiles of the tensor-core kernel from TC_MIN_ROWS query rows (tokens x
 * group); decodes go to it from TC_DECODE_MIN_GROUP query heads per kv head
 * (BRAID_TC_DECODE=0: never), in jobs of at least TC_DEC_SLICE keys; shared
 * segments of at least CASCADE_MIN_KEYS keys are cut into at most
 * CASCADE_SLICES slices of at least CASCADE_SLICE keys. */
#define TC_MIN_ROWS         16
#define TC_DECODE_MIN_GROUP 4
#define TC_DEC_SLICE        64
#define SPLIT_PREFILL_KEYS  512
#define CASCADE_MIN_KEYS    64
#define CASCADE_SLICE       256
#define CASCADE_SLICES      16

/* One op of the step, as recorded by the op functions and run by finish().
 * Zeroed before filling, so that its bytes (padding included) hash
 * deterministically. */
enum {
    OP_EMBED,
    OP_RMSNORM,
    OP_HEAD_NORM,
    OP_NORM_ROWS,
    OP_MATMUL,
    OP_QKV,
    OP_MLP_IN,
    OP_ADD,
    OP_ADD_RMSNORM,
    OP_SILU_MUL,
    OP_STORE_KV,
    OP_ATTENTION,
    OP_LOGITS,
    OP_MATMUL_ADD,
    OP_NORM_MLP_IN,
    OP_NORM_QKV,
};
typedef struct op_rec {
    int32_t kind, pad_;
    int64_t i[6];
    float f;
    int32_t pad2_;
    const void *p[8];
} op_rec;

typedef struct graph_slot {
    uint64_t key, used;
    cudaGraphExec_t exec;
} graph_slot;

typedef struct cuda_backend {
    eng_backend base;
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    bi_status st;          /* first failure of the current step */
    eng_store_dtype asked; /* as created (AUTO: chosen per model) */
    krn_dtype dt;          /* the 16-bit type in use, set by prepare */
    /* bound by prepare */
    const eng_model *m;
    eng_kv_pool *kv;
    krn_half *kv_k, *kv_v;
    size_t kv_layer_elems;
    float *inv_freq;
    void *wmem; /* every weight tensor */
    /* the step's plan: host packing buffer and its device copy */
    int32_t *meta_h, *meta_d;
    size_t meta_h_cap, meta_d_cap; /* int32 elements */
    krn_step step;
    int n_split; /* attention slices per token this step */
    int n_sm;
    float *logits_d;
    size_t logits_cap; /* floats */
    float *logits_h;   /* pinned: two halves of LOGIT_CHUNK floats */
    cudaEvent_t half_done[2];
    float *logits_dst; /* the caller's buffer for this step, NULL: no logits */
    size_t logits_n;
    /* scratch: attention partials, fused projection outputs */
    float *part, *fuse;
    size_t part_cap; /* floats */
    size_t fuse_cap; /* floats */
    /* how this step's attention is split (plan_attention) */
    bool tc_on, cascade_on, tc_decode_on; /* BRAID_TC_ATTN, BRAID_CASCADE, BRAID_TC_DECODE */
    int n_slots;
    int32_t *ap;   /* host scratch holding the five arrays below */
    size_t ap_cap; /* int32 elements */
    int32_t *ap_jobs, *ap_sh, *ap_dec, *ap_extra, *ap_flag; /* ap_flag: per segment */
    struct cand *cands;
    size_t cand_cap;
    int32_t *seq_mode, *seq_first; /* per sequence: its seq_kind, its first segment in seg_info */
    size_t seq_cap;
    size_t n_jobs, n_sh, n_dec, n_dec_split; /* n_dec_split: dec[] tokens of the split kernel */
    bool dec_on;        /* dec[] is uploaded (else every token is the per-token kernel's) */
    int64_t fault_step; /* BRAID_CUDA_FAULT_STEP (tests): this step fails as a device error */
    int64_t n_steps;
    void *blas_ws;
    /* projections of small steps (krn_gemv): its workspace, and the most
     * rows it takes instead of cuBLAS */
    krn_gemv_ws gemv;
    int gemv_max_m;
    /* the step's op log, and captured steps */
    op_rec *log;
    size_t n_ops, log_cap;
    bool graphs_on;
    graph_slot graphs[GRAPH_SLOTS];
    uint64_t seen[GRAPH_SEEN], tick;
    int seen_next;
    struct cuda_sampling *smp; /* device sampling (the sample op); NULL until first used */
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

/* The status of a runtime call's result; a failure is also taken out of the
 * thread's last-error slot, so that the next launch check does not see a
 * stale, non-sticky error (a failed allocation) as its own. */
static bi_status cuda_status(cudaError_t e)
{
    if (e == cudaSuccess)
        return BI_OK;
    cudaGetLastError();
    return e == cudaErrorMemoryAllocation ? BI_NOMEM : BI_DEVICE;
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
    unsigned *overflow;  /* device counter of values fp16 cannot hold; NULL for bf16 */
    unsigned overflowed; /* how many the first matrix that overflowed had (0: none) */
    char what[48];       /* that matrix */
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

/* A matrix (what, of layer, or of the model when layer < 0), converted to the
 * 16-bit type on the device chunk by chunk. In fp16 the overflow counter is
 * read after each matrix, so the first one fp16 cannot hold is named; once
 * one overflowed the rest is skipped (the upload is refused or redone). */
static const eng_wt *up_mat(upload *u, const float *src, size_t n, const char *what, int layer)
{
    if (!src)
        return NULL;
    cuda_backend *cb = u->cb;
    krn_half *dst = (krn_half *)(u->base + u->off);
    u->off += align256(n * sizeof(krn_half));
    if (!u->base || u->overflowed)
        return NULL;
    for (size_t i = 0; i < n && cb->st == BI_OK; i += STAGE_ELEMS) {
        size_t c = n - i < STAGE_ELEMS ? n - i : STAGE_ELEMS;
        note_cuda(cb,
                  cudaMemcpyAsync(u->stage, src + i, c * sizeof(float), cudaMemcpyHostToDevice,
                                  cb->stream),
                  "weight upload");
        if (cb->st == BI_OK)
            note(cb, krn_f32_to_half(dst + i, u->stage, c, u->overflow, cb->dt, cb->stream),
                 "weight conversion");
    }
    if (u->overflow && cb->st == BI_OK) {
        unsigned k = 0;
        note_cuda(cb,
                  cudaMemcpyAsync(&k, u->overflow, sizeof k, cudaMemcpyDeviceToHost, cb->stream),
                  "overflow check");
        note_cuda(cb, cudaStreamSynchronize(cb->stream), "overflow check");
        if (cb->st == BI_OK && k > 0) {
            u->overflowed = k;
            if (layer >= 0)
                snprintf(u->what, sizeof u->what, "layer %d %s", layer, what);
            else
                snprintf(u->what, sizeof u->what, "%s", what);
        }
    }
    return (const eng_wt *)dst;
}

static void walk_weights(upload *u, const eng_model *m, eng_weights *w)
{
    const eng_model_config *c = &m->cfg;
    const size_t d = (size_t)c->d_model, hd = (size_t)c->head_dim, ff = (size_t)c->d_ff;
    const size_t qd = (size_t)c->n_head * hd, kvd = (size_t)c->n_kv_head * hd;
    w->tok_embd = up_mat(u, m->tok_embd, (size_t)c->vocab_size * d, "token embedding", -1);
    w->out_norm = up_vec(u, m->out_norm, d);
    w->lm_head = m->lm_head == m->tok_embd
                     ? w->tok_embd
                     : up_mat(u, m->lm_head, (size_t)c->vocab_size * d, "lm_head", -1);
    for (int l = 0; l < c->n_layer; l++) {
        const eng_layer_weights *s = &m->layers[l];
        eng_wlayer *o = &w->layers[l];
        o->attn_norm = up_vec(u, s->attn_norm, d);
        o->wq = up_mat(u, s->wq, qd * d, "wq", l);
        o->wk = up_mat(u, s->wk, kvd * d, "wk", l);
        o->wv = up_mat(u, s->wv, kvd * d, "wv", l);
        o->bq = up_vec(u, s->bq, qd);
        o->bk = up_vec(u, s->bk, kvd);
        o->bv = up_vec(u, s->bv, kvd);
        o->q_norm = up_vec(u, s->q_norm, hd);
        o->k_norm = up_vec(u, s->k_norm, hd);
        o->wo = up_mat(u, s->wo, d * qd, "wo", l);
        o->ffn_norm = up_vec(u, s->ffn_norm, d);
        o->w_gate = up_mat(u, s->w_gate, ff * d, "w_gate", l);
        o->w_up = up_mat(u, s->w_up, ff * d, "w_up", l);
        o->w_down = up_mat(u, s->w_down, d * ff, "w_down", l);
    }
}

/* ---- small-step projections (krn_gemv) ---- */

#define GEMV_PART_FLOATS ((size_t)2 << 20) /* split-K partial sums: 8 MiB */
#define GEMV_COUNTERS    16384
/* Steps of at most this many tokens project through krn_gemv, larger ones
 * through cuBLAS. Measured on an H100 (bench_gpu_gemv, bench_gpu): whole
 * decode steps are faster with krn_gemv at 1 token (TinyLlama 724 vs 612
 * tok/s) and with cuBLAS at 8 (4646 vs 4252 tok/s; Llama-3-8B 1085 vs 951);
 * per projection krn_gemv matches cuBLAS up to M = 2..4 on the small
 * matrices and loses from M = 2 on Llama-3-8B's MLP. */
#define GEMV_MAX_M 2

static int env_int(const char *name, int dflt)
{
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

/* The workspace and settings of krn_gemv (the env knobs are for measuring). */
static bi_status gemv_init(cuda_backend *cb)
{
    krn_gemv_ws *g = &cb->gemv;
    g->n_sm = cb->n_sm;
    g->blocks_per_sm = env_int("BRAID_GEMV_BLOCKS_PER_SM", 1);
    g->pdl = env_int("BRAID_PDL", 1) != 0;
    cb->gemv_max_m = env_int("BRAID_GEMV_MAX_M", GEMV_MAX_M);
    cudaError_t e = cudaMalloc((void **)&g->part, GEMV_PART_FLOATS * sizeof(float));
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&g->count, GEMV_COUNTERS * sizeof(unsigned));
    if (e == cudaSuccess)
        e = cudaMemset(g->count, 0, GEMV_COUNTERS * sizeof(unsigned));
    if (e != cudaSuccess)
        return cuda_status(e);
    g->part_floats = GEMV_PART_FLOATS;
    g->n_count = GEMV_COUNTERS;
    cb->base.small_max = KRN_GEMV_MAX_M;
    cb->base.add_from = ADD_FROM_TOKENS;
    return BI_OK;
}

static void gemv_fini(cuda_backend *cb)
{
    cudaFree(cb->gemv.part);
    cudaFree(cb->gemv.count);
    cb->gemv = (krn_gemv_ws){0};
    cb->base.small_max = cb->base.norm_qkv_max = cb->base.add_from = 0;
}

/* Drops every captured step (they name weights and buffers by address). */
static void graphs_clear(cuda_backend *cb)
{
    for (int i = 0; i < GRAPH_SLOTS; i++) {
        if (cb->graphs[i].exec)
            cudaGraphExecDestroy(cb->graphs[i].exec);
        cb->graphs[i] = (graph_slot){0, 0, NULL};
    }
    memset(cb->seen, 0, sizeof cb->seen);
}

static void cuda_release(eng_backend *b, eng_weights *w)
{
    cuda_backend *cb = cuda_of(b);
    cudaSetDevice(cb->device);
    cudaStreamSynchronize(cb->stream);
    graphs_clear(cb);
    cudaFree(cb->part);
    cudaFree(cb->fuse);
    gemv_fini(cb);
    cb->part = cb->fuse = NULL;
    cb->part_cap = 0;
    cb->fuse_cap = 0;
    cudaFree(cb->wmem);
    cudaFree(cb->kv_k);
    cudaFree(cb->kv_v);
    cudaFree(cb->inv_freq);
    cb->wmem = cb->kv_k = cb->kv_v = NULL;
    cb->inv_freq = NULL;
    cb->m = NULL;
    cb->kv = NULL;
    b->store = ENG_STORE_AUTO;
    if (w)
        bi_free(w->layers);
    bi_free(w);
}

/* Uploads the weights in cb->dt (dropping an earlier attempt's).
 * BI_OUT_OF_RANGE when fp16 cannot hold a matrix (logged: as a warning under
 * AUTO, which the caller redoes in bf16; as an error when fp16 was asked for). */
static bi_status upload_weights(cuda_backend *cb, const eng_model *m, eng_weights *w)
{
    upload u = {.cb = cb};
    const char *dn = cb->dt == KRN_F16 ? "fp16" : "bf16";
    cudaFree(cb->wmem);
    cb->wmem = NULL;
    walk_weights(&u, m, w);
    size_t bytes = u.off;
    cudaError_t e = cudaMalloc(&cb->wmem, bytes);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&u.stage, STAGE_ELEMS * sizeof(float));
    if (e == cudaSuccess && cb->dt == KRN_F16 &&
        (e = cudaMalloc((void **)&u.overflow, sizeof *u.overflow)) == cudaSuccess)
        e = cudaMemsetAsync(u.overflow, 0, sizeof *u.overflow, cb->stream);
    if (e != cudaSuccess) {
        BI_LOGE(NULL, "cannot allocate %.2f GiB of weights on the device: %s", bytes / 1073741824.0,
                cudaGetErrorString(e));
        cudaFree(u.stage);
        cudaFree(u.overflow);
        return cuda_status(e);
    }
    u.base = cb->wmem;
    u.off = 0;
    cb->st = BI_OK;
    walk_weights(&u, m, w);
    note_cuda(cb, cudaStreamSynchronize(cb->stream), "weight upload");
    cudaFree(u.stage);
    cudaFree(u.overflow);
    if (cb->st == BI_OK && u.overflowed) {
        if (cb->asked == ENG_STORE_AUTO)
            BI_LOGW(NULL,
                    "dtype auto chose fp16 (F16 weights), but %u value%s of %s exceed%s the fp16 "
                    "range (65504): using bf16",
                    u.overflowed, u.overflowed == 1 ? "" : "s", u.what,
                    u.overflowed == 1 ? "s" : "");
        else
            BI_LOGE(NULL,
                    "dtype fp16: %u value%s of %s exceed%s the fp16 range (65504); load with dtype "
                    "bf16 or auto",
                    u.overflowed, u.overflowed == 1 ? "" : "s", u.what,
                    u.overflowed == 1 ? "s" : "");
        return BI_OUT_OF_RANGE;
    }
    if (cb->st == BI_OK)
        BI_LOGI(NULL,
                "weights on the device: %.1f MiB; matrices, matmul inputs and KV in %s (dtype %s, "
                "model matrices %s)",
                bytes / 1048576.0, dn, eng_store_dtype_name(cb->asked),
                m->weight_dtype == ENG_DTYPE_INVALID ? "mixed" : eng_dtype_name(m->weight_dtype));
    return cb->st;
}

static bi_status alloc_kv(cuda_backend *cb, const eng_kv_pool *kv)
{
    size_t per_layer = (size_t)kv->n_pages * kv->n_kv_head * kv->page_size * kv->head_dim, total;
    if (!bi_size_mul(per_layer, (size_t)kv->n_layer, &total) ||
        !bi_size_mul(total, sizeof(krn_half), &total))
        return BI_NOMEM;
    cudaError_t e = cudaMalloc((void **)&cb->kv_k, total);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&cb->kv_v, total);
    if (e != cudaSuccess) {
        BI_LOGE(NULL, "cannot allocate a KV pool of 2 x %.2f GiB on the device: %s",
                total / 1073741824.0, cudaGetErrorString(e));
        cudaFree(cb->kv_k);
        cb->kv_k = NULL;
        cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        return cuda_status(e);
    }
    cb->kv_layer_elems = per_layer;
    return BI_OK;
}

/* Both ops need prepare() to have bound a pool; the engine calls them between
 * prepare() and the first step. */
static bi_status cuda_mem_info(eng_backend *b, size_t *free_bytes, size_t *total_bytes)
{
    cuda_backend *cb = cuda_of(b);
    if (cudaSetDevice(cb->device) != cudaSuccess)
        return BI_DEVICE;
    return cuda_status(cudaMemGetInfo(free_bytes, total_bytes));
}

static bi_status cuda_kv_realloc(eng_backend *b)
{
    cuda_backend *cb = cuda_of(b);
    if (!cb->kv)
        return BI_INVALID_ARGUMENT;
    if (cudaSetDevice(cb->device) != cudaSuccess)
        return BI_DEVICE;
    /* Captured graphs hold the old K/V addresses. */
    cudaStreamSynchronize(cb->stream);
    graphs_clear(cb);
    cudaFree(cb->kv_k);
    cudaFree(cb->kv_v);
    cb->kv_k = cb->kv_v = NULL;
    cb->kv_layer_elems = 0;
    return alloc_kv(cb, cb->kv);
}

/* Attention partials for max(max_tokens, SPLIT_MAX) token slices (begin()
 * grows them when a step needs more), and the fused projections' output for
 * max_tokens rows. */
static bi_status alloc_scratch(cuda_backend *cb, const eng_model_config *c, int32_t max_tokens)
{
    int32_t rows = max_tokens > SPLIT_MAX ? max_tokens : SPLIT_MAX;
    size_t part = krn_attn_part_floats(rows, c->n_head, c->head_dim, 1);
    size_t width = (size_t)(c->n_head + 2 * c->n_kv_head) * c->head_dim;
    if ((size_t)2 * c->d_ff > width)
        width = (size_t)2 * c->d_ff;
    size_t fuse;
    if (!bi_size_mul(width, (size_t)max_tokens, &fuse) || fuse > SIZE_MAX / sizeof(float))
        return BI_NOMEM;
    bi_status st = cuda_status(cudaMalloc((void **)&cb->part, part * sizeof(float)));
    if (st == BI_OK)
        st = cuda_status(cudaMalloc((void **)&cb->fuse, fuse * sizeof(float)));
    if (st != BI_OK)
        return st;
    cb->part_cap = part;
    cb->fuse_cap = fuse;
    return BI_OK;
}

static bi_status check_norm_qkv(cuda_backend *cb, const eng_weights *w, int32_t max_tokens);

static bi_status cuda_prepare(eng_backend *b, const eng_model *m, eng_kv_pool *kv,
                              int32_t max_tokens, eng_weights **out)
{
    cuda_backend *cb = cuda_of(b);
    const eng_model_config *c = &m->cfg;
    if (cb->m)
        return BI_UNSUPPORTED; /* one model and pool per backend */
    if (max_tokens <= 0)
        return BI_INVALID_ARGUMENT;
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
    cb->dt = eng_store_dtype_resolve(cb->asked, m) == ENG_STORE_FP16 ? KRN_F16 : KRN_BF16;
    if (st == BI_OK)
        st = upload_weights(cb, m, w);
    if (st == BI_OUT_OF_RANGE && cb->asked == ENG_STORE_AUTO) {
        cb->dt = KRN_BF16;
        st = upload_weights(cb, m, w);
    }
    if (st == BI_OK)
        st = alloc_kv(cb, kv);
    if (st == BI_OK)
        st = alloc_scratch(cb, c, max_tokens);
    if (st == BI_OK)
        st = gemv_init(cb);
    if (st == BI_OK)
        st = check_norm_qkv(cb, w, max_tokens);
    if (st != BI_OK) {
        cuda_release(b, w);
        return st;
    }
    b->store = cb->dt == KRN_F16 ? ENG_STORE_FP16 : ENG_STORE_BF16;
    *out = w;
    return BI_OK;
}

static bi_status cuda_act_alloc(eng_backend *b, eng_act_kind kind, size_t n, eng_act **out)
{
    size_t bytes;
    *out = NULL;
    if (!bi_size_mul(n ? n : 1, kind == ENG_ACT_F32 ? sizeof(float) : sizeof(krn_half), &bytes))
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

/* Grows a device buffer, or a pinned host one (contents dropped); the
 * previous step is finished. */
static bi_status grow_buf(void **p, size_t *cap, size_t need, size_t elem, bool pinned)
{
    if (need <= *cap)
        return BI_OK;
    size_t n = need + need / 2, bytes;
    if (!bi_size_mul(n, elem, &bytes))
        return BI_NOMEM;
    if (pinned)
        cudaFreeHost(*p);
    else
        cudaFree(*p);
    *p = NULL;
    *cap = 0;
    cudaError_t e = pinned ? cudaMallocHost(p, bytes) : cudaMalloc(p, bytes);
    if (e != cudaSuccess)
        return cuda_status(e);
    *cap = n;
    return BI_OK;
}

static bi_status grow_device(void **p, size_t *cap, size_t need, size_t elem)
{
    return grow_buf(p, cap, need, elem, false);
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
            seg[KRN_SEG_SHARED] = cb->ap_flag[first + i];
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
    /* the attention split (plan_attention) */
    at[3] = pg;
    memcpy(at[3], cb->ap_jobs, cb->n_jobs * KRN_JOB_FIELDS * sizeof *pg);
    at[4] = at[3] + cb->n_jobs * KRN_JOB_FIELDS;
    memcpy(at[4], cb->ap_sh, cb->n_sh * KRN_SH_FIELDS * sizeof *pg);
    at[5] = at[4] + cb->n_sh * KRN_SH_FIELDS;
    size_t nd = cb->dec_on ? cb->n_dec : 0;
    memcpy(at[5], cb->ap_dec, nd * sizeof *pg);
    at[6] = at[5] + nd;
    memcpy(at[6], cb->ap_extra, nd * sizeof *pg);
    at[7] = at[6] + nd; /* end */
}

/* ---- the attention split ---- */

/* A decode sequence's segment that may be shared with others. */
struct cand {
    const int32_t *pages;
    int32_t len, rot_base;
    int32_t dec; /* the token's index in dec[] */
    int32_t seg; /* the segment's index in seg_info */
};

static int cand_cmp(const void *a, const void *b)
{
    const struct cand *x = a, *y = b;
    uintptr_t px = (uintptr_t)x->pages, py = (uintptr_t)y->pages;
    if (px != py)
        return px < py ? -1 : 1;
    if (x->len != y->len)
        return x->len < y->len ? -1 : 1;
    if (x->rot_base != y->rot_base)
        return x->rot_base < y->rot_base ? -1 : 1;
    return x->dec != y->dec ? (x->dec < y->dec ? -1 : 1) : (x->seg > y->seg) - (x->seg < y->seg);
}

static bool same_level(const struct cand *x, const struct cand *y)
{
    return x->pages == y->pages && x->len == y->len && x->rot_base == y->rot_base;
}

/* Shared jobs for the members cands[0..n) of one shared level (n >= 2): its
 * keys cut into slices so that the jobs fill the GPU, each member given a
 * partial slot per slice (numbered after n_split later). */
static void plan_shared(cuda_backend *cb, const struct cand *cands, size_t n, int T)
{
    const eng_model_config *c = &cb->m->cfg;
    const int32_t len = cands[0].len;
    const int64_t tiles = ((int64_t)n + T - 1) / T;
    int64_t slices = (2 * cb->n_sm + tiles * c->n_kv_head - 1) / (tiles * c->n_kv_head);
    int64_t most = len / CASCADE_SLICE > 1 ? len / CASCADE_SLICE : 1;
    slices = slices < most ? slices : most;
    slices = slices < CASCADE_SLICES ? slices : CASCADE_SLICES;
    slices = slices < 1 ? 1 : slices;
    int32_t slen = (int32_t)((len + slices - 1) / slices);
    slen = (slen + 63) / 64 * 64;
    slices = (len + slen - 1) / slen;
    for (size_t i = 0; i < n; i++)
        cb->ap_flag[cands[i].seg] = 1;
    for (int64_t k = 0; k < slices; k++) {
        int32_t *sh = cb->ap_sh + cb->n_sh * KRN_SH_FIELDS;
        for (size_t i = 0; i < n; i++, sh += KRN_SH_FIELDS) {
            sh[KRN_SH_DEC] = cands[i].dec;
            sh[KRN_SH_SEG] = cands[i].seg;
            sh[KRN_SH_SLOT] = cb->ap_extra[cands[i].dec]++; /* + n_split later */
        }
        for (int64_t t = 0; t < tiles; t++) {
            int32_t *j = cb->ap_jobs + cb->n_jobs++ * KRN_JOB_FIELDS;
            j[KRN_JOB_SEQ] = -1;
            j[KRN_JOB_TOK] = (int32_t)(cb->n_sh + (size_t)t * T);
            j[KRN_JOB_NTOK] = (int32_t)((int64_t)n - t * T < T ? (int64_t)n - t * T : T);
            j[KRN_JOB_SEG] = cands[0].seg;
            j[KRN_JOB_KEY_LO] = (int32_t)(k * slen);
            j[KRN_JOB_KEY_HI] = (int32_t)((k + 1) * slen < len ? (k + 1) * slen : len);
        }
        cb->n_sh += n;
    }
}

static int choose_split(const cuda_backend *cb, int32_t n_tokens, int64_t max_keys);

/* Keys a sequence's last new token attends (all its levels). */
static int64_t seq_keys(const eng_fwd_seq *q)
{
    int64_t keys = (int64_t)q->tail_len + q->n_new;
    for (int i = 0; i < q->n_segs; i++)
        keys += q->segs[i].len;
    return keys;
}

/* How a sequence's tokens are attended this step (plan_attention). */
enum {
    SEQ_PLAIN, /* per token: the split kernel or decode jobs, shared levels possible */
    SEQ_TILES, /* prefill tiles of the tensor-core kernel */
    SEQ_SPLIT, /* tiles too few to fill the GPU, with long levels: member jobs over key slices
                  (SPLIT_PREFILL_KEYS keys or more) */
};

/* Fills cb->seq_mode and cb->seq_first for the batch. */
static bi_status plan_seqs(cuda_backend *cb, const eng_fwd_batch *b, bool tc, int G, int T)
{
    if ((size_t)b->n_seqs > cb->seq_cap) {
        int32_t *m = bi_reallocarray(cb->seq_mode, (size_t)b->n_seqs, sizeof *m);
        if (m)
            cb->seq_mode = m;
        int32_t *f = bi_reallocarray(cb->seq_first, (size_t)b->n_seqs, sizeof *f);
        if (f)
            cb->seq_first = f;
        if (!m || !f)
            return BI_NOMEM;
        cb->seq_cap = (size_t)b->n_seqs;
    }
    int64_t tiles = 0;
    int32_t first = 0;
    for (int s = 0; s < b->n_seqs; first += b->seqs[s].n_segs, s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        cb->seq_first[s] = first;
        cb->seq_mode[s] = tc && (int64_t)q->n_new * G >= TC_MIN_ROWS ? SEQ_TILES : SEQ_PLAIN;
        if (cb->seq_mode[s] == SEQ_TILES)
            tiles += (q->n_new + T - 1) / T;
    }
    /* a short query after long cached chunks: too few tiles for the GPU */
    if (tiles * cb->m->cfg.n_kv_head < cb->n_sm)
        for (int s = 0; s < b->n_seqs; s++)
            if (cb->seq_mode[s] == SEQ_TILES && seq_keys(&b->seqs[s]) >= SPLIT_PREFILL_KEYS)
                cb->seq_mode[s] = SEQ_SPLIT;
    return BI_OK;
}

/* Member-list jobs for the ntok consecutive tokens dec[d0 ..] of one
 * sequence: one per slice of each level they still attend (segments no shared
 * job covers, then their causal tail), each token given a partial slot per
 * job. */
static void plan_member_jobs(cuda_backend *cb, const eng_plan *plan, size_t d0, int32_t ntok,
                             int32_t slice)
{
    const int32_t tok = cb->ap_dec[d0], s = plan->tok_seq[tok];
    const int32_t last = cb->ap_dec[d0 + (size_t)ntok - 1];
    const eng_fwd_seq *q = &plan->batch->seqs[s];
    const int32_t first = cb->seq_first[s];
    for (int lv = 0; lv <= q->n_segs; lv++) {
        const bool tail = lv == q->n_segs;
        if (!tail && (cb->ap_flag[first + lv] || q->segs[lv].len == 0))
            continue;
        const int32_t len = tail ? plan->tok_idx[last] + 1 : q->segs[lv].len;
        for (int32_t lo = 0; lo < len; lo += slice) {
            int32_t *j = cb->ap_jobs + cb->n_jobs++ * KRN_JOB_FIELDS;
            j[KRN_JOB_SEQ] = -1;
            j[KRN_JOB_TOK] = (int32_t)cb->n_sh;
            j[KRN_JOB_NTOK] = ntok;
            j[KRN_JOB_SEG] = tail ? KRN_JOB_SEG_TAIL : first + lv;
            j[KRN_JOB_KEY_LO] = lo;
            j[KRN_JOB_KEY_HI] = lo + slice < len ? lo + slice : len;
            for (int32_t i = 0; i < ntok; i++) {
                int32_t *sh = cb->ap_sh + cb->n_sh++ * KRN_SH_FIELDS;
                sh[KRN_SH_DEC] = (int32_t)(d0 + (size_t)i);
                sh[KRN_SH_SEG] = tail ? -1 : first + lv;
                sh[KRN_SH_SLOT] = cb->ap_extra[d0 + (size_t)i]++;
            }
        }
    }
}

/* Slice length so that `keys` keys of work come to about two blocks per SM. */
static int32_t member_slice(const cuda_backend *cb, int64_t keys)
{
    int64_t slice = keys * cb->m->cfg.n_kv_head / (2 * cb->n_sm);
    return (int32_t)(slice < TC_DEC_SLICE ? TC_DEC_SLICE : (slice + 63) / 64 * 64);
}

/* Decode tokens dec[0 .. n) on the tensor-core kernel, one job set each. */
static void plan_decode(cuda_backend *cb, const eng_plan *plan, size_t n, int64_t keys)
{
    const int32_t slice = member_slice(cb, keys);
    for (size_t d = 0; d < n; d++)
        plan_member_jobs(cb, plan, d, 1, slice);
}

/* Splits the step's attention between the kernels: the tokens of sequences
 * with enough query rows become prefill tiles of the tensor-core kernel;
 * segments that several decode sequences hold (the same pages) become shared
 * jobs, read once for all of them; every other token, and the rest of those
 * decodes' levels, go to the per-token (split-KV) kernel. Sets the host
 * arrays plan_pack copies and n_split / n_slots. */
static bi_status plan_attention(cuda_backend *cb, const eng_plan *plan, size_t n_segs)
{
    const eng_fwd_batch *b = plan->batch;
    const eng_model_config *c = &cb->m->cfg;
    const int G = c->n_head / c->n_kv_head;
    const bool tc =
        cb->tc_on && krn_attn_tc_supported(c->n_head, c->n_kv_head, c->head_dim, cb->kv->page_size);
    const bool cascade = tc && cb->cascade_on;
    const int T = tc ? krn_attn_tc_tokens(c->n_head, c->n_kv_head) : 1;
    const bool tc_dec = tc && cb->tc_decode_on && G >= TC_DECODE_MIN_GROUP;
    bi_status st = plan_seqs(cb, b, tc, G, T);
    if (st != BI_OK)
        return st;
    size_t nc = 0, dec_levels = 0;
    int64_t dec_keys = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        if (cb->seq_mode[s] == SEQ_TILES)
            continue;
        if (cascade && q->n_new == 1)
            for (int i = 0; i < q->n_segs; i++)
                nc += q->segs[i].len >= CASCADE_MIN_KEYS;
        int64_t seg_keys = 0;
        for (int i = 0; i < q->n_segs; i++)
            seg_keys += q->segs[i].len;
        dec_levels += (size_t)q->n_new * (q->n_segs + 1);
        dec_keys += q->n_new * (seg_keys + q->tail_len) + (int64_t)q->n_new * (q->n_new + 1) / 2;
    }
    /* member jobs (decodes with tc_dec, split sequences): at most one per
     * level plus one per TC_DEC_SLICE keys for each token */
    const size_t n_dec_jobs = tc ? dec_levels + (size_t)(dec_keys / TC_DEC_SLICE) +
                                       (size_t)b->n_tokens * (T / TC_DEC_SLICE + 2)
                                 : 0;
    const size_t n = (size_t)b->n_tokens, max_sh = nc * CASCADE_SLICES + n_dec_jobs,
                 max_jobs = n + max_sh,
                 need = max_jobs * KRN_JOB_FIELDS + max_sh * KRN_SH_FIELDS + 2 * n + n_segs;
    if (need > cb->ap_cap) {
        int32_t *a = bi_reallocarray(cb->ap, need, sizeof *a);
        if (!a)
            return BI_NOMEM;
        cb->ap = a;
        cb->ap_cap = need;
    }
    if (nc > cb->cand_cap) {
        struct cand *a = bi_reallocarray(cb->cands, nc, sizeof *a);
        if (!a)
            return BI_NOMEM;
        cb->cands = a;
        cb->cand_cap = nc;
    }
    cb->ap_jobs = cb->ap;
    cb->ap_sh = cb->ap_jobs + max_jobs * KRN_JOB_FIELDS;
    cb->ap_dec = cb->ap_sh + max_sh * KRN_SH_FIELDS;
    cb->ap_extra = cb->ap_dec + n;
    cb->ap_flag = cb->ap_extra + n;
    memset(cb->ap_flag, 0, n_segs * sizeof(int32_t));
    cb->n_jobs = cb->n_sh = cb->n_dec = 0;
    size_t n_cand = 0;
    int32_t t = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        const int32_t first = cb->seq_first[s];
        if (cb->seq_mode[s] == SEQ_SPLIT) {
            /* after the per-token kernel's tokens (below) */
        } else if (cb->seq_mode[s] == SEQ_TILES) {
            /* last tile first: the causal tail makes later tiles the longest,
             * and blocks start in job order */
            for (int32_t k = (q->n_new - 1) / T * T; k >= 0; k -= T) {
                int32_t *j = cb->ap_jobs + cb->n_jobs++ * KRN_JOB_FIELDS;
                j[KRN_JOB_SEQ] = s;
                j[KRN_JOB_TOK] = t + k;
                j[KRN_JOB_NTOK] = q->n_new - k < T ? q->n_new - k : T;
                j[KRN_JOB_SEG] = -1;
                j[KRN_JOB_KEY_LO] = j[KRN_JOB_KEY_HI] = 0;
            }
        } else {
            for (int32_t i = 0; i < q->n_new; i++) {
                if (q->n_new == 1 && cascade)
                    for (int k = 0; k < q->n_segs; k++)
                        if (q->segs[k].len >= CASCADE_MIN_KEYS)
                            cb->cands[n_cand++] =
                                (struct cand){q->segs[k].pages, q->segs[k].len, q->segs[k].rot_base,
                                              (int32_t)cb->n_dec, first + k};
                cb->ap_extra[cb->n_dec] = 0;
                cb->ap_dec[cb->n_dec++] = t + i;
            }
        }
        t += q->n_new;
    }
    /* the split sequences' tokens, after every token of the per-token kernel */
    const size_t n_plain = cb->n_dec;
    int64_t split_keys = 0;
    t = 0;
    for (int s = 0; s < b->n_seqs; t += b->seqs[s].n_new, s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        if (cb->seq_mode[s] != SEQ_SPLIT)
            continue;
        split_keys += seq_keys(q) * ((q->n_new + T - 1) / T);
        for (int32_t i = 0; i < q->n_new; i++) {
            cb->ap_extra[cb->n_dec] = 0;
            cb->ap_dec[cb->n_dec++] = t + i;
        }
    }
    if (n_cand > 1)
        qsort(cb->cands, n_cand, sizeof *cb->cands, cand_cmp);
    for (size_t g0 = 0, g1; g0 < n_cand; g0 = g1) {
        for (g1 = g0 + 1; g1 < n_cand && same_level(&cb->cands[g0], &cb->cands[g1]); g1++)
            ;
        if (g1 - g0 >= 2)
            plan_shared(cb, cb->cands + g0, g1 - g0, T);
    }
    /* The per-token kernel's split: over its tokens' remaining keys. */
    int64_t max_keys = 0, rest_keys = 0;
    int32_t max_extra = 0;
    for (int s = 0; s < b->n_seqs; s++) {
        const eng_fwd_seq *q = &b->seqs[s];
        if (cb->seq_mode[s] != SEQ_PLAIN)
            continue;
        int64_t keys = (int64_t)q->tail_len + q->n_new;
        for (int k = 0; k < q->n_segs; k++)
            if (!cb->ap_flag[cb->seq_first[s] + k])
                keys += q->segs[k].len;
        max_keys = keys > max_keys ? keys : max_keys;
        rest_keys += keys * q->n_new;
    }
    if (cb->n_dec > n_plain) { /* the split sequences, T tokens per job */
        const int32_t slice = member_slice(cb, split_keys);
        for (size_t d = n_plain; d < cb->n_dec;) {
            const int32_t s0 = plan->tok_seq[cb->ap_dec[d]];
            int32_t k = 0;
            while (k < T && d + (size_t)k < cb->n_dec && plan->tok_seq[cb->ap_dec[d + k]] == s0)
                k++;
            plan_member_jobs(cb, plan, d, k, slice);
            d += (size_t)k;
        }
    }
    if (tc_dec && n_plain > 0) {
        plan_decode(cb, plan, n_plain, rest_keys);
        cb->n_split = 0;
        cb->n_dec_split = 0;
    } else if (n_plain > 0) {
        cb->n_split = choose_split(cb, (int32_t)n_plain, max_keys);
        cb->n_dec_split = n_plain;
    } else {
        cb->n_split = cb->n_dec > 0 ? 0 : 1;
        cb->n_dec_split = 0;
    }
    for (size_t d = 0; d < cb->n_dec; d++)
        max_extra = cb->ap_extra[d] > max_extra ? cb->ap_extra[d] : max_extra;
    cb->n_slots = cb->n_split + max_extra;
    for (size_t i = 0; i < cb->n_sh; i++)
        cb->ap_sh[i * KRN_SH_FIELDS + KRN_SH_SLOT] += cb->n_split;
    cb->dec_on = cb->n_jobs > 0;
    return BI_OK;
}

/* Slices per token for split-KV attention: enough blocks for about two per
 * SM, at least SPLIT_MIN_KEYS keys per slice; a power of two, so that few distinct step shapes
 * (graph keys) arise. */
static int choose_split(const cuda_backend *cb, int32_t n_tokens, int64_t max_keys)
{
    const eng_model_config *c = &cb->m->cfg;
    if (!krn_attn_split_supported(c->n_head, c->n_kv_head, c->head_dim))
        return 1;
    int64_t blocks = (int64_t)n_tokens * c->n_kv_head, want = (2 * cb->n_sm + blocks - 1) / blocks;
    int64_t n = max_keys / SPLIT_MIN_KEYS;
    n = want < n ? want : n;
    n = n > SPLIT_MAX ? SPLIT_MAX : n;
    int p = 1;
    while ((int64_t)p * 2 <= n)
        p *= 2;
    return p;
}

static bi_status cuda_begin(eng_backend *b, const eng_plan *plan)
{
    cuda_backend *cb = cuda_of(b);
    const eng_fwd_batch *bt = plan->batch;
    cb->st = BI_OK;
    cb->n_ops = 0;
    cb->logits_dst = NULL;
    if (cudaSetDevice(cb->device) != cudaSuccess)
        return BI_DEVICE;
    size_t n_segs, n_pages;
    bi_status st = plan_size(cb, plan, &n_segs, &n_pages);
    if (st == BI_OK)
        st = plan_attention(cb, plan, n_segs);
    if (st != BI_OK)
        return st;
    size_t need = 4 * (size_t)bt->n_tokens + (size_t)plan->n_logits +
                  (size_t)bt->n_seqs * KRN_SEQ_FIELDS + n_segs * KRN_SEG_FIELDS + n_pages +
                  cb->n_jobs * KRN_JOB_FIELDS + cb->n_sh * KRN_SH_FIELDS +
                  (cb->dec_on ? 2 * cb->n_dec : 0);
    size_t part = cb->n_slots > 1 || cb->n_split == 0
                      ? krn_attn_part_floats((int)cb->n_dec, cb->m->cfg.n_head, cb->m->cfg.head_dim,
                                             cb->n_slots)
                      : 0;
    size_t n_logit_floats = (size_t)plan->n_logits * cb->m->cfg.vocab_size;
    if ((st = grow_buf((void **)&cb->meta_h, &cb->meta_h_cap, need, sizeof(int32_t), true)) !=
            BI_OK ||
        (st = grow_device((void **)&cb->meta_d, &cb->meta_d_cap, need, sizeof(int32_t))) != BI_OK ||
        (st = grow_device((void **)&cb->logits_d, &cb->logits_cap, n_logit_floats,
                          sizeof(float))) != BI_OK ||
        (st = grow_device((void **)&cb->part, &cb->part_cap, part, sizeof(float))) != BI_OK)
        return st;
    int32_t *at[8];
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
        .jobs = cb->n_jobs ? d + (at[3] - cb->meta_h) : NULL,
        .shared = cb->n_sh ? d + (at[4] - cb->meta_h) : NULL,
        .dec = cb->dec_on ? d + (at[5] - cb->meta_h) : NULL,
        .dec_extra = cb->dec_on ? d + (at[6] - cb->meta_h) : NULL,
        .n_tokens = bt->n_tokens,
        .n_seqs = bt->n_seqs,
        .n_logits = plan->n_logits,
        .n_jobs = (int32_t)cb->n_jobs,
        .n_dec = (int32_t)cb->n_dec,
        .n_dec_split = cb->dec_on ? (int32_t)cb->n_dec_split : (int32_t)cb->n_dec,
    };
    return BI_OK;
}

static krn_kv_layer kv_layer(const cuda_backend *cb, int layer)
{
    return (krn_kv_layer){cb->kv_k + (size_t)layer * cb->kv_layer_elems,
                          cb->kv_v + (size_t)layer * cb->kv_layer_elems,
                          cb->kv->n_kv_head,
                          cb->kv->head_dim,
                          cb->kv->page_size,
                          cb->dt};
}

/* ---- ops: recorded here, run by finish() ---- */

static float *F(const void *a)
{
    return (float *)a;
}
static krn_half *H(const void *a)
{
    return (krn_half *)a;
}

/* A zeroed record appended to the step's log; NULL (and the step failed)
 * when the log cannot grow or the step has failed already. */
static op_rec *rec(cuda_backend *cb, int kind)
{
    if (cb->st != BI_OK)
        return NULL;
    if (cb->n_ops == cb->log_cap) {
        size_t cap = cb->log_cap ? 2 * cb->log_cap : 512;
        op_rec *l = bi_reallocarray(cb->log, cap, sizeof *l);
        if (!l) {
            note(cb, BI_NOMEM, "op log");
            return NULL;
        }
        cb->log = l;
        cb->log_cap = cap;
    }
    op_rec *r = &cb->log[cb->n_ops++];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    return r;
}

static void cuda_embed(eng_backend *b, const eng_plan *plan, eng_act *x, const eng_wt *table, int d)
{
    op_rec *r = rec(cuda_of(b), OP_EMBED);
    if (r)
        *r = (op_rec){.kind = OP_EMBED, .i = {plan->batch->n_tokens, d}, .p = {x, table}};
}

static void cuda_rmsnorm(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w, int M,
                         int D, float eps)
{
    op_rec *r = rec(cuda_of(b), OP_RMSNORM);
    if (r)
        *r = (op_rec){.kind = OP_RMSNORM, .i = {M, D}, .f = eps, .p = {y, x, w}};
}

static void cuda_head_norm(eng_backend *b, eng_act *x, const eng_wt *w, int M, int D, float eps)
{
    op_rec *r = rec(cuda_of(b), OP_HEAD_NORM);
    if (r)
        *r = (op_rec){.kind = OP_HEAD_NORM, .i = {M, D}, .f = eps, .p = {x, w}};
}

static void cuda_norm_rows(eng_backend *b, const eng_plan *plan, eng_act *y, const eng_act *x,
                           const eng_wt *w, int D, float eps)
{
    op_rec *r = rec(cuda_of(b), OP_NORM_ROWS);
    if (r)
        *r = (op_rec){.kind = OP_NORM_ROWS, .i = {plan->n_logits, D}, .f = eps, .p = {y, x, w}};
}

static void cuda_matmul(eng_backend *b, eng_act *y, const eng_act *x, const eng_wt *w,
                        const eng_wt *bias, int M, int N, int K)
{
    op_rec *r = rec(cuda_of(b), OP_MATMUL);
    if (r)
        *r = (op_rec){.kind = OP_MATMUL, .i = {M, N, K}, .p = {y, x, w, bias}};
}

static void cuda_qkv(eng_backend *b, eng_act *q, eng_act *k, eng_act *v, const eng_act *x,
                     const eng_wlayer *w, int M, int qd, int kvd, int K)
{
    op_rec *r = rec(cuda_of(b), OP_QKV);
    if (r)
        *r = (op_rec){
            .kind = OP_QKV, .i = {M, qd, kvd, K}, .p = {q, k, v, x, w->wq, w->wk, w->wv, NULL}};
    /* the biases do not fit the record's pointers: a second record */
    op_rec *r2 = rec(cuda_of(b), OP_QKV);
    if (r2)
        *r2 = (op_rec){.kind = OP_QKV, .i = {-1}, .p = {w->bq, w->bk, w->bv}};
}

static void cuda_mlp_in(eng_backend *b, eng_act *out, eng_act *gate, eng_act *up, const eng_act *x,
                        const eng_wt *w_gate, const eng_wt *w_up, int M, int ff, int K)
{
    op_rec *r = rec(cuda_of(b), OP_MLP_IN);
    if (r)
        *r = (op_rec){.kind = OP_MLP_IN, .i = {M, ff, K}, .p = {out, gate, up, x, w_gate, w_up}};
}

static void cuda_matmul_add(eng_backend *b, eng_act *x, const eng_act *a, const eng_wt *w, int M,
                            int N, int K)
{
    op_rec *r = rec(cuda_of(b), OP_MATMUL_ADD);
    if (r)
        *r = (op_rec){.kind = OP_MATMUL_ADD, .i = {M, N, K}, .p = {x, a, w}};
}

static void cuda_norm_mlp_in(eng_backend *b, eng_act *out, eng_act *h, eng_act *gate, eng_act *up,
                             const eng_act *x, const eng_wt *norm, const eng_wt *w_gate,
                             const eng_wt *w_up, int M, int ff, int K, float eps)
{
    op_rec *r = rec(cuda_of(b), OP_NORM_MLP_IN);
    if (r)
        *r = (op_rec){.kind = OP_NORM_MLP_IN,
                      .i = {M, ff, K},
                      .f = eps,
                      .p = {out, h, gate, up, x, norm, w_gate, w_up}};
}

/* The layer's weights are named by their table entry (a host pointer that
 * lives as long as the weights), so that one record holds them all. */
static void cuda_norm_qkv(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                          eng_kv_pool *kv, int layer, eng_act *q, eng_act *k, eng_act *v,
                          eng_act *h, const eng_act *x, const eng_wlayer *w, int M, float eps)
{
    (void)plan; /* uploaded by begin() */
    (void)rope;
    (void)kv;
    op_rec *r = rec(cuda_of(b), OP_NORM_QKV);
    if (r)
        *r = (op_rec){.kind = OP_NORM_QKV, .i = {layer, M}, .f = eps, .p = {q, k, v, h, x, w}};
}

static void cuda_add(eng_backend *b, eng_act *x, const eng_act *y, size_t n)
{
    op_rec *r = rec(cuda_of(b), OP_ADD);
    if (r)
        *r = (op_rec){.kind = OP_ADD, .i = {(int64_t)n}, .p = {x, y}};
}

static void cuda_add_rmsnorm(eng_backend *b, eng_act *h, eng_act *x, const eng_act *y,
                             const eng_wt *w, int M, int D, float eps)
{
    op_rec *r = rec(cuda_of(b), OP_ADD_RMSNORM);
    if (r)
        *r = (op_rec){.kind = OP_ADD_RMSNORM, .i = {M, D}, .f = eps, .p = {h, x, y, w}};
}

static void cuda_silu_mul(eng_backend *b, eng_act *out, const eng_act *gate, const eng_act *up,
                          size_t n)
{
    op_rec *r = rec(cuda_of(b), OP_SILU_MUL);
    if (r)
        *r = (op_rec){.kind = OP_SILU_MUL, .i = {(int64_t)n}, .p = {out, gate, up}};
}

static void cuda_store_kv(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                          eng_kv_pool *kv, int layer, eng_act *k, const eng_act *v)
{
    (void)plan; /* uploaded by begin() */
    (void)rope; /* the same frequencies live on the device (prepare) */
    (void)kv;
    op_rec *r = rec(cuda_of(b), OP_STORE_KV);
    if (r)
        *r = (op_rec){.kind = OP_STORE_KV, .i = {layer}, .p = {k, v}};
}

static void cuda_attention(eng_backend *b, const eng_plan *plan, const eng_rope *rope,
                           const eng_kv_pool *kv, int layer, int n_head, eng_act *out,
                           const eng_act *q)
{
    (void)plan;
    (void)rope;
    cuda_backend *cb = cuda_of(b);
    op_rec *r = rec(cb, OP_ATTENTION);
    if (r)
        *r = (op_rec){
            .kind = OP_ATTENTION,
            .i = {layer, n_head, cb->n_split, cb->n_slots, (int64_t)cb->n_jobs, (int64_t)cb->n_dec},
            .f = 1.0f / sqrtf((float)kv->head_dim),
            .p = {out, q}};
}

static void cuda_logits(eng_backend *b, float *logits, const eng_act *h, const eng_wt *lm_head,
                        int rows, int vocab, int d)
{
    cuda_backend *cb = cuda_of(b);
    op_rec *r = rec(cb, OP_LOGITS);
    if (!r)
        return;
    size_t n = (size_t)rows * vocab;
    if (n > cb->logits_cap) { /* begin() sized it for n_logits rows */
        note(cb, BI_INVALID_ARGUMENT, "logits rows");
        return;
    }
    *r = (op_rec){.kind = OP_LOGITS, .i = {rows, vocab, d}, .p = {cb->logits_d, h, lm_head}};
    cb->logits_dst = logits;
    cb->logits_n = n;
}

/* ---- running the log ---- */

/* y = x . w^T (fp32 out) for M rows: krn_gemv for small steps, else (or
 * where it declines the shape) cuBLAS. With add, y += that. */
static void proj(cuda_backend *cb, float *y, const krn_half *x, const krn_half *w,
                 const float *bias, bool add, int64_t M, int64_t N, int64_t K)
{
    if (M <= cb->gemv_max_m && krn_gemv_supported((int)M, (int)K)) {
        bi_status st =
            krn_gemv(&cb->gemv, y, x, w, bias, add, (int)M, (int)N, (int)K, cb->dt, cb->stream);
        if (st != BI_UNSUPPORTED) {
            note(cb, st, "gemv");
            return;
        }
    }
    note(cb, (add ? krn_gemm_add : krn_gemm)(cb->blas, y, x, w, (int)M, (int)N, (int)K, cb->dt),
         "gemm");
    if (bias && cb->st == BI_OK)
        note(cb, krn_add_bias(y, bias, (int)M, (int)N, cb->stream), "bias");
}

static void run_matmul(cuda_backend *cb, float *y, const krn_half *x, const krn_half *w,
                       const float *bias, int64_t M, int64_t N, int64_t K)
{
    proj(cb, y, x, w, bias, false, M, N, K);
}

/* Q, K and V in one projection when upload placed their weights back to
 * back and the scratch holds M rows; else three. */
static void qkv_proj(cuda_backend *cb, float *q, float *k, float *v, const krn_half *x,
                     const eng_wlayer *w, int64_t M, int64_t qd, int64_t kvd, int64_t K)
{
    const krn_half *wq = (const krn_half *)w->wq, *wk = (const krn_half *)w->wk,
                   *wv = (const krn_half *)w->wv;
    const float *bq = (const float *)w->bq, *bk = (const float *)w->bk, *bv = (const float *)w->bv;
    if (wk == wq + qd * K && wv == wk + kvd * K && (size_t)(M * (qd + 2 * kvd)) <= cb->fuse_cap) {
        proj(cb, cb->fuse, x, wq, NULL, false, M, qd + 2 * kvd, K);
        if (cb->st == BI_OK)
            note(cb,
                 krn_split3(q, k, v, cb->fuse, bq, bk, bv, (int)M, (int)qd, (int)kvd, (int)kvd,
                            cb->stream),
                 "qkv split");
        return;
    }
    run_matmul(cb, q, x, wq, bq, M, qd, K);
    if (cb->st == BI_OK)
        run_matmul(cb, k, x, wk, bk, M, kvd, K);
    if (cb->st == BI_OK)
        run_matmul(cb, v, x, wv, bv, M, kvd, K);
}

static void run_qkv(cuda_backend *cb, const op_rec *r, const op_rec *bias)
{
    const eng_wlayer w = {.wq = r->p[4],
                          .wk = r->p[5],
                          .wv = r->p[6],
                          .bq = bias->p[0],
                          .bk = bias->p[1],
                          .bv = bias->p[2]};
    qkv_proj(cb, F(r->p[0]), F(r->p[1]), F(r->p[2]), r->p[3], &w, r->i[0], r->i[1], r->i[2],
             r->i[3]);
}

/* Gate and up in one projection into the scratch, SwiGLU reading both
 * halves; else two projections and SwiGLU. */
static void mlp_in_proj(cuda_backend *cb, krn_half *out, float *gate, float *up, const krn_half *x,
                        const krn_half *wg, const krn_half *wu, int64_t M, int64_t ff, int64_t K)
{
    if (wu == wg + ff * K && (size_t)(M * 2 * ff) <= cb->fuse_cap && M >= MLP_HALF_ROWS) {
        /* many rows: gate|up in the 16-bit type, halving the intermediate's traffic */
        krn_half *y = (krn_half *)cb->fuse;
        note(cb, krn_gemm_h(cb->blas, y, x, wg, (int)M, (int)(2 * ff), (int)K, cb->dt),
             "gate/up gemm");
        if (cb->st == BI_OK)
            note(cb, krn_silu_mul_cat_h(out, y, (int)M, (int)ff, cb->dt, cb->stream), "silu_mul");
        return;
    }
    if (wu == wg + ff * K && (size_t)(M * 2 * ff) <= cb->fuse_cap) {
        proj(cb, cb->fuse, x, wg, NULL, false, M, 2 * ff, K);
        if (cb->st == BI_OK)
            note(cb, krn_silu_mul_cat(out, cb->fuse, (int)M, (int)ff, cb->dt, cb->stream),
                 "silu_mul");
        return;
    }
    run_matmul(cb, gate, x, wg, NULL, M, ff, K);
    if (cb->st == BI_OK)
        run_matmul(cb, up, x, wu, NULL, M, ff, K);
    if (cb->st == BI_OK)
        note(cb, krn_silu_mul(out, gate, up, (size_t)(M * ff), cb->dt, cb->stream), "silu_mul");
}

static void run_mlp_in(cuda_backend *cb, const op_rec *r)
{
    mlp_in_proj(cb, H(r->p[0]), F(r->p[1]), F(r->p[2]), r->p[3], r->p[4], r->p[5], r->i[0], r->i[1],
                r->i[2]);
}

/* The MLP input from the residual stream: one fused kernel (norm, gate|up,
 * SwiGLU) for small steps, else rmsnorm into h and mlp_in_proj. */
static void run_norm_mlp_in(cuda_backend *cb, const op_rec *r)
{
    const int64_t M = r->i[0], ff = r->i[1], K = r->i[2];
    if (M <= cb->gemv_max_m && krn_gemv_supported((int)M, (int)K)) {
        bi_status st = krn_gemv_swiglu(&cb->gemv, H(r->p[0]), r->p[4], r->p[5], r->f, r->p[6],
                                       r->p[7], (int)M, (int)ff, (int)K, cb->dt, cb->stream);
        if (st != BI_UNSUPPORTED) {
            note(cb, st, "gate/up gemv");
            return;
        }
    }
    note(cb,
         krn_rmsnorm_half(H(r->p[1]), r->p[4], NULL, r->p[5], (int)M, (int)K, r->f, cb->dt,
                          cb->stream),
         "ffn norm");
    if (cb->st == BI_OK)
        mlp_in_proj(cb, H(r->p[0]), F(r->p[2]), F(r->p[3]), r->p[1], r->p[6], r->p[7], M, ff, K);
}

/* The attention input op by op: rmsnorm, Q|K|V, QK-norm, RoPE + KV write. */
static void norm_qkv_unfused(cuda_backend *cb, int layer, float *q, float *k, float *v, krn_half *h,
                             const float *x, const eng_wlayer *w, int64_t M, float eps)
{
    const eng_model_config *c = &cb->m->cfg;
    const int64_t d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    note(cb,
         krn_rmsnorm_half(h, x, NULL, (const float *)w->attn_norm, (int)M, (int)d, eps, cb->dt,
                          cb->stream),
         "attn norm");
    if (cb->st == BI_OK)
        qkv_proj(cb, q, k, v, h, w, M, qd, kvd, d);
    if (cb->st == BI_OK && c->qk_norm) {
        note(cb,
             krn_rmsnorm_f32(q, (const float *)w->q_norm, (int)(M * c->n_head), (int)hd, eps,
                             cb->stream),
             "qk-norm");
        if (cb->st == BI_OK)
            note(cb,
                 krn_rmsnorm_f32(k, (const float *)w->k_norm, (int)(M * c->n_kv_head), (int)hd, eps,
                                 cb->stream),
                 "qk-norm");
    }
    if (cb->st == BI_OK)
        note(cb, krn_rope_store_kv(&cb->step, kv_layer(cb, layer), k, v, cb->inv_freq, cb->stream),
             "kv write");
}

static krn_qkv_layer qkv_layer_of(const cuda_backend *cb, const eng_wlayer *w, float eps)
{
    const eng_model_config *c = &cb->m->cfg;
    return (krn_qkv_layer){.attn_norm = (const float *)w->attn_norm,
                           .wq = (const krn_half *)w->wq,
                           .wk = (const krn_half *)w->wk,
                           .wv = (const krn_half *)w->wv,
                           .bq = (const float *)w->bq,
                           .bk = (const float *)w->bk,
                           .bv = (const float *)w->bv,
                           .q_norm = (const float *)w->q_norm,
                           .k_norm = (const float *)w->k_norm,
                           .n_head = c->n_head,
                           .n_kv_head = c->n_kv_head,
                           .K = c->d_model,
                           .eps = eps};
}

/* The fused kernel where prepare() found it right (norm_qkv_max), else the
 * op-by-op path. */
static void run_norm_qkv(cuda_backend *cb, const op_rec *r)
{
    const int layer = (int)r->i[0];
    const int64_t M = r->i[1];
    const eng_wlayer *w = r->p[5];
    if (M <= cb->base.norm_qkv_max) {
        krn_qkv_layer l = qkv_layer_of(cb, w, r->f);
        bi_status st = krn_norm_qkv_store(&cb->gemv, &cb->step, kv_layer(cb, layer), F(r->p[0]),
                                          r->p[4], &l, cb->inv_freq, (int)M, cb->stream);
        if (st != BI_UNSUPPORTED) {
            note(cb, st, "fused rmsnorm+qkv");
            return;
        }
    }
    norm_qkv_unfused(cb, layer, F(r->p[0]), F(r->p[1]), F(r->p[2]), H(r->p[3]), r->p[4], w, M,
                     r->f);
}

/* ---- the load-time check of the fused attention input ---- */

static float half_value(krn_half h, krn_dtype dt)
{
    return dt == KRN_F16 ? eng_f16_to_f32(h) : eng_bf16_to_f32(h);
}

/* ||a - b|| / ||b||, INFINITY where a has a NaN or Inf. */
static double check_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]))
            return INFINITY;
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* Device buffers of one check. */
typedef struct qkv_check {
    float *x, *q, *k, *v;
    krn_half *h, *kv_k, *kv_v; /* kv_*: host copies of the written slots' pages */
    int32_t *meta;
} qkv_check;

/* Reads back q and layer 0's K/V slots of the M tokens (as fp32). */
static void check_read(cuda_backend *cb, const qkv_check *d, int M, float *q, float *k, float *v)
{
    const eng_model_config *c = &cb->m->cfg;
    const int hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    const krn_kv_layer kv = kv_layer(cb, 0);
    note_cuda(cb, cudaStreamSynchronize(cb->stream), "fused qkv check");
    note_cuda(cb, cudaMemcpy(q, d->q, sizeof(float) * M * qd, cudaMemcpyDeviceToHost),
              "fused qkv check");
    for (int t = 0; t < M && cb->st == BI_OK; t++)
        for (int hh = 0; hh < c->n_kv_head; hh++) {
            size_t off = (((size_t)(t / kv.page_size) * kv.n_kv_head + hh) * kv.page_size +
                          t % kv.page_size) *
                         hd;
            krn_half tk[KRN_GEMV_MAX_HEAD_DIM], tv[KRN_GEMV_MAX_HEAD_DIM];
            note_cuda(cb, cudaMemcpy(tk, kv.k + off, 2 * hd, cudaMemcpyDeviceToHost), "check");
            note_cuda(cb, cudaMemcpy(tv, kv.v + off, 2 * hd, cudaMemcpyDeviceToHost), "check");
            for (int i = 0; i < hd; i++) {
                k[(size_t)t * kvd + hh * hd + i] = half_value(tk[i], kv.dtype);
                v[(size_t)t * kvd + hh * hd + i] = half_value(tv[i], kv.dtype);
            }
        }
}

/* One comparison with M tokens at positions 5.. of one sequence whose tail
 * is pages 0, 1, ... of the pool (nothing lives there before the first
 * step). *err: the largest relative error of q, k and v. */
static void check_once(cuda_backend *cb, const eng_weights *w, int M, double *err)
{
    const eng_model_config *c = &cb->m->cfg;
    const int d = c->d_model, hd = c->head_dim, qd = c->n_head * hd, kvd = c->n_kv_head * hd;
    const int ps = cb->kv->page_size, np = (M + ps - 1) / ps;
    qkv_check dv = {0};
    const size_t n_meta = 4 * (size_t)M + KRN_SEQ_FIELDS + (size_t)np;
    int32_t *meta = bi_calloc(n_meta, sizeof *meta);
    float *x = bi_mallocarray((size_t)M * d, sizeof *x);
    float *hq[2], *hk[2], *hv[2];
    for (int i = 0; i < 2; i++) {
        hq[i] = bi_mallocarray((size_t)M * qd, sizeof(float));
        hk[i] = bi_mallocarray((size_t)M * kvd, sizeof(float));
        hv[i] = bi_mallocarray((size_t)M * kvd, sizeof(float));
    }
    *err = INFINITY;
    if (!meta || !x || !hq[0] || !hq[1] || !hk[0] || !hk[1] || !hv[0] || !hv[1]) {
        note(cb, BI_NOMEM, "fused qkv check");
        goto out;
    }
    uint64_t r = 0x9E3779B97F4A7C15ull; /* xorshift: any input will do */
    for (size_t i = 0; i < (size_t)M * d; i++) {
        r ^= r << 13, r ^= r >> 7, r ^= r << 17;
        x[i] = (float)((double)(r >> 11) / 9007199254740992.0 * 4.0 - 2.0);
    }
    for (int t = 0; t < M; t++) {
        meta[2 * M + t] = 5 + t; /* tok_pos */
        meta[3 * M + t] = t;     /* tok_idx (tok_seq, tokens: 0) */
    }
    for (int p = 0; p < np; p++)
        meta[4 * M + KRN_SEQ_FIELDS + p] = p; /* seq_info all 0: tail pages at 0 */
    cudaError_t e = cudaMalloc((void **)&dv.x, sizeof(float) * M * d);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&dv.q, sizeof(float) * M * qd);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&dv.k, sizeof(float) * M * kvd);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&dv.v, sizeof(float) * M * kvd);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&dv.h, sizeof(krn_half) * M * d);
    if (e == cudaSuccess)
        e = cudaMalloc((void **)&dv.meta, sizeof(int32_t) * n_meta);
    if (e == cudaSuccess)
        e = cudaMemcpy(dv.x, x, sizeof(float) * M * d, cudaMemcpyHostToDevice);
    if (e == cudaSuccess)
        e = cudaMemcpy(dv.meta, meta, sizeof(int32_t) * n_meta, cudaMemcpyHostToDevice);
    note_cuda(cb, e, "fused qkv check");
    if (cb->st != BI_OK)
        goto out;
    const krn_step saved = cb->step;
    cb->step = (krn_step){.tokens = dv.meta,
                          .tok_seq = dv.meta,
                          .tok_pos = dv.meta + 2 * M,
                          .tok_idx = dv.meta + 3 * M,
                          .logit_tok = dv.meta,
                          .seq_info = dv.meta + 4 * M,
                          .seg_info = dv.meta,
                          .pages = dv.meta + 4 * M + KRN_SEQ_FIELDS,
                          .n_tokens = M,
                          .n_seqs = 1,
                          .n_logits = 0};
    const size_t page_bytes = (size_t)np * cb->kv->n_kv_head * ps * hd * sizeof(krn_half);
    /* op by op, then fused, each into poisoned outputs */
    for (int pass = 0; pass < 2 && cb->st == BI_OK; pass++) {
        krn_kv_layer kv = kv_layer(cb, 0);
        note_cuda(cb, cudaMemsetAsync(dv.q, 0xFF, sizeof(float) * M * qd, cb->stream), "check");
        note_cuda(cb, cudaMemsetAsync(kv.k, 0xFF, page_bytes, cb->stream), "check");
        note_cuda(cb, cudaMemsetAsync(kv.v, 0xFF, page_bytes, cb->stream), "check");
        if (cb->st != BI_OK)
            break;
        if (pass == 0) {
            norm_qkv_unfused(cb, 0, dv.q, dv.k, dv.v, dv.h, dv.x, &w->layers[0], M, c->norm_eps);
        } else {
            krn_qkv_layer l = qkv_layer_of(cb, &w->layers[0], c->norm_eps);
            bi_status st = krn_norm_qkv_store(&cb->gemv, &cb->step, kv, dv.q, dv.x, &l,
                                              cb->inv_freq, M, cb->stream);
            if (st != BI_OK) {
                BI_LOGW(NULL, "fused rmsnorm+qkv refused %d tokens: %s", M, bi_strerror(st));
                cudaGetLastError();
                break;
            }
        }
        check_read(cb, &dv, M, hq[pass], hk[pass], hv[pass]);
        if (pass == 1 && cb->st == BI_OK) {
            double eq = check_err(hq[1], hq[0], (size_t)M * qd);
            double ek = check_err(hk[1], hk[0], (size_t)M * kvd);
            double ev = check_err(hv[1], hv[0], (size_t)M * kvd);
            *err = eq > ek ? eq : ek;
            *err = ev > *err ? ev : *err;
        }
    }
    cb->step = saved;
out:
    cudaFree(dv.x), cudaFree(dv.q), cudaFree(dv.k), cudaFree(dv.v), cudaFree(dv.h);
    cudaFree(dv.meta);
    bi_free(meta), bi_free(x);
    for (int i = 0; i < 2; i++)
        bi_free(hq[i]), bi_free(hk[i]), bi_free(hv[i]);
}

/* Runs the fused attention input (krn_norm_qkv_store) and the op-by-op path
 * on layer 0 with random input, for 1 token and for the most it will take,
 * and enables it (base.norm_qkv_max) only where they agree (relative error
 * <= 1e-2, no NaN). A mismatch, or a launch the kernel refuses, leaves the
 * op-by-op path with a warning; only a CUDA failure is an error. */
static bi_status check_norm_qkv(cuda_backend *cb, const eng_weights *w, int32_t max_tokens)
{
    const eng_model_config *c = &cb->m->cfg;
    cb->base.norm_qkv_max = 0;
    if (env_int("BRAID_FUSED_QKV", 1) == 0) {
        BI_LOGI(NULL, "fused rmsnorm+qkv off (BRAID_FUSED_QKV=0)");
        return BI_OK;
    }
    if (!krn_gemv_supported(1, c->d_model) || c->head_dim % 16 ||
        c->head_dim > KRN_GEMV_MAX_HEAD_DIM) {
        BI_LOGI(NULL, "fused rmsnorm+qkv: shape not supported (head_dim %d); op by op",
                c->head_dim);
        return BI_OK;
    }
    int most = KRN_GEMV_MAX_M;
    int64_t slots = (int64_t)cb->kv->n_pages * cb->kv->page_size;
    most = most > max_tokens ? max_tokens : most;
    most = most > slots ? (int)slots : most;
    if (most < 1)
        return BI_OK;
    double e1 = INFINITY, e2 = INFINITY;
    cb->st = BI_OK;
    check_once(cb, w, 1, &e1);
    if (cb->st == BI_OK)
        check_once(cb, w, most, &e2);
    bi_status st = cb->st;
    cb->st = BI_OK;
    if (st != BI_OK)
        return st;
    if (!(e1 <= 1e-2 && e2 <= 1e-2)) {
        BI_LOGW(NULL,
                "fused rmsnorm+qkv disagrees with the op-by-op path on layer 0 (rel err %.2e at 1 "
                "token, %.2e at %d): using the op-by-op path",
                e1, e2, most);
        return BI_OK;
    }
    cb->base.norm_qkv_max = most;
    BI_LOGI(NULL, "fused rmsnorm+qkv on for steps of up to %d tokens (layer 0 rel err %.1e, %.1e)",
            most, e1, e2);
    return BI_OK;
}

static void run_log(cuda_backend *cb)
{
    cudaStream_t s = cb->stream;
    for (size_t k = 0; k < cb->n_ops && cb->st == BI_OK; k++) {
        const op_rec *r = &cb->log[k];
        const int64_t *i = r->i;
        switch (r->kind) {
        case OP_EMBED:
            note(cb,
                 krn_embed(F(r->p[0]), r->p[1], cb->step.tokens, (int)i[0], (int)i[1], cb->dt, s),
                 "embed");
            break;
        case OP_RMSNORM:
            note(cb,
                 krn_rmsnorm_half(H(r->p[0]), r->p[1], NULL, r->p[2], (int)i[0], (int)i[1], r->f,
                                  cb->dt, s),
                 "rmsnorm");
            break;
        case OP_HEAD_NORM:
            note(cb, krn_rmsnorm_f32(F(r->p[0]), r->p[1], (int)i[0], (int)i[1], r->f, s),
                 "qk-norm");
            break;
        case OP_NORM_ROWS:
            note(cb,
                 krn_rmsnorm_half(H(r->p[0]), r->p[1], cb->step.logit_tok, r->p[2], (int)i[0],
                                  (int)i[1], r->f, cb->dt, s),
                 "final norm");
            break;
        case OP_MATMUL:
            run_matmul(cb, F(r->p[0]), r->p[1], r->p[2], r->p[3], i[0], i[1], i[2]);
            break;
        case OP_QKV:
            if (k + 1 < cb->n_ops)
                run_qkv(cb, r, &cb->log[++k]);
            break;
        case OP_MLP_IN:
            run_mlp_in(cb, r);
            break;
        case OP_ADD:
            note(cb, krn_add(F(r->p[0]), r->p[1], (size_t)i[0], s), "residual add");
            break;
        case OP_ADD_RMSNORM:
            note(cb,
                 krn_add_rmsnorm_half(H(r->p[0]), F(r->p[1]), r->p[2], r->p[3], (int)i[0],
                                      (int)i[1], r->f, cb->dt, s),
                 "add+rmsnorm");
            break;
        case OP_SILU_MUL:
            note(cb, krn_silu_mul(H(r->p[0]), r->p[1], r->p[2], (size_t)i[0], cb->dt, s),
                 "silu_mul");
            break;
        case OP_STORE_KV:
            note(cb,
                 krn_rope_store_kv(&cb->step, kv_layer(cb, (int)i[0]), r->p[0], r->p[1],
                                   cb->inv_freq, s),
                 "kv write");
            break;
        case OP_ATTENTION:
            note(cb,
                 krn_paged_attention(&cb->step, kv_layer(cb, (int)i[0]), H(r->p[0]), r->p[1],
                                     cb->inv_freq, (int)i[1], r->f, (int)i[2], (int)i[3], cb->part,
                                     s),
                 "attention");
            break;
        case OP_LOGITS:
            proj(cb, F(r->p[0]), r->p[1], r->p[2], NULL, false, i[0], i[1], i[2]);
            break;
        case OP_MATMUL_ADD:
            proj(cb, F(r->p[0]), r->p[1], r->p[2], NULL, true, i[0], i[1], i[2]);
            break;
        case OP_NORM_MLP_IN:
            run_norm_mlp_in(cb, r);
            break;
        case OP_NORM_QKV:
            run_norm_qkv(cb, r);
            break;
        }
    }
}

/* The step's key: every record and the plan's device layout (64-bit FNV-1a
 * over words). */
static uint64_t step_key(const cuda_backend *cb)
{
    uint64_t h = 1469598103934665603ull;
    const uint64_t prime = 1099511628211ull;
    const unsigned char *bytes = (const unsigned char *)cb->log;
    size_t n = cb->n_ops * sizeof(op_rec);
    for (size_t k = 0; k + 8 <= n; k += 8) {
        uint64_t w;
        memcpy(&w, bytes + k, 8);
        h = (h ^ w) * prime;
    }
    const krn_step *st = &cb->step;
    const uint64_t f[] = {(uint64_t)(uintptr_t)st->tokens,
                          (uint64_t)(uintptr_t)st->seq_info,
                          (uint64_t)(uintptr_t)st->seg_info,
                          (uint64_t)(uintptr_t)st->pages,
                          (uint64_t)(uintptr_t)st->jobs,
                          (uint64_t)(uintptr_t)st->shared,
                          (uint64_t)(uintptr_t)st->dec,
                          (uint64_t)(uintptr_t)st->dec_extra,
                          (uint64_t)(uintptr_t)cb->part,
                          (uint64_t)st->n_jobs,
                          (uint64_t)st->n_dec,
                          (uint64_t)st->n_dec_split,
                          (uint64_t)st->n_tokens,
                          (uint64_t)st->n_seqs,
                          (uint64_t)st->n_logits};
    for (size_t k = 0; k < sizeof f / sizeof f[0]; k++)
        h = (h ^ f[k]) * prime;
    return h;
}

static graph_slot *graph_find(cuda_backend *cb, uint64_t key)
{
    for (int i = 0; i < GRAPH_SLOTS; i++)
        if (cb->graphs[i].exec && cb->graphs[i].key == key)
            return &cb->graphs[i];
    return NULL;
}

/* True when key was seen in a recent step; remembers it otherwise. */
static bool graph_seen(cuda_backend *cb, uint64_t key)
{
    for (int i = 0; i < GRAPH_SEEN; i++)
        if (cb->seen[i] == key)
            return true;
    cb->seen[cb->seen_next] = key;
    cb->seen_next = (cb->seen_next + 1) % GRAPH_SEEN;
    return false;
}

/* Captures the log as a graph into the least recently used slot; NULL (with
 * graphs turned off for this backend) when capture is refused. A failure of
 * an op itself is left in cb->st. */
static graph_slot *graph_capture(cuda_backend *cb, uint64_t key)
{
    cudaGraph_t g = NULL;
    cudaGraphExec_t ex = NULL;
    cudaError_t e = cudaStreamBeginCapture(cb->stream, cudaStreamCaptureModeRelaxed);
    if (e == cudaSuccess) {
        run_log(cb);
        e = cudaStreamEndCapture(cb->stream, &g);
    }
    if (e == cudaSuccess && cb->st == BI_OK)
        e = cudaGraphInstantiate(&ex, g, 0);
    if (g)
        cudaGraphDestroy(g);
    if (e != cudaSuccess || cb->st != BI_OK) {
        if (e != cudaSuccess) {
            cudaGetLastError();
            BI_LOGW(NULL, "CUDA graph capture failed (%s); steps run uncaptured",
                    cudaGetErrorString(e));
            cb->graphs_on = false;
        }
        return NULL;
    }
    graph_slot *slot = &cb->graphs[0];
    for (int i = 1; i < GRAPH_SLOTS; i++)
        if (cb->graphs[i].used < slot->used)
            slot = &cb->graphs[i];
    if (slot->exec)
        cudaGraphExecDestroy(slot->exec);
    *slot = (graph_slot){key, 0, ex};
    return slot;
}

/* Runs the log: a captured step's replay, a new capture (second sight of a
 * small step), or the ops one by one. */
static void run_step(cuda_backend *cb)
{
    if (cb->graphs_on && cb->step.n_tokens <= GRAPH_MAX_TOKENS) {
        uint64_t key = step_key(cb);
        graph_slot *slot = graph_find(cb, key);
        if (!slot && graph_seen(cb, key))
            slot = graph_capture(cb, key);
        if (cb->st != BI_OK)
            return;
        if (slot) {
            slot->used = ++cb->tick;
            note_cuda(cb, cudaGraphLaunch(slot->exec, cb->stream), "graph launch");
            return;
        }
    }
    run_log(cb);
}

/* Copies the step's logits to the caller through the two pinned halves:
 * the DMA of chunk k runs while the host copies chunk k - 1 out, so large
 * batches pay about max(PCIe, host memcpy) rather than their sum. */
static void copy_logits(cuda_backend *cb)
{
    const float *src = cb->logits_d;
    float *dst = cb->logits_dst;
    size_t n = cb->logits_n, prev_off = 0, prev_len = 0;
    int k = 0;
    for (size_t off = 0; off < n && cb->st == BI_OK; off += LOGIT_CHUNK, k++) {
        size_t len = n - off < LOGIT_CHUNK ? n - off : LOGIT_CHUNK;
        float *half = cb->logits_h + (size_t)(k % 2) * LOGIT_CHUNK;
        note_cuda(cb,
                  cudaMemcpyAsync(half, src + off, len * sizeof(float), cudaMemcpyDeviceToHost,
                                  cb->stream),
                  "logits copy");
        note_cuda(cb, cudaEventRecord(cb->half_done[k % 2], cb->stream), "logits copy");
        if (k > 0 && cb->st == BI_OK) {
            note_cuda(cb, cudaEventSynchronize(cb->half_done[(k - 1) % 2]), "logits copy");
            if (cb->st == BI_OK)
                memcpy(dst + prev_off, cb->logits_h + (size_t)((k - 1) % 2) * LOGIT_CHUNK,
                       prev_len * sizeof(float));
        }
        prev_off = off;
        prev_len = len;
    }
    if (k > 0 && cb->st == BI_OK) {
        note_cuda(cb, cudaEventSynchronize(cb->half_done[(k - 1) % 2]), "logits copy");
        if (cb->st == BI_OK)
            memcpy(dst + prev_off, cb->logits_h + (size_t)((k - 1) % 2) * LOGIT_CHUNK,
                   prev_len * sizeof(float));
    }
}

/* ==== device sampling (the sample op) =====================================
 * sample() records the lm_head GEMM exactly as logits() does (so a step
 * captured as a graph is the same either way), packs each row's parameters
 * and penalty history into a pinned buffer and uploads it (one copy, while
 * the stream is idle). finish() then, after the step's graph, runs krn_sample
 * over the rows still on the device and copies back only the per-row
 * results. */
typedef struct cuda_sampling {
    char *up_h, *up_d;             /* krn_sample_row[rows], then hist ids, then hist counts */
    size_t up_h_cap, up_d_cap;     /* bytes */
    krn_sample_out *out_h, *out_d; /* pinned / device, one per row */
    size_t out_h_cap, out_d_cap;
    uint32_t *keys; /* scratch for sampled rows: rows * vocab */
    size_t keys_cap;
    int rows, vocab; /* the step's; rows == 0: nothing pending */
    size_t n_hist;
    bool any_sampled; /* a row has temperature > 0 (needs keys) */
    eng_sample_out *dst;
} cuda_sampling;

static void sampling_free(cuda_sampling *sm)
{
    if (!sm)
        return;
    cudaFreeHost(sm->up_h);
    cudaFreeHost(sm->out_h);
    cudaFree(sm->up_d);
    cudaFree(sm->out_d);
    cudaFree(sm->keys);
    bi_free(sm);
}

/* History entries a row uploads: every seen id for the repetition penalty,
 * the generated ones for presence/frequency alone, none without penalties. */
static bool hist_wanted(const eng_sampling_params *p, bool *all)
{
    *all = p->repetition_penalty != 1.0f;
    return *all || p->presence_penalty != 0.0f || p->frequency_penalty != 0.0f;
}

static size_t hist_size(const eng_sampler *s)
{
    bool all;
    if (!s || !hist_wanted(eng_sampler_params(s), &all))
        return 0;
    const int32_t *ids;
    size_t n = eng_sampler_history(s, &ids), k = 0;
    if (all)
        return n;
    for (size_t i = 0; i < n; i++)
        k += eng_sampler_count(s, ids[i]) > 0;
    return k;
}

/* Row r's parameters into row, its history at ids/counts[*at...]. */
static void sampling_pack_row(const eng_sampler *s, krn_sample_row *row, int32_t *ids,
                              uint32_t *counts, size_t *at)
{
    *row = (krn_sample_row){.temperature = 0.0f,
                            .top_p = 1.0f,
                            .repetition_penalty = 1.0f,
                            .n_logprobs = -1,
                            .hist_off = (int32_t)*at};
    if (!s)
        return;
    const eng_sampling_params *p = eng_sampler_params(s);
    row->temperature = p->temperature;
    row->top_p = p->top_p;
    row->min_p = p->min_p;
    row->repetition_penalty = p->repetition_penalty;
    row->presence_penalty = p->presence_penalty;
    row->frequency_penalty = p->frequency_penalty;
    row->top_k = p->top_k;
    row->n_logprobs = p->n_logprobs;
    row->seed = p->seed;
    row->step = eng_sampler_generated(s);
    bool all;
    if (!hist_wanted(p, &all))
        return;
    const int32_t *seen;
    size_t n = eng_sampler_history(s, &seen), start = *at;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = eng_sampler_count(s, seen[i]);
        if (all || c > 0) {
            ids[*at] = seen[i];
            counts[(*at)++] = c;
        }
    }
    row->n_hist = (int32_t)(*at - start);
}

static bi_status sampling_prepare(cuda_backend *cb, int rows, int vocab,
                                  eng_sampler *const *samplers, eng_sample_out *out)
{
    if (vocab > KRN_SAMPLE_MAX_VOCAB)
        return BI_UNSUPPORTED;
    if (!cb->smp && !(cb->smp = bi_calloc(1, sizeof *cb->smp)))
        return BI_NOMEM;
    cuda_sampling *sm = cb->smp;
    size_t n_hist = 0;
    bool sampled = false;
    for (int r = 0; r < rows; r++) {
        const eng_sampler *s = samplers ? samplers[r] : NULL;
        n_hist += hist_size(s);
        sampled |= s && eng_sampler_params(s)->temperature > 0.0f;
    }
    if (n_hist > INT32_MAX)
        return BI_OUT_OF_RANGE;
    size_t row_bytes = (size_t)rows * sizeof(krn_sample_row);
    size_t bytes = row_bytes + n_hist * (sizeof(int32_t) + sizeof(uint32_t));
    bi_status st;
    if ((st = grow_buf((void **)&sm->up_h, &sm->up_h_cap, bytes, 1, true)) != BI_OK ||
        (st = grow_device((void **)&sm->up_d, &sm->up_d_cap, bytes, 1)) != BI_OK ||
        (st = grow_buf((void **)&sm->out_h, &sm->out_h_cap, (size_t)rows, sizeof(krn_sample_out),
                       true)) != BI_OK ||
        (st = grow_device((void **)&sm->out_d, &sm->out_d_cap, (size_t)rows,
                          sizeof(krn_sample_out))) != BI_OK ||
        (sampled && (st = grow_device((void **)&sm->keys, &sm->keys_cap,
                                      (size_t)rows * (size_t)vocab, sizeof(uint32_t))) != BI_OK))
        return st;
    krn_sample_row *prm = (krn_sample_row *)sm->up_h;
    int32_t *ids = (int32_t *)(sm->up_h + row_bytes);
    uint32_t *counts = (uint32_t *)(ids + n_hist);
    size_t at = 0;
    for (int r = 0; r < rows; r++)
        sampling_pack_row(samplers ? samplers[r] : NULL, &prm[r], ids, counts, &at);
    sm->rows = rows;
    sm->vocab = vocab;
    sm->n_hist = n_hist;
    sm->any_sampled = sampled;
    sm->dst = out;
    /* Up now, like begin()'s plan: the stream is idle, so the copy is done
     * while the step is still being recorded, off the step's critical path. */
    return cuda_status(
        cudaMemcpyAsync(sm->up_d, sm->up_h, bytes, cudaMemcpyHostToDevice, cb->stream));
}

static void cuda_sample(eng_backend *b, const eng_act *h, const eng_wt *lm_head, int rows,
                        int vocab, int d, eng_sampler *const *samplers, eng_sample_out *out)
{
    cuda_backend *cb = cuda_of(b);
    cuda_logits(b, NULL, h, lm_head, rows, vocab, d); /* the GEMM; no copy to the host */
    if (cb->st == BI_OK)
        note(cb, sampling_prepare(cb, rows, vocab, samplers, out), "device sampling setup");
}

/* After the step's ops, on the stream: sampling, then the results down. */
static void sampling_launch(cuda_backend *cb)
{
    cuda_sampling *sm = cb->smp;
    size_t row_bytes = (size_t)sm->rows * sizeof(krn_sample_row);
    const int32_t *ids = (const int32_t *)(sm->up_d + row_bytes);
    const uint32_t *counts = (const uint32_t *)(ids + sm->n_hist);
    if (cb->st == BI_OK)
        note(cb,
             krn_sample(cb->logits_d, sm->any_sampled ? sm->keys : NULL, sm->rows, sm->vocab,
                        (const krn_sample_row *)sm->up_d, ids, counts, sm->out_d, NULL, cb->stream),
             "device sampling");
    if (cb->st == BI_OK)
        note_cuda(cb,
                  cudaMemcpyAsync(sm->out_h, sm->out_d, (size_t)sm->rows * sizeof(krn_sample_out),
                                  cudaMemcpyDeviceToHost, cb->stream),
                  "sampled ids copy");
}

/* After the step's synchronisation: the results to the caller (when the step
 * succeeded); nothing stays pending either way. */
static void sampling_finish(cuda_backend *cb)
{
    cuda_sampling *sm = cb->smp;
    if (!sm || !sm->rows)
        return;
    for (int r = 0; r < sm->rows && cb->st == BI_OK; r++) {
        const krn_sample_out *k = &sm->out_h[r];
        eng_sample_out *o = &sm->dst[r];
        o->token = k->token;
        o->status = k->status == KRN_SAMPLE_OK ? BI_OK : BI_INTERNAL;
        o->lp.chosen = (eng_logprob_entry){k->token, k->chosen_logprob};
        o->lp.n_top = k->n_top;
        for (int j = 0; j < k->n_top && j < ENG_MAX_LOGPROBS; j++)
            o->lp.top[j] = (eng_logprob_entry){k->top_id[j], k->top_logprob[j]};
    }
    sm->rows = 0;
    sm->dst = NULL;
}

/* ==== end of device sampling ============================================== */

static bi_status cuda_finish(eng_backend *b)
{
    cuda_backend *cb = cuda_of(b);
    if (++cb->n_steps == cb->fault_step && cb->st == BI_OK) {
        BI_LOGW(NULL, "step %lld: injected device fault (BRAID_CUDA_FAULT_STEP)",
                (long long)cb->n_steps);
        cb->st = BI_DEVICE;
    }
    if (cb->st == BI_OK)
        run_step(cb);
    if (cb->st == BI_OK && cb->logits_dst)
        copy_logits(cb);
    if (cb->st == BI_OK && cb->smp && cb->smp->rows)
        sampling_launch(cb);
    note_cuda(cb, cudaStreamSynchronize(cb->stream), "the step");
    sampling_finish(cb);
    cb->n_ops = 0;
    cb->logits_dst = NULL;
    bi_status st = cb->st;
    cb->st = BI_OK;
    return st;
}

static void cuda_destroy(eng_backend *b)
{
    cuda_backend *cb = cuda_of(b);
    cudaSetDevice(cb->device);
    if (cb->stream)
        cudaStreamSynchronize(cb->stream);
    graphs_clear(cb);
    cudaFree(cb->meta_d);
    cudaFree(cb->logits_d);
    cudaFree(cb->part);
    cudaFree(cb->fuse);
    gemv_fini(cb);
    cudaFree(cb->blas_ws);
    cudaFreeHost(cb->logits_h);
    for (int i = 0; i < 2; i++)
        if (cb->half_done[i])
            cudaEventDestroy(cb->half_done[i]);
    cudaFreeHost(cb->meta_h);
    sampling_free(cb->smp);
    bi_free(cb->log);
    bi_free(cb->ap);
    bi_free(cb->cands);
    bi_free(cb->seq_mode);
    bi_free(cb->seq_first);
    if (cb->blas)
        cublasDestroy(cb->blas);
    if (cb->stream)
        cudaStreamDestroy(cb->stream);
    bi_free(cb);
}

static void cuda_attn_split(eng_backend *b, eng_attn_split *out)
{
    const cuda_backend *cb = cuda_of(b);
    *out =
        (eng_attn_split){(int)cb->n_jobs, (int)cb->n_sh, (int)cb->n_dec, cb->n_split, cb->n_slots};
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
    .qkv = cuda_qkv,
    .mlp_in = cuda_mlp_in,
    .add_rmsnorm = cuda_add_rmsnorm,
    .matmul_add = cuda_matmul_add,
    .norm_mlp_in = cuda_norm_mlp_in,
    .norm_qkv = cuda_norm_qkv,
    .mem_info = cuda_mem_info,
    .kv_realloc = cuda_kv_realloc,
    .attn_split = cuda_attn_split,
    .sample = cuda_sample,
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

bi_status eng_backend_cuda_create(int device, eng_store_dtype dtype, eng_backend **out)
{
    *out = NULL;
    if (dtype < ENG_STORE_AUTO || dtype > ENG_STORE_FP16)
        return BI_INVALID_ARGUMENT;
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
    cb->base.sample_max_vocab = KRN_SAMPLE_MAX_VOCAB;
    cb->base.store = ENG_STORE_AUTO; /* prepare() sets the type in use */
    cb->asked = dtype;
    cb->device = device;
    if (cudaSetDevice(device) != cudaSuccess ||
        cudaStreamCreateWithFlags(&cb->stream, cudaStreamNonBlocking) != cudaSuccess ||
        cublasCreate(&cb->blas) != CUBLAS_STATUS_SUCCESS ||
        cublasSetStream(cb->blas, cb->stream) != CUBLAS_STATUS_SUCCESS ||
        cudaDeviceGetAttribute(&cb->n_sm, cudaDevAttrMultiProcessorCount, device) != cudaSuccess ||
        cudaMalloc(&cb->blas_ws, BLAS_WORKSPACE) != cudaSuccess ||
        cudaMallocHost((void **)&cb->logits_h, 2 * LOGIT_CHUNK * sizeof(float)) != cudaSuccess ||
        cudaEventCreateWithFlags(&cb->half_done[0], cudaEventDisableTiming) != cudaSuccess ||
        cudaEventCreateWithFlags(&cb->half_done[1], cudaEventDisableTiming) != cudaSuccess ||
        cublasSetWorkspace(cb->blas, cb->blas_ws, BLAS_WORKSPACE) != CUBLAS_STATUS_SUCCESS) {
        BI_LOGE(NULL, "cannot set up CUDA device %d", device);
        cuda_destroy(&cb->base);
        return BI_DEVICE;
    }
    /* BRAID_CUDA_GRAPHS=0 runs every step op by op (for comparison). */
    const char *g = getenv("BRAID_CUDA_GRAPHS");
    cb->graphs_on = !(g && strcmp(g, "0") == 0);
    /* BRAID_TC_ATTN=0: every token through the per-token attention kernel;
     * BRAID_CASCADE=0: shared chunks read per sequence; BRAID_TC_DECODE=0:
     * decodes through the per-token kernel (for comparison and tests). */
    const char *tc = getenv("BRAID_TC_ATTN"), *cas = getenv("BRAID_CASCADE"),
               *tcd = getenv("BRAID_TC_DECODE");
    cb->tc_on = !(tc && strcmp(tc, "0") == 0);
    cb->cascade_on = !(cas && strcmp(cas, "0") == 0);
    cb->tc_decode_on = !(tcd && strcmp(tcd, "0") == 0);
    /* BRAID_CUDA_FAULT_STEP=N: the N-th step reports a device error (tests of
     * the engine's handling of a failed step). */
    const char *fault = getenv("BRAID_CUDA_FAULT_STEP");
    cb->fault_step = fault ? strtoll(fault, NULL, 10) : 0;
    *out = &cb->base;
    return BI_OK;
}
