/*
 * test_kernels.c - the elementwise, normalisation and GEMM launchers against
 * CPU references (kernels/cpu and plain loops in double), on fresh random
 * inputs with poisoned (NaN) outputs, for bf16 and fp16 storage (GPU_DTYPE
 * picks one): 16-bit outputs within 1e-2 relative error, fp32 outputs far
 * tighter, no NaN (every element written); the conversion rounds to nearest
 * even and counts what overflows. Bad sizes and dtypes are refused. Attention
 * and the KV write are checked through the backend in test_attention.c.
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include <float.h>

#include "gpu_util.h"

#include "cpu/krn_cpu.h"
#include "cuda/krn_elem.h"
#include "cuda/krn_gemm.h"
#include "cuda/krn_norm.h"

/* Random values already representable in the type under test, as floats and
 * as its 16 bits. */
static void rand_half(float *f, uint16_t *h, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++) {
        h[i] = to_half(frand() * scale, gpu_dt);
        f[i] = from_half(h[i], gpu_dt);
    }
}

static void download(float *dst, const void *dev, size_t n)
{
    download_half(dst, dev, n, gpu_dt);
}

static void check_embed(void)
{
    const int V = 1000, d = 200, n = 77;
    float *tf = malloc(sizeof(float) * V * d), *ref = malloc(sizeof(float) * n * d),
          *out = malloc(sizeof(float) * n * d);
    uint16_t *th = malloc(2u * V * d);
    int32_t tok[77];
    rand_half(tf, th, (size_t)V * d, 1.0f);
    for (int i = 0; i < n; i++) {
        tok[i] = rand() % V;
        memcpy(ref + (size_t)i * d, tf + (size_t)tok[i] * d, sizeof(float) * d);
    }
    void *dt = dev_upload(th, 2u * V * d), *dk = dev_upload(tok, sizeof tok);
    float *dx = dev_poisoned(sizeof(float) * n * d);
    EXPECT(krn_embed(dx, dt, dk, n, d, gpu_dt, 0) == BI_OK, "embed launch");
    CUDA_OR_DIE(cudaMemcpy(out, dx, sizeof(float) * n * d, cudaMemcpyDeviceToHost));
    double e = rel_err(out, ref, (size_t)n * d);
    printf("  embed            rel_err %.2e\n", e);
    EXPECT(e == 0.0, "embed is a copy, got rel_err %.3e", e);
    EXPECT(krn_embed(dx, dt, dk, -1, d, gpu_dt, 0) == BI_INVALID_ARGUMENT, "negative n accepted");
    EXPECT(krn_embed(dx, dt, dk, n, d, (krn_dtype)7, 0) == BI_INVALID_ARGUMENT, "dtype 7 accepted");
    cudaFree(dt), cudaFree(dk), cudaFree(dx);
    free(tf), free(th), free(ref), free(out);
}

static void check_rmsnorm(void)
{
    const int M = 33, D = 896, R = 9;
    float *x = malloc(sizeof(float) * M * D), *w = malloc(sizeof(float) * D),
          *ref = malloc(sizeof(float) * M * D), *out = malloc(sizeof(float) * M * D);
    int32_t rows[9];
    fill_rand(x, (size_t)M * D, 3.0f);
    fill_rand(w, D, 1.5f);
    float *dx = dev_upload(x, sizeof(float) * M * D), *dw = dev_upload(w, sizeof(float) * D);
    /* 16-bit out, gathering rows */
    for (int r = 0; r < R; r++) {
        rows[r] = rand() % M;
        krn_cpu_rmsnorm(ref + (size_t)r * D, x + (size_t)rows[r] * D, w, 1, D, 1e-5f);
    }
    int32_t *drows = dev_upload(rows, sizeof rows);
    void *dy = dev_poisoned(2u * R * D);
    EXPECT(krn_rmsnorm_half(dy, dx, drows, dw, R, D, 1e-5f, gpu_dt, 0) == BI_OK, "rmsnorm launch");
    download(out, dy, (size_t)R * D);
    double e = rel_err(out, ref, (size_t)R * D);
    printf("  rmsnorm %s     rel_err %.2e\n", gpu_dtype_name(gpu_dt), e);
    EXPECT(e <= 1e-2, "rmsnorm %s rel_err %.3e", gpu_dtype_name(gpu_dt), e);
    /* fp32 in place (QK-norm) */
    krn_cpu_rmsnorm(ref, x, w, M, D, 1e-6f);
    EXPECT(krn_rmsnorm_f32(dx, dw, M, D, 1e-6f, 0) == BI_OK, "rmsnorm f32 launch");
    CUDA_OR_DIE(cudaMemcpy(out, dx, sizeof(float) * M * D, cudaMemcpyDeviceToHost));
    e = rel_err(out, ref, (size_t)M * D);
    printf("  rmsnorm f32      rel_err %.2e\n", e);
    EXPECT(e <= 1e-5, "rmsnorm f32 rel_err %.3e", e);
    EXPECT(krn_rmsnorm_f32(dx, dw, M, 0, 1e-6f, 0) == BI_INVALID_ARGUMENT, "D = 0 accepted");
    cudaFree(dx), cudaFree(dw), cudaFree(drows), cudaFree(dy);
    free(x), free(w), free(ref), free(out);
}

