/*
 * krn_smoke.h - the CUDA smoke path: one trivial kernel (y = a*x + y) and a
 * device query, used to prove that the CUDA build, link and run work end to end.
 *
 * Launchers follow the kernel conventions: they take a stream, never allocate
 * or synchronise, check the launch, and return a status instead of aborting.
 * All pointers are device pointers owned by the caller.
 */
#ifndef KRN_SMOKE_H
#define KRN_SMOKE_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "common/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* y[i] = a * x[i] + y[i] for i in [0, n). n < 0 is BI_INVALID_ARGUMENT; n == 0
 * launches nothing. Returns BI_DEVICE if the launch fails. */
bi_status krn_smoke_saxpy(float *y, const float *x, float a, long n, cudaStream_t stream);

/* Writes a one-line description of device dev (name, compute capability,
 * multiprocessors, memory) into buf. BI_NO_DEVICE if dev does not exist. */
bi_status krn_device_describe(int dev, char *buf, size_t size);

#ifdef __cplusplus
}
#endif

#endif
