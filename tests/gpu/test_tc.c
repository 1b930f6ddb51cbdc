/*
 * test_tc.c - the tensor-core attention paths against the CPU reference:
 * prefill tiles (segments placed by differential RoPE, then the causal tail,
 * several sequences and decodes in one step) and shared cascade levels (many
 * decode sequences holding the same chunk at different positions, read once
 * for all of them and merged with each sequence's own levels), for groups of
 * 1, 2, 4, 7 and 8 query heads per kv head and head_dim 64 and 128, with the
 * bf16 and the fp16 mma (GPU_DTYPE picks one). Each step
 * also checks that the backend split it as intended (tensor-core jobs,
 * shared members), so a fallback cannot pass for the path under test. A
 * short prompt after long levels is split over its keys like the decodes.
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_ops.h"

#define PAGE    16
#define N_PAGES 1024
#define MAX_TOK 2048

static int next_page;

static int32_t *take_pages(int32_t tokens)
{
    int n = (tokens + PAGE - 1) / PAGE;
    int32_t *p = malloc(sizeof(int32_t) * (n ? n : 1));
    for (int i = 0; i < n; i++)
        p[i] = next_page++;
    if (next_page > N_PAGES) {
        printf("FAIL test bug: out of pages\n");
        exit(1);
    }
    return p;
}

static eng_attn_split split_of(ops_fx *x)
{
    eng_attn_split s = {0};
    if (x->gpu.b->ops->attn_split)
        x->gpu.b->ops->attn_split(x->gpu.b, &s);
    return s;
}

/* Writes a chunk of len tokens at local positions 0.. on both sides. */
static int32_t *fill_chunk(ops_fx *x, int32_t len, int32_t *tok)
{
    int32_t *pages = take_pages(len);
    eng_fwd_seq s = {NULL, 0, pages, 0, 0, len, ENG_LOGITS_NONE};
    eng_fwd_batch b = {tok, len, &s, 1};
    double e = ops_both(x, &b);
    EXPECT(e <= 1e-2, "chunk fill %d tokens: rel err %.2e", len, e);
    return pages;
}

static void prefill_case(int nh, int nkv, int hd)
{
    ops_fx x;
    next_page = 0;
    ops_fx_init(&x, nh, nkv, hd, PAGE, N_PAGES, MAX_TOK);
    static int32_t tok[MAX_TOK];
    int32_t *a = fill_chunk(&x, 100, tok), *bp = fill_chunk(&x, 37, tok);
    eng_seg segs[2] = {{a, 100, 0, 0}, {bp, 37, 100, 0}};
    int32_t *tail = take_pages(300), *tail2 = take_pages(64), *tail3 = take_pages(64);

    /* A 50-token piece after the two levels, then 130 more (chunked prefill). */
    eng_fwd_seq s1 = {segs, 2, tail, 137, 0, 50, ENG_LOGITS_NONE};
    eng_fwd_batch b1 = {tok, 50, &s1, 1};
    double e1 = ops_both(&x, &b1);
    eng_attn_split sp = split_of(&x);
    EXPECT(sp.tc_jobs > 0 && sp.per_token == 0, "first piece: %d tc jobs, %d per-token", sp.tc_jobs,
           sp.per_token);
    s1.tail_len = 50;
    s1.n_new = 130;
    b1.n_tokens = 130;
    double e2 = ops_both(&x, &b1);

    /* One step: the long sequence continues (70 tokens), a second sequence
     * starts with one level (40 tokens), a third holds 3 tokens, and the
     * second's last token is a decode in the next step. */
    eng_seg seg_a[1] = {{a, 100, 0, 0}};
    eng_fwd_seq mix[3] = {{segs, 2, tail, 137, 180, 70, ENG_LOGITS_NONE},
                          {seg_a, 1, tail2, 100, 0, 40, ENG_LOGITS_NONE},
                          {NULL, 0, tail3, 0, 0, 3, ENG_LOGITS_NONE}};
    eng_fwd_batch bm = {tok, 113, mix, 3};
    double e3 = ops_both(&x, &bm);
    eng_fwd_seq dec[2] = {{seg_a, 1, tail2, 100, 40, 1, ENG_LOGITS_NONE},
                          {segs, 2, tail, 137, 250, 20, ENG_LOGITS_NONE}};
    eng_fwd_batch bd = {tok, 21, dec, 2};
    double e4 = ops_both(&x, &bd);
    sp = split_of(&x);
    EXPECT(sp.tc_jobs > 0 && sp.per_token >= 1, "decode + prefill: %d tc jobs, %d per-token",
           sp.tc_jobs, sp.per_token);
    printf("  prefill h%d/kv%d/d%d: 50 after levels %.2e, +130 %.2e, mixed %.2e, decode+20 %.2e\n",
           nh, nkv, hd, e1, e2, e3, e4);
    EXPECT(e1 <= 1e-2 && e2 <= 1e-2 && e3 <= 1e-2 && e4 <= 1e-2, "prefill tiles differ from cpu");
    free(a), free(bp), free(tail), free(tail2), free(tail3);
    ops_fx_fini(&x);
}

/* n_dec decode sequences hold chunk S (700 tokens) at position 0 or 13, half
 * of them also chunk R (300 tokens) after it; each has its own tail; one more
 * sequence holds an unshared chunk. */
