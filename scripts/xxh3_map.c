/* What the fast load check costs on a mapped unit (docs/benchmarks.md,
 * "Streaming from the page cache"): maps each FILE (already in the page
 * cache: run it twice), and prints GB/s of libxxhash's XXH3-64 (the
 * dispatcher airllm uses: SSE2/AVX2/AVX-512) over the mapping, of a plain
 * 64-bit sum over the same bytes (the memory read bound for one core), and
 * the ms of MADV_POPULATE_READ. Best of 3 per file.
 *
 *   cc -O2 -o xxh3_map scripts/xxh3_map.c -lxxhash && ./xxh3_map FILE... */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#if defined(__x86_64__)
#include <xxh_x86dispatch.h>
#define XXH3 XXH3_64bits_dispatch
#else
#define XXH3 XXH3_64bits
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: xxh3_map FILE...\n");
        return 2;
    }
    printf("%-40s %10s %12s %12s %12s\n", "file", "MiB", "populate ms", "XXH3 GB/s",
           "sum GB/s");
    for (int a = 1; a < argc; a++) {
        int fd = open(argv[a], O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || st.st_size <= 0) {
            fprintf(stderr, "xxh3_map: %s: cannot open\n", argv[a]);
            return 1;
        }
        size_t n = (size_t)st.st_size;
        double bp = 1e30, bh = 1e30, bs = 1e30;
        uint64_t sink = 0;
        for (int r = 0; r < 3; r++) {
            const uint8_t *p = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, 0);
            if (p == MAP_FAILED) {
                fprintf(stderr, "xxh3_map: %s: cannot map\n", argv[a]);
                return 1;
            }
            double t = now();
            madvise((void *)p, n, MADV_POPULATE_READ);
            double tp = now() - t;
            t = now();
            sink ^= XXH3(p, n);
            double th = now() - t;
            t = now();
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (size_t i = 0; i + 32 <= n; i += 32) {
                uint64_t w[4];
                memcpy(w, p + i, sizeof w);
                s0 += w[0];
                s1 += w[1];
                s2 += w[2];
                s3 += w[3];
            }
            double ts = now() - t;
            sink ^= s0 ^ s1 ^ s2 ^ s3;
            munmap((void *)p, n);
            bp = tp < bp ? tp : bp;
            bh = th < bh ? th : bh;
            bs = ts < bs ? ts : bs;
        }
        close(fd);
        printf("%-40s %10.1f %12.2f %12.2f %12.2f\n", argv[a], (double)n / 1048576.0,
               bp * 1e3, (double)n / bh / 1e9, (double)n / bs / 1e9);
        if (sink == 42)
            printf(" \n"); /* keeps the sums */
    }
    return 0;
}
