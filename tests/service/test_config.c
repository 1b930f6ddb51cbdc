/* test_config.c - braidd's flag and environment parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "svc_config.h"

static bi_status parse(svc_config *cfg, char *err, int argc, const char **argv)
{
    return svc_config_parse(cfg, argc, (char **)argv, err, 256);
}

static int clear_env(void **state)
{
    (void)state;
    unsetenv("BRAID_LISTEN");
    unsetenv("BRAID_LOG_LEVEL");
    unsetenv("BRAID_MAX_CALLS");
    unsetenv("BRAID_BACKEND");
    unsetenv("BRAID_KV_MEMORY_FRACTION");
    unsetenv("BRAID_MODEL");
    unsetenv("BRAID_DUMMY");
    unsetenv("BRAID_DTYPE");
    return 0;
}

static void test_config_defaults(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    const char *argv[] = {"braidd"};
    assert_int_equal(parse(&cfg, err, 1, argv), BI_OK);
    assert_int_equal(cfg.n_listen, 1);
    assert_string_equal(cfg.listen[0], "tcp://127.0.0.1:7543");
    assert_int_equal(cfg.log_level, BI_LOG_INFO);
    assert_int_equal(cfg.max_calls, 256);
    assert_false(cfg.help);
}

static void test_config_flags(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    const char *argv[] = {"braidd",      "--listen", "tcp://0.0.0.0:1", "--listen=ipc:///tmp/x",
                          "--log-level", "debug",    "--max-calls",     "8",
                          "--grace=2.5"};
    assert_int_equal(parse(&cfg, err, 9, argv), BI_OK);
    assert_int_equal(cfg.n_listen, 2);
    assert_string_equal(cfg.listen[1], "ipc:///tmp/x");
    assert_int_equal(cfg.log_level, BI_LOG_DEBUG);
    assert_int_equal(cfg.max_calls, 8);
    assert_true(cfg.grace_s == 2.5);
}

/* The engine-facing flags reach the config; out-of-range values are refused. */
static void test_config_engine_flags(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    const char *a0[] = {"braidd"};
    assert_int_equal(parse(&cfg, err, 1, a0), BI_OK);
    assert_true(cfg.kv_memory_fraction < 0); /* not given: chosen by backend */
    assert_null(cfg.backend);
    const char *a1[] = {"braidd", "--backend", "cpu",   "--kv-memory-fraction",
                        "0.5",    "--model",   "m.gguf"};
    assert_int_equal(parse(&cfg, err, 7, a1), BI_OK);
    assert_string_equal(cfg.backend, "cpu");
    assert_true(cfg.kv_memory_fraction == 0.5);
    assert_string_equal(cfg.model_path, "m.gguf");
    const char *a2[] = {"braidd", "--kv-memory-fraction", "1.5"};
    assert_int_equal(parse(&cfg, err, 3, a2), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--kv-memory-fraction"));
    const char *a3[] = {"braidd", "--kv-memory-fraction", "nan"};
    assert_int_equal(parse(&cfg, err, 3, a3), BI_INVALID_ARGUMENT);
    const char *a4[] = {"braidd", "--model", "m.gguf", "--dummy", "llama3-8b"};
    assert_int_equal(parse(&cfg, err, 5, a4), BI_INVALID_ARGUMENT);
}

/* --dtype: auto, bf16 or fp16 (flag or environment), anything else refused
 * when parsed, naming the flag; not given is NULL (auto). */
static void test_config_dtype(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    const char *a0[] = {"braidd"};
    assert_int_equal(parse(&cfg, err, 1, a0), BI_OK);
    assert_null(cfg.dtype);
    const char *names[] = {"auto", "bf16", "fp16"};
    for (int i = 0; i < 3; i++) {
        const char *a[] = {"braidd", "--dtype", names[i]};
        assert_int_equal(parse(&cfg, err, 3, a), BI_OK);
        assert_string_equal(cfg.dtype, names[i]);
    }
    const char *a1[] = {"braidd", "--dtype=fp16"};
    assert_int_equal(parse(&cfg, err, 2, a1), BI_OK);
    assert_string_equal(cfg.dtype, "fp16");
    const char *bad[] = {"float16", "FP16", "f16", "fp32", "bf16 "};
    for (int i = 0; i < 5; i++) {
        const char *a[] = {"braidd", "--dtype", bad[i]};
        err[0] = '\0';
        assert_int_equal(parse(&cfg, err, 3, a), BI_INVALID_ARGUMENT);
        assert_non_null(strstr(err, "--dtype"));
        assert_non_null(strstr(err, bad[i]));
    }
    setenv("BRAID_DTYPE", "bf16", 1);
    assert_int_equal(parse(&cfg, err, 1, a0), BI_OK);
    assert_string_equal(cfg.dtype, "bf16");
    const char *a2[] = {"braidd", "--dtype", "fp16"};
    assert_int_equal(parse(&cfg, err, 3, a2), BI_OK);
    assert_string_equal(cfg.dtype, "fp16"); /* the flag wins */
    setenv("BRAID_DTYPE", "half", 1);
    assert_int_equal(parse(&cfg, err, 1, a0), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--dtype"));
}

static void test_config_env_and_flag_precedence(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    setenv("BRAID_LISTEN", "tcp://127.0.0.1:9", 1);
    setenv("BRAID_LOG_LEVEL", "error", 1);
    const char *argv1[] = {"braidd"};
    assert_int_equal(parse(&cfg, err, 1, argv1), BI_OK);
    assert_string_equal(cfg.listen[0], "tcp://127.0.0.1:9");
    assert_int_equal(cfg.log_level, BI_LOG_ERROR);
    const char *argv2[] = {"braidd", "--listen", "tcp://127.0.0.1:10", "--log-level", "warn"};
    assert_int_equal(parse(&cfg, err, 5, argv2), BI_OK);
    assert_int_equal(cfg.n_listen, 1);
    assert_string_equal(cfg.listen[0], "tcp://127.0.0.1:10");
    assert_int_equal(cfg.log_level, BI_LOG_WARN);
}

static void test_config_bad_values(void **state)
{
    (void)state;
    svc_config cfg;
    char err[256];
    const char *a1[] = {"braidd", "--max-calls", "0"};
    assert_int_equal(parse(&cfg, err, 3, a1), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--max-calls"));
    const char *a2[] = {"braidd", "--bogus"};
    assert_int_equal(parse(&cfg, err, 2, a2), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "unknown option"));
    const char *a3[] = {"braidd", "--listen"};
    assert_int_equal(parse(&cfg, err, 2, a3), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "needs a value"));
    const char *a4[] = {"braidd", "--grace", "-1"};
    assert_int_equal(parse(&cfg, err, 3, a4), BI_INVALID_ARGUMENT);
    const char *a5[] = {"braidd", "--max-message", "99999999999999999999"};
    assert_int_equal(parse(&cfg, err, 3, a5), BI_INVALID_ARGUMENT);
    setenv("BRAID_LOG_LEVEL", "shouty", 1);
    const char *a6[] = {"braidd"};
    assert_int_equal(parse(&cfg, err, 1, a6), BI_INVALID_ARGUMENT);
    assert_non_null(strstr(err, "--log-level"));
}

static void test_config_usage_lists_every_env(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    svc_config_usage("braidd", f);
    fclose(f);
    assert_non_null(strstr(buf, "BRAID_LISTEN"));
    assert_non_null(strstr(buf, "BRAID_LOG_LEVEL"));
    assert_non_null(strstr(buf, "--max-message"));
    assert_non_null(strstr(buf, "--dtype TYPE"));
    assert_non_null(strstr(buf, "BRAID_DTYPE"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_config_defaults, clear_env),
        cmocka_unit_test_setup(test_config_flags, clear_env),
        cmocka_unit_test_setup(test_config_engine_flags, clear_env),
        cmocka_unit_test_setup(test_config_dtype, clear_env),
        cmocka_unit_test_setup(test_config_env_and_flag_precedence, clear_env),
        cmocka_unit_test_setup(test_config_bad_values, clear_env),
        cmocka_unit_test_setup(test_config_usage_lists_every_env, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
