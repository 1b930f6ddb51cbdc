/*
 * krn_pool.c - the persistent thread pool behind every multithreaded CPU kernel.
 *
 * The forward pass calls krn_pool_run hundreds of times per token with jobs
 * of a few to a few hundred microseconds, so waking the workers must cost far
 * less than a job. Workers therefore spin on a generation counter for a while
 * after each job (the next one usually comes within microseconds) and only
 * then sleep on a condition variable; the caller wakes sleepers only when the
 * sleeper count says there are any. Tasks are handed out by an atomic counter,
 * so a late worker simply finds fewer tasks left: which thread runs a task
 * never changes what the task computes.
 */
#define BI_LOG_MODULE "krn"

#include "cpu/krn_cpu.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"

/* Spin iterations before a worker sleeps, and before the caller starts
 * yielding while it waits: about 100-200 us at one pause per iteration, longer
 * than the gap between two kernels of one token, shorter than a scheduler
 * tick, so idle pools stop burning a core almost at once. */
#define KRN_POOL_SPIN 2000

struct krn_pool {
    int n_threads; /* the caller included */
    pthread_t *threads;
    int n_started;

    pthread_mutex_t mu;
    pthread_cond_t wake;

    /* The current job; written by the caller before it bumps gen. */
    krn_task_fn fn;
    void *arg;
    int n_tasks;

    atomic_uint gen;      /* bumped once per job, and once to stop */
    atomic_int next_task; /* the next task index to hand out */
    atomic_int n_done;    /* workers that finished the current job */
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

/* Runs tasks of the current job until none are left. */
static void pool_drain(krn_pool *p, int thread)
{
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= p->n_tasks)
            return;
        p->fn(p->arg, t, p->n_tasks, thread);
    }
}

/* Waits until gen differs from seen: spins first, then sleeps. */
static unsigned pool_wait_job(krn_pool *p, unsigned seen)
{
    for (int i = 0; i < KRN_POOL_SPIN; i++) {
        unsigned g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->mu);
    /* seq_cst increment then load of gen pairs with the caller's seq_cst
     * bump of gen then load of n_sleepers: one of them sees the other. */
    atomic_fetch_add(&p->n_sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen)
        pthread_cond_wait(&p->wake, &p->mu);
    atomic_fetch_sub(&p->n_sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *pool_worker(void *varg)
{
    krn_worker_arg wa = *(krn_worker_arg *)varg;
    bi_free(varg);
    krn_pool *p = wa.pool;
    unsigned seen = 0;
    for (;;) {
        seen = pool_wait_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            return NULL;
        pool_drain(p, wa.thread);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
}

/* Bumps gen and wakes sleeping workers, if any. */
static void pool_publish(krn_pool *p)
{
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->n_sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
}

static void pool_stop(krn_pool *p)
{
    atomic_store(&p->stop, true);
    pool_publish(p);
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
    p->fn = fn;
    p->arg = arg;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    pool_publish(p);
    pool_drain(p, 0);
    /* Every worker must check in, not just every task finish: a worker that
     * woke late still reads fn and n_tasks, so the next job cannot overwrite
     * them before it has. */
    int workers = p->n_threads - 1;
    for (int i = 0; atomic_load_explicit(&p->n_done, memory_order_acquire) < workers; i++) {
        if (i < KRN_POOL_SPIN)
            cpu_relax();
        else
            sched_yield();
    }
}
