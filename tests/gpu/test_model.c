/*
 * test_model.c - whole-model logits on the CUDA backend against the HF
 * transformers fixtures (tests/fixtures/models/manifest.json: tiny Llama,
 * Llama 3, Qwen2, Qwen3, SmolLM2, Mistral; safetensors and GGUF).
 *
 * Per case and per 16-bit type (bf16 and fp16; GPU_DTYPE picks one): every
 * prompt position's logits within 2e-2 of the largest HF logit (16-bit
 * weights, activations and KV against HF's fp32), and HF's greedy
 * continuation fed back one decode step at a time (teacher forcing), counting
 * the steps whose argmax agrees with HF. Rounding can flip near-ties, so a
 * disagreement fails only when our own top-2 margin exceeds 1e-2 of the
 * largest logit.
 * Also: dtype auto picks fp16 for the F16 fixtures and bf16 for the others,
 * and a weight beyond fp16's range fails an fp16 load (BI_OUT_OF_RANGE, no
 * device memory kept) while auto falls back to bf16.
 *   test_model [MODELS_DIR]   (default tests/fixtures/models, from the repo root)
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include <cjson/cJSON.h>

#include "gpu_engine.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (n < 0 || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

static cJSON *load_json(const char *path)
{
    char *s = slurp(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

static int32_t *json_ids(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = calloc((size_t)*n + 1, sizeof *ids);
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

static int32_t pages[256];

static void check_case(const char *dir, const char *name, const char *model_rel,
                       const char *expected_rel, int *agree_all, int *steps_all)
{
    char path[4096], edir[4096];
    snprintf(path, sizeof path, "%s/%s", dir, expected_rel);
    cJSON *exp = load_json(path);
    if (!exp) {
        EXPECT(0, "%s: cannot read %s", name, path);
        return;
    }
    snprintf(edir, sizeof edir, "%s", path);
    *strrchr(edir, '/') = '\0';
    snprintf(path, sizeof path, "%.2000s/%.1000s", edir,
             cJSON_GetObjectItem(exp, "logits_file")->valuestring);
    size_t bytes;
    float *ref = (float *)slurp(path, &bytes);
    snprintf(path, sizeof path, "%s/%s", dir, model_rel);
    eng_model *m;
    char err[512];
    if (!ref || eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK) {
        EXPECT(0, "%s: cannot load the model or logits (%s)", name, ref ? err : "logits");
        free(ref);
        cJSON_Delete(exp);
        return;
    }
    gpu_model g;
    gpu_model_open(&g, m, "cuda", 256, 256);
    const int V = m->cfg.vocab_size;
    const cJSON *prompts = cJSON_GetObjectItem(exp, "prompts");
    const cJSON *greedy = cJSON_GetObjectItem(exp, "greedy");
    float *out = malloc(sizeof(float) * (size_t)V * 256);
    size_t off = 0;
    double worst = 0;
    int agree = 0, steps = 0, hard = 0;
    for (int p = 0; p < cJSON_GetArraySize(prompts); p++) {
        int n, ng;
        int32_t *ids = json_ids(cJSON_GetArrayItem(prompts, p), &n);
        int32_t *want = json_ids(cJSON_GetArrayItem(greedy, p), &ng);
        memset(out, 0xFF, sizeof(float) * (size_t)n * V);
        bi_status st = gpu_model_run(&g, pages, 0, ids, n, ENG_LOGITS_ALL, out);
        EXPECT(st == BI_OK, "%s prompt %d: %s", name, p, bi_strerror(st));
        double e =
            off + (size_t)n * V <= bytes / 4 ? scaled_err(out, ref + off, (size_t)n * V) : INFINITY;
        worst = e > worst ? e : worst;
        off += (size_t)n * V;
        const float *last = out + (size_t)(n - 1) * V;
        for (int s = 0; s < ng; s++) {
            int got = argmax(last, V);
            steps++;
            if (got == want[s])
                agree++;
            else if (top_margin(last, V) > 1e-2)
                hard++;
            /* feed HF's token, so one flip does not derail the rest */
            st = gpu_model_run(&g, pages, n + s, &want[s], 1, ENG_LOGITS_LAST, out);
            EXPECT(st == BI_OK, "%s decode: %s", name, bi_strerror(st));
            last = out;
        }
        free(ids);
        free(want);
    }
    printf("  %-16s %s logits max err %.2e of max |logit|; greedy %d/%d agree (%d clear "
           "disagreements)\n",
           name, gpu_dtype_name(gpu_dt), worst, agree, steps, hard);
    EXPECT(worst <= 2e-2, "%s: logits differ from HF by %.3e", name, worst);
    EXPECT(hard == 0, "%s: %d greedy tokens differ with a clear margin", name, hard);
    *agree_all += agree;
    *steps_all += steps;
    free(out);
    free(ref);
    cJSON_Delete(exp);
    gpu_model_close(&g);
}

