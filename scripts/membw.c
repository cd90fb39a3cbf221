/* membw: the read bandwidth of this machine's memory, as the runner's bound.
 *
 *   cc -O2 -pthread -o membw scripts/membw.c && ./membw [MiB] [threads]
 *
 * Sums a large float array (default 1024 MiB, far past any cache) with
 * every thread summing its own slice, several times; prints the best rate
 * in GB/s (1e9 bytes). A matrix-vector product cannot read its weights
 * faster than this. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const float *p;
    size_t n;
    double sum;
} job;

static void *run(void *arg)
{
    job *j = arg;
    /* Eight independent partial sums so the adds are not latency-bound. */
    float s[8] = {0};
    size_t i = 0;
    for (; i + 8 <= j->n; i += 8)
        for (int k = 0; k < 8; k++)
            s[k] += j->p[i + k];
    for (; i < j->n; i++)
        s[0] += j->p[i];
    double t = 0;
    for (int k = 0; k < 8; k++)
        t += s[k];
    j->sum = t;
    return NULL;
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 1024;
    long nt = argc > 2 ? strtol(argv[2], NULL, 10) : sysconf(_SC_NPROCESSORS_ONLN);
    if (mib < 1 || nt < 1 || nt > 256)
        return 2;
    size_t n = mib * 1024 * 1024 / sizeof(float);
    float *a = malloc(n * sizeof *a);
    if (!a)
        return 1;
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(i & 1023) * 1e-3f;
    pthread_t th[256];
    job jobs[256];
    double best = 0, total = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (long k = 0; k < nt; k++) {
            size_t lo = n / (size_t)nt * (size_t)k, hi = k == nt - 1 ? n : n / (size_t)nt * (size_t)(k + 1);
            jobs[k] = (job){a + lo, hi - lo, 0};
            pthread_create(&th[k], NULL, run, &jobs[k]);
        }
        for (long k = 0; k < nt; k++) {
            pthread_join(th[k], NULL);
            total += jobs[k].sum;
        }
        double gbs = (double)(n * sizeof *a) / (now() - t0) / 1e9;
        best = gbs > best ? gbs : best;
    }
    printf("%.2f\n", best);
    fprintf(stderr, "membw: %zu MiB, %ld threads, best of 5: %.2f GB/s (checksum %g)\n", mib, nt,
            best, total);
    free(a);
    return 0;
}
