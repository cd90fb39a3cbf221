/* A fixed thread pool: rt_pool_run hands out job indices from an atomic
 * counter to the calling thread and the workers, and returns when all are
 * done. One run at a time (the forward pass is sequential).
 *
 * A decode step is a few hundred short runs (one per matrix), so waking
 * sleeping threads through a condition variable each time cost a fifth of
 * the step (perf: futex wake-ups and task switches). Workers therefore spin
 * on the run counter for a while before they sleep, and the caller spins
 * for their completion; a worker idle longer than the spin sleeps, so an
 * idle pool (or one waiting on disk) does not burn the cores. */
#include "rt.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

/* No PAUSE in the spin: under KVM a PAUSE loop exits to the hypervisor
 * (pause-loop exiting), which made every run cost a millisecond on the
 * 2-vCPU development VM. A plain load loop is ~1 ns per iteration. */
#define cpu_relax() ((void)0)

/* How long a worker spins before it sleeps: longer than the serial parts
 * of a decode step between two runs (norms, RoPE, attention over a short
 * context: tens of microseconds), so that a worker sleeps only when the
 * caller waits on disk or is idle. Waking it costs the caller a futex call
 * and the worker tens of microseconds under KVM. Counting iterations
 * instead of time slept too early on fast cores (perf: 4% of a SmolLM2
 * step in pthread_cond_broadcast). */
#define SPIN_SECONDS 200e-6
/* Loads between two looks at the clock (a vDSO call, ~20 ns). */
#define SPIN_CHECK 2048

typedef struct {
    bool failed;
    size_t job;
    airllm_err err;
} rt_pool_fail;

struct rt_pool {
    int n;                 /* threads including the caller */
    pthread_t *th;
    pthread_mutex_t lock;
    pthread_cond_t go;
    pthread_cond_t resume; /* for workers set aside by rt_pool_set_active */
    atomic_int active;     /* threads taking part, the caller included */
    atomic_ulong gen;      /* bumped per run */
    atomic_int pending;    /* workers still in the current run */
    atomic_int sleepers;   /* workers blocked on go */
    atomic_bool stop;
    rt_pool_job fn;
    void *ctx;
    size_t n_jobs;
    atomic_size_t next;
    /* [n]: one per thread, written only by that thread during a run and
     * read by the caller once pending is 0 (the atomic orders the two), so
     * failing jobs never copy messages over each other. */
    rt_pool_fail *fails;
};

typedef struct {
    rt_pool *p;
    int id;
} worker_arg;

static void drain(rt_pool *p, int id)
{
    rt_pool_fail *f = &p->fails[id];
    for (;;) {
        size_t j = atomic_fetch_add(&p->next, 1);
        if (j >= p->n_jobs)
            break;
        airllm_err e;
        /* Jobs are taken in increasing order, so a thread's first failure
         * is its lowest. */
        if (p->fn(p->ctx, j, id, &e) && !f->failed) {
            f->failed = true;
            f->job = j;
            f->err = e;
        }
    }
}

