/*
 * bench_gpu.c - decode and prefill speed of the CUDA backend on dummy
 * weights of real shapes (bf16), next to the roofline measured in the same
 * run.
 *
 *   bench_gpu [PRESET...]     (default tinyllama-1.1b qwen3-0.6b llama3-8b)
 *   env BENCH_BATCHES: decode batches to run, 0 = the prefill (default all).
 *   Decode batches 1 and 8 run again with the fused RMSNorm+QKV kernel off
 *   (kind decode-qkv-off; "decode" has it on); env BENCH_QKV_OFF=0 skips that.
 *   env BENCH_BUDGET_S (default 300): presets that would start after this
 *   many seconds are skipped; env OUT: bench_gpu.json is written there.
 *
 * Decode: batch 1, 8, 64 and 256 sequences of a 128-token prompt, then 128
 * decode steps; tokens/s = batch / median step time. A step's bytes are every
 * weight matrix once (bf16, lm_head included), the KV of every sequence
 * (read) plus its new token (written), and the fp32 logits (written, copied
 * to the host); roofline = bytes / device-to-device copy bandwidth (read +
 * write bytes per second, measured here). Each decode batch is then timed
 * again over the same positions with sampling, as the engine does a step:
 * "host:g" / "host:p" copy the logits to the host and run the CPU sampler on
 * every row (the engine's path without device sampling), "dev:g" / "dev:p"
 * sample on the device and copy back only the ids (g greedy, p temperature
 * 0.8 with top-p 0.9); same roofline. Prefill: one 2048-token prompt;
 * its roofline is the larger of bytes / bandwidth and FLOPs / the bf16 GEMM
 * rate cuBLAS reaches here on 8192^3. Shared chunk: 64 requests over one
 * 4096-token chunk (plus 32 tokens each) decode 128 tokens, cascade on and
 * off; roofline = the weights, the chunk's KV once, the tails and logits per
 * step (greedy, sampled on the device). Then, for the presets env BENCH_FP16
 * lists (comma list, default tinyllama-1.1b; "none" for none), decode batch 1
 * and the prefill again with fp16 storage (kinds decode-fp16, prefill-fp16;
 * same bytes, and the bf16 GEMM rate stands for fp16's, equal on Hopper).
 * Nothing is asserted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "bench_util.h"
#include "common/log.h"
#include "core/backend.h"
#include "core/forward.h"
#include "cuda/krn_gemm.h"
#include "cuda/krn_smoke.h"
#include "model/model.h"
#include "sampler/sampler.h"

#define PROMPT    128
#define NEW       128
#define PREFILL   2048
#define MAX_BATCH 256
#define PAGE      16

/* Median seconds of n runs of fn(arg) on the default stream, timed with CUDA
 * events after `warm` untimed ones (n <= 16). */
static double event_median(void (*fn)(void *), void *arg, int warm, int n)
{
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[16];
    for (int i = 0; i < warm + n; i++) {
        cudaEventRecord(e0, 0);
        fn(arg);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= warm)
            t[i - warm] = ms * 1e-3;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    return bench_median(t, n);
}

typedef struct copy_args {
    void *dst;
    const void *src;
    size_t bytes;
} copy_args;

static void run_copy(void *arg)
{
    copy_args *a = arg;
    cudaMemcpyAsync(a->dst, a->src, a->bytes, cudaMemcpyDeviceToDevice, 0);
}

typedef struct gemm_args {
    cublasHandle_t h;
    float *y;
    const krn_half *x, *w;
    int n;
} gemm_args;

static void run_gemm(void *arg)
{
    gemm_args *a = arg;
    krn_gemm(a->h, a->y, a->x, a->w, a->n, a->n, a->n, KRN_BF16);
}

/* Device-to-device copy bandwidth, bytes read + written per second. */
static double copy_bandwidth(void)
{
    const size_t bytes = (size_t)1 << 30;
    void *a, *b;
    if (cudaMalloc(&a, bytes) != cudaSuccess || cudaMalloc(&b, bytes) != cudaSuccess)
        return 0;
    cudaMemset(a, 1, bytes);
    copy_args args = {b, a, bytes};
    double sec = event_median(run_copy, &args, 2, 10);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * bytes / sec;
}

