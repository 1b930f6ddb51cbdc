/*
 * test_reuse.c - chunk reuse, pool exhaustion and device memory through the
 * engine API on the CUDA backend, token-id parts only. The engine opens a
 * model path only with its tokenizer, which the fixtures lack, so the model
 * is the smallest dummy preset (smollm2-135m, random weights):
 *   - a pool too small for a request fails that request with
 *     RESOURCE_EXHAUSTED, and a following small request still succeeds;
 *   - a step that fails on the device (BRAID_CUDA_FAULT_STEP) ends the
 *     request in it with an error naming the step; the next request is served;
 *   - a model that does not fit in the free device memory is refused by
 *     create with a message, leaving nothing allocated;
 *   - the pool sized by kv_memory_fraction gets about that fraction of the
 *     free device memory;
 *   - EXACT reuse: three registered chunks plus a query generated twice (the
 *     second reports the chunks as cached) and once as one inline part give
 *     the same greedy tokens (a flip is tolerated only at a near-tie, top-2
 *     logprob gap under NEAR_TIE, and reported either way);
 *   - INDEPENDENT reuse runs and reports cached tokens;
 *   - both reuse checks run in bf16 and in fp16 (eng_config.dtype; GPU_DTYPE
 *     picks one), and each engine's device memory is returned;
 *   - after engine destroy the device memory in use is back within LEAK_MIB
 *     of before create.
 *   test_reuse [MODELS_DIR]   (accepted as run.sh passes it; unused)
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_gen.h"
#include "gpu_util.h"

#define NGEN     16
#define NEAR_TIE 2e-2f
#define LEAK_MIB 8.0
#define FRACTION 0.05f
#define PRESET   "smollm2-135m"

static int32_t vocab;

static void rand_ids(int32_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = 3 + rand() % (vocab - 3); /* clear of the usual special ids */
}

static eng_engine *open_engine(int32_t kv_tokens, float fraction)
{
    eng_config cfg = {0};
    cfg.dummy_preset = PRESET;
    cfg.dummy_seed = 1;
    cfg.backend = "cuda";
    cfg.dtype = gpu_dtype_name(gpu_dt);
    cfg.kv_tokens = kv_tokens;
    cfg.kv_memory_fraction = fraction;
    char err[512];
    eng_engine *e = NULL;
    bi_status st = eng_engine_create(&cfg, &e, err, sizeof err);
    if (st != BI_OK) {
        printf("FAIL engine on %s: %s (%s)\n", PRESET, err, bi_strerror(st));
        exit(1);
    }
    vocab = eng_engine_model(e)->vocab_size;
    return e;
}

static double used_mib(void)
{
    size_t free_b = 0, total_b = 0;
    CUDA_OR_DIE(cudaMemGetInfo(&free_b, &total_b));
    return (double)(total_b - free_b) / 1048576.0;
}

/* A pinned chunk leaves too few pages for a long request, which fails alone;
 * a short one after it is served. */
static void check_pool_too_small(void)
{
    eng_engine *e = open_engine(256, 0); /* 16 pages of 16 */
    static int32_t pin_ids[150], big[200], small[10];
    rand_ids(pin_ids, 150);
    rand_ids(big, 200);
    rand_ids(small, 10);
    eng_chunk_desc d = {0};
    d.role = ENG_ROLE_SYSTEM;
    d.ids = pin_ids;
    d.n_ids = 150;
    d.pin = true;
    eng_chunk_id pin_id;
    bool existed;
    EXPECT(eng_chunk_register(e, &d, &pin_id, &existed) == BI_OK, "register the pinned chunk");
    eng_part parts[2] = {gpu_part_chunk(&pin_id), gpu_part_ids(small, 10)};
    gpu_gen g;
    bi_status st = gpu_generate(e, parts, 2, ENG_REUSE_EXACT, 4, &g);
    EXPECT(st == BI_OK && g.n_tokens == 4, "pinned chunk + 10 tokens: %s (%s), %d tokens",
           bi_strerror(st), g.message, g.n_tokens);

    eng_part big_part = gpu_part_ids(big, 200);
    st = gpu_generate(e, &big_part, 1, ENG_REUSE_EXACT, 8, &g);
    printf("  200-token request beside a pinned 150-token chunk in a 256-token pool: %s (%s)\n",
           bi_strerror(st), g.message);
    EXPECT(st == BI_RESOURCE_EXHAUSTED && g.finish == ENG_FINISH_ERROR,
           "expected RESOURCE_EXHAUSTED, got %s", bi_strerror(st));

    eng_part small_part = gpu_part_ids(small, 10);
    st = gpu_generate(e, &small_part, 1, ENG_REUSE_EXACT, 4, &g);
    EXPECT(st == BI_OK && g.n_tokens == 4, "a small request after it: %s (%s), %d tokens",
           bi_strerror(st), g.message, g.n_tokens);
    eng_engine_destroy(e);
}