/* The fused residual add + norm, and the fused projections' split and
 * SwiGLU, against plain loops. */
static void check_fused(void)
{
    const int M = 19, D = 576, n0 = 320, n1 = 64, n2 = 64, N = n0 + n1 + n2, ff = 200;
    float *x = malloc(sizeof(float) * M * D), *y = malloc(sizeof(float) * M * D),
          *w = malloc(sizeof(float) * D), *ref = malloc(sizeof(float) * M * D),
          *out = malloc(sizeof(float) * M * D), *xs = malloc(sizeof(float) * M * D);
    fill_rand(x, (size_t)M * D, 3.0f);
    fill_rand(y, (size_t)M * D, 1.0f);
    fill_rand(w, D, 1.5f);
    for (size_t i = 0; i < (size_t)M * D; i++)
        xs[i] = x[i] + y[i];
    krn_cpu_rmsnorm(ref, xs, w, M, D, 1e-5f);
    float *dx = dev_upload(x, sizeof(float) * M * D), *dy = dev_upload(y, sizeof(float) * M * D),
          *dw = dev_upload(w, sizeof(float) * D);
    void *dh = dev_poisoned(2u * M * D);
    EXPECT(krn_add_rmsnorm_half(dh, dx, dy, dw, M, D, 1e-5f, gpu_dt, 0) == BI_OK, "add_rmsnorm");
    download(out, dh, (size_t)M * D);
    double e = rel_err(out, ref, (size_t)M * D);
    CUDA_OR_DIE(cudaMemcpy(out, dx, sizeof(float) * M * D, cudaMemcpyDeviceToHost));
    double ex = rel_err(out, xs, (size_t)M * D);
    printf("  add+rmsnorm      rel_err %.2e (sum %.2e)\n", e, ex);
    EXPECT(e <= 1e-2 && ex == 0.0, "add_rmsnorm rel_err %.3e, sum %.3e", e, ex);
    EXPECT(krn_add_rmsnorm_half(dh, dx, dy, dw, M, 0, 1e-5f, gpu_dt, 0) == BI_INVALID_ARGUMENT,
           "D = 0 accepted");

    /* split3 with biases on the first and last part only */
    float *f = malloc(sizeof(float) * M * N), *b0 = malloc(sizeof(float) * n0),
          *b2 = malloc(sizeof(float) * n2), *o = malloc(sizeof(float) * M * N);
    fill_rand(f, (size_t)M * N, 2.0f);
    fill_rand(b0, n0, 1.0f);
    fill_rand(b2, n2, 1.0f);
    float *df = dev_upload(f, sizeof(float) * M * N), *db0 = dev_upload(b0, sizeof(float) * n0),
          *db2 = dev_upload(b2, sizeof(float) * n2);
    float *d0 = dev_poisoned(sizeof(float) * M * n0), *d1 = dev_poisoned(sizeof(float) * M * n1),
          *d2 = dev_poisoned(sizeof(float) * M * n2);
    EXPECT(krn_split3(d0, d1, d2, df, db0, NULL, db2, M, n0, n1, n2, 0) == BI_OK, "split3");
    size_t bad = 0;
    CUDA_OR_DIE(cudaMemcpy(o, d0, sizeof(float) * M * n0, cudaMemcpyDeviceToHost));
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n0; c++)
            bad += o[m * n0 + c] != f[m * N + c] + b0[c];
    CUDA_OR_DIE(cudaMemcpy(o, d1, sizeof(float) * M * n1, cudaMemcpyDeviceToHost));
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n1; c++)
            bad += o[m * n1 + c] != f[m * N + n0 + c];
    CUDA_OR_DIE(cudaMemcpy(o, d2, sizeof(float) * M * n2, cudaMemcpyDeviceToHost));
    for (int m = 0; m < M; m++)
        for (int c = 0; c < n2; c++)
            bad += o[m * n2 + c] != f[m * N + n0 + n1 + c] + b2[c];
    printf("  split3           %zu elements differ\n", bad);
    EXPECT(bad == 0, "split3: %zu elements differ", bad);

    /* SwiGLU over gate|up rows (reusing f as [M][2 ff]): the 4-column kernel
     * (ff % 4 == 0) and the scalar one */
    float *g = malloc(sizeof(float) * M * ff), *u = malloc(sizeof(float) * M * ff);
    void *ds = dev_poisoned(2u * M * ff);
    for (int w = ff; w >= ff - 2; w -= 2) { /* 200: vector kernels, 198: scalar */
        for (int m = 0; m < M; m++)
            for (int c = 0; c < w; c++) {
                g[m * w + c] = f[m * 2 * w + c];
                u[m * w + c] = f[m * 2 * w + w + c];
            }
        krn_cpu_silu_mul(ref, g, u, (size_t)M * w);
        CUDA_OR_DIE(cudaMemset(ds, 0xFF, 2u * M * ff));
        EXPECT(krn_silu_mul_cat(ds, df, M, w, gpu_dt, 0) == BI_OK, "silu_mul_cat");
        download(out, ds, (size_t)M * w);
        e = rel_err(out, ref, (size_t)M * w);
        printf("  silu_mul (cat)   ff %d rel_err %.2e\n", w, e);
        EXPECT(e <= 1e-2, "silu_mul_cat ff %d rel_err %.3e", w, e);

        /* the same from a 16-bit gate|up (the GEMM's 16-bit output) */
        uint16_t *fh = malloc(2u * M * 2 * w);
        for (int i = 0; i < M * 2 * w; i++)
            fh[i] = to_half(f[i], gpu_dt);
        for (int m = 0; m < M; m++)
            for (int c = 0; c < w; c++) {
                g[m * w + c] = from_half(fh[m * 2 * w + c], gpu_dt);
                u[m * w + c] = from_half(fh[m * 2 * w + w + c], gpu_dt);
            }
        krn_cpu_silu_mul(ref, g, u, (size_t)M * w);
        void *dfh = dev_upload(fh, 2u * M * 2 * w);
        CUDA_OR_DIE(cudaMemset(ds, 0xFF, 2u * M * ff));
        EXPECT(krn_silu_mul_cat_h(ds, dfh, M, w, gpu_dt, 0) == BI_OK, "silu_mul_cat_h");
        download(out, ds, (size_t)M * w);
        e = rel_err(out, ref, (size_t)M * w);
        printf("  silu_mul (%s)  ff %d rel_err %.2e\n", gpu_dtype_name(gpu_dt), w, e);
        EXPECT(e <= 1e-2, "silu_mul_cat_h ff %d rel_err %.3e", w, e);
        cudaFree(dfh);
        free(fh);
    }
    EXPECT(krn_silu_mul_cat(ds, df, -1, ff, gpu_dt, 0) == BI_INVALID_ARGUMENT, "M < 0 accepted");
    cudaFree(dx), cudaFree(dy), cudaFree(dw), cudaFree(dh), cudaFree(df), cudaFree(db0);
    cudaFree(db2), cudaFree(d0), cudaFree(d1), cudaFree(d2), cudaFree(ds);
    free(x), free(y), free(w), free(ref), free(out), free(xs), free(f), free(b0), free(b2);
    free(o), free(g), free(u);
}

