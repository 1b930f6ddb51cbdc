/* test_log.c - logger levels, sinks, request ids, formatting and threads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#define BI_LOG_MODULE "test"
#include "common/log.h"

struct capture {
    int count;
    bi_log_level last_level;
    char last_module[32];
    char last_req[64];
    char last_msg[2048];
};

static void capture_sink(const bi_log_record *rec, void *user)
{
    struct capture *c = user;
    c->count++;
    c->last_level = rec->level;
    snprintf(c->last_module, sizeof c->last_module, "%s", rec->module);
    snprintf(c->last_req, sizeof c->last_req, "%s", rec->req_id ? rec->req_id : "(none)");
    snprintf(c->last_msg, sizeof c->last_msg, "%s", rec->message);
}

static int setup(void **state)
{
    static struct capture c;
    memset(&c, 0, sizeof c);
    bi_log_set_sink(capture_sink, &c);
    bi_log_set_level(BI_LOG_INFO);
    *state = &c;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    bi_log_set_sink(NULL, NULL);
    bi_log_set_level(BI_LOG_INFO);
    return 0;
}

static void test_log_levels_filter(void **state)
{
    struct capture *c = *state;
    BI_LOGD(NULL, "hidden %d", 1);
    assert_int_equal(c->count, 0);
    BI_LOGI(NULL, "shown %d", 2);
    assert_int_equal(c->count, 1);
    assert_string_equal(c->last_msg, "shown 2");
    assert_int_equal(c->last_level, BI_LOG_INFO);
    bi_log_set_level(BI_LOG_ERROR);
    BI_LOGW(NULL, "hidden");
    assert_int_equal(c->count, 1);
    BI_LOGE(NULL, "err");
    assert_int_equal(c->count, 2);
    bi_log_set_level(BI_LOG_OFF);
    BI_LOGE(NULL, "nothing");
    assert_int_equal(c->count, 2);
    bi_log_set_level((bi_log_level)42); /* ignored */
    assert_int_equal(bi_log_get_level(), BI_LOG_OFF);
}

static void test_log_request_id_and_module(void **state)
{
    struct capture *c = *state;
    BI_LOGW("req-17", "chunk %s missing", "abc");
    assert_string_equal(c->last_req, "req-17");
    assert_string_equal(c->last_module, "test");
    assert_string_equal(c->last_msg, "chunk abc missing");
    bi_log_write(BI_LOG_ERROR, NULL, NULL, "x");
    assert_string_equal(c->last_module, "braid");
    assert_string_equal(c->last_req, "(none)");
}

static void test_log_truncates_long_messages(void **state)
{
    struct capture *c = *state;
    char big[4000];
    memset(big, 'a', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    BI_LOGI(NULL, "%s", big);
    assert_int_equal(strlen(c->last_msg), 1023);
}

static void test_log_no_sink_discards(void **state)
{
    struct capture *c = *state;
    bi_log_set_sink(NULL, NULL);
    BI_LOGE(NULL, "into the void");
    assert_int_equal(c->count, 0);
}

static void test_log_level_parse(void **state)
{
    (void)state;
    bi_log_level l = BI_LOG_INFO;
    assert_int_equal(bi_log_level_parse("DEBUG", &l), BI_OK);
    assert_int_equal(l, BI_LOG_DEBUG);
    assert_int_equal(bi_log_level_parse("warning", &l), BI_OK);
    assert_int_equal(l, BI_LOG_WARN);
    assert_int_equal(bi_log_level_parse("loud", &l), BI_INVALID_ARGUMENT);
    assert_int_equal(l, BI_LOG_WARN);
    assert_int_equal(bi_log_level_parse(NULL, &l), BI_INVALID_ARGUMENT);
    assert_string_equal(bi_log_level_name(BI_LOG_ERROR), "error");
}

static void test_log_stderr_format(void **state)
{
    (void)state;
    bi_log_record rec = {.level = BI_LOG_WARN,
                         .module = "svc",
                         .req_id = "9",
                         .message = "hello",
                         .time_ns = 1700000000123456789LL};
    char buf[256];
    bi_log_format(&rec, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z WARN  svc [req 9] hello");
    rec.req_id = NULL;
    bi_log_format(&rec, buf, sizeof buf);
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z WARN  svc hello");

    FILE *f = tmpfile();
    assert_non_null(f);
    bi_log_stderr_sink(&rec, f);
    rewind(f);
    char line[256] = {0};
    assert_non_null(fgets(line, sizeof line, f));
    assert_string_equal(line, "2023-11-14T22:13:20.123Z WARN  svc hello\n");
    fclose(f);
}

static void *log_thread(void *arg)
{
    (void)arg;
    for (int i = 0; i < 1000; i++)
        BI_LOGI("t", "line %d", i);
    return NULL;
}

static void test_log_threads_serialised(void **state)
{
    struct capture *c = *state;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_thread, NULL), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    assert_int_equal(c->count, 4000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_log_levels_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_request_id_and_module, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_truncates_long_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_no_sink_discards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_level_parse, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_stderr_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_threads_serialised, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
