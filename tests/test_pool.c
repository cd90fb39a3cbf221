/* The runner's thread pool: every job runs exactly once whatever the thread
 * count, a failing job's message reaches the caller, and with several
 * failures it is always the one of lowest job index (each worker records
 * into its own slot, so the messages never race: scripts/test.sh runs this
 * under ThreadSanitizer too). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "rt.h"
#include "test_util.h"

typedef struct {
    atomic_int *count; /* [n_jobs]: times each job ran */
    size_t fail_a, fail_b; /* jobs that fail (SIZE_MAX: none) */
} ctx_t;

static int job(void *vctx, size_t j, int thread, airllm_err *err)
{
    ctx_t *c = vctx;
    (void)thread;
    atomic_fetch_add(&c->count[j], 1);
    if (j == c->fail_a || j == c->fail_b)
        return airllm_errf(err, "job %zu failed", j);
    return 0;
}

int main(void)
{
    enum { N = 997 };
    atomic_int count[N];
    for (int threads = 1; threads <= 4; threads++) {
        rt_pool *p = NULL;
        airllm_err err;
        CHECK(rt_pool_new(threads, &p, &err) == 0, "pool of %d", threads);
        if (!p)
            continue;
        for (int round = 0; round < 50; round++) {
            ctx_t c = {count, SIZE_MAX, SIZE_MAX};
            if (round % 3 == 1)
                c.fail_a = (size_t)(round * 7) % N;
            if (round % 3 == 2)
                c.fail_a = N - 1 - (size_t)round, c.fail_b = (size_t)round * 5;
            for (int i = 0; i < N; i++)
                atomic_store(&count[i], 0);
            memset(&err, 0, sizeof err);
            size_t jobs = round == 0 ? 1 : N;
            int rc = rt_pool_run(p, job, &c, jobs, &err);
            int once = 1;
            for (size_t i = 0; i < jobs; i++)
                once &= atomic_load(&count[i]) == 1;
            CHECK(once, "%d threads, round %d: every job ran once", threads, round);
            size_t first = c.fail_a < c.fail_b ? c.fail_a : c.fail_b;
            if (first >= jobs) {
                CHECK(rc == 0, "%d threads, round %d: no failure reported", threads, round);
            } else {
                char want[64];
                snprintf(want, sizeof want, "job %zu failed", first);
                CHECK(rc == -1 && strcmp(err.msg, want) == 0,
                      "%d threads, round %d: rc %d, '%s', want '%s'", threads, round, rc,
                      err.msg, want);
            }
            if (round == 25)
                rt_pool_set_active(p, threads > 1 ? threads - 1 : 1);
        }
        rt_pool_free(p);
    }
    return test_summary();
}