static void check_gemm(cublasHandle_t h, int M, int N, int K, int with_bias)
{
    float *xf = malloc(sizeof(float) * M * K), *wf = malloc(sizeof(float) * N * K),
          *b = malloc(sizeof(float) * N), *ref = malloc(sizeof(float) * M * N),
          *out = malloc(sizeof(float) * M * N);
    uint16_t *xh = malloc(2u * M * K), *wh = malloc(2u * N * K);
    rand_half(xf, xh, (size_t)M * K, 1.0f);
    rand_half(wf, wh, (size_t)N * K, 0.1f);
    fill_rand(b, N, 1.0f);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = with_bias ? b[n] : 0.0;
            for (int k = 0; k < K; k++)
                s += (double)xf[(size_t)m * K + k] * wf[(size_t)n * K + k];
            ref[(size_t)m * N + n] = (float)s;
        }
    void *dx = dev_upload(xh, 2u * M * K), *dw = dev_upload(wh, 2u * N * K);
    float *db = dev_upload(b, sizeof(float) * N), *dy = dev_poisoned(sizeof(float) * M * N);
    EXPECT(krn_gemm(h, dy, dx, dw, M, N, K, gpu_dt) == BI_OK, "gemm");
    if (with_bias)
        EXPECT(krn_add_bias(dy, db, M, N, 0) == BI_OK, "bias");
    CUDA_OR_DIE(cudaMemcpy(out, dy, sizeof(float) * M * N, cudaMemcpyDeviceToHost));
    double e = rel_err(out, ref, (size_t)M * N);
    /* the same product rounded to the 16-bit type (against the bias-free reference) */
    void *dyh = dev_poisoned(2u * M * N);
    EXPECT(krn_gemm_h(h, dyh, dx, dw, M, N, K, gpu_dt) == BI_OK, "gemm_h");
    if (with_bias)
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++)
                ref[(size_t)m * N + n] -= b[n];
    download(out, dyh, (size_t)M * N);
    double eh = rel_err(out, ref, (size_t)M * N);
    printf("  gemm %4dx%4dx%4d%s rel_err %.2e, 16-bit out %.2e\n", M, N, K, with_bias ? "+b" : "  ",
           e, eh);
    /* inputs are exact 16-bit values and accumulation fp32: far below the 1e-2 bound */
    EXPECT(e <= 1e-4, "gemm %dx%dx%d rel_err %.3e", M, N, K, e);
    EXPECT(eh <= 1e-2, "gemm_h %dx%dx%d rel_err %.3e", M, N, K, eh);
    cudaFree(dyh);
    cudaFree(dx), cudaFree(dw), cudaFree(db), cudaFree(dy);
    free(xf), free(wf), free(b), free(ref), free(out), free(xh), free(wh);
}

