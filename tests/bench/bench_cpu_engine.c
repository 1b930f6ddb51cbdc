/*
 * bench_cpu_engine.c - CPU forward-pass speed for a real model (default
 * SmolLM2-135M-Instruct Q4_1, dequantized to fp32), next to the bound this
 * machine's memory bandwidth sets, measured in the same run.
 *
 *   bench_cpu_engine [MODEL] [--threads N] [out.json]
 *
 * Decode reads every weight once per step (batch 1: bytes = fp32 weights +
 * KV), so its bound is bandwidth / bytes per step. Prefill is compute-bound:
 * 2 FLOP per weight per token. Nothing is asserted; figures are the median of
 * several runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench_util.h"
#include "core/forward.h"
#include "cpu/krn_cpu.h"
#include "model/model.h"

#ifndef BRAID_SMOLLM2_GGUF
#define BRAID_SMOLLM2_GGUF "models/SmolLM2-135M-Instruct.Q4_1.gguf"
#endif
#ifndef BRAID_BENCH_RESULTS_DIR
#define BRAID_BENCH_RESULTS_DIR "tests/bench/results"
#endif

typedef struct read_job {
    const float *buf;
    size_t n;
    float sums[64];
} read_job;

static void read_task(void *arg, int task, int n_tasks, int thread)
{
    read_job *j = arg;
    size_t lo = j->n * (size_t)task / (size_t)n_tasks,
           hi = j->n * (size_t)(task + 1) / (size_t)n_tasks;
    float s = 0;
    for (size_t i = lo; i < hi; i += 16)
        s += j->buf[i]; /* touches every cache line once */
    j->sums[thread & 63] += s;
}

/* Streaming read bandwidth over a buffer far larger than the caches, GB/s. */
static double read_bandwidth(krn_pool *p)
{
    size_t n = (size_t)512 << 20 >> 2; /* 512 MiB */
    float *buf = malloc(n * sizeof *buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (float)(i & 1023);
    read_job j = {buf, n, {0}};
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = bench_now_s();
        krn_pool_run(p, krn_pool_size(p) * 4, read_task, &j);
        t[r] = bench_now_s() - t0;
    }
    free(buf);
    return (double)n * sizeof(float) / bench_median(t, 5) / 1e9;
}

static size_t weight_bytes(const eng_model_config *c)
{
    size_t qd = (size_t)c->n_head * c->head_dim, kvd = (size_t)c->n_kv_head * c->head_dim;
    size_t layer = (size_t)c->d_model * (qd + 2 * kvd) + qd * c->d_model +
                   3 * (size_t)c->d_model * c->d_ff + 2 * (size_t)c->d_model;
    return sizeof(float) * (layer * c->n_layer + (size_t)c->vocab_size * c->d_model);
}

