/*
 * test_gemv.c - the small-step projection kernels (krn_gemv.h) against CPU
 * references in double, on fresh random inputs with poisoned outputs, for M
 * = 1, 3, 8 and 16 tokens and the shapes of TinyLlama, Qwen3-0.6B (QK-norm,
 * head_dim 128), a biased Qwen2-0.5B and a head_dim-256 model with bias and
 * QK-norm, with bf16 and fp16 weights (GPU_DTYPE picks one): the plain
 * projection (+ bias) and the residual add (fp32 out, within 1e-3: exact
 * 16-bit inputs, fp32 accumulation), the fused RMSNorm + gate|up + SwiGLU
 * (16-bit out, within 1e-2), and the fused
 * RMSNorm + QKV + bias + QK-norm + RoPE + paged KV write (within 1e-2; every
 * K/V slot outside the step's must keep its poison). A long-K case forces
 * K to be split across blocks and is run twice: the results must be equal
 * bit for bit (the slices are added in a fixed order). Bad sizes are
 * refused. Exit 0 pass, 1 fail, 77 no GPU.
 */
#include "gpu_util.h"

#include "cuda/krn_gemv.h"

typedef struct shape {
    const char *name;
    int d, nh, nkv, hd, ff;
    bool bias, qk_norm;
} shape;

/* The launch settings every check runs under: the backend's (about one
 * block per SM walking the items), every item its own block, and a
 * pretend 6-SM device (each block walks many items, split groups among
 * them). */
#define N_CFG 3
static krn_gemv_ws cfgs[N_CFG], ws;
static const char *cfg_name[N_CFG] = {"1/SM", "all", "6 SMs"};

/* Random values already representable in the type under test, as floats
 * and as its 16 bits. */
static void rand_half(float *f, uint16_t *h, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = to_half(frand() * scale, gpu_dt);
        f[i] = from_half(h[i], gpu_dt);
    }
}

/* h = rmsnorm(x) * g in double, M rows of K. */
static void ref_norm(double *h, const float *x, const float *g, int M, int K, float eps)
{
    for (int m = 0; m < M; m++) {
        double ss = 0;
        for (int k = 0; k < K; k++)
            ss += (double)x[(size_t)m * K + k] * x[(size_t)m * K + k];
        double s = 1.0 / sqrt(ss / K + eps);
        for (int k = 0; k < K; k++)
            h[(size_t)m * K + k] = x[(size_t)m * K + k] * s * g[k];
    }
}

/* y[m][n] = sum_k a[m][k] w[n][k] in double. */
static void ref_mm(double *y, const double *a, const float *w, int M, int N, int K)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            const double *ar = a + (size_t)m * K;
            const float *wr = w + (size_t)n * K;
            for (int k = 0; k < K; k++)
                s += ar[k] * wr[k];
            y[(size_t)m * N + n] = s;
        }
}

static double rel_err_d(const float *out, const double *ref, size_t n)
{
    float *r = malloc(n * sizeof *r);
    for (size_t i = 0; i < n; i++)
        r[i] = (float)ref[i];
    double e = rel_err(out, r, n);
    free(r);
    return e;
}

