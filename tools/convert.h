/* The conversion engine behind airllm-split and airllm-quant: converts a
 * Hugging Face safetensors checkpoint (or, for airllm-quant, a converted
 * directory) into the per-unit container directory described in formats/.
 *
 * How it streams: sources are read once, sequentially, in file order, and
 * hashed as they are read. Each tensor's bytes go straight to the unit file it
 * belongs to; a unit's file is written append-only in the same order (its
 * tensors are ordered by (source, offset), the order they are read), so the
 * unit's SHA-256 is also computed during the write. Three threads share the
 * work: the reader (read + source digest), the writer (unit digest, staging)
 * and the I/O thread (O_DIRECT writes); memory is a fixed set of buffers.
 * zstd units also hold their compressed bytes until the unit is done (at most
 * one unit), because the header, written last, records their lengths.
 *
 * Crash safety: every file is written under a temporary name, fsynced and
 * renamed. A journal in OUT_DIR/.airllm-split/ records each completed unit
 * and source with its digest, and with each unit the digest of its source
 * up to that unit's last byte; a rerun first proves the sources unchanged,
 * then keeps units whose file still matches and redoes the rest.
 * manifest.json is written last. With --delete-original, a shard is removed
 * only after every unit holding any of its tensors is durable and re-read
 * against its digest, and the shard still hashes to what was read.
 *
 * Files (tools/): convert_run.c the steps in order; convert_opts.c the
 * command line; convert_sources.c the checkpoint's files and their
 * identity; convert_journal.c journal, resume, --delete-original;
 * convert_plan.c free space and --dry-run; convert_pipeline.c reader ->
 * writer; convert_writer.c the unit writer (lib/airllm_unitfile.c fed
 * through lib/airllm_encode.c); convert_quant.c what airllm-quant
 * quantizes and its summary; convert_aio.[ch] the I/O thread;
 * convert_outdir.c OUT_DIR, copies and the manifest. This header is
 * internal to them; docs/architecture.md has the whole picture.
 *
 * Who changes split_ctx: before and after the streaming, the main thread
 * alone. While a source streams (stream_source), the writer thread owns
 * every mutable field (writers, unit_done, src_done, src_deleted,
 * unit_reverified, unit_ck, stored_len, encoding, qstats, bytes_written,
 * journal_fd, journal_valid, enc, enc_raw); the reader, the calling
 * thread, reads only the plan (ck, o, src_units) and changes only buf,
 * bytes_read and prog; src_stat[i] is set before the writer thread starts
 * and only read while it runs. io is shared through its own lock. */
#ifndef AIRLLM_CONVERT_H
#define AIRLLM_CONVERT_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_checkpoint.h"
#include "airllm_codec.h"
#include "airllm_container.h"
#include "airllm_hash.h"
#include "airllm_index.h"
#include "airllm_io.h"
#include "airllm_journal.h"
#include "airllm_manifest.h"
#include "airllm_quant.h"
#include "cli.h"
#include "airllm_encode.h"
#include "airllm_unitfile.h"
#include "convert_aio.h"

#define STATE_DIR ".airllm-split"
#define PLAN_NAME "plan"
#define JOURNAL_NAME "journal"
#define READ_CHUNK AIRLLM_ZSTD_CHUNK_DEFAULT
#define PIPE_DEPTH 4 /* chunks in flight between the reader and the writer */

/* Files copied verbatim next to the units when the checkpoint has them. */
#define N_AUX 10
extern const char *const aux_files[N_AUX];

typedef struct {
    const char *hf_dir, *out_dir;
    bool zstd;
    int level;
    unsigned jobs;
    bool delete_original, dry_run, force, json;
    bool follow_symlinks; /* read checkpoint files that link outside HF_DIR */
    /* airllm-quant */
    bool quant;
    airllm_quant_type qtype;
    uint32_t block;
    bool double_quant, inc_embed, inc_lm_head, report;
    /* --include embed=TYPE, lm_head=TYPE: that part's type; 0: qtype */
    airllm_quant_type embed_qtype, lm_head_qtype;
} split_opts;

/* How far a conversion is, for whoever shows it: begin once with the bytes
 * the run will read (a resumed run counts only what is left), add as
 * they are read, end once, on success or failure. All three are called
 * from convert_run's calling thread only (the reader), never from the
 * writer or the encoders' threads. */
typedef struct {
    void (*begin)(void *user, uint64_t total_bytes);
    void (*add)(void *user, uint64_t bytes);
    void (*end)(void *user);
    void *user;
} convert_progress;

typedef struct {
    bool done;
    uint64_t size;
    char sha[AIRLLM_SHA256_HEX];
} done_rec;

/* A source checkpoint: the SHA-256 of source `source`'s first `off` bytes.
 * Each journaled unit records one (the bytes it was made from end there),
 * each journaled source one for the whole file. */
