/*
 * bench_gpu_gemv.c - the small-step projections (krn_gemv) against cuBLAS on
 * the projection shapes of TinyLlama-1.1B, Qwen3-0.6B and Llama-3-8B for M =
 * 1..16 rows, to find where one beats the other (the CUDA backend's
 * BRAID_GEMV_MAX_M) and how close to the copy bandwidth they stream.
 *
 * Each case is a chain of launches over distinct copies of the weights (at
 * least 256 MiB in all, so the L2 cache does not serve them), captured as a
 * CUDA graph as a decode step is; time per launch = median replay / chain
 * length, after warm-up. Variants: krn_gemv with programmatic dependent
 * launch and at most 1 or 2 blocks per SM walking the items, or one block
 * per item; without PDL (1 per SM); cuBLAS. Random (not zero) inputs, bf16
 * (fp16 streams the same bytes through the same code).
 * Nothing is asserted.
 *   bench_gpu_gemv            (prints a table; OUT=dir also gets it as CSV)
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "bench_util.h"
#include "cuda/krn_gemm.h"
#include "cuda/krn_gemv.h"
#include "cuda/krn_smoke.h"

#define CHAIN_BYTES ((size_t)256 << 20)
#define MAX_COPIES  48
#define REPS        9

typedef struct pshape {
    const char *name;
    int N, K;
    bool swiglu; /* gate|up through krn_gemv_swiglu (N = 2 ff) */
} pshape;

enum { V_B1, V_B2, V_ALL, V_NOPDL, V_CUBLAS, N_VARIANTS };
static const char *vname[N_VARIANTS] = {"gemv 1/SM", "2/SM", "all", "nopdl 1", "cublas"};

typedef struct bufs {
    krn_half *w[MAX_COPIES];
    int copies;
    krn_half *x, *out16;
    float *x32, *y, *norm;
} bufs;

static int launch(int v, krn_gemv_ws *ws, cublasHandle_t h, const pshape *s, const bufs *b, int c,
                  int M, cudaStream_t st)
{
    bi_status r;
    if (v == V_CUBLAS)
        r = krn_gemm(h, b->y, b->x, b->w[c], M, s->N, s->K, KRN_BF16);
    else if (s->swiglu)
        r = krn_gemv_swiglu(ws, b->out16, b->x32, b->norm, 1e-5f, b->w[c],
                            b->w[c] + (size_t)s->N / 2 * s->K, M, s->N / 2, s->K, KRN_BF16, st);
    else
        r = krn_gemv(ws, b->y, b->x, b->w[c], NULL, false, M, s->N, s->K, KRN_BF16, st);
    return r == BI_OK ? 0 : -1;
}

/* Seconds per launch of variant v, or -1 when it cannot run. */
static double time_case(int v, krn_gemv_ws *ws, cublasHandle_t h, const pshape *s, const bufs *b,
                        int M, cudaStream_t st)
{
    ws->blocks_per_sm = v == V_B2 ? 2 : v == V_ALL ? 0 : 1;
    ws->pdl = v != V_NOPDL;
    const int n = b->copies < 8 ? 8 : b->copies; /* at least 8 launches per replay */
    cudaGraph_t g;
    cudaGraphExec_t ex;
    if (cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed) != cudaSuccess)
        return -1;
    int bad = 0;
    for (int i = 0; i < n; i++)
        bad |= launch(v, ws, h, s, b, i % b->copies, M, st);
    if (cudaStreamEndCapture(st, &g) != cudaSuccess || bad) {
        cudaGetLastError();
        return -1;
    }
    if (cudaGraphInstantiate(&ex, g, 0) != cudaSuccess) {
        cudaGraphDestroy(g);
        cudaGetLastError();
        return -1;
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[REPS];
    for (int i = 0; i < REPS + 2; i++) {
        cudaEventRecord(e0, st);
        cudaGraphLaunch(ex, st);
        cudaEventRecord(e1, st);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2)
            t[i - 2] = ms * 1e-3 / n;
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaGraphExecDestroy(ex);
    cudaGraphDestroy(g);
    return cudaGetLastError() == cudaSuccess ? bench_median(t, REPS) : -1;
}

