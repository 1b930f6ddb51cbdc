/*
 * krn_pool.c - the persistent thread pool behind every multithreaded CPU kernel.
 *
 * The forward pass calls krn_pool_run hundreds of times per token with jobs
 * of a few to a few hundred microseconds, so waking the workers must cost far
 * less than a job. Workers therefore spin on the job word for a while after
 * each job (the next one usually comes within microseconds) and only then
 * sleep on a condition variable; the caller wakes sleepers only when the
 * sleeper count says there are any.
 *
 * Tasks are claimed from one 64-bit job word, (sequence << 32) | next task,
 * and the caller waits for the tasks to finish, not for the workers to show
 * up: on a machine where another process holds a core, a descheduled worker
 * must not stall the call, the caller just runs its tasks. The sequence is odd
 * while the caller rewrites the job's fields (a seqlock), so a worker that
 * wakes late can never claim a task against another job's fields. Which
 * thread runs a task never changes what the task computes.
 */
#define BI_LOG_MODULE "krn"

#include "cpu/krn_cpu.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"

/* Spin iterations before a worker sleeps, and before the caller starts
 * yielding while it waits: a few hundred microseconds at one pause per
 * iteration, longer than the gap between two kernels of one token, shorter
 * than a scheduler tick, so an idle pool stops burning a core almost at once. */
#define KRN_POOL_SPIN 4000

struct krn_pool {
    int n_threads; /* the caller included */
    pthread_t *threads;
    int n_started;

    pthread_mutex_t mu;
    pthread_cond_t wake;

    atomic_uint_fast64_t job; /* (sequence << 32) | next task to claim */
    /* The current job, valid while the sequence is even. */
    _Atomic(krn_task_fn) fn;
    _Atomic(void *) arg;
    atomic_int n_tasks;
    atomic_int n_done; /* tasks of the current job that have finished */
    atomic_int n_sleepers;
    atomic_bool stop;
};

typedef struct krn_worker_arg {
    krn_pool *pool;
    int thread;
} krn_worker_arg;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static inline uint32_t job_seq(uint64_t job)
{
    return (uint32_t)(job >> 32);
}

/* Claims and runs tasks of job sequence seq until none are left. */
static void pool_drain(krn_pool *p, uint32_t seq, int thread)
{
    uint64_t v = atomic_load(&p->job);
    for (;;) {
        if (job_seq(v) != seq)
            return;
        krn_task_fn fn = atomic_load_explicit(&p->fn, memory_order_relaxed);
        void *arg = atomic_load_explicit(&p->arg, memory_order_relaxed);
        int n = atomic_load_explicit(&p->n_tasks, memory_order_relaxed);
        int t = (int)(uint32_t)v;
        if (t >= n)
            return;
        /* Success proves the sequence did not move while the fields were
         * read, so they belong to this job. */
        if (!atomic_compare_exchange_weak(&p->job, &v, v + 1))
            continue;
        fn(arg, t, n, thread);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
        v = atomic_load(&p->job);
    }
}

/* A published job other than seen: spins first, then sleeps. */
static uint32_t pool_wait_job(krn_pool *p, uint32_t seen)
{
    for (int i = 0; i < KRN_POOL_SPIN; i++) {
        uint32_t s = job_seq(atomic_load(&p->job));
        if (s != seen && s % 2 == 0)
            return s;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    /* seq_cst increment then load of the job pairs with the caller's seq_cst
     * store of the job then load of n_sleepers: one of them sees the other. */
    atomic_fetch_add(&p->n_sleepers, 1);
    uint32_t s;
    while ((s = job_seq(atomic_load(&p->job))) == seen || s % 2 != 0)
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void *pool_worker(void *varg)
{
    krn_worker_arg wa = *(krn_worker_arg *)varg;
    bi_free(varg);
    krn_pool *p = wa.pool;
    uint32_t seen = 0;
    for (;;) {
        seen = pool_wait_job(p, seen);
        if (atomic_load(&p->stop))
            return NULL;
        pool_drain(p, seen, wa.thread);
    }
}

/* Installs a job and wakes sleeping workers, if any; returns its sequence. */
static uint32_t pool_publish(krn_pool *p, int n_tasks, krn_task_fn fn, void *arg)
{
    uint32_t seq = job_seq(atomic_load_explicit(&p->job, memory_order_relaxed));
    atomic_store(&p->job, (uint64_t)(seq + 1) << 32);
    atomic_thread_fence(memory_order_seq_cst);
    atomic_store_explicit(&p->fn, fn, memory_order_relaxed);
    atomic_store_explicit(&p->arg, arg, memory_order_relaxed);
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_store(&p->job, (uint64_t)(seq + 2) << 32);
    if (atomic_load(&p->n_sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    return seq + 2;
}

static void pool_stop(krn_pool *p)
{
    atomic_store(&p->stop, true);
    pool_publish(p, 0, NULL, NULL);
    for (int i = 0; i < p->n_started; i++)
        pthread_join(p->threads[i], NULL);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 1024 ? 1024 : (int)n;
}

bi_status krn_pool_create(int n_threads, krn_pool **out)
{
    if (out == NULL)
        return BI_INVALID_ARGUMENT;
    *out = NULL;
    if (n_threads <= 0)
        n_threads = online_cpus();
    if (n_threads > 1024) {
        BI_LOGE(NULL, "krn_pool_create: %d threads is more than the limit of 1024", n_threads);
        return BI_INVALID_ARGUMENT;
    }
    krn_pool *p = bi_calloc(1, sizeof(*p));
    if (p == NULL)
        return BI_NOMEM;
    p->n_threads = n_threads;
    p->threads = bi_mallocarray((size_t)n_threads, sizeof(*p->threads));
    if (p->threads == NULL) {
        bi_free(p);
        return BI_NOMEM;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    for (int i = 1; i < n_threads; i++) {
        krn_worker_arg *wa = bi_malloc(sizeof(*wa));
        int rc = wa == NULL ? ENOMEM : 0;
        if (wa != NULL) {
            *wa = (krn_worker_arg){.pool = p, .thread = i};
            rc = pthread_create(&p->threads[p->n_started], NULL, pool_worker, wa);
            if (rc != 0)
                bi_free(wa);
        }
        if (rc != 0) {
            BI_LOGE(NULL, "krn_pool_create: cannot start worker %d of %d (errno %d)", i,
                    n_threads - 1, rc);
            krn_pool_destroy(p);
            return rc == ENOMEM ? BI_NOMEM : BI_RESOURCE_EXHAUSTED;
        }
        p->n_started++;
    }
    *out = p;
    return BI_OK;
}

void krn_pool_destroy(krn_pool *p)
{
    if (p == NULL)
        return;
    pool_stop(p);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->mu);
    bi_free(p->threads);
    bi_free(p);
}

int krn_pool_size(const krn_pool *p)
{
    return p == NULL ? 1 : p->n_threads;
}

void krn_pool_run(krn_pool *p, int n_tasks, krn_task_fn fn, void *arg)
{
    if (n_tasks <= 0 || fn == NULL)
        return;
    if (p == NULL || p->n_threads == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++)
            fn(arg, t, n_tasks, 0);
        return;
    }
    uint32_t seq = pool_publish(p, n_tasks, fn, arg);
    pool_drain(p, seq, 0);
    for (int i = 0; atomic_load_explicit(&p->n_done, memory_order_acquire) < n_tasks; i++) {
        if (i < KRN_POOL_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}
