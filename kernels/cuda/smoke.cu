// smoke.cu - a trivial kernel and a device query: the first thing to run on a
// new GPU machine, proving the build targets and the runtime link.
#include "krn_smoke.h"

#include <cstdio>

static __global__ void saxpy_kernel(float *__restrict__ y, const float *__restrict__ x, float a,
                                    long n)
{
    for (long i = blockIdx.x * (long)blockDim.x + threadIdx.x; i < n;
         i += (long)gridDim.x * blockDim.x)
        y[i] = a * x[i] + y[i];
}

extern "C" bi_status krn_smoke_saxpy(float *y, const float *x, float a, long n, cudaStream_t stream)
{
    if (n < 0 || (n > 0 && (!x || !y)))
        return BI_INVALID_ARGUMENT;
    if (n == 0)
        return BI_OK;
    const int threads = 256;
    long blocks = (n + threads - 1) / threads;
    if (blocks > 65535L * 16)
        blocks = 65535L * 16;
    saxpy_kernel<<<(unsigned)blocks, threads, 0, stream>>>(y, x, a, n);
    return cudaGetLastError() == cudaSuccess ? BI_OK : BI_DEVICE;
}

extern "C" bi_status krn_device_describe(int dev, char *buf, size_t size)
{
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || dev < 0 || dev >= count) {
        cudaGetLastError(); // clear the sticky "no device" error
        return BI_NO_DEVICE;
    }
    cudaDeviceProp p;
    if (cudaGetDeviceProperties(&p, dev) != cudaSuccess)
        return BI_DEVICE;
    snprintf(buf, size, "%s, compute capability %d.%d, %d SMs, %.1f GiB, L2 %d MiB", p.name,
             p.major, p.minor, p.multiProcessorCount, p.totalGlobalMem / 1073741824.0,
             p.l2CacheSize >> 20);
    return BI_OK;
}
