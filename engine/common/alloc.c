/* alloc.c - overflow-checked allocation helpers with a failure-injection hook. */
#include "alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static atomic_long fail_countdown = -1;

/* True when the injection hook says this allocation must fail. */
static bool alloc_should_fail(void)
{
    long v = atomic_load(&fail_countdown);
    while (v >= 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &v, v - 1))
            return v == 0;
    }
    return false;
}

void bi_alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n < 0 ? -1 : n);
}

bool bi_size_mul(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_mul_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

bool bi_size_add(size_t a, size_t b, size_t *out)
{
    size_t r;
    if (__builtin_add_overflow(a, b, &r))
        return false;
    *out = r;
    return true;
}

void *bi_malloc(size_t size)
{
    if (alloc_should_fail())
        return NULL;
    return malloc(size ? size : 1);
}

void *bi_calloc(size_t n, size_t size)
{
    size_t total;
    if (!bi_size_mul(n, size, &total) || alloc_should_fail())
        return NULL;
    return calloc(total ? n : 1, total ? size : 1);
}

void *bi_mallocarray(size_t n, size_t size)
{
    size_t total;
    if (!bi_size_mul(n, size, &total))
        return NULL;
    return bi_malloc(total);
}

void *bi_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (!bi_size_mul(n, size, &total) || alloc_should_fail())
        return NULL;
    return realloc(p, total ? total : 1);
}

char *bi_strndup(const char *s, size_t n)
{
    if (!s)
        return NULL;
    size_t len = strnlen(s, n);
    char *d = bi_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *bi_strdup(const char *s)
{
    return s ? bi_strndup(s, SIZE_MAX) : NULL;
}

void bi_free(void *p)
{
    free(p);
}

bi_status bi_array_reserve(void **arr, size_t *cap, size_t need, size_t elem_size)
{
    if (need <= *cap)
        return BI_OK;
    size_t ncap = *cap ? *cap : 8;
    while (ncap < need) {
        if (!bi_size_mul(ncap, 2, &ncap))
            return BI_NOMEM;
    }
    void *n = bi_reallocarray(*arr, ncap, elem_size);
    if (!n)
        return BI_NOMEM;
    *arr = n;
    *cap = ncap;
    return BI_OK;
}
