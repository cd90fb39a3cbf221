/* What airllm-verify's files share (internal): the options, the context,
 * and how a problem is reported. airllm-verify.c holds the checks and the
 * command line, verify_against.c the --against comparison. */
#ifndef AIRLLM_VERIFY_H
#define AIRLLM_VERIFY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "airllm_checkpoint.h"
#include "airllm_container.h"
#include "airllm_manifest.h"
#include "cli.h"
#include "rt.h"

#define CMP_CHUNK (4u << 20)
#define MAX_PROBLEMS 1000

typedef struct {
    const char *dir, *against;
    bool quick, json;
    unsigned jobs;
} verify_opts;

typedef struct {
    char *file, *tensor, *msg;
} problem;

/* A name and its index, sorted by name: models with tens of thousands of
 * tensors must not be matched by nested linear scans. */
typedef struct {
    const char *name;
    size_t index;
} name_ref;

typedef struct {
    verify_opts o;
    airllm_manifest m;
    airllm_ckpt src; /* --against */
    name_ref *src_by_name; /* src's tensors sorted by name, for lookups */
    /* The manifest's tensors grouped by unit, in manifest order: unit u's
     * are by_unit[unit_start[u] .. unit_start[u + 1]). A scan of every
     * tensor per unit was quadratic (a 1M-tensor verify took 522 s). */
    size_t *unit_start, *by_unit;
    pthread_mutex_t lock;
    problem *problems;
    size_t n_problems, n_dropped;
    /* work list: unit files, then copied files */
    size_t n_work, next_work;
    uint64_t bytes_hashed;
    /* The bar on a terminal, over the listed files' bytes; advanced by the
     * workers under lock, like bytes_hashed. */
    cli_progress prog;
    /* airllm-run's view of config.json, when it is a model the runner
     * implements: every unit is then checked as the runner would. */
    rt_config rcfg;
    bool rcfg_ok;
    const char *tied_to; /* the manifest's tied LM head, or NULL */
    bool incomplete; /* the directory is not (yet) a complete conversion */
} verify_ctx;

/* Records a problem (thread-safe; at most MAX_PROBLEMS are kept). */
void report(verify_ctx *v, const char *file, const char *tensor, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Messages from lib/ start with the path; strip DIR/ so reports read well. */
const char *strip_dir(const verify_ctx *v, const char *msg);
int cmp_name_ref(const void *a, const void *b);
long find_name(const name_ref *refs, size_t n, const char *name);
/* --against: decodes tensor ct of unit mu (open as ufd at upath) and
 * compares it with the source checkpoint's bytes, reporting differences. */
void compare_tensor(verify_ctx *v, const airllm_mf_unit *mu, int ufd, const char *upath,
                    const airllm_ct_tensor *ct);

#endif