/* bf16 GEMM rate (FLOP/s) cuBLAS reaches on 8192^3, random inputs. */
static double gemm_rate(void)
{
    const int n = 8192;
    size_t bytes = (size_t)n * n * 2;
    krn_half *x, *w;
    float *y, *stage;
    if (cudaMalloc((void **)&x, bytes) != cudaSuccess ||
        cudaMalloc((void **)&w, bytes) != cudaSuccess ||
        cudaMalloc((void **)&y, (size_t)n * n * 4) != cudaSuccess)
        return 0;
    stage = malloc(bytes);
    uint16_t *h = (uint16_t *)stage;
    for (size_t i = 0; i < (size_t)n * n; i++)
        h[i] = (uint16_t)(0x3C00u + (rand() & 0x7F)); /* bf16 in [0.0078, 0.0156) */
    cudaMemcpy(x, h, bytes, cudaMemcpyHostToDevice);
    cudaMemcpy(w, h, bytes, cudaMemcpyHostToDevice);
    free(stage);
    cublasHandle_t hd;
    cublasCreate(&hd);
    gemm_args args = {hd, y, x, w, n};
    double sec = event_median(run_gemm, &args, 2, 8);
    cublasDestroy(hd);
    cudaFree(x);
    cudaFree(w);
    cudaFree(y);
    return 2.0 * n * n * (double)n / sec;
}

typedef struct shape {
    double w_bytes;             /* bf16 matrices read per step, lm_head included */
    double kv_tok_bytes;        /* K+V bytes of one token over all layers (bf16) */
    double params;              /* matrix parameters without the embedding table */
    double attn_flops_per_pair; /* FLOPs of one (query, key) pair over all layers and heads */
} shape;

static shape shape_of(const eng_model_config *c)
{
    double d = c->d_model, qd = (double)c->n_head * c->head_dim,
           kvd = (double)c->n_kv_head * c->head_dim, ff = c->d_ff, V = c->vocab_size;
    double layer = qd * d + 2 * kvd * d + d * qd + 3 * ff * d;
    shape s;
    s.params = c->n_layer * layer + V * d;
    s.w_bytes = 2 * s.params;
    s.kv_tok_bytes = 2.0 * 2 * kvd * c->n_layer;
    s.attn_flops_per_pair = 4.0 * qd * c->n_layer;
    return s;
}

typedef struct result {
    char preset[32];
    char kind[24]; /* decode, prefill, shared-on, shared-off, ... */
    int batch;
    double tok_s, roof_tok_s;
} result;

static result results[128];
static int n_results;

static void add_result(const char *preset, const char *kind, int batch, double tok_s, double roof)
{
    if (n_results == (int)(sizeof results / sizeof results[0]))
        return;
    result *r = &results[n_results++];
    snprintf(r->preset, sizeof r->preset, "%s", preset);
    snprintf(r->kind, sizeof r->kind, "%s", kind);
    r->batch = batch;
    r->tok_s = tok_s;
    r->roof_tok_s = roof;
    printf("  %-16s %-12s %5d %12.0f tok/s   roofline %12.0f   %5.1f%%\n", preset, kind, batch,
           tok_s, roof, 100.0 * tok_s / roof);
}

static int32_t pages[MAX_BATCH * (PROMPT + NEW) / PAGE];
static bool bench_selected(int batch);

/* A CUDA backend, a device KV pool of n_pages and a forward pass over m. */
typedef struct rig {
    eng_backend *b;
    eng_kv_pool kv;
    bool pool;
    eng_forward *f;
} rig;

static void rig_close(rig *r)
{
    eng_forward_destroy(r->f);
    if (r->pool)
        eng_kv_pool_fini(&r->kv);
    eng_backend_destroy(r->b);
    *r = (rig){0};
}

