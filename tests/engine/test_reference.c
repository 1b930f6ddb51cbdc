/*
 * test_reference.c - the CPU forward pass against HF transformers.
 *
 * For every case of tests/fixtures/models/manifest.json (tiny random Llama,
 * Llama 3 with rope scaling, Qwen2, Qwen3, SmolLM2-like and Mistral models,
 * from safetensors in F32/F16/BF16, sharded, and GGUF F16/Q8_0; written by
 * tests/fixtures/gen_fixtures.py): the logits of every prompt position match
 * HF's within 1e-4 of the largest reference logit, and the 12-token greedy
 * continuation is identical. For llama-tiny, a chunk whose KV was computed
 * at local positions and placed at offsets 0, 37 and 1000 through
 * differential RoPE gives HF's logits for that chunk at those offsets.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../common/test_files.h"
#include "../common/test_metrics.h"
#include "core/forward.h"
#include "model/model.h"

#ifndef BRAID_MODELS_DIR
#define BRAID_MODELS_DIR "tests/fixtures/models"
#endif

typedef struct runner {
    eng_model *m;
    eng_backend *b;
    eng_kv_pool kv;
    eng_forward *f;
    int32_t pages[256];
} runner;

static void runner_init(runner *r, const char *model_path)
{
    char err[512];
    bi_status st = eng_model_load(model_path, NULL, &r->m, err, sizeof err);
    if (st != BI_OK)
        fail_msg("load %s: %s", model_path, err);
    const eng_model_config *c = &r->m->cfg;
    assert_int_equal(eng_backend_cpu_create(2, 2048, &r->b), BI_OK);
    assert_int_equal(eng_kv_pool_init(&r->kv, c->n_layer, c->n_kv_head, c->head_dim, 16, 256),
                     BI_OK);
    assert_int_equal(eng_forward_create(r->m, r->b, &r->kv, 256, &r->f), BI_OK);
    for (int i = 0; i < 256; i++)
        r->pages[i] = i;
}

static void runner_fini(runner *r)
{
    eng_forward_destroy(r->f);
    eng_kv_pool_fini(&r->kv);
    eng_backend_destroy(r->b);
    eng_model_destroy(r->m);
}

/* Runs n tokens of one sequence; its tail starts at page `first_page`. */
static void run(runner *r, const eng_seg *segs, int n_segs, int first_page, int32_t tail_pos,
                int32_t tail_len, const int32_t *tok, int32_t n, int mode, float *out)
{
    eng_fwd_seq s = {segs, n_segs, r->pages + first_page, tail_pos, tail_len, n, mode};
    eng_fwd_batch b = {tok, n, &s, 1};
    assert_int_equal(eng_forward_run(r->f, &b, out), BI_OK);
}

static int32_t *json_ids(const cJSON *arr, int *n)
{
    *n = cJSON_GetArraySize(arr);
    int32_t *ids = calloc((size_t)*n + 16, sizeof *ids);
    for (int i = 0; i < *n; i++)
        ids[i] = (int32_t)cJSON_GetArrayItem(arr, i)->valuedouble;
    return ids;
}