typedef struct {
    size_t source; /* SIZE_MAX: none */
    uint64_t off;
    char sha[AIRLLM_SHA256_HEX];
} src_ck;

typedef struct {
    airllm_unitfile uf;   /* the file: header, staging, digests (lib) */
    size_t unit;
    uint64_t tensor_fill; /* bytes of the current tensor received */
    airllm_encoder *enc;  /* the current tensor's (split_ctx's), or NULL */
    bool frames;          /* converted input: the tensor's zstd frames are
                             gathered in z, then decoded into enc */
    uint8_t *z;
    size_t zlen, zcap;
    bool deferred;         /* converted input: complete, waiting for the
                              source's digest before it is finished */
} unit_writer;

typedef struct {
    split_opts o;
    airllm_ckpt ck;
    char state_dir[4096];
    int journal_fd;
    done_rec *unit_done, *src_done;
    bool *src_deleted, *unit_reverified;
    src_ck *unit_ck;           /* per unit: where its source bytes end (journaled) */
    src_ck *jck;               /* checkpoints read from the journal (resume) */
    size_t n_jck;
    struct stat *src_stat;     /* per source: as it was when read or verified */
    bool *src_stat_ok;
    char *journal_rewrite;     /* a format 1 journal, re-encoded (resume) */
    size_t journal_rewrite_len;
    uint64_t journal_valid;    /* bytes of complete lines in the journal */
    uint64_t *stored_len;      /* per plan tensor */
    airllm_encoding *encoding; /* per plan tensor */
    unit_writer **writers;     /* per unit, while open */
    io_queue io;               /* writes unit files */
    airllm_uf_sink io_sink;    /* io as the unit files' sink */
    uint8_t *buf;              /* buf_size bytes: header reads, skipped tensors */
    uint8_t *pipe_bufs[PIPE_DEPTH]; /* buf_size bytes each, in flight to the writer */
    size_t buf_size;
    airllm_encoder *enc;       /* zstd (split -c zstd) or quant (airllm-quant) */
    airllm_encoder *enc_raw;   /* tensors stored as they are */
    uint64_t bytes_read, bytes_written, units_kept;
    convert_progress prog;     /* never NULL callbacks: convert_run fills in no-ops */
    size_t **src_units;        /* per source: the units holding its tensors */
    size_t *n_src_units;
    airllm_mf_file aux[N_AUX]; /* copied config/tokenizer files */
    size_t n_aux;
    /* airllm-quant */
    /* per plan tensor: 0 kept as it is, else the airllm_quant_type it is
     * quantized to (-t's, or its part's from --include PART=TYPE) */
    uint8_t *quantize;
    airllm_quant_stats *qstats; /* per plan tensor, when quantized */
    /* OUT_DIR safety */
    int lock_fd;               /* the writer's lock on OUT_DIR, or -1 */
    bool out_missing;          /* OUT_DIR could not be created at the start */
    bool out_made;             /* OUT_DIR was created by this run... */
    char out_above[4096];      /* ...below this existing ancestor */
    struct stat *real_stat;    /* what each checkpoint file read resolves to */
    const char **real_name;
    size_t n_real_stat;
} split_ctx;

typedef struct {
    uint64_t need;    /* free space the run needs (its peak, with a margin) */
    uint64_t written; /* unit bytes it writes in all */
    bool freed;       /* --delete-original frees space on OUT_DIR's filesystem */
} disk_plan;

typedef struct {
    uint8_t *buf;
    size_t n;
    const airllm_ckpt_tensor *tensor; /* the plan tensor, or NULL for the end of
                                         the source */
    bool last;     /* last chunk of the tensor */
    uint64_t end_off; /* last: the tensor's end in the source, and the */
    char end_sha[AIRLLM_SHA256_HEX]; /* digest of the source up to there */
} pipe_msg;

/* The options and notes airllm-split and airllm-quant share. */
#define USAGE_COMMON                                                                   \
    "      --dry-run          print the plan (units, sizes, disk needed) and exit\n"      \
    "  -f, --force            replace whatever OUT_DIR holds\n"                           \
    "      --follow-symlinks  read checkpoint files that link outside the input folder\n"  \
    "                         (links of a Hugging Face cache snapshot into its blobs/\n"  \
    "                         are always followed)\n"                                     \
    "      --json             print a machine-readable summary on stdout\n"               \
    "  -q, --quiet            only errors\n"                                              \
    "  -v, --verbose          more detail\n"                                              \
    "  -h, --help             this help\n"                                                \
    "  -V, --version          print the version\n\n"                                      \
    "A run that is interrupted resumes when the same command is run again.\n"          \
    "Exit status: 0 success, 1 failure, 2 usage error.\n"

int convert_parse_args(int argc, char **argv, bool quant, void (*usage)(FILE *), split_opts *o);

