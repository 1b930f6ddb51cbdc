/* test_alloc.c - overflow checks, failure injection and array growth. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/alloc.h"

static void test_alloc_size_overflow(void **state)
{
    (void)state;
    size_t r = 7;
    assert_true(bi_size_mul(3, 4, &r));
    assert_int_equal(r, 12);
    assert_false(bi_size_mul(SIZE_MAX / 2 + 1, 2, &r));
    assert_int_equal(r, 12);
    assert_false(bi_size_add(SIZE_MAX, 1, &r));
    assert_true(bi_size_add(SIZE_MAX - 1, 1, &r));
    assert_true(r == SIZE_MAX);
}

static void test_alloc_array_overflow_gives_null(void **state)
{
    (void)state;
    assert_null(bi_calloc(SIZE_MAX / 8 + 1, 16));
    assert_null(bi_mallocarray((size_t)1 << 40, (size_t)1 << 40));
    char *p = bi_malloc(16);
    assert_non_null(p);
    memset(p, 'x', 16);
    assert_null(bi_reallocarray(p, SIZE_MAX, 2));
    assert_int_equal(p[15], 'x'); /* still valid after a failed resize */
    bi_free(p);
}

static void test_alloc_zero_sizes(void **state)
{
    (void)state;
    void *a = bi_malloc(0), *b = bi_calloc(0, 8), *c = bi_mallocarray(0, 0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    bi_free(a);
    bi_free(b);
    bi_free(c);
    bi_free(NULL);
}

static void test_alloc_calloc_zeroes(void **state)
{
    (void)state;
    int *v = bi_calloc(1000, sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(v[i], 0);
    bi_free(v);
}

static void test_alloc_failure_injection(void **state)
{
    (void)state;
    bi_alloc_fail_after(2);
    void *a = bi_malloc(8);
    void *b = bi_malloc(8);
    void *c = bi_malloc(8); /* the third fails */
    void *d = bi_malloc(8); /* and the hook disarms itself */
    assert_non_null(a);
    assert_non_null(b);
    assert_null(c);
    assert_non_null(d);
    bi_free(a);
    bi_free(b);
    bi_free(d);
    bi_alloc_fail_after(0);
    assert_null(bi_strdup("x"));
    bi_alloc_fail_after(-1);
}

static void test_alloc_strdup(void **state)
{
    (void)state;
    char *s = bi_strdup("braid");
    assert_string_equal(s, "braid");
    bi_free(s);
    s = bi_strndup("braidinfer", 5);
    assert_string_equal(s, "braid");
    bi_free(s);
    assert_null(bi_strdup(NULL));
}

static void test_alloc_array_reserve(void **state)
{
    (void)state;
    int *v = NULL;
    size_t cap = 0;
    assert_int_equal(bi_array_reserve((void **)&v, &cap, 3, sizeof *v), BI_OK);
    assert_true(cap >= 3);
    for (int i = 0; i < 3; i++)
        v[i] = i;
    assert_int_equal(bi_array_reserve((void **)&v, &cap, 1000, sizeof *v), BI_OK);
    assert_true(cap >= 1000);
    assert_int_equal(v[2], 2);
    size_t old = cap;
    bi_alloc_fail_after(0);
    assert_int_equal(bi_array_reserve((void **)&v, &cap, old + 1, sizeof *v), BI_NOMEM);
    assert_int_equal(cap, old);
    assert_int_equal(v[1], 1);
    bi_alloc_fail_after(-1);
    assert_int_equal(bi_array_reserve((void **)&v, &cap, SIZE_MAX, sizeof *v), BI_NOMEM);
    bi_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_size_overflow),
        cmocka_unit_test(test_alloc_array_overflow_gives_null),
        cmocka_unit_test(test_alloc_zero_sizes),
        cmocka_unit_test(test_alloc_calloc_zeroes),
        cmocka_unit_test(test_alloc_failure_injection),
        cmocka_unit_test(test_alloc_strdup),
        cmocka_unit_test(test_alloc_array_reserve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