/* The model at dir/rel on a CUDA backend asked for dtype auto gets want. */
static void check_auto(const char *dir, const char *rel, eng_store_dtype want)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    eng_model *m;
    if (eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK) {
        EXPECT(0, "%s: %s", rel, err);
        return;
    }
    eng_backend *b = NULL;
    eng_kv_pool kv;
    eng_forward *f = NULL;
    const eng_model_config *c = &m->cfg;
    bi_status st = eng_backend_cuda_create(0, ENG_STORE_AUTO, &b);
    if (st == BI_OK)
        st = eng_kv_pool_init_opt(&kv, c->n_layer, c->n_kv_head, c->head_dim, 16, 16, false);
    if (st == BI_OK) {
        st = eng_forward_create(m, b, &kv, 64, &f);
        printf("  %-16s weights %-5s auto -> %s\n", rel, eng_dtype_name(m->weight_dtype),
               st == BI_OK ? eng_store_dtype_name(b->store) : bi_strerror(st));
        EXPECT(st == BI_OK && b->store == want, "%s: auto chose %s, want %s", rel,
               eng_store_dtype_name(b->store), eng_store_dtype_name(want));
        eng_forward_destroy(f);
        eng_kv_pool_fini(&kv);
    }
    EXPECT(st == BI_OK, "%s: %s", rel, bi_strerror(st));
    eng_backend_destroy(b);
    eng_model_destroy(m);
}

/* Prepares m on a CUDA backend asking for dtype; the status, and the type
 * used when it succeeded (one forward step run on it). */
static bi_status prepare_as(eng_model *m, eng_store_dtype dtype, eng_store_dtype *used)
{
    const eng_model_config *c = &m->cfg;
    eng_backend *b = NULL;
    eng_kv_pool kv;
    eng_forward *f = NULL;
    bi_status st = eng_backend_cuda_create(0, dtype, &b);
    bool pool = false;
    if (st == BI_OK)
        pool = (st = eng_kv_pool_init_opt(&kv, c->n_layer, c->n_kv_head, c->head_dim, 16, 4,
                                          false)) == BI_OK;
    if (st == BI_OK && (st = eng_forward_create(m, b, &kv, 16, &f)) == BI_OK) {
        *used = b->store;
        int32_t tok[3] = {1, 2, 3}, pg[1] = {0};
        eng_fwd_seq s = {NULL, 0, pg, 0, 0, 3, ENG_LOGITS_LAST};
        eng_fwd_batch bt = {tok, 3, &s, 1};
        float *logits = malloc(sizeof(float) * (size_t)c->vocab_size);
        st = eng_forward_run(f, &bt, logits);
        if (st == BI_OK)
            EXPECT(isfinite(logits[argmax(logits, c->vocab_size)]), "logits not finite");
        free(logits);
    }
    eng_forward_destroy(f);
    if (pool)
        eng_kv_pool_fini(&kv);
    eng_backend_destroy(b);
    return st;
}

/* A weight of 1e5 in a model whose file would be F16: fp16 asked for fails
 * with BI_OUT_OF_RANGE and frees its device memory; auto falls back to bf16
 * and runs; bf16 runs. */
