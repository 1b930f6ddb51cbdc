/*
 * gpu_gen.h - one generation through the engine API, waited for: the GPU
 * engine test (test_reuse) and the time-to-first-token benchmark
 * (bench_gpu_ttft) submit token-id compositions and need the tokens, the
 * final status and the usage back on their own thread. Header-only, as the
 * other GPU test helpers.
 */
#ifndef GPU_GEN_H
#define GPU_GEN_H

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/engine.h"

#define GPU_GEN_MAX 64

typedef struct gpu_gen {
    pthread_mutex_t lock;
    pthread_cond_t done_cv;
    bool done;
    int32_t tokens[GPU_GEN_MAX];
    float margin[GPU_GEN_MAX];  /* top-2 logprob gap before each token (when reported) */
    float logprob[GPU_GEN_MAX]; /* the chosen token's logprob (when reported) */
    int n_tokens;
    eng_finish finish;
    bi_status status;
    char message[256];
    eng_usage usage;
} gpu_gen;

/* Runs on the engine's worker: keeps the first GPU_GEN_MAX tokens and the
 * final event, then wakes the waiting thread. */
static void gpu_gen_on_event(void *user, const eng_event *ev)
{
    gpu_gen *g = user;
    pthread_mutex_lock(&g->lock);
    if (!ev->final) {
        if (g->n_tokens < GPU_GEN_MAX) {
            const eng_logprobs *lp = ev->logprobs;
            g->margin[g->n_tokens] =
                lp && lp->n_top >= 2 ? lp->top[0].logprob - lp->top[1].logprob : 1e30f;
            g->logprob[g->n_tokens] = lp ? lp->chosen.logprob : 0.0f;
            g->tokens[g->n_tokens++] = ev->token;
        }
    } else {
        g->finish = ev->finish;
        g->status = ev->status;
        snprintf(g->message, sizeof g->message, "%s", ev->message ? ev->message : "");
        if (ev->usage)
            g->usage = *ev->usage;
        g->done = true;
        pthread_cond_signal(&g->done_cv);
    }
    pthread_mutex_unlock(&g->lock);
}

/* Starts a generation of up to max_tokens (past end-of-generation tokens)
 * over parts with the given reuse mode and sampling parameters, into *g.
 * Returns eng_generate's status (its message in g->message); on BI_OK wait
 * for it with gpu_gen_wait. */
static inline bi_status gpu_gen_start(eng_engine *e, const eng_part *parts, size_t n_parts,
                                      eng_reuse_mode reuse, int max_tokens,
                                      const eng_sampling_params *sp, gpu_gen *g)
{
    memset(g, 0, sizeof *g);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->done_cv, NULL);
    eng_gen_params p = {0};
    p.parts = parts;
    p.n_parts = n_parts;
    p.sampling = *sp;
    p.max_tokens = max_tokens;
    p.ignore_eos = true;
    p.no_generation_prompt = true;
    p.reuse = reuse;
    uint64_t id;
    bi_status st = eng_generate(e, &p, gpu_gen_on_event, g, &id, g->message, sizeof g->message);
    if (st != BI_OK) {
        pthread_cond_destroy(&g->done_cv);
        pthread_mutex_destroy(&g->lock);
    }
    return st;
}

/* Waits for a generation gpu_gen_start started; its final status. */
static inline bi_status gpu_gen_wait(gpu_gen *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->done)
        pthread_cond_wait(&g->done_cv, &g->lock);
    pthread_mutex_unlock(&g->lock);
    pthread_cond_destroy(&g->done_cv);
    pthread_mutex_destroy(&g->lock);
    return g->status;
}

/* Greedy generation (2 logprobs) of up to max_tokens, waited for. Returns
 * eng_generate's status (with its message in g->message) or, when it was
 * queued, the final event's status. */
static inline bi_status gpu_generate(eng_engine *e, const eng_part *parts, size_t n_parts,
                                     eng_reuse_mode reuse, int max_tokens, gpu_gen *g)
{
    eng_sampling_params sp;
    eng_sampling_params_default(&sp);
    sp.temperature = 0;
    sp.n_logprobs = 2;
    bi_status st = gpu_gen_start(e, parts, n_parts, reuse, max_tokens, &sp, g);
    return st == BI_OK ? gpu_gen_wait(g) : st;
}

/* Registers token ids as a chunk (system role, namespace ""); with
 * precompute, waits (up to 60 s) until its KV is resident. */
static inline bi_status gpu_chunk_ids(eng_engine *e, const int32_t *ids, size_t n, bool precompute,
                                      eng_chunk_id *id)
{
    eng_chunk_desc d = {0};
    d.role = ENG_ROLE_SYSTEM;
    d.ids = ids;
    d.n_ids = n;
    d.precompute = precompute;
    bool existed;
    bi_status st = eng_chunk_register(e, &d, id, &existed);
    for (int i = 0; st == BI_OK && precompute && i < 60000; i++) {
        eng_chunk_info info;
        if ((st = eng_chunk_get(e, NULL, id, &info)) != BI_OK || info.kv_resident)
            break;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return st;
}

static inline eng_part gpu_part_chunk(const eng_chunk_id *id)
{
    eng_part p = {0};
    p.is_chunk = true;
    p.chunk = *id;
    return p;
}

static inline eng_part gpu_part_ids(const int32_t *ids, size_t n)
{
    eng_part p = {0};
    p.role = ENG_ROLE_USER;
    p.ids = ids;
    p.n_ids = n;
    return p;
}

#endif