/* 0, or 1 (with a line naming what) when something could not be set up. */
static int rig_open(rig *r, const eng_model *m, eng_store_dtype store, int32_t n_pages,
                    const char *what)
{
    const eng_model_config *c = &m->cfg;
    *r = (rig){0};
    if (eng_backend_cuda_create(0, store, &r->b) != BI_OK ||
        !(r->pool = eng_kv_pool_init_opt(&r->kv, c->n_layer, c->n_kv_head, c->head_dim, PAGE,
                                         n_pages, false) == BI_OK) ||
        eng_forward_create(m, r->b, &r->kv, PREFILL, &r->f) != BI_OK) {
        printf("%s: cannot set up the CUDA backend (%s)\n", c->name, what);
        rig_close(r);
        return 1;
    }
    return 0;
}

/* How a timed decode step ends: logit rows to the host (the forward pass
 * alone), plus the CPU sampler on each row, or sampling on the device. */
typedef enum { STEP_LOGITS, STEP_HOST_SAMPLE, STEP_DEVICE_SAMPLE } step_mode;

static const struct {
    const char *kind;
    step_mode mode;
    bool greedy;
} sample_runs[] = {
    {"host:g", STEP_HOST_SAMPLE, true},
    {"host:p", STEP_HOST_SAMPLE, false},
    {"dev:g", STEP_DEVICE_SAMPLE, true},
    {"dev:p", STEP_DEVICE_SAMPLE, false},
};

/* Median time of NEW decode steps of batch sequences whose tails hold tail0
 * tokens before the first (the KV written there before is overwritten; only
 * the time matters). smp: one sampler per sequence for the sampling modes;
 * out: device results. */
static double time_decode(eng_forward *f, const eng_model_config *c, int batch, eng_fwd_seq *seqs,
                          int32_t *tok, int32_t tail0, step_mode mode, eng_sampler **smp,
                          float *logits, eng_sample_out *out)
{
    double t[NEW];
    for (int s = 0; s < NEW; s++) {
        for (int i = 0; i < batch; i++) {
            seqs[i].tail_len = tail0 + s;
            seqs[i].n_new = 1;
            tok[i] = rand() % c->vocab_size;
        }
        eng_fwd_batch b = {tok, batch, seqs, batch};
        double t0 = bench_now_s();
        bi_status st = mode == STEP_DEVICE_SAMPLE ? eng_forward_run_sampled(f, &b, smp, out)
                                                  : eng_forward_run(f, &b, logits);
        for (int i = 0; i < batch && st == BI_OK; i++) {
            int32_t id = 0;
            if (mode == STEP_HOST_SAMPLE)
                st = eng_sampler_sample(smp[i], logits + (size_t)i * c->vocab_size, &id, NULL);
            else if (mode == STEP_DEVICE_SAMPLE)
                st = out[i].status == BI_OK ? eng_sampler_accept(smp[i], out[i].token)
                                            : out[i].status;
        }
        if (st != BI_OK)
            return -1.0;
        t[s] = bench_now_s() - t0;
    }
    return bench_median(t, NEW);
}

/* The decode batch again with each sampling mode (sample_runs). */
static int bench_sampling(eng_forward *f, const eng_model_config *c, int batch, eng_fwd_seq *seqs,
                          int32_t *tok, const char *preset, float *logits, double roof,
                          double plain_step)
{
    static eng_sampler *smp[MAX_BATCH];
    static eng_sample_out out[MAX_BATCH];
    double step[4];
    for (int k = 0; k < 4; k++) {
        eng_sampling_params p;
        eng_sampling_params_default(&p);
        p.temperature = sample_runs[k].greedy ? 0.0f : 0.8f;
        p.top_p = sample_runs[k].greedy ? 1.0f : 0.9f;
        int made = 0;
        for (int i = 0; i < batch; i++) {
            p.seed = (uint64_t)i;
            made += eng_sampler_create(&p, c->vocab_size, &smp[i]) == BI_OK;
        }
        step[k] = made == batch ? time_decode(f, c, batch, seqs, tok, PROMPT, sample_runs[k].mode,
                                              smp, logits, out)
                                : -1.0;
        for (int i = 0; i < made; i++)
            eng_sampler_destroy(smp[i]);
        if (step[k] < 0)
            return 1;
        add_result(preset, sample_runs[k].kind, batch, batch / step[k], roof);
    }
    printf("  %-16s step %.3f ms: logits to the host %.3f, + CPU sampler %.3f (greedy) %.3f "
           "(top-p); device sampling %.3f (greedy) %.3f (top-p)\n",
           preset, plain_step * 1e3, plain_step * 1e3, step[0] * 1e3, step[1] * 1e3, step[2] * 1e3,
           step[3] * 1e3);
    return 0;
}

