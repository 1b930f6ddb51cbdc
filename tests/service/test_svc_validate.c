/* test_svc_validate.c - UTF-8, chunk ids, roles, sampling ranges and GenerateRequest checks. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "svc_validate.h"

static void test_svc_validate_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"", true},
        {"plain ascii", true},
        {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", true}, /* é € 😀 */
        {"\xc3", false},                                     /* truncated */
        {"\xc0\xaf", false},                                 /* overlong '/' */
        {"\xe0\x80\xaf", false},                             /* overlong, 3 bytes */
        {"\xed\xa0\x80", false},                             /* surrogate U+D800 */
        {"\xf4\x90\x80\x80", false},                         /* above U+10FFFF */
        {"\xf5\x80\x80\x80", false},
        {"\xff", false},
        {"a\x80", false}, /* lone continuation */
        {"\xef\xbf\xbd", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(bi_utf8_valid(cases[i].s, strlen(cases[i].s)), cases[i].ok);
}

static void test_svc_validate_utf8_sanitize(void **state)
{
    (void)state;
    char *s = svc_utf8_sanitize("a\xffz\xc3", 4);
    assert_string_equal(s, "a\xef\xbf\xbdz\xef\xbf\xbd");
    assert_true(bi_utf8_valid(s, strlen(s)));
    bi_free(s);
    s = svc_utf8_sanitize("ok \xc3\xa9", 5);
    assert_string_equal(s, "ok \xc3\xa9");
    bi_free(s);
}

static void test_svc_validate_text_field(void **state)
{
    (void)state;
    char err[128];
    assert_int_equal(svc_check_text("namespace", "tenant-1", 63, err, sizeof err), BI_OK);
    char long_ns[80];
    memset(long_ns, 'n', sizeof long_ns - 1);
    long_ns[79] = 0;
    assert_int_equal(svc_check_text("namespace", long_ns, 63, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "namespace"));
    assert_int_equal(svc_check_text("text", "bad \xff", 0, err, sizeof err), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "UTF-8"));
}

static void test_svc_validate_chunk_id(void **state)
{
    (void)state;
    char err[128];
    eng_chunk_id id;
    const char *good = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
    assert_int_equal(svc_chunk_id_from_wire("id", good, &id, err, sizeof err), BI_OK);
    assert_int_equal(id.b[1], 0x11);
    assert_int_equal(id.b[31], 0xff);
    const char *bad[] = {
        "",
        "0011",
        "00112233445566778899AABBCCDDEEFF00112233445566778899aabbccddeeff", /* upper case */
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeefg",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff0",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(svc_chunk_id_from_wire("parts[0].chunk_id", bad[i], &id, err, sizeof err),
                         BI_INVALID_ARGUMENT);
        assert_non_null(strstr(err, "parts[0].chunk_id"));
    }
}

