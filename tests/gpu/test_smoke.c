/*
 * test_smoke.c - the CUDA smoke test, run on the GPU machine by tests/gpu/run.sh.
 *
 * Fresh random inputs, a poisoned output buffer, the kernel against a CPU
 * reference by relative error. Exits 0 on pass, 1 on failure, 77 when there is
 * no GPU (the conventional "skipped" code).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "cuda/krn_smoke.h"

#define CHECK_CUDA(call)                                                                           \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            fprintf(stderr, "FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #call,                      \
                    cudaGetErrorString(e_));                                                       \
            return 1;                                                                              \
        }                                                                                          \
    } while (0)

int main(void)
{
    char desc[256];
    bi_status st = krn_device_describe(0, desc, sizeof desc);
    if (st == BI_NO_DEVICE) {
        printf("SKIP test_smoke: no CUDA device\n");
        return 77;
    }
    if (st != BI_OK) {
        fprintf(stderr, "FAIL device query: %s\n", bi_strerror(st));
        return 1;
    }
    printf("device: %s\n", desc);

    const long n = (1L << 24) + 12345; /* not a multiple of the block size */
    const float a = 1.75f;
    float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y), *out = malloc(n * sizeof *out);
    if (!x || !y || !out)
        return 1;
    srand((unsigned)time(NULL));
    for (long i = 0; i < n; i++) {
        x[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
        y[i] = (float)rand() / RAND_MAX * 2.0f - 1.0f;
    }
    float *dx, *dy;
    CHECK_CUDA(cudaMalloc((void **)&dx, n * sizeof *dx));
    CHECK_CUDA(cudaMalloc((void **)&dy, n * sizeof *dy));
    CHECK_CUDA(cudaMemcpy(dx, x, n * sizeof *x, cudaMemcpyHostToDevice));
    CHECK_CUDA(cudaMemcpy(dy, y, n * sizeof *y, cudaMemcpyHostToDevice));
    memset(out, 0xff, n * sizeof *out); /* NaN poison: an element left unread fails */

    if (krn_smoke_saxpy(dy, dx, a, -1, 0) != BI_INVALID_ARGUMENT) {
        fprintf(stderr, "FAIL negative n accepted\n");
        return 1;
    }
    st = krn_smoke_saxpy(dy, dx, a, n, 0);
    if (st != BI_OK) {
        fprintf(stderr, "FAIL launch: %s\n", bi_strerror(st));
        return 1;
    }
    CHECK_CUDA(cudaDeviceSynchronize());
    CHECK_CUDA(cudaMemcpy(out, dy, n * sizeof *out, cudaMemcpyDeviceToHost));

    double num = 0, den = 0;
    long nan = 0;
    for (long i = 0; i < n; i++) {
        double ref = (double)a * x[i] + y[i];
        if (isnan(out[i]))
            nan++;
        num += (out[i] - ref) * (out[i] - ref);
        den += ref * ref;
    }
    double rel = sqrt(num / den);
    printf("saxpy n=%ld rel_err=%.3e nan=%ld\n", n, rel, nan);
    cudaFree(dx);
    cudaFree(dy);
    free(x);
    free(y);
    free(out);
    if (nan || !(rel < 1e-6)) {
        printf("FAIL test_smoke\n");
        return 1;
    }
    printf("PASS test_smoke\n");
    return 0;
}