int main(void)
{
    char device[256];
    if (krn_device_describe(0, device, sizeof device) != BI_OK) {
        printf("bench_gpu_gemv: no CUDA device\n");
        return 77;
    }
    const pshape shapes[] = {
        {"tinyllama qkv", 2560, 2048, false},      {"tinyllama wo", 2048, 2048, false},
        {"tinyllama gate|up", 11264, 2048, true},  {"tinyllama down", 2048, 5632, false},
        {"tinyllama lm_head", 32000, 2048, false}, {"qwen3 wo", 1024, 2048, false},
        {"qwen3 down", 1024, 3072, false},         {"llama3 qkv", 6144, 4096, false},
        {"llama3 wo", 4096, 4096, false},          {"llama3 gate|up", 28672, 4096, true},
        {"llama3 down", 4096, 14336, false},       {"llama3 lm_head", 128256, 4096, false},
    };
    const int Ms[] = {1, 2, 4, 8, 16};
    const int nM = (int)(sizeof Ms / sizeof Ms[0]);
    cudaStream_t st;
    cublasHandle_t h;
    krn_gemv_ws ws = {0};
    cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking);
    cublasCreate(&h);
    cublasSetStream(h, st);
    cudaDeviceGetAttribute(&ws.n_sm, cudaDevAttrMultiProcessorCount, 0);
    ws.part_floats = (size_t)2 << 20;
    ws.n_count = 16384;
    cudaMalloc((void **)&ws.part, ws.part_floats * sizeof(float));
    cudaMalloc((void **)&ws.count, ws.n_count * sizeof(unsigned));
    cudaMemset(ws.count, 0, ws.n_count * sizeof(unsigned));

    /* 64 MiB of random bf16, copied into every weight copy */
    const size_t seed_elems = (size_t)32 << 20;
    uint16_t *hs = malloc((seed_elems + 1024) * 2);
    for (size_t i = 0; i < seed_elems + 1024; i++)
        hs[i] = (uint16_t)(0x3C00u + (rand() & 0xFF) + ((rand() & 1) << 15));
    krn_half *seed;
    cudaMalloc((void **)&seed, (seed_elems + 1024) * 2);
    cudaMemcpy(seed, hs, (seed_elems + 1024) * 2, cudaMemcpyHostToDevice);

    bufs b = {0};
    const size_t max_k = 14336, max_n = 128256;
    cudaMalloc((void **)&b.x, KRN_GEMV_MAX_M * max_k * 2);
    cudaMalloc((void **)&b.x32, KRN_GEMV_MAX_M * max_k * 4);
    cudaMalloc((void **)&b.norm, max_k * 4);
    cudaMalloc((void **)&b.y, KRN_GEMV_MAX_M * max_n * 4);
    cudaMalloc((void **)&b.out16, KRN_GEMV_MAX_M * max_n * 2);
    cudaMemcpy(b.x, seed, KRN_GEMV_MAX_M * max_k * 2, cudaMemcpyDeviceToDevice);
    float *hx = malloc(KRN_GEMV_MAX_M * max_k * 4);
    for (size_t i = 0; i < KRN_GEMV_MAX_M * max_k; i++)
        hx[i] = (float)rand() / RAND_MAX - 0.5f;
    cudaMemcpy(b.x32, hx, KRN_GEMV_MAX_M * max_k * 4, cudaMemcpyHostToDevice);
    cudaMemcpy(b.norm, hx, max_k * 4, cudaMemcpyHostToDevice);

    printf("%s\n%-18s %3s %9s %9s %9s %9s %9s %8s  (us per projection; GB/s of the best "
           "gemv)\n",
           device, "shape", "M", vname[0], vname[1], vname[2], vname[3], vname[4], "GB/s");
    char *csv = malloc(1 << 16);
    size_t csv_len = (size_t)snprintf(csv, 1 << 16, "shape,M,variant,us\n");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const pshape *s = &shapes[si];
        const size_t bytes = (size_t)s->N * s->K * 2;
        b.copies = (int)((CHAIN_BYTES + bytes - 1) / bytes);
        b.copies = b.copies < 2 ? 2 : b.copies > MAX_COPIES ? MAX_COPIES : b.copies;
        int ok = 1;
        for (int c = 0; c < b.copies && ok; c++) {
            ok = cudaMalloc((void **)&b.w[c], bytes) == cudaSuccess;
            for (size_t off = 0; ok && off < bytes / 2; off += seed_elems) {
                size_t n = bytes / 2 - off < seed_elems ? bytes / 2 - off : seed_elems;
                ok = cudaMemcpy(b.w[c] + off, seed + (c * 4099) % 1024, n * 2,
                                cudaMemcpyDeviceToDevice) == cudaSuccess;
            }
        }
        if (!ok) {
            printf("%-18s: cannot allocate %d copies\n", s->name, b.copies);
            cudaGetLastError();
        }
        int cross = 0;
        for (int mi = 0; mi < nM && ok; mi++) {
            double t[N_VARIANTS], best = INFINITY;
            for (int v = 0; v < N_VARIANTS; v++) {
                t[v] = time_case(v, &ws, h, s, &b, Ms[mi], st);
                if (v != V_CUBLAS && t[v] > 0 && t[v] < best)
                    best = t[v];
                csv_len += (size_t)snprintf(csv + csv_len, (1 << 16) - csv_len, "%s,%d,%s,%.2f\n",
                                            s->name, Ms[mi], vname[v], t[v] * 1e6);
            }
            if (best <= t[V_CUBLAS] || t[V_CUBLAS] < 0)
                cross = Ms[mi];
            printf("%-18s %3d %9.1f %9.1f %9.1f %9.1f %9.1f %8.0f\n", s->name, Ms[mi], t[0] * 1e6,
                   t[1] * 1e6, t[2] * 1e6, t[3] * 1e6, t[4] * 1e6, bytes / best / 1e9);
        }
        if (ok)
            printf("%-18s gemv at least as fast as cuBLAS up to M = %d\n", s->name, cross);
        for (int c = 0; c < b.copies; c++)
            cudaFree(b.w[c]);
        memset(b.w, 0, sizeof b.w);
    }
    const char *dir = getenv("OUT");
    if (dir) {
        char path[4096];
        snprintf(path, sizeof path, "%s/bench_gpu_gemv.csv", dir);
        FILE *f = fopen(path, "w");
        if (f) {
            fwrite(csv, 1, csv_len, f);
            fclose(f);
        }
    }
    printf("last CUDA error: %s\n", cudaGetErrorString(cudaGetLastError()));
    return 0;
}