static void test_svc_validate_role(void **state)
{
    (void)state;
    char err[128];
    eng_role r;
    assert_int_equal(svc_role_from_wire("role", 0, ENG_ROLE_USER, &r, err, sizeof err), BI_OK);
    assert_int_equal(r, ENG_ROLE_USER);
    assert_int_equal(svc_role_from_wire("role", 1, ENG_ROLE_USER, &r, err, sizeof err), BI_OK);
    assert_int_equal(r, ENG_ROLE_SYSTEM);
    assert_int_equal(svc_role_from_wire("role", 4, ENG_ROLE_USER, &r, err, sizeof err), BI_OK);
    assert_int_equal(r, ENG_ROLE_ASSISTANT);
    assert_int_equal(svc_role_from_wire("role", 5, ENG_ROLE_USER, &r, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_int_equal(svc_role_from_wire("role", -1, ENG_ROLE_USER, &r, err, sizeof err),
                     BI_INVALID_ARGUMENT);
}

static void test_svc_validate_sampling_defaults_and_ranges(void **state)
{
    (void)state;
    char err[256];
    eng_sampling_params p;
    assert_int_equal(svc_sampling_from_wire(NULL, 42, &p, err, sizeof err), BI_OK);
    assert_true(p.temperature == 1.0f);
    assert_int_equal(p.seed, 42);
    assert_int_equal(p.n_logprobs, -1);

    Braid__V1__SamplingParams sp = BRAID__V1__SAMPLING_PARAMS__INIT;
    Braid__V1__FloatValue temp = BRAID__V1__FLOAT_VALUE__INIT;
    Braid__V1__UInt64Value seed = BRAID__V1__UINT64_VALUE__INIT;
    Braid__V1__Int32Value lp = BRAID__V1__INT32_VALUE__INIT;
    sp.temperature = &temp; /* set to 0: greedy, not the default */
    seed.value = 7;
    sp.seed = &seed;
    lp.value = 5;
    sp.logprobs = &lp;
    assert_int_equal(svc_sampling_from_wire(&sp, 42, &p, err, sizeof err), BI_OK);
    assert_true(p.temperature == 0.0f);
    assert_int_equal(p.seed, 7);
    assert_int_equal(p.n_logprobs, 5);

    static const struct {
        float temp, min_p, presence;
        int logprobs;
        const char *field;
    } bad[] = {
        {NAN, 0, 0, 0, "temperature"},   {-1, 0, 0, 0, "temperature"},
        {1e30f, 0, 0, 0, "temperature"}, {INFINITY, 0, 0, 0, "temperature"},
        {1, -0.5f, 0, 0, "min_p"},       {1, NAN, 0, 0, "min_p"},
        {1, 0, 1e9f, 0, "presence"},     {1, 0, 0, 21, "logprobs"},
        {1, 0, 0, -1, "logprobs"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        temp.value = bad[i].temp;
        sp.min_p = bad[i].min_p;
        sp.presence_penalty = bad[i].presence;
        lp.value = bad[i].logprobs;
        err[0] = 0;
        assert_int_equal(svc_sampling_from_wire(&sp, 1, &p, err, sizeof err), BI_INVALID_ARGUMENT);
        assert_non_null(strstr(err, bad[i].field));
        assert_non_null(strstr(err, "sampling."));
    }
}

/* A GenerateRequest of one text part, built on the stack. */
typedef struct gen_fixture {
    Braid__V1__GenerateRequest rq;
    Braid__V1__Part part, *parts[1];
} gen_fixture;

static void gen_fixture_init(gen_fixture *f, const char *text)
{
    braid__v1__generate_request__init(&f->rq);
    braid__v1__part__init(&f->part);
    f->part.content_case = BRAID__V1__PART__CONTENT_TEXT;
    f->part.text = (char *)text;
    f->parts[0] = &f->part;
    f->rq.parts = f->parts;
    f->rq.n_parts = 1;
}

static void test_svc_validate_generate_ok(void **state)
{
    (void)state;
    gen_fixture f;
    gen_fixture_init(&f, "Hello");
    char *stops[] = {"\n\n"};
    f.rq.stop = stops;
    f.rq.n_stop = 1;
    f.rq.timeout_ms = 1500;
    f.rq.reuse_mode = BRAID__V1__REUSE_MODE__REUSE_INDEPENDENT;
    svc_gen g;
    char err[256];
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 9, 1000, &g, err, sizeof err), BI_OK);
    assert_int_equal(g.p.max_tokens, SVC_DEFAULT_MAX_TOKENS);
    assert_int_equal(g.p.n_parts, 1);
    assert_false(g.p.parts[0].is_chunk);
    assert_int_equal(g.p.parts[0].role, ENG_ROLE_USER);
    assert_int_equal(g.p.parts[0].text_len, 5);
    assert_string_equal(g.p.stop[0], "\n\n");
    assert_int_equal(g.p.deadline_ms, 2500);
    assert_int_equal(g.p.reuse, ENG_REUSE_INDEPENDENT);
    assert_null(g.p.request_id);
    svc_gen_fini(&g);
}

static void test_svc_validate_generate_rejects(void **state)
{
    (void)state;
    gen_fixture f;
    svc_gen g;
    char err[256];
    char long_stop[300];
    memset(long_stop, 's', sizeof long_stop - 1);
    long_stop[299] = 0;
    char *stops[] = {long_stop};
    char *bad_stops[] = {"\xc3("};

    gen_fixture_init(&f, "bad \xe2\x82");
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "parts[0].text is not valid UTF-8"));

    gen_fixture_init(&f, "");
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);

    gen_fixture_init(&f, "x");
    f.rq.n_parts = 0;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "parts"));

    gen_fixture_init(&f, "x");
    f.rq.max_tokens = 5000;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "max_tokens"));

    gen_fixture_init(&f, "x");
    f.part.role = 9;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "parts[0].role"));

    gen_fixture_init(&f, "x");
    f.rq.reuse_mode = BRAID__V1__REUSE_MODE__REUSE_REPAIR;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err), BI_UNIMPLEMENTED);
    f.rq.reuse_mode = 77;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);

    gen_fixture_init(&f, "x");
    f.rq.stop = stops;
    f.rq.n_stop = 1;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "stop[0]"));
    f.rq.stop = bad_stops;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);

    gen_fixture_init(&f, "x");
    f.part.content_case = BRAID__V1__PART__CONTENT_CHUNK_ID;
    f.part.chunk_id = "nothex";
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "parts[0].chunk_id"));

    gen_fixture_init(&f, "x");
    f.part.content_case = BRAID__V1__PART__CONTENT__NOT_SET;
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "no content"));

    gen_fixture_init(&f, "x");
    f.rq.client_request_id = "\xff";
    assert_int_equal(svc_gen_from_wire(&f.rq, 2048, 1, 0, &g, err, sizeof err),
                     BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "client_request_id"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_svc_validate_utf8),
        cmocka_unit_test(test_svc_validate_utf8_sanitize),
        cmocka_unit_test(test_svc_validate_text_field),
        cmocka_unit_test(test_svc_validate_chunk_id),
        cmocka_unit_test(test_svc_validate_role),
        cmocka_unit_test(test_svc_validate_sampling_defaults_and_ranges),
        cmocka_unit_test(test_svc_validate_generate_ok),
        cmocka_unit_test(test_svc_validate_generate_rejects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
