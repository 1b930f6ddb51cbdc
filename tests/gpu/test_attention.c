/*
 * test_attention.c - RoPE + paged KV write and paged attention on the CUDA
 * backend against the CPU backend, through the op table: decode and prefill
 * sequences in one batch, several cascade levels per sequence (chunks placed
 * at offsets through differential RoPE), pages out of order, GQA groups of 1,
 * 4, 7 and 16 (the last on the tiled kernel), head_dim 64 and 128; bf16 and fp16 KV (GPU_DTYPE
 * picks one). Output within 1e-2 relative error, no NaN left from the poisoned output. Pages
 * outside the pool are refused. Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_ops.h"

static void check_config(int n_head, int n_kv_head, int hd)
{
    ops_fx x;
    ops_fx_init(&x, n_head, n_kv_head, hd, 16, 64, 128);
    /* Fill: chunk A (40 tokens, pages 3 0 7), chunk B (23, pages 5 9) and
     * Y's first 5 tail tokens, as three causal prefills. */
    const int32_t pa[] = {3, 0, 7}, pb[] = {5, 9}, py[] = {12}, px[] = {20, 21}, pz[] = {30};
    int32_t tok[128] = {0};
    eng_fwd_seq fill[] = {
        {NULL, 0, pa, 0, 0, 40, ENG_LOGITS_NONE},
        {NULL, 0, pb, 0, 0, 23, ENG_LOGITS_NONE},
        {NULL, 0, py, 23, 0, 5, ENG_LOGITS_NONE},
    };
    eng_fwd_batch b1 = {tok, 68, fill, 3};
    double e1 = ops_both(&x, &b1);
    /* Then: X prefills 20 tokens over A and B (B placed at 40, rotated from
     * 0: differential RoPE), Y decodes over B and its 5-token tail, Z decodes
     * over A and B with an empty tail. */
    eng_seg ab[] = {{pa, 40, 0, 0}, {pb, 23, 40, 0}}, bonly[] = {{pb, 23, 0, 0}};
    eng_fwd_seq step[] = {
        {ab, 2, px, 63, 0, 20, ENG_LOGITS_NONE},
        {bonly, 1, py, 23, 5, 1, ENG_LOGITS_NONE},
        {ab, 2, pz, 63, 0, 1, ENG_LOGITS_NONE},
    };
    eng_fwd_batch b2 = {tok, 22, step, 3};
    double e2 = ops_both(&x, &b2);
    printf("  heads %2d/%d hd %3d: prefill rel_err %.2e, cascade prefill+decode rel_err %.2e\n",
           n_head, n_kv_head, hd, e1, e2);
    EXPECT(e1 <= 1e-2 && e2 <= 1e-2, "rel_err %.3e / %.3e over 1e-2", e1, e2);

    /* A page id outside the pool is refused before anything runs. */
    const int32_t bad[] = {64};
    eng_fwd_seq bs = {NULL, 0, bad, 0, 0, 1, ENG_LOGITS_NONE};
    eng_fwd_batch bb = {tok, 1, &bs, 1};
    int32_t s0 = 0, p0 = 0, i0 = 0, nl = 0;
    eng_plan plan = {&bb, &s0, &p0, &i0, &nl, 0};
    EXPECT(x.gpu.b->ops->begin(x.gpu.b, &plan) == BI_INVALID_ARGUMENT, "page 64 of 64 accepted");
    ops_fx_fini(&x);
}

int main(void)
{
    gpu_begin("test_attention");
    krn_dtype dts[2];
    for (int i = 0, n = gpu_dtypes(dts); i < n; i++) {
        gpu_use_dtype(dts[i]);
        check_config(8, 2, 64);
        check_config(14, 2, 64);
        check_config(16, 16, 128);
        check_config(32, 8, 128);
        check_config(16, 1, 64); /* group 16: the tiled kernel, not the split one */
    }
    CUDA_OR_DIE(cudaDeviceSynchronize());
    return gpu_end("test_attention");
}