/* Prefills batch prompts (chunks of at most PREFILL tokens), then times NEW
 * decode steps. */
static int bench_decode(eng_forward *f, const eng_model_config *c, int batch, double bw,
                        const shape *sh, const char *preset, const char *kind, float *logits)
{
    const int per = (PROMPT + NEW) / PAGE;
    static int32_t tok[PREFILL];
    static eng_fwd_seq seqs[MAX_BATCH];
    for (int i = 0; i < batch; i++)
        seqs[i] = (eng_fwd_seq){NULL, 0, pages + i * per, 0, 0, PROMPT, ENG_LOGITS_LAST};
    const int chunk = PREFILL / PROMPT;
    for (int i = 0; i < batch; i += chunk) {
        int n = batch - i < chunk ? batch - i : chunk;
        for (int t = 0; t < n * PROMPT; t++)
            tok[t] = rand() % c->vocab_size;
        eng_fwd_batch b = {tok, n * PROMPT, seqs + i, n};
        if (eng_forward_run(f, &b, logits) != BI_OK)
            return 1;
    }
    double step = time_decode(f, c, batch, seqs, tok, PROMPT, STEP_LOGITS, NULL, logits, NULL);
    if (step < 0)
        return 1;
    double bytes = sh->w_bytes +
                   batch * ((PROMPT + NEW / 2 + 1) * sh->kv_tok_bytes + (double)c->vocab_size * 4);
    add_result(preset, kind, batch, batch / step, batch / (bytes / bw));
    if (strcmp(kind, "decode") != 0)
        return 0; /* the sampling cases run once, with the default kernels */
    return bench_sampling(f, c, batch, seqs, tok, preset, logits, batch / (bytes / bw), step);
}

static int bench_prefill(eng_forward *f, const eng_model_config *c, double bw, double rate,
                         const shape *sh, const char *preset, const char *kind, float *logits)
{
    static int32_t tok[PREFILL];
    for (int t = 0; t < PREFILL; t++)
        tok[t] = rand() % c->vocab_size;
    eng_fwd_seq s = {NULL, 0, pages, 0, 0, PREFILL, ENG_LOGITS_LAST};
    eng_fwd_batch b = {tok, PREFILL, &s, 1};
    double t[4];
    for (int i = 0; i < 5; i++) {
        double t0 = bench_now_s();
        if (eng_forward_run(f, &b, logits) != BI_OK)
            return 1;
        if (i > 0)
            t[i - 1] = bench_now_s() - t0;
    }
    double sec = bench_median(t, 4);
    double flops =
        2.0 * sh->params * PREFILL + sh->attn_flops_per_pair * (double)PREFILL * (PREFILL + 1) / 2;
    double bytes = sh->w_bytes + PREFILL * sh->kv_tok_bytes;
    double bound = flops / rate > bytes / bw ? flops / rate : bytes / bw;
    add_result(preset, kind, 1, PREFILL / sec, PREFILL / bound);
    return 0;
}

/* The shared-chunk case: SHARED_REQ requests hold one SHARED_LEN-token
 * chunk, add a SHARED_QUERY-token question each, and decode NEW tokens, with
 * the cascade (the chunk read once per step for all of them) on and off. */
#define SHARED_LEN   4096
#define SHARED_REQ   64
#define SHARED_QUERY 32

