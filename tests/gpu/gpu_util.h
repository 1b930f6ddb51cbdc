/*
 * gpu_util.h - helpers shared by the GPU test programs: the pass/fail/skip
 * protocol (exit 0 / 1 / 77), the 16-bit types a test runs for (both, or the
 * one env GPU_DTYPE=bf16|fp16 names), fresh random inputs, host bf16 / fp16
 * rounding and the error measures. Header-only (static functions) so that
 * each test stays one plain program.
 */
#ifndef GPU_UTIL_H
#define GPU_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "../common/test_metrics.h"
#include "common/log.h"
#include "core/backend.h"
#include "cuda/krn_smoke.h"
#include "cuda/krn_types.h"
#include "model/dtype.h"

#define GPU_SKIP 77

static int gpu_failures;
/* The 16-bit type under test (gpu_use_dtype); the harnesses build their CUDA
 * backends with it. */
static krn_dtype gpu_dt = KRN_BF16;

/* Records a failed check and goes on (so one run reports every failure). */
#define EXPECT(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            printf("  FAIL %s:%d: ", __FILE__, __LINE__);                                          \
            printf(__VA_ARGS__);                                                                   \
            printf("\n");                                                                          \
            gpu_failures++;                                                                        \
        }                                                                                          \
    } while (0)

/* A CUDA call that must succeed for the test to go on. */
#define CUDA_OR_DIE(call)                                                                          \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess) {                                                                   \
            printf("FAIL %s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));      \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* Prints the device, or exits 77 when there is none. Seeds rand() from the
 * clock (fresh inputs every run; the seed is printed to replay a failure). */
static inline void gpu_begin(const char *name)
{
    char desc[256];
    if (krn_device_describe(0, desc, sizeof desc) != BI_OK) {
        printf("SKIP %s: no CUDA device\n", name);
        exit(GPU_SKIP);
    }
    unsigned seed = getenv("GPU_SEED") ? (unsigned)atoi(getenv("GPU_SEED")) : (unsigned)time(NULL);
    srand(seed);
    printf("%s on %s (seed %u)\n", name, desc, seed);
    bi_log_set_sink(bi_log_stderr_sink, NULL);
}

static inline const char *gpu_dtype_name(krn_dtype d)
{
    return d == KRN_F16 ? "fp16" : "bf16";
}

/* The types to test, into out[]: bf16 and fp16, or the one env GPU_DTYPE
 * names. Exits 1 on another GPU_DTYPE (a typo must not test nothing). */
static inline int gpu_dtypes(krn_dtype out[2])
{
    const char *e = getenv("GPU_DTYPE");
    if (!e || !*e) {
        out[0] = KRN_BF16;
        out[1] = KRN_F16;
        return 2;
    }
    if (strcmp(e, "bf16") && strcmp(e, "fp16")) {
        printf("FAIL GPU_DTYPE=%s: bf16 or fp16\n", e);
        exit(1);
    }
    out[0] = strcmp(e, "fp16") ? KRN_BF16 : KRN_F16;
    return 1;
}

/* The backend's name for a kernel dtype. */
static inline eng_store_dtype gpu_store(krn_dtype d)
{
    return d == KRN_F16 ? ENG_STORE_FP16 : ENG_STORE_BF16;
}

/* Makes d the type under test and prints a header line for its results. */
static inline void gpu_use_dtype(krn_dtype d)
{
    gpu_dt = d;
    printf("-- %s\n", gpu_dtype_name(d));
}

static inline int gpu_end(const char *name)
{
    printf("%s %s (%d failed checks)\n", gpu_failures ? "FAIL" : "PASS", name, gpu_failures);
    return gpu_failures ? 1 : 0;
}

static inline float frand(void)
{
    return (float)rand() / (float)RAND_MAX * 2.0f - 1.0f;
}

static inline void fill_rand(float *x, size_t n, float scale)
{
    for (size_t i = 0; i < n; i++)
        x[i] = frand() * scale;
}

/* bf16 round to nearest even, as __float2bfloat16_rn (finite inputs). */
static inline uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    u += 0x7FFFu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Round to nearest even into d's 16 bits (fp16: overflow to infinity, as
 * __float2half_rn), and back to fp32. */
static inline uint16_t to_half(float f, krn_dtype d)
{
    return d == KRN_F16 ? eng_f32_to_f16(f) : to_bf16(f);
}

static inline float from_half(uint16_t h, krn_dtype d)
{
    return d == KRN_F16 ? eng_f16_to_f32(h) : from_bf16(h);
}

/* n 16-bit values of type d from the device, as floats. */
static inline void download_half(float *dst, const void *dev, size_t n, krn_dtype d)
{
    uint16_t *h = malloc(n * sizeof *h);
    CUDA_OR_DIE(cudaMemcpy(h, dev, n * sizeof *h, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < n; i++)
        dst[i] = from_half(h[i], d);
    free(h);
}

/* ||out - ref|| / ||ref||; INFINITY if out has a NaN or Inf (a poisoned
 * element left unwritten reads as NaN). */
static inline double rel_err(const float *out, const float *ref, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(out[i]))
            return INFINITY;
        double d = (double)out[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

/* (top1 - top2) / max |v|: how close the greedy choice is to a tie. */
static inline double top_margin(const float *v, int n)
{
    int a = argmax(v, n);
    float second = -INFINITY, mx = 0;
    for (int i = 0; i < n; i++) {
        if (i != a && v[i] > second)
            second = v[i];
        mx = fabsf(v[i]) > mx ? fabsf(v[i]) : mx;
    }
    return (v[a] - second) / (mx > 0 ? mx : 1);
}

/* Device buffer of n floats filled with NaN (0xFF bytes): poison. */
static inline void *dev_poisoned(size_t bytes)
{
    void *p;
    CUDA_OR_DIE(cudaMalloc(&p, bytes));
    CUDA_OR_DIE(cudaMemset(p, 0xFF, bytes));
    return p;
}

static inline void *dev_upload(const void *src, size_t bytes)
{
    void *p;
    CUDA_OR_DIE(cudaMalloc(&p, bytes));
    CUDA_OR_DIE(cudaMemcpy(p, src, bytes, cudaMemcpyHostToDevice));
    return p;
}

#endif
