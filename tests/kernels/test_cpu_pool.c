/*
 * test_cpu_pool.c - the CPU kernels' thread pool: every task runs exactly
 * once on a valid thread, for any task count and pool size, whether the
 * workers are spinning or asleep; creation fails cleanly; repeated
 * create/destroy leaks nothing (checked by the ASan build).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "common/alloc.h"
#include "cpu/krn_cpu.h"

#define MAX_TASKS 1000

typedef struct count_job {
    atomic_int runs[MAX_TASKS];
    atomic_int bad; /* calls with a wrong n_tasks or thread index */
    int n_tasks;
    int n_threads;
} count_job;

static void count_task(void *arg, int task, int n_tasks, int thread)
{
    count_job *j = arg;
    if (n_tasks != j->n_tasks || thread < 0 || thread >= j->n_threads || task < 0 ||
        task >= n_tasks) {
        atomic_fetch_add(&j->bad, 1);
        return;
    }
    atomic_fetch_add(&j->runs[task], 1);
}

/* Runs n_tasks counted tasks on p and checks each ran exactly once. */
static void run_counted(krn_pool *p, int n_tasks)
{
    static count_job j;
    for (int i = 0; i < MAX_TASKS; i++)
        atomic_store(&j.runs[i], 0);
    atomic_store(&j.bad, 0);
    j.n_tasks = n_tasks;
    j.n_threads = krn_pool_size(p);
    krn_pool_run(p, n_tasks, count_task, &j);
    assert_int_equal(atomic_load(&j.bad), 0);
    for (int i = 0; i < MAX_TASKS; i++)
        assert_int_equal(atomic_load(&j.runs[i]), i < n_tasks ? 1 : 0);
}

static void test_cpu_pool_runs_every_task_once(void **state)
{
    (void)state;
    static const int task_counts[] = {0, 1, 7, 1000, 2, 3};
    for (int n_threads = 1; n_threads <= 4; n_threads++) {
        krn_pool *p = NULL;
        assert_int_equal(krn_pool_create(n_threads, &p), BI_OK);
        assert_int_equal(krn_pool_size(p), n_threads);
        /* Back-to-back runs: the workers' spinning path. */
        for (int rep = 0; rep < 50; rep++)
            for (size_t i = 0; i < sizeof(task_counts) / sizeof(task_counts[0]); i++)
                run_counted(p, task_counts[i]);
        krn_pool_destroy(p);
    }
}

static void test_cpu_pool_wakes_sleeping_workers(void **state)
{
    (void)state;
    krn_pool *p = NULL;
    assert_int_equal(krn_pool_create(3, &p), BI_OK);
    for (int rep = 0; rep < 5; rep++) {
        /* Long enough for the workers to stop spinning and sleep. */
        nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
        run_counted(p, 1000);
        run_counted(p, 7);
    }
    krn_pool_destroy(p);
}

static void test_cpu_pool_null_runs_inline(void **state)
{
    (void)state;
    assert_int_equal(krn_pool_size(NULL), 1);
    run_counted(NULL, 0);
    run_counted(NULL, 7);
    run_counted(NULL, 1000);
    krn_pool_destroy(NULL);
}

static void test_cpu_pool_create_destroy_repeatedly(void **state)
{
    (void)state;
    for (int i = 0; i < 200; i++) {
        krn_pool *p = NULL;
        assert_int_equal(krn_pool_create(1 + i % 4, &p), BI_OK);
        if (i % 2 == 0)
            run_counted(p, 1 + i % 13);
        krn_pool_destroy(p);
    }
}

static void test_cpu_pool_default_size_is_online_cpus(void **state)
{
    (void)state;
    krn_pool *p = NULL;
    assert_int_equal(krn_pool_create(0, &p), BI_OK);
    assert_true(krn_pool_size(p) >= 1);
    run_counted(p, 1000);
    krn_pool_destroy(p);
}

static void test_cpu_pool_bad_input(void **state)
{
    (void)state;
    assert_int_equal(krn_pool_create(2, NULL), BI_INVALID_ARGUMENT);
    krn_pool *p = (krn_pool *)&p;
    assert_int_equal(krn_pool_create(100000, &p), BI_INVALID_ARGUMENT);
    assert_null(p);

    assert_int_equal(krn_pool_create(2, &p), BI_OK);
    krn_pool_run(p, -5, count_task, NULL); /* no tasks: fn never called */
    krn_pool_run(p, 10, NULL, NULL);       /* no function: nothing to do */
    run_counted(p, 7);
    krn_pool_destroy(p);
}

static void test_cpu_pool_allocation_failure(void **state)
{
    (void)state;
    /* The pool, its thread array, then one argument block per worker: fail
     * each in turn and check the partial pool is torn down (ASan: no leak). */
    for (long n = 0; n < 4; n++) {
        krn_pool *p = (krn_pool *)&p;
        bi_alloc_fail_after(n);
        bi_status st = krn_pool_create(3, &p);
        bi_alloc_fail_after(-1);
        assert_int_equal(st, BI_NOMEM);
        assert_null(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cpu_pool_runs_every_task_once),
        cmocka_unit_test(test_cpu_pool_wakes_sleeping_workers),
        cmocka_unit_test(test_cpu_pool_null_runs_inline),
        cmocka_unit_test(test_cpu_pool_create_destroy_repeatedly),
        cmocka_unit_test(test_cpu_pool_default_size_is_online_cpus),
        cmocka_unit_test(test_cpu_pool_bad_input),
        cmocka_unit_test(test_cpu_pool_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