static void check_elementwise(void)
{
    const size_t n = 1000003;
    float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n),
          *ref = malloc(sizeof(float) * n), *out = malloc(sizeof(float) * n);
    fill_rand(g, n, 4.0f);
    fill_rand(u, n, 2.0f);
    float *dg = dev_upload(g, sizeof(float) * n), *du = dev_upload(u, sizeof(float) * n);
    void *dh = dev_poisoned(2 * n);
    krn_cpu_silu_mul(ref, g, u, n);
    EXPECT(krn_silu_mul(dh, dg, du, n, gpu_dt, 0) == BI_OK, "silu_mul");
    download(out, dh, n);
    double e = rel_err(out, ref, n);
    printf("  silu_mul         rel_err %.2e\n", e);
    EXPECT(e <= 1e-2, "silu_mul rel_err %.3e", e);

    for (size_t i = 0; i < n; i++)
        ref[i] = g[i] + u[i];
    EXPECT(krn_add(dg, du, n, 0) == BI_OK, "add");
    CUDA_OR_DIE(cudaMemcpy(out, dg, sizeof(float) * n, cudaMemcpyDeviceToHost));
    e = rel_err(out, ref, n);
    printf("  add              rel_err %.2e\n", e);
    EXPECT(e == 0.0, "add rel_err %.3e", e);

    EXPECT(krn_f32_to_half(dh, du, n, NULL, gpu_dt, 0) == BI_OK, "to 16-bit");
    download(out, dh, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += out[i] != from_half(to_half(u[i], gpu_dt), gpu_dt);
    printf("  f32->%s        %zu of %zu differ from round-to-nearest-even\n",
           gpu_dtype_name(gpu_dt), bad, n);
    EXPECT(bad == 0, "%s conversion differs in %zu elements", gpu_dtype_name(gpu_dt), bad);
    EXPECT(krn_silu_mul(dh, dg, du, n, (krn_dtype)-1, 0) == BI_INVALID_ARGUMENT,
           "dtype -1 accepted");
    cudaFree(dg), cudaFree(du), cudaFree(dh);
    free(g), free(u), free(ref), free(out);
}