static int shared_run(const eng_model *m, bool cascade, double *step_s, eng_attn_split *split)
{
    const eng_model_config *c = &m->cfg;
    setenv("BRAID_CASCADE", cascade ? "1" : "0", 1);
    const int32_t chunk_pages = SHARED_LEN / PAGE, per = (SHARED_QUERY + NEW) / PAGE + 1;
    const int32_t n_pages = chunk_pages + SHARED_REQ * per;
    rig r = {0};
    int rc = 1;
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size * SHARED_REQ);
    static int32_t tok[PREFILL];
    static eng_fwd_seq seqs[SHARED_REQ];
    static eng_seg segs[SHARED_REQ];
    if (!logits || rig_open(&r, m, ENG_STORE_BF16, n_pages, "shared chunk"))
        goto out;
    eng_forward *f = r.f;
    /* the chunk, at local positions, in PREFILL-token pieces */
    for (int32_t off = 0; off < SHARED_LEN; off += PREFILL) {
        for (int t = 0; t < PREFILL; t++)
            tok[t] = rand() % c->vocab_size;
        eng_fwd_seq s = {NULL, 0, pages, 0, off, PREFILL, ENG_LOGITS_NONE};
        eng_fwd_batch bt = {tok, PREFILL, &s, 1};
        if (eng_forward_run(f, &bt, logits) != BI_OK)
            goto out;
    }
    for (int i = 0; i < SHARED_REQ; i++) {
        segs[i] = (eng_seg){pages, SHARED_LEN, 0, 0};
        seqs[i] = (eng_fwd_seq){&segs[i],       1, pages + chunk_pages + i * per,
                                SHARED_LEN,     0, SHARED_QUERY,
                                ENG_LOGITS_LAST};
    }
    for (int t = 0; t < SHARED_REQ * SHARED_QUERY; t++)
        tok[t] = rand() % c->vocab_size;
    eng_fwd_batch q = {tok, SHARED_REQ * SHARED_QUERY, seqs, SHARED_REQ};
    if (eng_forward_run(f, &q, logits) != BI_OK)
        goto out;
    /* greedy, sampled on the device where the backend can (ids only back) */
    static eng_sampler *smp[SHARED_REQ];
    static eng_sample_out out_ids[SHARED_REQ];
    eng_sampling_params sp;
    eng_sampling_params_default(&sp);
    sp.temperature = 0.0f;
    int made = 0;
    while (made < SHARED_REQ && eng_sampler_create(&sp, c->vocab_size, &smp[made]) == BI_OK)
        made++;
    const step_mode mode = eng_forward_can_sample(f) ? STEP_DEVICE_SAMPLE : STEP_HOST_SAMPLE;
    *step_s = made == SHARED_REQ ? time_decode(f, c, SHARED_REQ, seqs, tok, SHARED_QUERY, mode, smp,
                                               logits, out_ids)
                                 : -1.0;
    for (int i = 0; i < made; i++)
        eng_sampler_destroy(smp[i]);
    if (*step_s < 0)
        goto out;
    *split = (eng_attn_split){0};
    if (r.b->ops->attn_split)
        r.b->ops->attn_split(r.b, split);
    rc = 0;
out:
    unsetenv("BRAID_CASCADE");
    rig_close(&r);
    free(logits);
    return rc;
}

static int bench_shared(const eng_model *m, double bw, const shape *sh, const char *preset)
{
    const eng_model_config *c = &m->cfg;
    /* the least a step moves: the weights, the chunk once, every tail, the logits */
    double bytes =
        sh->w_bytes + SHARED_LEN * sh->kv_tok_bytes +
        SHARED_REQ * ((SHARED_QUERY + NEW / 2 + 1) * sh->kv_tok_bytes + (double)c->vocab_size * 4);
    for (int on = 1; on >= 0; on--) {
        double step;
        eng_attn_split sp;
        if (shared_run(m, on, &step, &sp))
            return 1;
        printf("  (%s: %d shared rows in %d tensor-core jobs, %d per-token, split %d)\n",
               on ? "cascade" : "no cascade", sp.shared_members, sp.tc_jobs, sp.per_token,
               sp.n_split);
        add_result(preset, on ? "shared-on" : "shared-off", SHARED_REQ, SHARED_REQ / step,
                   SHARED_REQ / (bytes / bw));
    }
    return 0;
}

/* Decode batches 1 and 8 (those selected) with the fused RMSNorm+QKV kernel
 * off (BRAID_FUSED_QKV=0), on a backend of its own: the "decode" rows have it
 * on. */