static void shared_case(int nh, int nkv, int hd, int n_dec)
{
    ops_fx x;
    next_page = 0;
    ops_fx_init(&x, nh, nkv, hd, PAGE, N_PAGES, MAX_TOK);
    static int32_t tok[MAX_TOK];
    int32_t *S = fill_chunk(&x, 700, tok), *R = fill_chunk(&x, 300, tok),
            *U = fill_chunk(&x, 90, tok);
    const int n = n_dec + 1;
    eng_seg(*segs)[2] = malloc(sizeof *segs * n);
    eng_fwd_seq *seqs = malloc(sizeof *seqs * n);
    int32_t **tails = malloc(sizeof *tails * n);
    int32_t filled = 0;
    for (int i = 0; i < n; i++) {
        int32_t off = i % 3 == 1 ? 13 : 0, tl = 1 + (i * 7) % 40;
        tails[i] = take_pages(tl + 1);
        if (i < n_dec) {
            segs[i][0] = (eng_seg){S, 700, off, 0};
            segs[i][1] = (eng_seg){R, 300, off + 700, 0};
            seqs[i] =
                (eng_fwd_seq){segs[i], i % 2 ? 2 : 1,  tails[i], off + (i % 2 ? 1000 : 700), 0,
                              tl,      ENG_LOGITS_NONE};
        } else {
            segs[i][0] = (eng_seg){U, 90, 0, 0};
            seqs[i] = (eng_fwd_seq){segs[i], 1, tails[i], 90, 0, tl, ENG_LOGITS_NONE};
        }
        filled += tl;
    }
    /* the tails, in one prefill step */
    eng_fwd_batch bf = {tok, filled, seqs, n};
    double ef = ops_both(&x, &bf);
    for (int i = 0; i < n; i++) {
        seqs[i].tail_len = seqs[i].n_new;
        seqs[i].n_new = 1;
    }
    eng_fwd_batch bd = {tok, n, seqs, n};
    double ed = ops_both(&x, &bd);
    eng_attn_split sp = split_of(&x);
    printf("  shared h%d/kv%d/d%d x%d: tails %.2e, decode %.2e (%d tc jobs, %d shared rows, "
           "%d per-token, split %d, %d slots)\n",
           nh, nkv, hd, n_dec, ef, ed, sp.tc_jobs, sp.shared_members, sp.per_token, sp.n_split,
           sp.n_slots);
    EXPECT(sp.shared_members >= n_dec + n_dec / 2 && sp.per_token == n,
           "the shared levels did not go to shared jobs");
    EXPECT(ef <= 1e-2 && ed <= 1e-2, "shared cascade differs from cpu");
    for (int i = 0; i < n; i++)
        free(tails[i]);
    free(tails), free(seqs), free(segs), free(S), free(R), free(U);
    ops_fx_fini(&x);
}

/* A short prompt after long levels, beside a decode: too few prefill tiles
 * to fill the GPU, so the prompt's tokens are cut over their keys like
 * decodes and merged (with the decode on the split kernel where the group is
 * small). */
static void split_prefill_case(int nh, int nkv, int hd)
{
    ops_fx x;
    next_page = 0;
    ops_fx_init(&x, nh, nkv, hd, PAGE, N_PAGES, MAX_TOK);
    static int32_t tok[MAX_TOK];
    int32_t *S = fill_chunk(&x, 700, tok), *R = fill_chunk(&x, 300, tok);
    eng_seg segs[2] = {{S, 700, 0, 0}, {R, 300, 700, 0}}, seg1[1] = {{S, 700, 5, 0}};
    int32_t *t0 = take_pages(64), *t1 = take_pages(64);
    eng_fwd_seq fill = {seg1, 1, t1, 705, 0, 30, ENG_LOGITS_NONE};
    eng_fwd_batch bf = {tok, 30, &fill, 1};
    double ef = ops_both(&x, &bf);
    eng_fwd_seq mix[2] = {{segs, 2, t0, 1000, 0, 40, ENG_LOGITS_NONE},
                          {seg1, 1, t1, 705, 30, 1, ENG_LOGITS_NONE}};
    eng_fwd_batch bm = {tok, 41, mix, 2};
    double em = ops_both(&x, &bm);
    eng_attn_split sp = split_of(&x);
    printf("  split prefill h%d/kv%d/d%d: decode tail %.2e, 40 after 1000 keys + decode %.2e "
           "(%d tc jobs, %d member rows, %d merged, split %d)\n",
           nh, nkv, hd, ef, em, sp.tc_jobs, sp.shared_members, sp.per_token, sp.n_split);
    EXPECT(sp.per_token == 41 && sp.shared_members >= 40, "the prompt was not split over its keys");
    EXPECT(ef <= 1e-2 && em <= 1e-2, "split prefill differs from cpu");
    free(S), free(R), free(t0), free(t1);
    ops_fx_fini(&x);
}

int main(void)
{
    gpu_begin("test_tc");
    const int shapes[][3] = {{8, 8, 64}, {16, 8, 128}, {32, 8, 128}, {32, 4, 64}, {14, 2, 64}};
    krn_dtype dts[2];
    for (int d = 0, n = gpu_dtypes(dts); d < n; d++) {
        gpu_use_dtype(dts[d]);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            prefill_case(shapes[i][0], shapes[i][1], shapes[i][2]);
        split_prefill_case(16, 8, 128);
        split_prefill_case(32, 4, 64);
        shared_case(32, 4, 64, 64);
        shared_case(32, 8, 128, 40);
        shared_case(14, 2, 64, 9);
        shared_case(8, 8, 64, 2);
    }
    return gpu_end("test_tc");
}
