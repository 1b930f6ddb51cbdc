/*
 * test_cascade.c - cascade attention equals flat attention over the
 * concatenated KV. Three chunks (30, 45 and 17 tokens) are written on their
 * own at local positions 0.. (as INDEPENDENT chunks are) and attended as three
 * levels placed at 0, 30 and 75 through differential RoPE; the same keys and
 * values written as one 92-token tail at positions 0..91 are the flat case.
 * Decode (1 query) and prefill (8 queries, causal) on the CUDA backend, each
 * checked against the flat GPU result and the flat CPU result, with bf16 and
 * fp16 KV (GPU_DTYPE picks one).
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_ops.h"

#define HD  64
#define NH  8
#define NKV 2
#define KVW (NKV * HD)
#define QW  (NH * HD)

static void run_case(int n_q)
{
    ops_fx x;
    ops_fx_init(&x, NH, NKV, HD, 16, 64, 128);
    const int len[3] = {30, 45, 17}, N = 92;
    float *k = malloc(sizeof(float) * (N + n_q) * KVW),
          *v = malloc(sizeof(float) * (N + n_q) * KVW), *q = malloc(sizeof(float) * (N + n_q) * QW),
          *junk = malloc(sizeof(float) * N * QW);
    float *flat_gpu = malloc(sizeof(float) * n_q * QW),
          *flat_cpu = malloc(sizeof(float) * n_q * QW), *casc = malloc(sizeof(float) * n_q * QW);
    fill_rand(k, (size_t)(N + n_q) * KVW, 2.0f);
    fill_rand(v, (size_t)(N + n_q) * KVW, 1.0f);
    fill_rand(q, (size_t)(N + n_q) * QW, 2.0f);
    int32_t tok[128] = {0};

    /* Flat: pages 0..6 hold the whole composition, then the queries. */
    const int32_t flat_pages[] = {0, 1, 2, 3, 4, 5, 6};
    eng_fwd_seq fs = {NULL, 0, flat_pages, 0, 0, N, ENG_LOGITS_NONE};
    eng_fwd_batch fb = {tok, N, &fs, 1};
    eng_fwd_seq fq = {NULL, 0, flat_pages, 0, N, n_q, ENG_LOGITS_NONE};
    eng_fwd_batch fqb = {tok, n_q, &fq, 1};
    for (int side = 0; side < 2; side++) {
        ops_side *s = side ? &x.gpu : &x.cpu;
        EXPECT(ops_side_step(&x, s, &fb, q, k, v, junk) == BI_OK, "flat fill");
        EXPECT(ops_side_step(&x, s, &fqb, q + (size_t)N * QW, k + (size_t)N * KVW,
                             v + (size_t)N * KVW, side ? flat_gpu : flat_cpu) == BI_OK,
               "flat query");
    }

    /* Cascade: each chunk on fresh pages at local positions, then the
     * queries over three levels and a tail at position 92. */
    const int32_t c0[] = {10, 11}, c1[] = {20, 21, 22}, c2[] = {30, 31}, tail[] = {40};
    const int32_t *cp[3] = {c0, c1, c2};
    int off = 0;
    eng_seg segs[3];
    for (int c = 0; c < 3; c++) {
        eng_fwd_seq cs = {NULL, 0, cp[c], 0, 0, len[c], ENG_LOGITS_NONE};
        eng_fwd_batch cb = {tok, len[c], &cs, 1};
        EXPECT(ops_side_step(&x, &x.gpu, &cb, q, k + (size_t)off * KVW, v + (size_t)off * KVW,
                             junk) == BI_OK,
               "chunk fill");
        segs[c] = (eng_seg){cp[c], len[c], off, 0};
        off += len[c];
    }
    eng_fwd_seq qs = {segs, 3, tail, N, 0, n_q, ENG_LOGITS_NONE};
    eng_fwd_batch qb = {tok, n_q, &qs, 1};
    EXPECT(ops_side_step(&x, &x.gpu, &qb, q + (size_t)N * QW, k + (size_t)N * KVW,
                         v + (size_t)N * KVW, casc) == BI_OK,
           "cascade query");
    double e_gpu = rel_err(casc, flat_gpu, (size_t)n_q * QW);
    double e_cpu = rel_err(casc, flat_cpu, (size_t)n_q * QW);
    double e_flat = rel_err(flat_gpu, flat_cpu, (size_t)n_q * QW);
    printf("  %d quer%s: cascade vs flat (gpu) %.2e, vs flat (cpu) %.2e; flat gpu vs cpu %.2e\n",
           n_q, n_q == 1 ? "y" : "ies", e_gpu, e_cpu, e_flat);
    EXPECT(e_gpu <= 1e-2 && e_cpu <= 1e-2 && e_flat <= 1e-2, "cascade differs from flat");
    free(k), free(v), free(q), free(junk), free(flat_gpu), free(flat_cpu), free(casc);
    ops_fx_fini(&x);
}

int main(void)
{
    gpu_begin("test_cascade");
    krn_dtype dts[2];
    for (int i = 0, n = gpu_dtypes(dts); i < n; i++) {
        gpu_use_dtype(dts[i]);
        run_case(1);
        run_case(8);
    }
    return gpu_end("test_cascade");
}