static int bench_qkv_off(const eng_model *m, double bw, const shape *sh, const char *preset)
{
    const eng_model_config *c = &m->cfg;
    setenv("BRAID_FUSED_QKV", "0", 1);
    rig r;
    int rc = 1;
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size * MAX_BATCH);
    int32_t n_pages = (int32_t)(sizeof pages / sizeof pages[0]);
    if (logits && !rig_open(&r, m, ENG_STORE_BF16, n_pages, "fused qkv off")) {
        rc = 0;
        const int batches[] = {1, 8};
        for (int i = 0; i < 2 && !rc; i++)
            if (bench_selected(batches[i]))
                rc = bench_decode(r.f, c, batches[i], bw, sh, preset, "decode-qkv-off", logits);
        rig_close(&r);
    }
    unsetenv("BRAID_FUSED_QKV");
    free(logits);
    return rc;
}

/* env BENCH_BATCHES: a comma list of the decode batches to run, 0 for the
 * prefill, -1 for the shared-chunk case (default: all), e.g. to profile one
 * case. */
static bool bench_selected(int batch)
{
    const char *sel = getenv("BENCH_BATCHES");
    if (!sel || !*sel)
        return true;
    for (const char *p = sel; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p)
            return false;
        if (v == batch)
            return true;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return false;
    }
    return false;
}

/* True when env BENCH_FP16 (default tinyllama-1.1b) lists preset. */
static bool fp16_selected(const char *preset)
{
    const char *sel = getenv("BENCH_FP16");
    if (!sel)
        sel = "tinyllama-1.1b";
    size_t n = strlen(preset);
    for (const char *p = sel; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && !strncmp(p, preset, n))
            return true;
        p += len + (p[len] == ',');
    }
    return false;
}

/* Decode batch 1 and the prefill of m with fp16 storage. */
static int bench_fp16(const eng_model *m, double bw, double rate, const shape *sh,
                      const char *preset, float *logits)
{
    const eng_model_config *c = &m->cfg;
    rig r;
    if (rig_open(&r, m, ENG_STORE_FP16, (int32_t)(sizeof pages / sizeof pages[0]), "fp16"))
        return 1;
    int rc = r.b->store == ENG_STORE_FP16 ? 0 : 1;
    if (!rc && bench_selected(1))
        rc = bench_decode(r.f, c, 1, bw, sh, preset, "decode-fp16", logits);
    if (!rc && bench_selected(0))
        rc = bench_prefill(r.f, c, bw, rate, sh, preset, "prefill-fp16", logits);
    rig_close(&r);
    return rc;
}

static int bench_preset(const char *name, double bw, double rate)
{
    eng_model_config c;
    if (eng_model_config_preset(name, &c) != BI_OK) {
        printf("unknown preset %s\n", name);
        return 1;
    }
    char err[256];
    eng_model *m;
    rig r;
    double t0 = bench_now_s();
    if (eng_model_dummy(&c, 7, &m, err, sizeof err) != BI_OK) {
        printf("%s: %s\n", name, err);
        return 1;
    }
    if (rig_open(&r, m, ENG_STORE_BF16, (int32_t)(sizeof pages / sizeof pages[0]), "bf16")) {
        eng_model_destroy(m);
        return 1;
    }
    eng_backend *b = r.b;
    eng_forward *f = r.f;
    printf("%s: %.2fB parameters, ready in %.1f s; fused rmsnorm+qkv for steps of up to %d "
           "tokens\n",
           name, shape_of(&c).params / 1e9, bench_now_s() - t0, b->norm_qkv_max);
    shape sh = shape_of(&c);
    float *logits = malloc(sizeof(float) * (size_t)c.vocab_size * MAX_BATCH);
    int rc = 0;
    const int batches[] = {1, 8, 64, 256};
    for (int i = 0; i < 4 && !rc; i++)
        if (bench_selected(batches[i]))
            rc = bench_decode(f, &c, batches[i], bw, &sh, name, "decode", logits);
    if (!rc && bench_selected(0))
        rc = bench_prefill(f, &c, bw, rate, &sh, name, "prefill", logits);
    rig_close(&r);
    if (!rc && bench_selected(-1))
        rc = bench_shared(m, bw, &sh, name);
    if (!rc && !(getenv("BENCH_QKV_OFF") && strcmp(getenv("BENCH_QKV_OFF"), "0") == 0))
        rc = bench_qkv_off(m, bw, &sh, name);
    if (!rc && fp16_selected(name))
        rc = bench_fp16(m, bw, rate, &sh, name, logits);
    if (rc)
        printf("%s: a forward step failed\n", name);
    free(logits);
    eng_model_destroy(m); /* the forward pass reads its configuration until destroyed */
    return rc;
}