static void *worker(void *arg)
{
    worker_arg *a = arg;
    rt_pool *p = a->p;
    int id = a->id;
    free(a);
    unsigned long seen = 0;
    for (;;) {
        if (id >= atomic_load(&p->active) && !atomic_load(&p->stop)) {
            /* Set aside: sleep until rt_pool_set_active takes us back,
             * without spinning on the core left to the prefetch thread. */
            pthread_mutex_lock(&p->lock);
            while (id >= atomic_load(&p->active) && !atomic_load(&p->stop))
                pthread_cond_wait(&p->resume, &p->lock);
            pthread_mutex_unlock(&p->lock);
            seen = atomic_load(&p->gen); /* runs held meanwhile are not ours */
            continue;
        }
        double spin_end = 0;
        for (unsigned spins = 1; atomic_load(&p->gen) == seen && !atomic_load(&p->stop);
             spins++) {
            cpu_relax();
            if (spins % SPIN_CHECK == 0) {
                double now = airllm_now();
                if (spin_end == 0)
                    spin_end = now + SPIN_SECONDS;
                else if (now > spin_end)
                    break;
            }
        }
        if (atomic_load(&p->gen) == seen && !atomic_load(&p->stop)) {
            /* Sleep. The caller bumps gen, then wakes sleepers: counting
             * ourselves before the last check (both seq_cst) means it either
             * sees us or we see its bump. */
            pthread_mutex_lock(&p->lock);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->go, &p->lock);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->lock);
        }
        if (atomic_load(&p->stop))
            break;
        seen = atomic_load(&p->gen);
        /* active is set before gen is bumped: a run that leaves us out did
         * not count us in pending. */
        if (id >= atomic_load(&p->active))
            continue;
        drain(p, id);
        atomic_fetch_sub(&p->pending, 1);
    }
    return NULL;
}

void rt_pool_set_active(rt_pool *p, int threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > p->n)
        threads = p->n;
    int old = atomic_exchange(&p->active, threads);
    if (threads > old) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->resume);
        pthread_mutex_unlock(&p->lock);
    }
}

int rt_pool_new(int threads, rt_pool **out, airllm_err *err)
{
    rt_pool *p = calloc(1, sizeof *p);
    if (!p)
        return airllm_errf(err, "out of memory");
    p->n = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->resume, NULL);
    atomic_store(&p->active, p->n);
    p->th = calloc((size_t)p->n, sizeof *p->th);
    p->fails = calloc((size_t)p->n, sizeof *p->fails);
    if (!p->th || !p->fails) {
        free(p->th);
        free(p->fails);
        free(p);
        return airllm_errf(err, "out of memory");
    }
    for (int i = 1; i < p->n; i++) {
        worker_arg *a = malloc(sizeof *a);
        if (!a || pthread_create(&p->th[i], NULL, worker, a ? (a->p = p, a->id = i, a) : NULL)) {
            free(a);
            p->n = i;
            rt_pool_free(p);
            return airllm_errf(err, "cannot start %d threads", threads);
        }
    }
    *out = p;
    return 0;
}

void rt_pool_free(rt_pool *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->lock);
    atomic_store(&p->stop, true);
    pthread_cond_broadcast(&p->go);
    pthread_cond_broadcast(&p->resume);
    pthread_mutex_unlock(&p->lock);
    for (int i = 1; i < p->n; i++)
        pthread_join(p->th[i], NULL);
    free(p->th);
    free(p->fails);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->resume);
    free(p);
}

int rt_pool_threads(const rt_pool *p)
{
    return atomic_load(&((rt_pool *)p)->active);
}

int rt_pool_run(rt_pool *p, rt_pool_job fn, void *ctx, size_t n_jobs, airllm_err *err)
{
    int active = atomic_load(&p->active);
    p->fn = fn;
    p->ctx = ctx;
    p->n_jobs = n_jobs;
    for (int i = 0; i < active; i++)
        p->fails[i].failed = false;
    atomic_store(&p->next, 0);
    if (active == 1 || n_jobs <= 1) {
        drain(p, 0);
    } else {
        atomic_store(&p->pending, active - 1);
        atomic_fetch_add(&p->gen, 1); /* publishes the fields above */
        if (atomic_load(&p->sleepers) > 0) {
            pthread_mutex_lock(&p->lock);
            pthread_cond_broadcast(&p->go);
            pthread_mutex_unlock(&p->lock);
        }
        drain(p, 0);
        while (atomic_load(&p->pending) > 0)
            cpu_relax();
    }
    const rt_pool_fail *first = NULL;
    for (int i = 0; i < active; i++)
        if (p->fails[i].failed && (!first || p->fails[i].job < first->job))
            first = &p->fails[i];
    if (first) {
        *err = first->err;
        return -1;
    }
    return 0;
}
