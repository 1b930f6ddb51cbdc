/*
 * krn_cpu.h - the CPU backend's kernels: a persistent thread pool and the fp32
 * operations the forward pass spends its time in.
 *
 * All matrices are row-major. Functions that take a pool split their work
 * over it and return when all of it is done; a NULL pool runs on the calling
 * thread. The kernels never allocate.
 *
 * Each op has an AVX2+FMA variant and a portable scalar one, chosen at run
 * time (krn_cpu_set_isa overrides the choice, for tests and benchmarks). For a
 * given variant, results do not depend on the pool's size, and a row of a
 * matmul does not depend on the other rows of the batch: every output element
 * is computed by the same sequence of operations whatever the split.
 */
#ifndef KRN_CPU_H
#define KRN_CPU_H

#include <stddef.h>

#include "common/status.h"

typedef struct krn_pool krn_pool;

/* Starts n_threads - 1 worker threads (the caller is the n-th); n_threads <= 0
 * means the number of online CPUs. Free with krn_pool_destroy (NULL is fine). */
bi_status krn_pool_create(int n_threads, krn_pool **out);
void krn_pool_destroy(krn_pool *p);
/* Threads taking part in krn_pool_run, the caller included (1 for NULL). */
int krn_pool_size(const krn_pool *p);

/* fn(arg, task, n_tasks, thread) for every task in [0, n_tasks), spread over
 * the pool; returns when all have run. thread is in [0, krn_pool_size(p)).
 * Must be called from one thread at a time per pool, and not from inside a
 * task of the same pool. Costs about 0.1-0.5 us when the workers are busy or
 * spinning (they spin for a few hundred us after each job), tens of us when
 * they must be woken. n_tasks <= 0 or a NULL fn does nothing. */
typedef void (*krn_task_fn)(void *arg, int task, int n_tasks, int thread);
void krn_pool_run(krn_pool *p, int n_tasks, krn_task_fn fn, void *arg);

/* y[M][N] = x[M][K] . w[N][K]^T (+ bias[N] when bias is not NULL).
 * The weight layout is nn.Linear's: w row n holds output feature n.
 * y must not overlap x, w or bias. M <= 0 or N <= 0 does nothing; K = 0 gives
 * y = bias (or 0). */
void krn_cpu_matmul(krn_pool *p, float *y, const float *x, const float *w, const float *bias, int M,
                    int N, int K);

/* y[m][:] = x[m][:] / sqrt(mean(x[m]^2) + eps) * w[:] for m in [0, M); y may be x. */
void krn_cpu_rmsnorm(float *y, const float *x, const float *w, int M, int D, float eps);

/* Sum of a[i] * b[i]. */
float krn_cpu_dot(const float *a, const float *b, int n);

/* y[i] += a * x[i]. */
void krn_cpu_axpy(float *y, float a, const float *x, int n);

/* out[i] = silu(gate[i]) * up[i] for n elements; out may alias gate. */
void krn_cpu_silu_mul(float *out, const float *gate, const float *up, size_t n);

/* Numerically stable softmax of x[0..n) in place: x[i] = exp(x[i] - max) / sum. */
void krn_cpu_softmax(float *x, int n);

typedef enum krn_cpu_isa {
    KRN_CPU_ISA_AUTO = 0, /* the best the CPU supports (the default) */
    KRN_CPU_ISA_SCALAR,   /* portable C, any CPU */
    KRN_CPU_ISA_AVX2,     /* AVX2 + FMA (x86-64 from Haswell on) */
} krn_cpu_isa;

/* Selects the variant every op uses from now on, process-wide. AUTO picks the
 * best available. Returns BI_UNSUPPORTED (and changes nothing) when the CPU
 * lacks the requested instructions, BI_INVALID_ARGUMENT for unknown values.
 * Not meant to be called while kernels run on other threads. */
bi_status krn_cpu_set_isa(krn_cpu_isa isa);
/* The variant in use: SCALAR or AVX2, never AUTO. */
krn_cpu_isa krn_cpu_get_isa(void);
/* "auto", "scalar", "avx2"; static. */
const char *krn_cpu_isa_name(krn_cpu_isa isa);

#endif
