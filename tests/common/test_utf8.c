/* test_utf8.c - the strict UTF-8 validator on the edges of Unicode's table 3-7. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "common/utf8.h"

static void test_utf8_valid_and_invalid(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t n;
        bool ok;
    } cases[] = {
        {"", 0, true},
        {"plain ascii", 11, true},
        {"\xc3\xa9", 2, true},          /* é */
        {"\xe2\x82\xac", 3, true},      /* € */
        {"\xf0\x9f\x98\x80", 4, true},  /* 😀 */
        {"\xf4\x8f\xbf\xbf", 4, true},  /* U+10FFFF */
        {"a\0b", 3, true},              /* NUL is a character */
        {"\xc0\x80", 2, false},         /* overlong NUL */
        {"\xc1\xbf", 2, false},         /* overlong */
        {"\xe0\x80\x80", 3, false},     /* overlong */
        {"\xf0\x80\x80\x80", 4, false}, /* overlong */
        {"\xed\xa0\x80", 3, false},     /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", 4, false}, /* above U+10FFFF */
        {"\xf5\x80\x80\x80", 4, false}, /* no such lead byte */
        {"\x80", 1, false},             /* lone continuation */
        {"\xe2\x82", 2, false},         /* truncated */
        {"\xe2\x28\xac", 3, false},     /* bad continuation */
        {"ok \xff", 4, false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (bi_utf8_valid(cases[i].s, cases[i].n) != cases[i].ok)
            fail_msg("case %zu: expected %s", i, cases[i].ok ? "valid" : "invalid");
    }
    assert_int_equal(bi_utf8_seq((const unsigned char *)"\xf0\x9f\x98\x80", 4), 4);
    assert_int_equal(bi_utf8_seq((const unsigned char *)"\xf0\x9f\x98", 3), 0);
    assert_int_equal(bi_utf8_seq((const unsigned char *)"A", 1), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_utf8_valid_and_invalid)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
