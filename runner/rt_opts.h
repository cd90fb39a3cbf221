/* The model, memory, device and sampling options that airllm-run and
 * airllm-serve share (rt_opts.c): one table of long options, one parser,
 * one usage text, so the two tools never drift apart. Codes are >= 1000 so
 * that they never meet a tool's own short options. Nothing here prints
 * except through cli_usage_error (rt_opts_parse returns its exit code). */
#ifndef AIRLLM_RT_OPTS_H
#define AIRLLM_RT_OPTS_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>

#include "rt.h"

typedef struct {
    /* memory and I/O */
    uint64_t budget; /* --mem-budget: bytes of weights kept resident */
    bool prefetch, direct;
    bool int8_act; /* --int8-activations: airllm_mm_set_q8(1) */
    rt_verify verify_load;
    int threads, io_threads; /* <= 0: the defaults of rt_model_open */
    /* device */
    bool cuda, gpu_opt;
    rt_cuda_opts cuda_opts;
    /* sampling */
    long max_new;
    bool max_new_set;
    double temperature, top_p;
    long top_k;
    uint64_t seed;
    double repeat_penalty;  /* --repeat-penalty: 1 is off (llama.cpp's rule, rt_sample.c) */
    uint64_t repeat_last_n; /* --repeat-last-n: tokens it looks back over */
} rt_opts;

/* Entries of the shared long options, to be copied into a tool's table
 * (RT_OPTS_N of them, without the terminating zero entry). -n and -j are
 * the short forms of --max-new-tokens and --jobs (--threads); -t, the old
 * spelling of -j, still works with a note (docs/options.md): a tool passes
 * 'n', 'j' and 't' to rt_opts_parse too. */
#define RT_OPTS_N 18
extern const struct option rt_opts_long[RT_OPTS_N];

/* A tool's getopt_long table: its own n_own entries, then the shared ones,
 * then the terminating zero entry (out holds n_own + RT_OPTS_N + 1). */
void rt_opts_table(const struct option *own, size_t n_own, struct option *out);

/* Defaults: half the available memory as budget, prefetch, fast load
 * checks, greedy sampling, 64 new tokens. */
void rt_opts_init(rt_opts *o);
/* Handles option ch (a code of rt_opts_long, or 'n', 'j', 't') with argument
 * arg: 0 done, 1 not one of these options, 2 a usage error (printed). */
int rt_opts_parse(rt_opts *o, int ch, const char *arg);
/* After all options: 2 (printed) for GPU options without --device cuda. */
int rt_opts_check(const rt_opts *o);
/* The usage text of these options (sections Generation, Memory and I/O,
 * Device). */
extern const char rt_opts_usage_gen[], rt_opts_usage_mem[];

/* Opens the model these options describe. */
int rt_opts_model_open(const rt_opts *o, rt_model *m, const char *dir, airllm_err *err);

#endif