/* A model that does not fit beside what the device already holds: a clear
 * error from create, and nothing of it left on the device. */
static void check_too_large(void)
{
    size_t free_b, total_b;
    CUDA_OR_DIE(cudaMemGetInfo(&free_b, &total_b));
    void *hog = NULL;
    const size_t keep = (size_t)160 << 20; /* the backend fits, the 256 MiB of weights do not */
    CUDA_OR_DIE(cudaMalloc(&hog, free_b - keep));
    double before = used_mib();
    eng_config cfg = {.dummy_preset = PRESET, .dummy_seed = 1, .backend = "cuda"};
    char err[512] = "";
    eng_engine *e = NULL;
    bi_status st = eng_engine_create(&cfg, &e, err, sizeof err);
    double after = used_mib();
    printf("  model on a device with %zu MiB free: %s (%s); %.1f MiB in use before, %.1f after\n",
           keep >> 20, bi_strerror(st), err, before, after);
    EXPECT(st != BI_OK && !e && strstr(err, "does not fit"),
           "a model larger than the free memory: %s (%s)", bi_strerror(st), err);
    EXPECT(after - before <= LEAK_MIB && before - after <= LEAK_MIB,
           "the failed create left %.1f MiB on the device", after - before);
    if (e)
        eng_engine_destroy(e);
    CUDA_OR_DIE(cudaFree(hog));
}

/* A step that fails on the device: the request in it ends with a clear error,
 * the engine serves the next one. */
static void check_step_fault(void)
{
    setenv("BRAID_CUDA_FAULT_STEP", "3", 1);
    eng_engine *e = open_engine(4096, 0);
    unsetenv("BRAID_CUDA_FAULT_STEP");
    static int32_t ids[12];
    rand_ids(ids, 12);
    eng_part part = gpu_part_ids(ids, 12);
    gpu_gen g;
    bi_status st = gpu_generate(e, &part, 1, ENG_REUSE_EXACT, 8, &g);
    printf("  request through a failing step: %s (%s) after %d tokens\n", bi_strerror(st),
           g.message, g.n_tokens);
    EXPECT(st != BI_OK && g.finish == ENG_FINISH_ERROR && strstr(g.message, "step"),
           "the failed step was not reported: %s (%s)", bi_strerror(st), g.message);
    st = gpu_generate(e, &part, 1, ENG_REUSE_EXACT, 8, &g);
    EXPECT(st == BI_OK && g.n_tokens == 8, "the next request: %s (%s), %d tokens", bi_strerror(st),
           g.message, g.n_tokens);
    eng_engine_destroy(e);
}

/* Reports the first token where a and b differ; true when they are the same
 * or differ only at a near-tie of a's run. */
static bool same_tokens(const char *what, const gpu_gen *a, const gpu_gen *b)
{
    int k = 0;
    while (k < a->n_tokens && k < b->n_tokens && a->tokens[k] == b->tokens[k])
        k++;
    if (k == a->n_tokens && k == b->n_tokens)
        return true;
    bool tie = k < a->n_tokens && a->margin[k] < NEAR_TIE;
    printf("  %s diverges at token %d (%d vs %d, top-2 gap %.2e)%s\n", what, k,
           k < a->n_tokens ? a->tokens[k] : -1, k < b->n_tokens ? b->tokens[k] : -1,
           k < a->n_tokens ? a->margin[k] : 0.0f, tie ? " near-tie" : "");
    return tie;
}

