/* convert_run as a library call (tools/convert.h): options parsed as the
 * tools parse them, a progress callback that sees every byte read once
 * (begin's total equals the sum of the adds, end comes once, on success
 * and on failure), NULL progress, and a quant run through the same entry.
 *   test_convert SHARED_DIR SCRATCH_DIR */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "convert.h"
#include "test_util.h"

typedef struct {
    int begins, ends, adds_after_end;
    uint64_t total, added;
} counter;

static void c_begin(void *u, uint64_t total)
{
    counter *c = u;
    c->begins++;
    c->total = total;
}

static void c_add(void *u, uint64_t bytes)
{
    counter *c = u;
    c->added += bytes;
    c->adds_after_end += c->ends > 0;
}

static void c_end(void *u) { ((counter *)u)->ends++; }

static void usage(FILE *f) { fprintf(f, "usage\n"); }

/* Parses argv (NULL-terminated) as airllm-split (quant false) or
 * airllm-quant would, then runs the conversion. */
static int convert(bool quant, const convert_progress *p, char **argv)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    optind = 0; /* getopt starts afresh for each parse */
    split_opts o;
    int rc = convert_parse_args(argc, argv, quant, usage, &o);
    return rc ? rc : convert_run(&o, p);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_convert SHARED_DIR SCRATCH_DIR\n");
        return 2;
    }
    cli_prog = "test_convert";
    char src[2048], out[2048], qout[2048], missing[2048], manifest[4096];
    snprintf(src, sizeof src, "%s/models/stories260K", argv[1]);
    snprintf(out, sizeof out, "%s/split", argv[2]);
    snprintf(qout, sizeof qout, "%s/quant", argv[2]);
    snprintf(missing, sizeof missing, "%s/no-such-checkpoint", argv[2]);
    mkdir(argv[2], 0777);

    counter c = {0};
    convert_progress p = {c_begin, c_add, c_end, &c};
    int rc = convert(false, &p, (char *[]){"airllm-split", "-q", "-f", src, out, NULL});
    CHECK(rc == 0, "split: exit %d", rc);
    CHECK(c.begins == 1 && c.ends == 1, "split: begin %d and end %d times, once each", c.begins,
          c.ends);
    struct stat st;
    snprintf(manifest, sizeof manifest, "%s/model.safetensors", src);
    CHECK(stat(manifest, &st) == 0 && c.total > 0 && c.total < (uint64_t)st.st_size,
          "split: total %llu bytes, the tensors of a %lld-byte file",
          (unsigned long long)c.total, (long long)st.st_size);
    CHECK(c.added == c.total && c.adds_after_end == 0,
          "split: adds sum to %llu of %llu, %d after end", (unsigned long long)c.added,
          (unsigned long long)c.total, c.adds_after_end);
    snprintf(manifest, sizeof manifest, "%s/manifest.json", out);
    CHECK(is_file(manifest), "split: %s written", manifest);

    /* The same conversion with no progress at all. */
    rc = convert(false, NULL, (char *[]){"airllm-split", "-q", "-f", src, out, NULL});
    CHECK(rc == 0 && is_file(manifest), "split, NULL progress: exit %d", rc);

    /* airllm-quant through the same entry: it reads the converted units. */
    counter q = {0};
    convert_progress qp = {c_begin, c_add, c_end, &q};
    rc = convert(true, &qp, (char *[]){"airllm-quant", "-q", "-f", "-t", "nf4", out, qout, NULL});
    CHECK(rc == 0, "quant: exit %d", rc);
    CHECK(q.begins == 1 && q.ends == 1 && q.total > 0 && q.added == q.total,
          "quant: begin %d, end %d, %llu of %llu bytes", q.begins, q.ends,
          (unsigned long long)q.added, (unsigned long long)q.total);

    /* A run that fails before streaming never begins (a failure while
     * streaming ends it: convert_run.c, not driven from here). */
    counter f = {0};
    convert_progress fp = {c_begin, c_add, c_end, &f};
    fprintf(stderr, "(an error about %s is expected next)\n", missing);
    char failed_out[2048];
    snprintf(failed_out, sizeof failed_out, "%s/failed", argv[2]);
    rc = convert(false, &fp, (char *[]){"airllm-split", "-q", missing, failed_out, NULL});
    CHECK(rc == 1 && f.begins == 0 && f.ends == 0, "missing input: exit %d, begin %d, end %d", rc,
          f.begins, f.ends);
    CHECK(!is_file(failed_out), "missing input: no %s left", failed_out);
    return test_summary();
}