static void write_json(double bw, double rate, const char *device)
{
    const char *dir = getenv("OUT");
    if (!dir)
        return;
    char path[4096];
    snprintf(path, sizeof path, "%s/bench_gpu.json", dir);
    FILE *fp = fopen(path, "w");
    if (!fp)
        return;
    fprintf(fp, "{\n \"device\": \"%s\",\n \"copy_bandwidth_GBps\": %.1f,\n", device, bw / 1e9);
    fprintf(fp, " \"bf16_gemm_TFLOPs\": %.1f,\n \"results\": [\n", rate / 1e12);
    for (int i = 0; i < n_results; i++)
        fprintf(fp,
                "  {\"preset\": \"%s\", \"kind\": \"%s\", \"batch\": %d, \"tok_s\": %.1f, "
                "\"roofline_tok_s\": %.1f, \"fraction\": %.4f}%s\n",
                results[i].preset, results[i].kind, results[i].batch, results[i].tok_s,
                results[i].roof_tok_s, results[i].tok_s / results[i].roof_tok_s,
                i + 1 < n_results ? "," : "");
    fprintf(fp, " ]\n}\n");
    fclose(fp);
    printf("wrote %s\n", path);
}

int main(int argc, char **argv)
{
    char device[256];
    if (krn_device_describe(0, device, sizeof device) != BI_OK) {
        printf("bench_gpu: no CUDA device\n");
        return 77;
    }
    bi_log_set_sink(bi_log_stderr_sink, NULL);
    bi_log_set_level(BI_LOG_WARN);
    const char *defaults[] = {"tinyllama-1.1b", "qwen3-0.6b", "llama3-8b"};
    const char **presets = argc > 1 ? (const char **)argv + 1 : defaults;
    int n = argc > 1 ? argc - 1 : 3;
    double budget = getenv("BENCH_BUDGET_S") ? atof(getenv("BENCH_BUDGET_S")) : 300;
    for (size_t i = 0; i < sizeof pages / sizeof pages[0]; i++)
        pages[i] = (int32_t)i;
    double start = bench_now_s(), bw = copy_bandwidth(), rate = gemm_rate();
    printf("%s\ncopy bandwidth %.0f GB/s (read + write), bf16 GEMM %.0f TFLOP/s\n", device,
           bw / 1e9, rate / 1e12);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        if (bench_now_s() - start > budget) {
            printf("%s: skipped (budget of %.0f s spent)\n", presets[i], budget);
            continue;
        }
        rc |= bench_preset(presets[i], bw, rate);
    }
    printf("\n== bench_gpu (%s; copy %.0f GB/s, GEMM %.0f TFLOP/s)\n", device, bw / 1e9,
           rate / 1e12);
    printf("%-16s %-12s %6s %12s %12s %7s\n", "model", "kind", "batch", "tok/s", "roofline",
           "frac");
    for (int i = 0; i < n_results; i++)
        printf("%-16s %-12s %6d %12.0f %12.0f %6.1f%%\n", results[i].preset, results[i].kind,
               results[i].batch, results[i].tok_s, results[i].roof_tok_s,
               100.0 * results[i].tok_s / results[i].roof_tok_s);
    printf("(host:g/p = logits to the host + the CPU sampler, dev:g/p = sampling on the device, "
           "ids only; g greedy, p T 0.8 top-p 0.9)\n");
    write_json(bw, rate, device);
    return rc;
}
