/*
 * test_metrics.h - how tests compare logits with a reference (header-only,
 * test code only): the error scaled by the largest reference value, and argmax
 * (ties to the lowest index, like greedy sampling).
 */
#ifndef BRAID_TEST_METRICS_H
#define BRAID_TEST_METRICS_H

#include <math.h>
#include <stddef.h>

/* max |got - ref| over max |ref|; INFINITY when got holds a NaN or infinity. */
static inline double scaled_err(const float *got, const float *ref, size_t n)
{
    double emax = 0, rmax = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(got[i]))
            return INFINITY;
        double d = fabs((double)got[i] - ref[i]);
        emax = d > emax ? d : emax;
        rmax = fabs(ref[i]) > rmax ? fabs(ref[i]) : rmax;
    }
    return emax / (rmax > 0 ? rmax : 1);
}

static inline int argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

#endif
