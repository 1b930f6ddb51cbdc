/*
 * krn_cpu.h - the CPU backend's kernels: a persistent thread pool and the fp32
 * operations the forward pass spends its time in.
 *
 * All matrices are row-major. Functions that take a pool split their work
 * over it and return when all of it is done; a NULL pool runs on the calling
 * thread. The kernels never allocate.
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
 * Must be called from one thread at a time per pool. */
typedef void (*krn_task_fn)(void *arg, int task, int n_tasks, int thread);
void krn_pool_run(krn_pool *p, int n_tasks, krn_task_fn fn, void *arg);

/* y[M][N] = x[M][K] . w[N][K]^T (+ bias[N] when bias is not NULL).
 * The weight layout is nn.Linear's: w row n holds output feature n. */
void krn_cpu_matmul(krn_pool *p, float *y, const float *x, const float *w, const float *bias,
                    int M, int N, int K);

/* y[m][:] = x[m][:] / sqrt(mean(x[m]^2) + eps) * w[:] for m in [0, M); y may be x. */
void krn_cpu_rmsnorm(float *y, const float *x, const float *w, int M, int D, float eps);

/* Sum of a[i] * b[i]. */
float krn_cpu_dot(const float *a, const float *b, int n);

/* y[i] += a * x[i]. */
void krn_cpu_axpy(float *y, float a, const float *x, int n);

/* out[i] = silu(gate[i]) * up[i] for n elements; out may alias gate. */
void krn_cpu_silu_mul(float *out, const float *gate, const float *up, size_t n);

#endif
