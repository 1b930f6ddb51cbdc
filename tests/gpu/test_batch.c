/*
 * test_batch.c - 64 different sequences generated in one batch each get the
 * greedy tokens they get alone, on the CUDA backend (the llama-tiny fixture):
 * one prefill step for all 64 prompts (4..36 tokens), then 11 decode steps of
 * 64 tokens, against each sequence run on its own, in bf16 and in fp16
 * (GPU_DTYPE picks one). A different batch can pick a different GEMM
 * algorithm, so 16-bit rounding may flip a near-tie: a
 * divergence is tolerated only where the alone run's top-2 margin is under
 * 1e-2 of its largest logit, and reported either way.
 *   test_batch [MODELS_DIR]   (default tests/fixtures/models)
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_engine.h"

#define NSEQ      64
#define NGEN      12
#define PAGES_PER 4

typedef struct seq {
    int32_t prompt[40];
    int n;
    int32_t alone[NGEN], batch[NGEN];
    float margin[NGEN]; /* alone run's top-2 margin before each token */
} seq;

static void run_batch(const char *dir)
{
    char path[4096], err[512];
    snprintf(path, sizeof path, "%s/llama-tiny", dir);
    eng_model *m;
    if (eng_model_load(path, NULL, &m, err, sizeof err) != BI_OK) {
        printf("FAIL load %s: %s\n", path, err);
        exit(1);
    }
    gpu_model g;
    gpu_model_open(&g, m, "cuda", NSEQ * PAGES_PER, NSEQ * 40);
    const int V = m->cfg.vocab_size;
    static seq s[NSEQ];
    static int32_t pages[NSEQ * PAGES_PER];
    for (int i = 0; i < NSEQ * PAGES_PER; i++)
        pages[i] = i;
    float *logits = malloc(sizeof(float) * (size_t)V * NSEQ);

    /* alone */
    for (int i = 0; i < NSEQ; i++) {
        s[i].n = 4 + rand() % 33;
        for (int t = 0; t < s[i].n; t++)
            s[i].prompt[t] = rand() % V;
        const int32_t *pg = pages + i * PAGES_PER;
        bi_status st = gpu_model_run(&g, pg, 0, s[i].prompt, s[i].n, ENG_LOGITS_LAST, logits);
        for (int k = 0; k < NGEN && st == BI_OK; k++) {
            s[i].alone[k] = argmax(logits, V);
            s[i].margin[k] = (float)top_margin(logits, V);
            if (k + 1 < NGEN)
                st = gpu_model_run(&g, pg, s[i].n + k, &s[i].alone[k], 1, ENG_LOGITS_LAST, logits);
        }
        EXPECT(st == BI_OK, "alone run %d: %s", i, bi_strerror(st));
    }

    /* batched: the same pages, rewritten */
    static int32_t tok[NSEQ * 40];
    eng_fwd_seq fs[NSEQ];
    int32_t nt = 0;
    for (int i = 0; i < NSEQ; i++) {
        memcpy(tok + nt, s[i].prompt, sizeof(int32_t) * s[i].n);
        nt += s[i].n;
        fs[i] = (eng_fwd_seq){NULL, 0, pages + i * PAGES_PER, 0, 0, s[i].n, ENG_LOGITS_LAST};
    }
    eng_fwd_batch b = {tok, nt, fs, NSEQ};
    memset(logits, 0xFF, sizeof(float) * (size_t)V * NSEQ);
    bi_status st = eng_forward_run(g.f, &b, logits);
    for (int k = 0; k < NGEN && st == BI_OK; k++) {
        for (int i = 0; i < NSEQ; i++) {
            s[i].batch[k] = argmax(logits + (size_t)i * V, V);
            tok[i] = s[i].batch[k];
            fs[i].tail_len = s[i].n + k;
            fs[i].n_new = 1;
        }
        if (k + 1 < NGEN) {
            b.n_tokens = NSEQ;
            st = eng_forward_run(g.f, &b, logits);
        }
    }
    EXPECT(st == BI_OK, "batched run: %s", bi_strerror(st));

    int same = 0, ties = 0, hard = 0;
    for (int i = 0; i < NSEQ; i++) {
        int k = 0;
        while (k < NGEN && s[i].alone[k] == s[i].batch[k])
            k++;
        if (k == NGEN) {
            same++;
            continue;
        }
        bool tie = s[i].margin[k] < 1e-2f;
        ties += tie;
        hard += !tie;
        printf("  seq %d diverges at token %d (alone %d, batched %d, margin %.2e)%s\n", i, k,
               s[i].alone[k], s[i].batch[k], s[i].margin[k], tie ? " near-tie" : "");
    }
    printf("  %d/%d sequences identical to their alone run (%d tokens each); %d near-tie "
           "flips, %d clear divergences\n",
           same, NSEQ, NGEN, ties, hard);
    EXPECT(hard == 0, "%d sequences diverge with a clear margin", hard);
    free(logits);
    gpu_model_close(&g);
}

int main(int argc, char **argv)
{
    gpu_begin("test_batch");
    const char *dir = argc > 1 ? argv[1] : "tests/fixtures/models";
    krn_dtype dts[2];
    for (int i = 0, n = gpu_dtypes(dts); i < n; i++) {
        gpu_use_dtype(dts[i]);
        run_batch(dir);
    }
    return gpu_end("test_batch");
}
