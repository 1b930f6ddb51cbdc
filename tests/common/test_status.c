/* test_status.c - bi_status names, descriptions and wire mapping. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/status.h"

static void test_status_every_code_has_text(void **state)
{
    (void)state;
    for (int s = BI_OK; s <= BI_UNAUTHENTICATED; s++) {
        assert_string_not_equal(bi_strerror((bi_status)s), "unknown status");
        assert_string_not_equal(bi_status_name((bi_status)s), "UNKNOWN_STATUS");
    }
    for (int s = BI_STATUS_EXTENDED; s < BI_STATUS_END_; s++) {
        assert_string_not_equal(bi_strerror((bi_status)s), "unknown status");
        assert_string_not_equal(bi_status_name((bi_status)s), "UNKNOWN_STATUS");
    }
}

static void test_status_unknown_values(void **state)
{
    (void)state;
    assert_string_equal(bi_strerror((bi_status)-1), "unknown status");
    assert_string_equal(bi_strerror((bi_status)17), "unknown status");
    assert_string_equal(bi_strerror((bi_status)99), "unknown status");
    assert_string_equal(bi_strerror(BI_STATUS_END_), "unknown status");
    assert_int_equal(bi_status_rpc_code((bi_status)12345), BI_UNKNOWN);
}

static void test_status_wire_mapping(void **state)
{
    (void)state;
    for (int s = BI_OK; s <= BI_UNAUTHENTICATED; s++)
        assert_int_equal(bi_status_rpc_code((bi_status)s), s);
    for (int s = BI_STATUS_EXTENDED; s < BI_STATUS_END_; s++) {
        bi_status w = bi_status_rpc_code((bi_status)s);
        assert_true(w > BI_OK && w <= BI_UNAUTHENTICATED);
    }
    assert_int_equal(bi_status_rpc_code(BI_KV_FULL), BI_RESOURCE_EXHAUSTED);
    assert_int_equal(bi_status_rpc_code(BI_NOMEM), BI_RESOURCE_EXHAUSTED);
    assert_int_equal(bi_status_rpc_code(BI_BAD_FORMAT), BI_INVALID_ARGUMENT);
}

static void test_status_names(void **state)
{
    (void)state;
    assert_string_equal(bi_status_name(BI_OK), "OK");
    assert_string_equal(bi_status_name(BI_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(bi_status_name(BI_KV_FULL), "KV_FULL");
    assert_string_equal(bi_strerror(BI_NOT_FOUND), "not found");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_every_code_has_text),
        cmocka_unit_test(test_status_unknown_values),
        cmocka_unit_test(test_status_wire_mapping),
        cmocka_unit_test(test_status_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
