/*
 * alloc.h - checked host allocation.
 *
 * Running out of memory is a status in Braidinfer, not a crash, so these return
 * NULL (or BI_NOMEM) instead of aborting. Every size computation that could
 * overflow goes through bi_size_mul / bi_size_add, and the array allocators do
 * it for you: a count or size from a file or a request can never wrap into a
 * small allocation.
 *
 * Memory from bi_malloc, bi_calloc, bi_mallocarray, bi_reallocarray and
 * bi_strdup is released with bi_free (which is free(); NULL is fine).
 *
 * For tests, bi_alloc_fail_after(n) makes the (n+1)-th next allocation through
 * these helpers fail, so error paths can be exercised deterministically.
 */
#ifndef BI_ALLOC_H
#define BI_ALLOC_H

#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* *out = a * b; returns false (and leaves *out unchanged) on overflow. */
bool bi_size_mul(size_t a, size_t b, size_t *out);
/* *out = a + b; returns false (and leaves *out unchanged) on overflow. */
bool bi_size_add(size_t a, size_t b, size_t *out);

/* malloc(size); size 0 allocates one byte so that NULL always means failure. */
void *bi_malloc(size_t size);
/* Zeroed n * size bytes; NULL on overflow or failure. */
void *bi_calloc(size_t n, size_t size);
/* Uninitialised n * size bytes; NULL on overflow or failure. */
void *bi_mallocarray(size_t n, size_t size);
/* Resizes p to n * size bytes. On overflow or failure returns NULL and p stays
 * valid and owned by the caller. */
void *bi_reallocarray(void *p, size_t n, size_t size);
/* A copy of s (NULL gives NULL). */
char *bi_strdup(const char *s);
/* A NUL-terminated copy of the first n bytes of s. */
char *bi_strndup(const char *s, size_t n);
void bi_free(void *p);

/* Grows *arr (holding *cap elements of elem_size bytes) so that it holds at
 * least need elements, at least doubling. Returns BI_OK, or BI_NOMEM with *arr
 * and *cap unchanged. */
bi_status bi_array_reserve(void **arr, size_t *cap, size_t need, size_t elem_size);

/* Test hook: after n more successful allocations through these helpers, the
 * next one fails (once). A negative n disables the hook (default). */
void bi_alloc_fail_after(long n);

#endif