/* The terminal's progress bar (cli_progress: shown only on a terminal and
 * when not quiet) as a convert_progress; bar must outlive the run. */
convert_progress convert_progress_bar(cli_progress *bar);

/* One conversion from options to a complete OUT_DIR; returns the tool's
 * exit status. progress may be NULL. */
int convert_run(const split_opts *o, const convert_progress *progress);

/* convert_journal.c: journal, resume, --delete-original */
int journal_append(split_ctx *s, const airllm_jrec *r, airllm_err *err);
int journal_load(split_ctx *s, airllm_err *err);
int journal_open(split_ctx *s, airllm_err *err);
size_t journal_deleted(const char *state_dir, char first[AIRLLM_JOURNAL_NAME_MAX + 1]);
int journal_unit(split_ctx *s, size_t u, airllm_err *err);
void fingerprint(const split_ctx *s, char out[AIRLLM_SHA256_HEX]);
int unit_check_kept(split_ctx *s, size_t u, airllm_err *err);
bool source_needed(const split_ctx *s, size_t i);
int build_source_units(split_ctx *s, airllm_err *err);
int try_delete_sources(split_ctx *s, airllm_err *err);

/* convert_writer.c: the unit writer (writer thread only) */
void writer_free(unit_writer *w);
int writer_open(split_ctx *s, size_t unit, unit_writer **out, airllm_err *err);
int writer_feed(split_ctx *s, unit_writer *w, const uint8_t *data, size_t n,
                airllm_err *err);
int writer_tensor_done(split_ctx *s, unit_writer *w, bool *complete, airllm_err *err);
int writer_finish(split_ctx *s, unit_writer *w, airllm_err *err);

/* convert_quant.c: airllm-quant */
int quant_feed_frames(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                      const airllm_ct_tensor *src, airllm_err *err);
int plan_quant(split_ctx *s, airllm_err *err);
void quant_summary(const split_ctx *s, cJSON *j);
/* "embed_type" / "lm_head_type" into q for the parts --include typed. */
void quant_part_types_json(const split_opts *o, cJSON *q);
void quant_report(const split_ctx *s);

/* convert_sources.c: the checkpoint's files */
bool real_within(const char *real, const struct stat *dir);
int delete_checkpoint_file(const char *hf_dir, const char *path, bool present,
                           airllm_err *err);
int check_sources(split_ctx *s, airllm_err *err);
bool any_source_deleted(const split_ctx *s);
int check_jck(const split_ctx *s, size_t i, uint64_t off, const char *sha,
              const char *path, airllm_err *err);
int tensor_end(const split_ctx *s, size_t i, airllm_sha256 *h, airllm_sha256 *scratch,
               uint64_t off, bool send, pipe_msg *m, const char *path, airllm_err *err);
int source_as_read(const split_ctx *s, size_t i, int fd, const char *path,
                   airllm_err *err);
int source_unchanged(const split_ctx *s, size_t i, bool rehash, airllm_err *err);
int verify_journaled_sources(split_ctx *s, airllm_err *err);
bool unit_proven(const split_ctx *s, size_t u);

/* convert_pipeline.c: reader -> writer */
int hash_range(split_ctx *s, int fd, const char *path, airllm_sha256 *h, uint64_t *off,
               uint64_t end, airllm_err *err);
int stream_source(split_ctx *s, size_t i, airllm_err *err);

/* convert_outdir.c: OUT_DIR and the manifest */
int copy_aux(split_ctx *s, const char *name, airllm_mf_file *rec, airllm_err *err);
char *options_json(const split_opts *o);
int write_manifest(split_ctx *s, airllm_mf_file *aux, size_t n_aux,
                   const airllm_mf_file *index, uint64_t *total_out, airllm_err *err);
int clear_out_dir(const char *dir, bool include_state, airllm_err *err);
bool state_dir_used(const char *state_dir);
int check_clearable(const split_ctx *s, const char *dir, bool top, airllm_err *err);
int dir_nonempty(const char *dir);
void remove_stale_temps(const char *dir);
int remove_state_dir(split_ctx *s, airllm_err *err);
int check_out_place(const split_opts *o, airllm_err *err);
int lock_out_dir(split_ctx *s, bool late, airllm_err *err);
void release_out_dir(split_ctx *s);
int delete_leftovers(const char *hf_dir, const airllm_mf_file *files, size_t n,
                     airllm_err *err);

/* convert_json.c: the --json summary, from OUT_DIR's manifest */
int convert_json_summary(const split_ctx *s, bool already_complete, double total_s,
                         airllm_err *err);

/* convert_plan.c: free space, --dry-run */
void print_plan(const split_ctx *s, const disk_plan *dp, uint64_t avail);
void plan_disk(const split_ctx *s, const char *probe, disk_plan *dp);
uint64_t disk_available(const char *dir);

#endif