static void check_reuse(eng_engine *e)
{
    enum { N1 = 37, N2 = 64, N3 = 23, NQ = 9, N4 = 48 };
    static int32_t all[N1 + N2 + N3 + NQ], c4[N4];
    rand_ids(all, N1 + N2 + N3 + NQ);
    rand_ids(c4, N4);
    eng_chunk_id id[4];
    bi_status st = gpu_chunk_ids(e, all, N1, false, &id[0]);
    if (st == BI_OK)
        st = gpu_chunk_ids(e, all + N1, N2, false, &id[1]);
    if (st == BI_OK)
        st = gpu_chunk_ids(e, all + N1 + N2, N3, false, &id[2]);
    if (st == BI_OK)
        st = gpu_chunk_ids(e, c4, N4, true, &id[3]);
    EXPECT(st == BI_OK, "register chunks: %s", bi_strerror(st));
    if (st != BI_OK)
        return;

    eng_part comp[4] = {gpu_part_chunk(&id[0]), gpu_part_chunk(&id[1]), gpu_part_chunk(&id[2]),
                        gpu_part_ids(all + N1 + N2 + N3, NQ)};
    eng_part whole = gpu_part_ids(all, N1 + N2 + N3 + NQ);
    static gpu_gen first, second, inl;
    bi_status s1 = gpu_generate(e, comp, 4, ENG_REUSE_EXACT, NGEN, &first);
    bi_status s2 = gpu_generate(e, comp, 4, ENG_REUSE_EXACT, NGEN, &second);
    bi_status s3 = gpu_generate(e, &whole, 1, ENG_REUSE_EXACT, NGEN, &inl);
    EXPECT(s1 == BI_OK && s2 == BI_OK && s3 == BI_OK, "EXACT runs: %s / %s / %s", bi_strerror(s1),
           bi_strerror(s2), bi_strerror(s3));
    printf("  EXACT: prompt %d tokens; cached %d (first), %d (second), %d (inline)\n",
           first.usage.prompt_tokens, first.usage.cached_tokens, second.usage.cached_tokens,
           inl.usage.cached_tokens);
    EXPECT(first.n_tokens == NGEN && second.n_tokens == NGEN && inl.n_tokens == NGEN,
           "token counts %d %d %d", first.n_tokens, second.n_tokens, inl.n_tokens);
    EXPECT(second.usage.cached_tokens >= N1 + N2 + N3, "second run cached %d, want >= %d",
           second.usage.cached_tokens, N1 + N2 + N3);
    EXPECT(same_tokens("reuse vs first", &first, &second), "cached run differs from the first");
    EXPECT(same_tokens("inline vs chunks", &inl, &first), "inline run differs from the chunks");
    printf("  EXACT tokens:");
    for (int k = 0; k < first.n_tokens; k++)
        printf(" %d", first.tokens[k]);
    printf("\n");

    eng_part ind[3] = {gpu_part_chunk(&id[0]), gpu_part_chunk(&id[3]), gpu_part_ids(all, NQ)};
    static gpu_gen i1, i2;
    s1 = gpu_generate(e, ind, 3, ENG_REUSE_INDEPENDENT, NGEN, &i1);
    s2 = gpu_generate(e, ind, 3, ENG_REUSE_INDEPENDENT, NGEN, &i2);
    printf("  INDEPENDENT: prompt %d tokens; cached %d (first), %d (second)\n",
           i1.usage.prompt_tokens, i1.usage.cached_tokens, i2.usage.cached_tokens);
    EXPECT(s1 == BI_OK && s2 == BI_OK && i1.n_tokens == NGEN && i2.n_tokens == NGEN,
           "INDEPENDENT runs: %s (%s) / %s (%s)", bi_strerror(s1), i1.message, bi_strerror(s2),
           i2.message);
    EXPECT(i2.usage.cached_tokens >= N1 + N4, "INDEPENDENT second run cached %d, want >= %d",
           i2.usage.cached_tokens, N1 + N4);
    EXPECT(same_tokens("INDEPENDENT rerun", &i1, &i2), "INDEPENDENT rerun differs");
}

int main(int argc, char **argv)
{
    gpu_begin("test_reuse");
    (void)argc;
    (void)argv;
    CUDA_OR_DIE(cudaFree(0)); /* the context exists before any measurement */

    /* Bad input: a fraction out of range is refused before anything is allocated. */
    eng_config bad = {.dummy_preset = PRESET, .backend = "cuda", .kv_memory_fraction = 1.5f};
    char err[512];
    eng_engine *e = NULL;
    EXPECT(eng_engine_create(&bad, &e, err, sizeof err) == BI_INVALID_ARGUMENT && !e,
           "fraction 1.5 accepted");

    /* Also loads every kernel module, so that the leak check below sees only
     * what an engine allocates. */
    check_pool_too_small();
    check_step_fault();
    check_too_large();

    krn_dtype dts[2];
    for (int i = 0, n = gpu_dtypes(dts); i < n; i++) {
        gpu_use_dtype(dts[i]);
        double before = used_mib();
        size_t free_b, total_b;
        CUDA_OR_DIE(cudaMemGetInfo(&free_b, &total_b));
        e = open_engine(0, FRACTION);
        eng_stats s;
        eng_stats_get(e, &s);
        double pool = (double)s.kv_pages_total * (double)s.kv_page_bytes;
        printf("  pool from fraction %.2f: %d pages of %d tokens, %.1f MiB (%.3f of the %.1f MiB "
               "free before create)\n",
               FRACTION, s.kv_pages_total, s.page_size, pool / 1048576.0, pool / (double)free_b,
               free_b / 1048576.0);
        /* The weights and step buffers of a 135M model take about 1% of an 80 GB card. */
        EXPECT(pool <= FRACTION * (double)free_b && pool >= 0.95 * FRACTION * (double)free_b,
               "pool %.0f bytes is not ~%.2f of %zu free", pool, FRACTION, free_b);
        check_reuse(e);
        eng_engine_destroy(e);
        double after = used_mib();
        printf("  device memory in use: %.1f MiB before create, %.1f MiB after destroy\n", before,
               after);
        EXPECT(after - before <= LEAK_MIB && before - after <= LEAK_MIB,
               "device memory in use changed by %.1f MiB", after - before);
    }
    return gpu_end("test_reuse");
}
