/* Shared command-line plumbing for the programs (tools/ and runner/):
 * messages, number parsing, the progress bar and the fault-injection hook
 * used by the tests. */
#ifndef AIRLLM_CLI_H
#define AIRLLM_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "airllm_clock.h" /* airllm_now */
#include "airllm_err.h"

/* Exit codes, documented in the README. */
enum { AIRLLM_EXIT_OK = 0, AIRLLM_EXIT_FAIL = 1, AIRLLM_EXIT_USAGE = 2 };

extern const char *cli_prog; /* tool name for messages */
extern int cli_verbosity;    /* 0 quiet, 1 normal, 2 verbose */

void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void cli_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));    /* level >= 1 */
void cli_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2))); /* level >= 2 */
/* Prints "PROG: error: MSG" plus a hint to run --help, returns exit code 2. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Control characters (C0, DEL, C1) in names taken from input files, as
 * \xHH, so that they cannot move the cursor or forge lines on a terminal.
 * cli_error/info/verbose/usage_error escape their whole message already;
 * these are for other output that quotes such names. cli_escape returns a
 * malloc'ed copy (NULL when out of memory). */
char *cli_escape(const char *s);
void cli_fputs_escaped(FILE *f, const char *s);

/* --version: "PROG VERSION (commit DESCRIBE)", or without the commit when
 * the build had no git checkout. */
void cli_print_version(void);

/* Parses a decimal integer in [min, max] with overflow checks. */
int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out);
/* Parses a byte count: a decimal number (a fraction allowed) with an
 * optional K, M or G suffix (powers of 1024; "Ki", "KiB", "KB" and a bare
 * "B" too). -1 for anything else, and for a value past UINT64_MAX, which a
 * float product would turn into garbage (a cast out of range is undefined). */
int cli_parse_size(const char *s, uint64_t *out);
/* Human-readable size: "1.5 GiB". buf must hold 32 bytes. */
const char *cli_human_size(uint64_t bytes, char *buf);

/* Progress on stderr, only when stderr is a terminal and not quiet; at most
 * five updates a second. */
typedef struct {
    bool enabled;
    const char *label;
    uint64_t total, done;
    double start, last;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *label, uint64_t total);
void cli_progress_add(cli_progress *p, uint64_t bytes);
void cli_progress_finish(cli_progress *p);

/* If AIRLLM_FAULT_STEP=N is set, the process SIGKILLs itself at the N-th
 * durable step (see airllm_step): tests use this to interrupt a run at every
 * point where the disk state changes. With AIRLLM_FAULT_SIGNAL=STOP it
 * SIGSTOPs itself there instead, to be resumed with SIGCONT. If
 * AIRLLM_FAULT_HOOK=COMMAND is set, COMMAND runs through /bin/sh at every
 * such step, with the step's number and name as $1 and $2: tests use it to
 * change a file at a precise point. */
void cli_install_fault_hook(void);

/* --json (cli/cli_json.c, fields in docs/json.md): one compact object per
 * line on stdout. cli_json is set by cli_json_prescan, which each tool
 * calls before parsing its options, so that cli_usage_error also prints the
 * error object. */
struct cJSON;
extern bool cli_json;
void cli_json_prescan(int argc, char **argv);
/* A new object with tool (cli_prog), version, type and status; NULL when out
 * of memory (cJSON's adders accept NULL). */
struct cJSON *cli_json_new(const char *type, const char *status);
/* Prints j on one line, flushes stdout, and frees j. */
void cli_json_emit(struct cJSON *j);
/* {"type":"summary","status":"error","exit_code":N,"error":MSG}. */
void cli_json_error(int exit_code, const char *msg);

/* What a directory given on the command line is (cli/cli_dir.c): a tool
 * that gets the wrong kind says what to run instead. */
typedef enum {
    CLI_DIR_MISSING,     /* not there, or not a directory */
    CLI_DIR_CONVERTED,   /* has manifest.json: airllm-split or -quant wrote it */
    CLI_DIR_INTERRUPTED, /* a conversion's plan or journal, no manifest yet */
    CLI_DIR_HF,          /* *.safetensors or an index, no manifest */
    CLI_DIR_OTHER,
} cli_dir_kind;
cli_dir_kind cli_dir_classify(const char *dir);

/* A checkpoint named ORG/NAME, when no such path exists: the snapshot of
 * the local Hugging Face cache ($HF_HOME/hub, else ~/.cache/huggingface/hub)
 * that refs/main names, else the newest; offline, nothing is downloaded.
 * Returns 1 with its path in out (and says which snapshot on stderr), 0
 * when arg is to be used as it is, -1 after an error message. */
int cli_resolve_hf_name(const char *arg, char *out, size_t cap);

/* getopt_long's own messages are off (opterr = 0, option strings start with
 * ':'); this says what was wrong once, in the tool's words, for a ch of '?'
 * or ':'. Returns exit code 2. */
int cli_getopt_error(int ch, char **argv);

#endif