int main(int argc, char **argv)
{
    const char *model = BRAID_SMOLLM2_GGUF, *out = BRAID_BENCH_RESULTS_DIR "/bench_cpu_engine.json";
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (strstr(argv[i], ".json"))
            out = argv[i];
        else
            model = argv[i];
    }
    char err[512];
    eng_model *m;
    if (eng_model_load(model, NULL, &m, err, sizeof err) != BI_OK) {
        fprintf(stderr, "bench_cpu_engine: %s (run deploy/fetch_model.sh)\n", err);
        return 1;
    }
    const eng_model_config *c = &m->cfg;
    eng_backend *b;
    eng_kv_pool kv;
    eng_forward *f;
    krn_pool *rp;
    krn_pool_create(threads, &rp);
    int nt = krn_pool_size(rp);
    if (eng_backend_cpu_create(threads, 4096, &b) != BI_OK ||
        eng_kv_pool_init(&kv, c->n_layer, c->n_kv_head, c->head_dim, 16, 256) != BI_OK ||
        eng_forward_create(m, b, &kv, 512, &f) != BI_OK) {
        fprintf(stderr, "bench_cpu_engine: setup failed\n");
        return 1;
    }
    int32_t pages[256], tok[512];
    for (int i = 0; i < 256; i++)
        pages[i] = i;
    srand(1);
    for (int i = 0; i < 512; i++)
        tok[i] = rand() % c->vocab_size;
    float *logits = malloc(sizeof(float) * (size_t)c->vocab_size * 4);

    double bw = read_bandwidth(rp);
    size_t wbytes = weight_bytes(c);
    double params = (double)wbytes / 4;

    /* Prefill: one batch of P tokens. */
    int plens[2] = {128, 512};
    double prefill_tps[2];
    for (int k = 0; k < 2; k++) {
        double t[3];
        for (int r = 0; r < 3; r++) {
            eng_fwd_seq s = {NULL, 0, pages, 0, 0, plens[k], ENG_LOGITS_LAST};
            eng_fwd_batch batch = {tok, plens[k], &s, 1};
            double t0 = bench_now_s();
            eng_forward_run(f, &batch, logits);
            t[r] = bench_now_s() - t0;
        }
        prefill_tps[k] = plens[k] / bench_median(t, 3);
    }
    /* Decode at batch 1 and 4 after a 128-token prompt each. */
    int batches[2] = {1, 4};
    double decode_tps[2];
    for (int k = 0; k < 2; k++) {
        int B = batches[k];
        eng_fwd_seq s[4];
        for (int i = 0; i < B; i++) {
            s[i] = (eng_fwd_seq){NULL, 0, pages + 40 * i, 0, 0, 128, ENG_LOGITS_LAST};
            eng_fwd_batch pre = {tok, 128, &s[i], 1};
            eng_forward_run(f, &pre, logits);
            s[i].tail_len = 128;
            s[i].n_new = 1;
        }
        double t[24];
        for (int step = 0; step < 24; step++) {
            eng_fwd_batch batch = {tok + step, B, s, B};
            double t0 = bench_now_s();
            eng_forward_run(f, &batch, logits);
            t[step] = bench_now_s() - t0;
            for (int i = 0; i < B; i++)
                s[i].tail_len++;
        }
        decode_tps[k] = B / bench_median(t, 24);
    }
    double bound = bw * 1e9 / (double)wbytes;
    printf("bench_cpu_engine: %s on %d threads\n", c->name, nt);
    printf("  model: %d layers, d_model %d, %d heads / %d kv, d_ff %d, vocab %d; %.1f M params, "
           "%.0f MB fp32\n",
           c->n_layer, c->d_model, c->n_head, c->n_kv_head, c->d_ff, c->vocab_size, params / 1e6,
           wbytes / 1e6);
    printf("  memory read bandwidth (measured now): %.1f GB/s\n", bw);
    printf("  %-28s %10s %12s %9s\n", "case", "tokens/s", "bound", "fraction");
    for (int k = 0; k < 2; k++)
        printf("  prefill %4d tokens          %10.1f %12s %9s\n", plens[k], prefill_tps[k],
               "(compute)", "-");
    for (int k = 0; k < 2; k++)
        printf("  decode batch %d (ctx 128)     %10.1f %12.1f %8.0f%%\n", batches[k], decode_tps[k],
               bound * batches[k], 100 * decode_tps[k] / (bound * batches[k]));
    printf("  (decode bound = bandwidth / %.0f MB of weights per step, x batch)\n", wbytes / 1e6);
    mkdir(BRAID_BENCH_RESULTS_DIR, 0755);
    FILE *j = fopen(out, "w");
    if (j) {
        fprintf(j,
                "{\"model\": \"%s\", \"threads\": %d, \"read_gbps\": %.2f, \"weight_bytes\": %zu,"
                " \"prefill_128_tps\": %.1f, \"prefill_512_tps\": %.1f, \"decode_b1_tps\": %.2f,"
                " \"decode_b4_tps\": %.2f, \"decode_b1_bound_tps\": %.2f}\n",
                c->name, nt, bw, wbytes, prefill_tps[0], prefill_tps[1], decode_tps[0],
                decode_tps[1], bound);
        fclose(j);
    }
    free(logits);
    eng_forward_destroy(f);
    eng_kv_pool_fini(&kv);
    eng_backend_destroy(b);
    krn_pool_destroy(rp);
    eng_model_destroy(m);
    return 0;
}