static void check_fp16_overflow(void)
{
    eng_model_config c;
    char err[256];
    eng_model *m;
    if (eng_model_config_preset("smollm2-135m", &c) != BI_OK ||
        (c.n_layer = 2, eng_model_dummy(&c, 3, &m, err, sizeof err)) != BI_OK) {
        EXPECT(0, "dummy model");
        return;
    }
    m->weight_dtype = ENG_DTYPE_F16; /* as if loaded from an F16 file: auto tries fp16 */
    m->layers[1].w_down[12345] = 1e5f;
    size_t free0 = 0, free1 = 0, total = 0;
    CUDA_OR_DIE(cudaMemGetInfo(&free0, &total));
    eng_store_dtype used = ENG_STORE_AUTO;
    bi_status s16 = prepare_as(m, ENG_STORE_FP16, &used);
    CUDA_OR_DIE(cudaMemGetInfo(&free1, &total));
    printf("  w_down[1] holds 1e5: fp16 -> %s (device memory %+.1f MiB)", bi_strerror(s16),
           ((double)free0 - (double)free1) / 1048576.0);
    EXPECT(s16 == BI_OUT_OF_RANGE, "fp16 load of 1e5: %s, want out of range", bi_strerror(s16));
    EXPECT((double)free0 - (double)free1 < 8.0 * 1048576, "the failed load kept device memory");
    bi_status sa = prepare_as(m, ENG_STORE_AUTO, &used);
    printf(", auto -> %s (%s)", bi_strerror(sa), eng_store_dtype_name(used));
    EXPECT(sa == BI_OK && used == ENG_STORE_BF16, "auto: %s, %s", bi_strerror(sa),
           eng_store_dtype_name(used));
    m->layers[1].w_down[12345] = 60000.0f; /* in range: auto keeps fp16 */
    sa = prepare_as(m, ENG_STORE_AUTO, &used);
    printf("; 6e4: auto -> %s (%s)\n", bi_strerror(sa), eng_store_dtype_name(used));
    EXPECT(sa == BI_OK && used == ENG_STORE_FP16, "auto with 6e4: %s, %s", bi_strerror(sa),
           eng_store_dtype_name(used));
    eng_model_destroy(m);
}

int main(int argc, char **argv)
{
    gpu_begin("test_model");
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/models";
    char path[4096];
    snprintf(path, sizeof path, "%s/manifest.json", dir);
    cJSON *man = load_json(path);
    if (!man) {
        printf("FAIL cannot read %s (run from the repo root or pass the models folder)\n", path);
        return 1;
    }
    for (int i = 0; i < 256; i++)
        pages[i] = 255 - i; /* descending ids: page order must not matter */
    const cJSON *cases = cJSON_GetObjectItem(man, "cases");
    krn_dtype dts[2];
    for (int d = 0, nd = gpu_dtypes(dts); d < nd; d++) {
        gpu_use_dtype(dts[d]);
        int agree = 0, steps = 0;
        for (int i = 0; i < cJSON_GetArraySize(cases); i++) {
            const cJSON *c = cJSON_GetArrayItem(cases, i);
            check_case(dir, cJSON_GetObjectItem(c, "name")->valuestring,
                       cJSON_GetObjectItem(c, "model")->valuestring,
                       cJSON_GetObjectItem(c, "expected")->valuestring, &agree, &steps);
        }
        printf("  greedy agreement over all cases (%s): %d/%d\n", gpu_dtype_name(gpu_dt), agree,
               steps);
    }
    cJSON_Delete(man);
    printf("-- dtype choice\n");
    check_auto(dir, "qwen2-tiny", ENG_STORE_FP16);
    check_auto(dir, "llama-tiny.gguf", ENG_STORE_FP16);
    check_auto(dir, "llama-tiny", ENG_STORE_BF16);
    check_auto(dir, "qwen3-tiny", ENG_STORE_BF16);
    check_fp16_overflow();
    return gpu_end("test_model");
}