static void check_case(const char *name, const char *model_rel, const char *expected_rel)
{
    char path[4096], dir[4096];
    snprintf(path, sizeof path, "%s/%s", BRAID_MODELS_DIR, expected_rel);
    cJSON *exp = test_load_json(path);
    assert_non_null(exp);
    memcpy(dir, path, sizeof dir);
    *strrchr(dir, '/') = '\0';
    snprintf(path, sizeof path, "%.2000s/%.1000s", dir,
             cJSON_GetObjectItem(exp, "logits_file")->valuestring);
    size_t bytes;
    float *logits = (float *)test_slurp(path, &bytes);
    assert_non_null(logits);
    snprintf(path, sizeof path, "%s/%s", BRAID_MODELS_DIR, model_rel);
    runner r;
    runner_init(&r, path);
    const int V = r.m->cfg.vocab_size;
    const cJSON *prompts = cJSON_GetObjectItem(exp, "prompts");
    const cJSON *greedy = cJSON_GetObjectItem(exp, "greedy");
    size_t off = 0;
    double worst = 0;
    float *out = malloc(sizeof(float) * (size_t)V * 256);
    for (int p = 0; p < cJSON_GetArraySize(prompts); p++) {
        int n, ng;
        int32_t *ids = json_ids(cJSON_GetArrayItem(prompts, p), &n);
        int32_t *want = json_ids(cJSON_GetArrayItem(greedy, p), &ng);
        run(&r, NULL, 0, 0, 0, 0, ids, n, ENG_LOGITS_ALL, out);
        double e = scaled_err(out, logits + off, (size_t)n * V);
        worst = e > worst ? e : worst;
        off += (size_t)n * V;
        /* greedy continuation, one decode step at a time */
        int32_t next = argmax(out + (size_t)(n - 1) * V, V);
        for (int g = 0; g < ng; g++) {
            if (next != want[g])
                fail_msg("%s prompt %d: greedy token %d is %d, HF says %d", name, p, g, next,
                         want[g]);
            run(&r, NULL, 0, 0, 0, n + g, &next, 1, ENG_LOGITS_LAST, out);
            next = argmax(out, V);
        }
        free(ids);
        free(want);
    }
    assert_int_equal(off * sizeof(float), bytes);
    print_message("%-16s logits max err %.2e of max |logit|; greedy identical\n", name, worst);
    if (!(worst <= 1e-4))
        fail_msg("%s: logits differ from HF by %.3e", name, worst);

    const cJSON *reuse = cJSON_GetObjectItem(exp, "independent_reuse");
    if (reuse) {
        int n;
        int32_t *ids = json_ids(cJSON_GetObjectItem(reuse, "ids"), &n);
        snprintf(path, sizeof path, "%.2000s/%.1000s", dir,
                 cJSON_GetObjectItem(reuse, "logits_file")->valuestring);
        float *ref = (float *)test_slurp(path, NULL);
        /* The chunk's KV at local positions 0..n-1, once (pages 0..). */
        run(&r, NULL, 0, 0, 0, 0, ids, n, ENG_LOGITS_NONE, out);
        const cJSON *offs = cJSON_GetObjectItem(reuse, "offsets");
        for (int k = 0; k < cJSON_GetArraySize(offs); k++) {
            int p = cJSON_GetArrayItem(offs, k)->valueint;
            double we = 0;
            /* Token i at position p + i attends to the cached first i tokens,
             * placed at p (rotation base 0), and to itself. */
            for (int i = 0; i < n; i++) {
                eng_seg seg = {r.pages, i, p, 0};
                run(&r, i ? &seg : NULL, i ? 1 : 0, 32, p + i, 0, &ids[i], 1, ENG_LOGITS_LAST, out);
                double e = scaled_err(out, ref + ((size_t)k * n + i) * V, (size_t)V);
                we = e > we ? e : we;
            }
            print_message("  independent chunk at offset %4d: max err %.2e\n", p, we);
            if (!(we <= 1e-4))
                fail_msg("independent reuse at offset %d differs by %.3e", p, we);
        }
        free(ref);
        free(ids);
    }
    free(out);
    free(logits);
    runner_fini(&r);
    cJSON_Delete(exp);
}

static void test_reference_all_cases(void **state)
{
    (void)state;
    char path[1024];
    snprintf(path, sizeof path, "%s/manifest.json", BRAID_MODELS_DIR);
    cJSON *man = test_load_json(path);
    if (!man) {
        print_message("SKIP: %s missing (tests/fixtures/gen_fixtures.py makes it)\n", path);
        skip();
    }
    const cJSON *cases = cJSON_GetObjectItem(man, "cases");
    assert_true(cJSON_GetArraySize(cases) >= 6);
    const cJSON *c;
    cJSON_ArrayForEach(c, cases)
    {
        check_case(cJSON_GetObjectItem(c, "name")->valuestring,
                   cJSON_GetObjectItem(c, "model")->valuestring,
                   cJSON_GetObjectItem(c, "expected")->valuestring);
    }
    cJSON_Delete(man);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_reference_all_cases)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
