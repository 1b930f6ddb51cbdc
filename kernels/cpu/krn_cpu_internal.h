/*
 * krn_cpu_internal.h - pieces shared by the CPU kernel sources, not part of
 * the public interface: the run-time ISA choice and the one dot-product tile
 * that matmul, dot and rmsnorm all use, so that they round identically.
 */
#ifndef KRN_CPU_INTERNAL_H
#define KRN_CPU_INTERNAL_H

#include <stdbool.h>

/* True when the AVX2+FMA variants are selected (resolves AUTO on first use). */
bool krn_cpu_use_avx2(void);

/* Scalar dot product of a[0..n) and b[0..n); the portable variant's only
 * reduction, so that krn_cpu_dot and the scalar matmul agree. */
float krn_dot_scalar(const float *a, const float *b, int n);

#if defined(__x86_64__) || defined(__i386__)
#define KRN_HAVE_X86 1
/* AVX2 dot product, the matmul tile's 1x1 case. */
float krn_dot_avx2(const float *a, const float *b, int n);
#endif

#endif