/* Plain projection with bias, then the residual add. */
static void check_plain(const char *name, int M, int N, int K)
{
    float *xf = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K),
          *b = malloc(sizeof(float) * N), *y0 = malloc(sizeof(float) * M * N),
          *out = malloc(sizeof(float) * M * N);
    uint16_t *xh = malloc(2u * M * K), *wh = malloc(2u * N * K);
    double *xd = malloc(sizeof(double) * M * K), *ref = malloc(sizeof(double) * M * N);
    rand_half(xf, xh, (size_t)M * K, 1.0f);
    rand_half(wf, wh, (size_t)N * K, 0.1f);
    fill_rand(b, N, 1.0f);
    fill_rand(y0, (size_t)M * N, 2.0f);
    for (size_t i = 0; i < (size_t)M * K; i++)
        xd[i] = xf[i];
    ref_mm(ref, xd, wf, M, N, K);
    void *dx = dev_upload(xh, 2u * M * K), *dw = dev_upload(wh, 2u * N * K);
    float *db = dev_upload(b, sizeof(float) * N), *dy = dev_poisoned(sizeof(float) * M * N);

    double *refa = malloc(sizeof(double) * M * N);
    for (size_t i = 0; i < (size_t)M * N; i++) {
        refa[i] = ref[i] + y0[i];
        ref[i] += b[i % N];
    }
    double e = 0, e2 = 0;
    for (int cf = 0; cf < N_CFG; cf++) {
        ws = cfgs[cf];
        CUDA_OR_DIE(cudaMemset(dy, 0xFF, sizeof(float) * M * N));
        bi_status st = krn_gemv(&ws, dy, dx, dw, db, false, M, N, K, gpu_dt, 0);
        CUDA_OR_DIE(cudaDeviceSynchronize());
        CUDA_OR_DIE(cudaMemcpy(out, dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
        double ec = rel_err_d(out, ref, (size_t)M * N);
        CUDA_OR_DIE(cudaMemcpy(dy, y0, sizeof(float) * M * N, cudaMemcpyHostToDevice));
        bi_status st2 = krn_gemv(&ws, dy, dx, dw, NULL, true, M, N, K, gpu_dt, 0);
        CUDA_OR_DIE(cudaDeviceSynchronize());
        CUDA_OR_DIE(cudaMemcpy(out, dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
        double ec2 = rel_err_d(out, refa, (size_t)M * N);
        EXPECT(st == BI_OK && st2 == BI_OK, "%s gemv M %d (%s): %s, %s", name, M, cfg_name[cf],
               bi_strerror(st), bi_strerror(st2));
        EXPECT(ec <= 1e-3 && ec2 <= 1e-3, "%s gemv M %d N %d K %d (%s): rel_err %.3e / %.3e", name,
               M, N, K, cfg_name[cf], ec, ec2);
        e = ec > e ? ec : e;
        e2 = ec2 > e2 ? ec2 : e2;
    }
    printf("  %-12s gemv     M %2d N %5d K %5d: +bias rel_err %.2e, add %.2e\n", name, M, N, K, e,
           e2);
    free(refa);
    cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
    free(xf), free(wf), free(b), free(y0), free(out), free(xh), free(wh), free(xd), free(ref);
}

/* RMSNorm + gate|up + SwiGLU. */
static void check_swiglu(const char *name, int M, int ff, int K)
{
    const float eps = 1e-5f;
    float *x = malloc(sizeof(float) * M * K), *g = malloc(sizeof(float) * K),
          *wf = malloc(sizeof(float) * 2 * ff * K), *out = malloc(sizeof(float) * M * ff);
    uint16_t *wh = malloc(2u * 2 * ff * K);
    double *h = malloc(sizeof(double) * M * K), *y = malloc(sizeof(double) * M * 2 * ff),
           *ref = malloc(sizeof(double) * M * ff);
    fill_rand(x, (size_t)M * K, 3.0f);
    for (int k = 0; k < K; k++)
        g[k] = 0.5f + frand() * 0.4f;
    rand_half(wf, wh, (size_t)2 * ff * K, 0.05f);
    ref_norm(h, x, g, M, K, eps);
    ref_mm(y, h, wf, M, 2 * ff, K); /* gate rows, then up rows */
    for (int m = 0; m < M; m++)
        for (int f = 0; f < ff; f++) {
            double gt = y[(size_t)m * 2 * ff + f], up = y[(size_t)m * 2 * ff + ff + f];
            ref[(size_t)m * ff + f] = gt / (1.0 + exp(-gt)) * up;
        }
    float *dx = dev_upload(x, sizeof(float) * M * K), *dg = dev_upload(g, sizeof(float) * K);
    uint16_t *dw = dev_upload(wh, 2u * 2 * ff * K);
    void *dout = dev_poisoned(2u * M * ff);
    double e = 0;
    for (int cf = 0; cf < N_CFG; cf++) {
        ws = cfgs[cf];
        CUDA_OR_DIE(cudaMemset(dout, 0xFF, 2u * M * ff));
        bi_status st =
            krn_gemv_swiglu(&ws, dout, dx, dg, eps, dw, dw + (size_t)ff * K, M, ff, K, gpu_dt, 0);
        CUDA_OR_DIE(cudaDeviceSynchronize());
        download_half(out, dout, (size_t)M * ff, gpu_dt);
        double ec = rel_err_d(out, ref, (size_t)M * ff);
        EXPECT(st == BI_OK, "%s swiglu M %d (%s): %s", name, M, cfg_name[cf], bi_strerror(st));
        EXPECT(ec <= 1e-2, "%s swiglu M %d (%s): rel_err %.3e", name, M, cfg_name[cf], ec);
        e = ec > e ? ec : e;
    }
    printf("  %-12s swiglu   M %2d ff %5d K %5d: rel_err %.2e\n", name, M, ff, K, e);
    cudaFree(dx), cudaFree(dg), cudaFree(dw), cudaFree(dout);
    free(x), free(g), free(wf), free(out), free(wh), free(h), free(y), free(ref);
}

#define PS 16 /* page size */

/* The fused attention input for M tokens of two sequences (tails on
 * scattered pages, at different positions). */
static void check_qkv(const shape *s, int M)
{
    const int d = s->d, hd = s->hd, half = hd / 2, qd = s->nh * hd, kvd = s->nkv * hd;
    const int rows = qd + 2 * kvd, n_pages = 12;
    const float eps = 1e-6f, theta = 10000.0f;
    float *x = malloc(sizeof(float) * M * d), *g = malloc(sizeof(float) * d),
          *wf = malloc(sizeof(float) * rows * d), *bias = malloc(sizeof(float) * rows),
          *qn = malloc(sizeof(float) * hd), *kn = malloc(sizeof(float) * hd),
          *inv = malloc(sizeof(float) * half), *q = malloc(sizeof(float) * M * qd);
    uint16_t *wh = malloc(2u * rows * d);
    double *h = malloc(sizeof(double) * M * d), *y = malloc(sizeof(double) * M * rows);
    fill_rand(x, (size_t)M * d, 3.0f);
    for (int k = 0; k < d; k++)
        g[k] = 0.5f + frand() * 0.4f;
    rand_half(wf, wh, (size_t)rows * d, 0.05f);
    fill_rand(bias, rows, 0.5f);
    for (int i = 0; i < hd; i++) {
        qn[i] = 0.5f + frand() * 0.4f;
        kn[i] = 0.5f + frand() * 0.4f;
    }
    for (int i = 0; i < half; i++)
        inv[i] = 1.0f / powf(theta, (float)(2 * i) / (float)hd);

    /* the step: tokens [0, M/2) of sequence 0, the rest of sequence 1 */
    const int n_seqs = M > 1 ? 2 : 1, split = M > 1 ? M / 2 : M;
    const int tail_len[2] = {rand() % 40, rand() % 20}, tail_pos[2] = {rand() % 100, 3};
    int32_t pages[2][4] = {{7, 2, 9, 4}, {1, 11, 5, 8}};
    int32_t meta[4 * 16 + 2 * 3 + 8];
    int32_t *tok = meta, *seq = meta + M, *pos = meta + 2 * M, *idx = meta + 3 * M;
    int32_t *seq_info = meta + 4 * M, *pg = seq_info + 2 * KRN_SEQ_FIELDS;
    for (int t = 0; t < M; t++) {
        const int sq = t < split ? 0 : 1, i = sq ? t - split : t;
        tok[t] = 0;
        seq[t] = sq;
        idx[t] = tail_len[sq] + i;
        pos[t] = tail_pos[sq] + idx[t];
    }
    for (int sq = 0; sq < 2; sq++) {
        seq_info[sq * KRN_SEQ_FIELDS + KRN_SEQ_TAIL_PAGES] = 4 * sq;
        seq_info[sq * KRN_SEQ_FIELDS + KRN_SEQ_FIRST_SEG] = 0;
        seq_info[sq * KRN_SEQ_FIELDS + KRN_SEQ_N_SEGS] = 0;
        memcpy(pg + 4 * sq, pages[sq], sizeof pages[sq]);
    }
    int32_t *dmeta = dev_upload(meta, sizeof meta);
    krn_step st = {.tokens = dmeta,
                   .tok_seq = dmeta + M,
                   .tok_pos = dmeta + 2 * M,
                   .tok_idx = dmeta + 3 * M,
                   .logit_tok = dmeta,
                   .seq_info = dmeta + 4 * M,
                   .seg_info = dmeta,
                   .pages = dmeta + 4 * M + 2 * KRN_SEQ_FIELDS,
                   .n_tokens = M,
                   .n_seqs = n_seqs};
    const size_t pool = (size_t)n_pages * s->nkv * PS * hd;
    krn_kv_layer kv = {dev_poisoned(2 * pool), dev_poisoned(2 * pool), s->nkv, hd, PS, gpu_dt};

    /* reference */
    ref_norm(h, x, g, M, d, eps);
    ref_mm(y, h, wf, M, rows, d);
    for (int t = 0; t < M; t++)
        for (int n = 0; n < rows; n++)
            y[(size_t)t * rows + n] += s->bias ? bias[n] : 0.0;
    for (int t = 0; t < M && s->qk_norm; t++)
        for (int hh = 0; hh < s->nh + s->nkv; hh++) {
            double *v = y + (size_t)t * rows + (size_t)hh * hd, ss = 0;
            const float *w = hh < s->nh ? qn : kn;
            for (int i = 0; i < hd; i++)
                ss += v[i] * v[i];
            double r = 1.0 / sqrt(ss / hd + eps);
            for (int i = 0; i < hd; i++)
                v[i] = v[i] * r * w[i];
        }
    for (int t = 0; t < M; t++)
        for (int hh = 0; hh < s->nkv; hh++) {
            double *v = y + (size_t)t * rows + qd + (size_t)hh * hd;
            for (int i = 0; i < half; i++) {
                double a = (double)pos[t] * inv[i], c = cos(a), sn = sin(a);
                double x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * sn;
                v[i + half] = x2 * c + x1 * sn;
            }
        }

    float *dx = dev_upload(x, sizeof(float) * M * d), *dg = dev_upload(g, sizeof(float) * d),
          *db = dev_upload(bias, sizeof(float) * rows), *dqn = dev_upload(qn, sizeof(float) * hd),
          *dkn = dev_upload(kn, sizeof(float) * hd), *dinv = dev_upload(inv, sizeof(float) * half);
    uint16_t *dw = dev_upload(wh, 2u * rows * d);
    float *dq = dev_poisoned(sizeof(float) * M * qd);
    krn_qkv_layer l = {dg,
                       dw,
                       dw + (size_t)qd * d,
                       dw + (size_t)(qd + kvd) * d,
                       s->bias ? db : NULL,
                       s->bias ? db + qd : NULL,
                       s->bias ? db + qd + kvd : NULL,
                       s->qk_norm ? dqn : NULL,
                       s->qk_norm ? dkn : NULL,
                       s->nh,
                       s->nkv,
                       d,
                       eps};
    double *qref = malloc(sizeof(double) * M * qd);
    for (int t = 0; t < M; t++)
        memcpy(qref + (size_t)t * qd, y + (size_t)t * rows, sizeof(double) * qd);
    uint16_t *K = malloc(2 * pool), *V = malloc(2 * pool);
    unsigned char *mine = calloc(pool, 1);
    float *ko = malloc(sizeof(float) * M * kvd), *vo = malloc(sizeof(float) * M * kvd);
    double *kr = malloc(sizeof(double) * M * kvd), *vr = malloc(sizeof(double) * M * kvd);
    double eq = 0, ek = 0, ev = 0;
    size_t stray = 0;
    for (int cf = 0; cf < N_CFG; cf++) {
        ws = cfgs[cf];
        CUDA_OR_DIE(cudaMemset(dq, 0xFF, sizeof(float) * M * qd));
        CUDA_OR_DIE(cudaMemset(kv.k, 0xFF, 2 * pool));
        CUDA_OR_DIE(cudaMemset(kv.v, 0xFF, 2 * pool));
        bi_status rs = krn_norm_qkv_store(&ws, &st, kv, dq, dx, &l, dinv, M, 0);
        CUDA_OR_DIE(cudaDeviceSynchronize());
        EXPECT(rs == BI_OK, "%s qkv M %d (%s): %s", s->name, M, cfg_name[cf], bi_strerror(rs));

        /* q: fp32, unrotated */
        CUDA_OR_DIE(cudaMemcpy(q, dq, sizeof(float) * M * qd, cudaMemcpyDeviceToHost));
        double cq = rel_err_d(q, qref, (size_t)M * qd);

        /* K and V at the tokens' slots; every other slot still poisoned */
        CUDA_OR_DIE(cudaMemcpy(K, kv.k, 2 * pool, cudaMemcpyDeviceToHost));
        CUDA_OR_DIE(cudaMemcpy(V, kv.v, 2 * pool, cudaMemcpyDeviceToHost));
        for (int t = 0; t < M; t++) {
            const int sq = seq[t], page = pages[sq][idx[t] / PS], slot = idx[t] % PS;
            for (int hh = 0; hh < s->nkv; hh++)
                for (int i = 0; i < hd; i++) {
                    size_t off = (((size_t)page * s->nkv + hh) * PS + slot) * hd + i;
                    size_t o = (size_t)t * kvd + (size_t)hh * hd + i;
                    mine[off] = 1;
                    ko[o] = from_half(K[off], gpu_dt);
                    vo[o] = from_half(V[off], gpu_dt);
                    kr[o] = y[(size_t)t * rows + qd + (size_t)hh * hd + i];
                    vr[o] = y[(size_t)t * rows + qd + kvd + (size_t)hh * hd + i];
                }
        }
        size_t cs = 0;
        for (size_t i = 0; i < pool; i++)
            cs += !mine[i] && (K[i] != 0xFFFF || V[i] != 0xFFFF);
        double ck = rel_err_d(ko, kr, (size_t)M * kvd), cv = rel_err_d(vo, vr, (size_t)M * kvd);
        EXPECT(cq <= 1e-2 && ck <= 1e-2 && cv <= 1e-2, "%s qkv M %d (%s): q %.3e k %.3e v %.3e",
               s->name, M, cfg_name[cf], cq, ck, cv);
        EXPECT(cs == 0, "%s qkv M %d (%s): %zu K/V elements written outside the step's slots",
               s->name, M, cfg_name[cf], cs);
        eq = cq > eq ? cq : eq;
        ek = ck > ek ? ck : ek;
        ev = cv > ev ? cv : ev;
        stray += cs;
    }
    printf("  %-12s qkv      M %2d rows %5d K %5d: q %.2e, k %.2e, v %.2e, stray writes %zu\n",
           s->name, M, rows, d, eq, ek, ev, stray);

    cudaFree(dmeta), cudaFree(kv.k), cudaFree(kv.v), cudaFree(dx), cudaFree(dg), cudaFree(db);
    cudaFree(dqn), cudaFree(dkn), cudaFree(dinv), cudaFree(dw), cudaFree(dq);
    free(x), free(g), free(wf), free(bias), free(qn), free(kn), free(inv), free(q), free(wh);
    free(h), free(y), free(qref), free(K), free(V), free(mine), free(ko), free(vo), free(kr);
    free(vr);
}

/* K long enough that it is cut into slices: two runs agree bit for bit,
 * and the counters are left ready (the second run is also checked). */
static void check_split_repeat(int M, int N, int K)
{
    float *xf = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K),
          *a = malloc(sizeof(float) * M * N), *b = malloc(sizeof(float) * M * N);
    uint16_t *xh = malloc(2u * M * K), *wh = malloc(2u * N * K);
    double *xd = malloc(sizeof(double) * M * K), *ref = malloc(sizeof(double) * M * N);
    rand_half(xf, xh, (size_t)M * K, 1.0f);
    rand_half(wf, wh, (size_t)N * K, 0.1f);
    for (size_t i = 0; i < (size_t)M * K; i++)
        xd[i] = xf[i];
    ref_mm(ref, xd, wf, M, N, K);
    void *dx = dev_upload(xh, 2u * M * K), *dw = dev_upload(wh, 2u * N * K);
    float *dy = dev_poisoned(sizeof(float) * M * N);
    for (int cf = 0; cf < N_CFG; cf++) {
        ws = cfgs[cf];
        CUDA_OR_DIE(cudaMemset(dy, 0xFF, sizeof(float) * M * N));
        bi_status s1 = krn_gemv(&ws, dy, dx, dw, NULL, false, M, N, K, gpu_dt, 0);
        CUDA_OR_DIE(cudaMemcpy(a, dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
        CUDA_OR_DIE(cudaMemset(dy, 0xFF, sizeof(float) * M * N));
        bi_status s2 = krn_gemv(&ws, dy, dx, dw, NULL, false, M, N, K, gpu_dt, 0);
        CUDA_OR_DIE(cudaMemcpy(b, dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
        double e = rel_err_d(b, ref, (size_t)M * N);
        int same = memcmp(a, b, sizeof(float) * M * N) == 0;
        printf("  split        gemv     M %2d N %5d K %5d (%s): rel_err %.2e, repeat %s\n", M, N, K,
               cfg_name[cf], e, same ? "identical" : "DIFFERS");
        EXPECT(s1 == BI_OK && s2 == BI_OK, "split gemv (%s): %s, %s", cfg_name[cf], bi_strerror(s1),
               bi_strerror(s2));
        EXPECT(e <= 1e-3 && same, "split gemv M %d K %d (%s): rel_err %.3e, repeat %s", M, K,
               cfg_name[cf], e, same ? "same" : "differs");
    }
    cudaFree(dx), cudaFree(dw), cudaFree(dy);
    free(xf), free(wf), free(a), free(b), free(xh), free(wh), free(xd), free(ref);
}

static void check_refused(void)
{
    float *y = dev_poisoned(64);
    EXPECT(krn_gemv(&ws, y, NULL, NULL, NULL, false, 0, 16, 64, KRN_BF16, 0) == BI_OK,
           "M = 0 not a no-op");
    EXPECT(krn_gemv(&ws, y, NULL, NULL, NULL, false, 17, 16, 64, KRN_BF16, 0) == BI_UNSUPPORTED,
           "M = 17 accepted");
    EXPECT(krn_gemv(&ws, y, NULL, NULL, NULL, false, 1, 16, 60, KRN_BF16, 0) == BI_UNSUPPORTED,
           "K not a multiple of 8 accepted");
    EXPECT(krn_gemv(&ws, y, NULL, NULL, NULL, false, 1, 0, 64, KRN_BF16, 0) == BI_INVALID_ARGUMENT,
           "N = 0 accepted");
    EXPECT(krn_gemv(&ws, y, NULL, NULL, NULL, false, 1, 16, 64, (krn_dtype)5, 0) ==
               BI_INVALID_ARGUMENT,
           "dtype 5 accepted");
    EXPECT(!krn_gemv_supported(1, 4) && krn_gemv_supported(16, 8), "krn_gemv_supported");
    cudaFree(y);
}

int main(void)
{
    gpu_begin("test_gemv");
    CUDA_OR_DIE(cudaDeviceGetAttribute(&ws.n_sm, cudaDevAttrMultiProcessorCount, 0));
    ws.blocks_per_sm = 1;
    ws.pdl = true;
    ws.part_floats = (size_t)2 << 20;
    ws.n_count = 16384;
    CUDA_OR_DIE(cudaMalloc((void **)&ws.part, ws.part_floats * sizeof(float)));
    CUDA_OR_DIE(cudaMalloc((void **)&ws.count, ws.n_count * sizeof(unsigned)));
    CUDA_OR_DIE(cudaMemset(ws.count, 0, ws.n_count * sizeof(unsigned)));
    for (int i = 0; i < N_CFG; i++)
        cfgs[i] = ws;
    cfgs[1].blocks_per_sm = 0;
    cfgs[2].n_sm = 6;

    const shape shapes[] = {
        {"tinyllama", 2048, 32, 4, 64, 5632, false, false},
        {"qwen3-0.6b", 1024, 16, 8, 128, 3072, false, true},
        {"qwen2-0.5b", 896, 14, 2, 64, 4864, true, false},
        {"hd256", 1536, 8, 2, 256, 1024, true, true},
    };
    const int Ms[] = {1, 3, 8, 16};
    krn_dtype dts[2];
    for (int d = 0, nd = gpu_dtypes(dts); d < nd; d++) {
        gpu_use_dtype(dts[d]);
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
            const shape *s = &shapes[i];
            for (size_t j = 0; j < sizeof Ms / sizeof Ms[0]; j++) {
                check_plain(s->name, Ms[j], s->d, s->nh * s->hd);
                check_swiglu(s->name, Ms[j], s->ff, s->d);
                check_qkv(s, Ms[j]);
            }
        }
        check_split_repeat(16, 512, 14336);
        check_split_repeat(1, 1000, 14336);
    }
    check_refused();
    CUDA_OR_DIE(cudaDeviceSynchronize());
    cudaFree(ws.part);
    cudaFree(ws.count);
    return gpu_end("test_gemv");
}