/* Values at and past the type's range (and subnormal, small, infinite and
 * NaN ones): the conversion rounds each finite value as the host does, and
 * the overflow counter counts exactly the finite values that became
 * infinite (fp16: |x| >= 65520; 65504 < |x| < 65520 rounds to 65504). */
static void check_overflow(void)
{
    const float x[] = {65504.0f, 65519.0f, -65519.9f, 65520.0f,  -70000.0f, 1e6f,  3.0e38f,
                       FLT_MAX,  -FLT_MAX, 1e-7f,     -3e-5f,    0.5f,      2.0f,  INFINITY,
                       NAN,      1e-40f,   65536.0f,  -65504.0f, 123.25f,   -1e30f};
    const size_t n = sizeof x / sizeof x[0];
    unsigned want = 0, got = 7;
    for (size_t i = 0; i < n; i++)
        want += isfinite(x[i]) && isinf(from_half(to_half(x[i], gpu_dt), gpu_dt));
    float *dx = dev_upload(x, sizeof x), out[sizeof x / sizeof x[0]];
    void *dh = dev_poisoned(2 * n);
    unsigned *dc = dev_upload(&got, sizeof got);
    CUDA_OR_DIE(cudaMemset(dc, 0, sizeof *dc));
    EXPECT(krn_f32_to_half(dh, dx, n, dc, gpu_dt, 0) == BI_OK, "to 16-bit with overflow count");
    CUDA_OR_DIE(cudaMemcpy(&got, dc, sizeof got, cudaMemcpyDeviceToHost));
    download(out, dh, n);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(x[i]))
            bad += out[i] != from_half(to_half(x[i], gpu_dt), gpu_dt);
    printf("  overflow count   %u (want %u), %zu of %zu finite edge values rounded differently\n",
           got, want, bad, n - 2);
    EXPECT(got == want, "overflow count %u, want %u", got, want);
    EXPECT(want == (gpu_dt == KRN_F16 ? 8u : 2u), "test bug: %u overflowing values", want);
    EXPECT(bad == 0, "%zu edge values rounded differently from the host", bad);
    cudaFree(dx), cudaFree(dh), cudaFree(dc);
}

int main(void)
{
    gpu_begin("test_kernels");
    cublasHandle_t h;
    if (cublasCreate(&h) != CUBLAS_STATUS_SUCCESS) {
        printf("FAIL cublasCreate\n");
        return 1;
    }
    krn_dtype dts[2];
    for (int d = 0, nd = gpu_dtypes(dts); d < nd; d++) {
        gpu_use_dtype(dts[d]);
        check_embed();
        check_rmsnorm();
        check_elementwise();
        check_overflow();
        check_fused();
        const int shapes[][3] = {{1, 2048, 2048}, {7, 320, 576}, {64, 5632, 2048}, {300, 64, 96}};
        for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
            check_gemm(h, shapes[i][0], shapes[i][1], shapes[i][2], (int)(i & 1));
    }
    EXPECT(krn_gemm(h, NULL, NULL, NULL, 1, 0, 4, KRN_BF16) == BI_INVALID_ARGUMENT,
           "N = 0 accepted");
    EXPECT(krn_gemm(h, NULL, NULL, NULL, 1, 4, 4, (krn_dtype)2) == BI_INVALID_ARGUMENT,
           "dtype 2 accepted");
    CUDA_OR_DIE(cudaDeviceSynchronize());
    cublasDestroy(h);
    return gpu_end("test_kernels");
}
