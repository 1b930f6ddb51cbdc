/*
 * test_split.c - split-KV (flash-decoding) attention on the CUDA backend
 * against the CPU backend at long contexts: four 1024-token chunks written
 * on their own (pages out of order), then one decode batch whose sequences
 * attend 1, 1025, 2048 and 4096 keys over up to five levels (so most of the
 * 64 slices of the short ones are empty), and a prefill over two levels (one
 * slice per token). GQA groups 1, 2, 4 and 8 with head_dim 64, 128 and 256
 * (every instance of the split kernel's group and width), bf16 and fp16 KV
 * (GPU_DTYPE picks one). Output within 1e-2 relative error, no NaN left from
 * the poisoned output.
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_ops.h"

#define CHUNK   1024
#define N_CHUNK 4
#define STEP    512

static void check_config(int n_head, int n_kv_head, int hd)
{
    const int pages_per_chunk = CHUNK / 16, n_pages = N_CHUNK * pages_per_chunk + 16;
    ops_fx x;
    ops_fx_init(&x, n_head, n_kv_head, hd, 16, n_pages, STEP);
    /* Chunk pages: a shuffled permutation of 0..N_CHUNK*64-1. */
    static int32_t perm[N_CHUNK * (CHUNK / 16)];
    for (int i = 0; i < N_CHUNK * pages_per_chunk; i++)
        perm[i] = i;
    for (int i = N_CHUNK * pages_per_chunk - 1; i > 0; i--) {
        int j = rand() % (i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    static int32_t tok[STEP];
    double e_fill = 0;
    for (int c = 0; c < N_CHUNK; c++)
        for (int t0 = 0; t0 < CHUNK; t0 += STEP) {
            eng_fwd_seq s = {NULL, 0, perm + c * pages_per_chunk, 0, t0, STEP, ENG_LOGITS_NONE};
            eng_fwd_batch b = {tok, STEP, &s, 1};
            double e = ops_both(&x, &b);
            e_fill = e > e_fill ? e : e_fill;
        }
    const int32_t *cp[N_CHUNK];
    for (int c = 0; c < N_CHUNK; c++)
        cp[c] = perm + c * pages_per_chunk;
    const int32_t base = N_CHUNK * pages_per_chunk;
    const int32_t t0[] = {base}, t1[] = {base + 1}, t2[] = {base + 2}, t3[] = {base + 3},
                  tp[] = {base + 4, base + 5, base + 6, base + 7, base + 8, base + 9, base + 10};
    /* s0: all four chunks (the last 1023 long) + its token = 4096 keys; s1:
     * its token alone; s2: chunk 1 at 0 + its token; s3: chunks 3 and 0 in
     * that order + its token. */
    eng_seg all[N_CHUNK], one[] = {{cp[1], CHUNK, 0, 0}},
                          two[] = {{cp[3], CHUNK, 0, 0}, {cp[0], CHUNK, CHUNK, 0}};
    for (int c = 0; c < N_CHUNK; c++)
        all[c] = (eng_seg){cp[c], c + 1 < N_CHUNK ? CHUNK : CHUNK - 1, c * CHUNK, 0};
    eng_fwd_seq dec[] = {
        {all, N_CHUNK, t0, N_CHUNK * CHUNK - 1, 0, 1, ENG_LOGITS_NONE},
        {NULL, 0, t1, 0, 0, 1, ENG_LOGITS_NONE},
        {one, 1, t2, CHUNK, 0, 1, ENG_LOGITS_NONE},
        {two, 2, t3, 2 * CHUNK, 0, 1, ENG_LOGITS_NONE},
    };
    eng_fwd_batch db = {tok, 4, dec, 4};
    double e_dec = ops_both(&x, &db);
    /* A 100-token prefill over chunks 2 and 1, then a decode of it. */
    eng_seg pre[] = {{cp[2], CHUNK, 0, 0}, {cp[1], CHUNK, CHUNK, 0}};
    eng_fwd_seq ps = {pre, 2, tp, 2 * CHUNK, 0, 100, ENG_LOGITS_NONE};
    eng_fwd_batch pb = {tok, 100, &ps, 1};
    double e_pre = ops_both(&x, &pb);
    ps.tail_len = 100;
    ps.n_new = 1;
    pb.n_tokens = 1;
    double e_pdec = ops_both(&x, &pb);
    printf("  heads %2d/%d hd %3d: fill %.2e, decode 1..4096 keys %.2e, prefill over 2 levels "
           "%.2e, its decode %.2e\n",
           n_head, n_kv_head, hd, e_fill, e_dec, e_pre, e_pdec);
    EXPECT(e_fill <= 1e-2 && e_dec <= 1e-2 && e_pre <= 1e-2 && e_pdec <= 1e-2, "rel_err over 1e-2");
    ops_fx_fini(&x);
}

int main(void)
{
    gpu_begin("test_split");
    krn_dtype dts[2];
    for (int i = 0, n = gpu_dtypes(dts); i < n; i++) {
        gpu_use_dtype(dts[i]);
        check_config(8, 1, 64);  /* group 8 */
        check_config(8, 2, 128); /* group 4 */
        check_config(4, 2, 128); /* group 2 */
        check_config(2, 2, 256); /* group 1 */
        check_config(12, 4, 64); /* group 3 (in the 4-wide instance) */
    }
    CUDA_OR_DIE(cudaDeviceSynchronize());
    return gpu_end("test_split");
}
