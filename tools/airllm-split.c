/* airllm-split: converts a Hugging Face safetensors checkpoint into the
 * per-unit container directory described in formats/.
 *
 * How it streams: sources are read once, sequentially, in file order, and
 * hashed as they are read. Each tensor's bytes go straight to the unit file it
 * belongs to; a unit's file is written append-only in the same order (its
 * tensors are ordered by (source, offset), the order they are read), so the
 * unit's SHA-256 is also computed during the write. Three threads share the
 * work: the reader (read + source digest), the writer (unit digest, staging)
 * and the I/O thread (O_DIRECT writes); memory is a fixed set of buffers.
 * zstd units also hold their compressed bytes until the unit is done (at most
 * one unit), because the header, written first, records their lengths.
 *
 * Crash safety: every file is written under a temporary name, fsynced and
 * renamed. A journal in OUT_DIR/.airllm-split/ records each completed unit
 * and source with its digest, and with each unit the digest of its source
 * up to that unit's last byte; a rerun first proves the sources unchanged,
 * then keeps units whose file still matches and redoes the rest.
 * manifest.json is written last. With --delete-original, a shard is removed
 * only after every unit holding any of its tensors is durable and re-read
 * against its digest, and the shard still hashes to what was read. */
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

#ifdef AIRLLM_QUANT_TOOL
#define TOOL_NAME "airllm-quant"
#else
#define TOOL_NAME "airllm-split"
#endif

#define STATE_DIR ".airllm-split"
#define PLAN_NAME "plan"
#define JOURNAL_NAME "journal"
#define READ_CHUNK AIRLLM_ZSTD_CHUNK_DEFAULT
#define PIPE_DEPTH 4 /* chunks in flight between the reader and the writer */

/* ------------------------------------------------------------------ */
/* output I/O thread                                                  */

/* Unit files are written from 4096-aligned staging buffers by a thread of
 * their own, with O_DIRECT where the filesystem allows it: the data goes to
 * the device without a copy into the page cache, and the writer thread,
 * which hashes, never waits for the disk. Every write is aligned (unit
 * files are multiples of 4096 bytes), as O_DIRECT requires. */
#define IO_CHUNK (8u << 20)
#define IO_DEPTH 4

typedef struct {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t n;
    uint64_t off;
} io_req;

typedef struct io_queue {
    pthread_t th;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint8_t *bufs[IO_DEPTH];
    uint8_t *free_bufs[IO_DEPTH];
    size_t n_free;
    io_req q[IO_DEPTH];
    size_t head, count, busy; /* busy: a request being written */
    bool stop, failed;
    airllm_err err;
} io_queue;

static int io_write_one(const io_req *r, airllm_err *err)
{
    size_t done = 0;
    while (done < r->n) {
        ssize_t w = pwrite(r->fd, r->buf + done, r->n - done, (off_t)(r->off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL) {
            /* Some filesystems accept O_DIRECT at open but not at write:
             * fall back to buffered writes for this file. */
            int fl = fcntl(r->fd, F_GETFL);
            if (fl >= 0 && (fl & O_DIRECT) && fcntl(r->fd, F_SETFL, fl & ~O_DIRECT) == 0)
                continue;
        }
        if (w < 0)
            return airllm_errf(err, "%s: write error: %s", r->path, strerror(errno));
        if (w == 0)
            return airllm_errf(err, "%s: write error: no progress", r->path);
        done += (size_t)w;
    }
    return 0;
}

static void *io_thread(void *arg)
{
    io_queue *io = arg;
    pthread_mutex_lock(&io->lock);
    for (;;) {
        while (io->count == 0 && !io->stop)
            pthread_cond_wait(&io->cond, &io->lock);
        if (io->count == 0)
            break;
        io_req r = io->q[io->head];
        io->head = (io->head + 1) % IO_DEPTH;
        io->count--;
        io->busy = 1;
        bool skip = io->failed;
        pthread_mutex_unlock(&io->lock);
        airllm_err e;
        int rc = skip ? 0 : io_write_one(&r, &e);
        pthread_mutex_lock(&io->lock);
        if (rc && !io->failed) {
            io->failed = true;
            io->err = e;
        }
        io->free_bufs[io->n_free++] = r.buf;
        io->busy = 0;
        pthread_cond_broadcast(&io->cond);
    }
    pthread_mutex_unlock(&io->lock);
    return NULL;
}

static int io_start(io_queue *io, airllm_err *err)
{
    memset(io, 0, sizeof *io);
    pthread_mutex_init(&io->lock, NULL);
    pthread_cond_init(&io->cond, NULL);
    for (int i = 0; i < IO_DEPTH; i++) {
        if (posix_memalign((void **)&io->bufs[i], AIRLLM_CT_ALIGN, IO_CHUNK) != 0)
            return airllm_errf(err, "out of memory");
        io->free_bufs[io->n_free++] = io->bufs[i];
    }
    if (pthread_create(&io->th, NULL, io_thread, io) != 0)
        return airllm_errf(err, "cannot start the I/O thread");
    io->started = true;
    return 0;
}

static void io_stop(io_queue *io)
{
    if (io->started) {
        pthread_mutex_lock(&io->lock);
        io->stop = true;
        pthread_cond_broadcast(&io->cond);
        pthread_mutex_unlock(&io->lock);
        pthread_join(io->th, NULL);
        pthread_mutex_destroy(&io->lock);
        pthread_cond_destroy(&io->cond);
    }
    for (int i = 0; i < IO_DEPTH; i++)
        free(io->bufs[i]);
    memset(io, 0, sizeof *io);
}

/* A free staging buffer; NULL (with err) once a write has failed. */
static uint8_t *io_get_buffer(io_queue *io, airllm_err *err)
{
    pthread_mutex_lock(&io->lock);
    while (io->n_free == 0 && !io->failed)
        pthread_cond_wait(&io->cond, &io->lock);
    uint8_t *b = NULL;
    if (io->failed)
        *err = io->err;
    else
        b = io->free_bufs[--io->n_free];
    pthread_mutex_unlock(&io->lock);
    return b;
}

static void io_submit(io_queue *io, int fd, const char *path, uint8_t *buf, size_t n,
                      uint64_t off)
{
    pthread_mutex_lock(&io->lock);
    /* count < IO_DEPTH always holds: a request owns one of the buffers. */
    io->q[(io->head + io->count) % IO_DEPTH] = (io_req){fd, path, buf, n, off};
    io->count++;
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

static void io_release(io_queue *io, uint8_t *buf)
{
    pthread_mutex_lock(&io->lock);
    io->free_bufs[io->n_free++] = buf;
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

/* Waits until every submitted write is done. Returns -1 with the first
 * write error since the last drain, and clears it. */
static int io_drain(io_queue *io, airllm_err *err)
{
    pthread_mutex_lock(&io->lock);
    while (io->count > 0 || io->busy)
        pthread_cond_wait(&io->cond, &io->lock);
    int rc = 0;
    if (io->failed) {
        if (err)
            *err = io->err;
        io->failed = false;
        rc = -1;
    }
    pthread_mutex_unlock(&io->lock);
    return rc;
}

/* Files copied verbatim next to the units when the checkpoint has them. */
static const char *const aux_files[] = {
    "config.json",      "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "tokenizer.model",    "special_tokens_map.json",
    "added_tokens.json", "vocab.json",             "merges.txt",
};
#define N_AUX (sizeof aux_files / sizeof aux_files[0])

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
} split_opts;

/* Quantization works on slices of QSLICE elements at fixed positions of
 * the tensor (a multiple of every block size), whatever the read chunks:
 * slices are what the jobs share out, and fixed positions keep the output
 * and the statistics the same for any --jobs and any input layout. */
#define QSLICE ((size_t)1 << 16)

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
    size_t unit;
    int fd;
    io_queue *io;
    uint8_t *stage;      /* staging buffer being filled, from io; NULL when parked */
    size_t stage_len;
    uint64_t stage_off;  /* file offset of stage[0], a multiple of 4096 */
    uint8_t tail[AIRLLM_CT_ALIGN]; /* unaligned end of the data while parked */
    bool header_last; /* zstd: header written at the end, digest by re-reading */
    size_t tail_len;
    char tmp[4096], final[4096];
    airllm_sha256 *hash;
    airllm_xxh3_state *xs; /* XXH3 of the current tensor's stored bytes, fed as
                              they are emitted (no second pass over the data) */
    airllm_ct_header hdr; /* entries in the unit's tensor order */
    size_t next;          /* next tensor (index within the unit) */
    uint64_t pos;         /* bytes written so far */
    uint64_t tensor_fill; /* bytes of the current tensor received */
    /* zstd: the unit's stored bytes, tensor after tensor */
    uint8_t *z;
    size_t zlen, zcap;     /* the current tensor's frames (zstd) */
    bool deferred;         /* converted input: complete, waiting for the
                              source's digest before it is finished */
    /* quantization of the current tensor */
    bool q;
    airllm_ct_qlayout ql;
    float *qabsmax;             /* (ql.nblocks) */
    airllm_qblock_stats *qbs;   /* (ql.nblocks) */
    uint64_t qdone;             /* elements quantized so far */
    uint8_t *qcarry;            /* source bytes of an unfinished slice */
    size_t qcarry_len;
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
    uint8_t *buf;              /* buf_size bytes: header reads, skipped tensors */
    uint8_t *pipe_bufs[PIPE_DEPTH]; /* buf_size bytes each, in flight to the writer */
    size_t buf_size;
    uint8_t **zdst, **zscratch; /* per job */
    uint64_t bytes_read, bytes_written, units_kept;
    cli_progress prog;
    size_t **src_units;        /* per source: the units holding its tensors */
    size_t *n_src_units;
    airllm_mf_file aux[N_AUX]; /* copied config/tokenizer files */
    size_t n_aux;
    /* airllm-quant */
    bool *quantize;            /* per plan tensor */
    airllm_quant_stats *qstats; /* per plan tensor, when quantized */
    float **qx, **qy;          /* per job: QSLICE floats each */
    uint8_t *qcodes;           /* codes of one batch of slices */
    size_t qcodes_cap;
    /* OUT_DIR safety */
    int lock_fd;               /* the writer's lock on OUT_DIR, or -1 */
    bool out_missing;          /* OUT_DIR could not be created at the start */
    bool out_made;             /* OUT_DIR was created by this run... */
    char out_above[4096];      /* ...below this existing ancestor */
    struct stat *real_stat;    /* what each checkpoint file read resolves to */
    const char **real_name;
    size_t n_real_stat;
} split_ctx;

/* ------------------------------------------------------------------ */
/* journal                                                            */

static int journal_append(split_ctx *s, const airllm_jrec *r, airllm_err *err)
{
    char line[AIRLLM_JOURNAL_LINE_MAX];
    size_t n = airllm_journal_encode(r, line, sizeof line);
    if (!n)
        return airllm_errf(err, "%s/%s: cannot record \"%s\"", s->state_dir, JOURNAL_NAME,
                           r->name);
    if (airllm_write_full(s->journal_fd, line, n, "journal", err))
        return airllm_err_prefix(err, "%s", s->state_dir);
    if (fdatasync(s->journal_fd) != 0)
        return airllm_errf(err, "%s/%s: fsync failed: %s", s->state_dir, JOURNAL_NAME,
                           strerror(errno));
    airllm_step("journal");
    return 0;
}

/* Unit files by name, for the journal's lines: a scan of the units per
 * line made a resume quadratic in the layer count. */
static int index_unit_files(const airllm_ckpt *c, airllm_index *ix, airllm_err *err)
{
    long prev;
    if (airllm_index_init(ix, c->n_units, err))
        return -1;
    for (size_t u = 0; u < c->n_units; u++)
        if (c->units[u].file[0] && airllm_index_add(ix, c->units[u].file, u, &prev, err)) {
            airllm_index_free(ix);
            return -1;
        }
    return 0;
}

static int cmp_source_file(const void *key, const void *elem)
{
    return strcmp(key, ((const airllm_ckpt_source *)elem)->file);
}

/* Sources are sorted by file name (airllm_ckpt). */
static long find_source(const airllm_ckpt *c, const char *file)
{
    const airllm_ckpt_source *hit =
        bsearch(file, c->sources, c->n_sources, sizeof *c->sources, cmp_source_file);
    return hit ? (long)(hit - c->sources) : -1;
}

static int add_jck(split_ctx *s, size_t source, uint64_t off, const char *sha,
                   airllm_err *err)
{
    if ((s->n_jck & (s->n_jck + 1)) == 0) { /* 0, 1, 3, 7...: grow to 2^k */
        src_ck *n = realloc(s->jck, (2 * s->n_jck + 2) * sizeof *n);
        if (!n)
            return airllm_errf(err, "out of memory");
        s->jck = n;
    }
    src_ck *k = &s->jck[s->n_jck++];
    k->source = source;
    k->off = off;
    memcpy(k->sha, sha, AIRLLM_SHA256_HEX);
    return 0;
}

static int journal_apply(split_ctx *s, const airllm_index *units, const airllm_jrec *r,
                         airllm_err *err)
{
    long i;
    switch (r->kind) {
    case AIRLLM_JR_UNIT:
        if ((i = airllm_index_find(units, r->name)) < 0)
            return 0;
        s->unit_done[i] = (done_rec){true, r->size, {0}};
        memcpy(s->unit_done[i].sha, r->sha, AIRLLM_SHA256_HEX);
        s->unit_ck[i].source = SIZE_MAX;
        long src = r->ck_source[0] ? find_source(&s->ck, r->ck_source) : -1;
        if (src >= 0) {
            s->unit_ck[i] = (src_ck){(size_t)src, r->ck_offset, {0}};
            memcpy(s->unit_ck[i].sha, r->ck_sha, AIRLLM_SHA256_HEX);
            return add_jck(s, (size_t)src, r->ck_offset, r->ck_sha, err);
        }
        return 0;
    case AIRLLM_JR_SOURCE:
        if ((i = find_source(&s->ck, r->name)) < 0)
            return 0;
        s->src_done[i] = (done_rec){true, r->size, {0}};
        memcpy(s->src_done[i].sha, r->sha, AIRLLM_SHA256_HEX);
        return add_jck(s, (size_t)i, r->size, r->sha, err);
    case AIRLLM_JR_DELETED:
        if ((i = find_source(&s->ck, r->name)) >= 0)
            s->src_deleted[i] = true;
        return 0;
    case AIRLLM_JR_QSTATS:
        if (s->qstats && r->size < s->ck.n_tensors &&
            strcmp(s->ck.tensors[r->size].name, r->name) == 0)
            s->qstats[r->size] = (airllm_quant_stats){r->stats[0], r->stats[1], r->stats[2]};
        return 0;
    }
    return 0;
}

/* Reads the journal. A torn last line (a crash mid-append) is ignored, and
 * cut off before the next append. A journal in format 1 (written by an
 * older version) is read, and re-encoded before anything is appended to
 * it. A complete line that is not a record means damage: refused. */
static int journal_load(split_ctx *s, airllm_err *err)
{
    char path[4096];
    char *text;
    size_t len;
    if (airllm_path_join(path, sizeof path, s->state_dir, JOURNAL_NAME, err))
        return -1;
    if (access(path, F_OK) != 0)
        return 0;
    airllm_index units;
    if (index_unit_files(&s->ck, &units, err))
        return -1;
    if (airllm_read_small_file(path, 256u << 20, &text, &len, err)) {
        airllm_index_free(&units);
        return -1;
    }
    size_t ml = strlen(AIRLLM_JOURNAL_MAGIC);
    bool v2 = len >= ml && memcmp(text, AIRLLM_JOURNAL_MAGIC, ml) == 0;
    bool v1 = !v2 && len > 0 && !(len < ml && memcmp(text, AIRLLM_JOURNAL_MAGIC, len) == 0);
    size_t cap = v1 ? ml + 2 * len + 4096 : 0, rl = 0;
    if (v1 && !(s->journal_rewrite = malloc(cap))) {
        free(text);
        airllm_index_free(&units);
        return airllm_errf(err, "out of memory");
    }
    if (v1) {
        memcpy(s->journal_rewrite, AIRLLM_JOURNAL_MAGIC, ml);
        rl = ml;
    }
    char *line = text + (v2 ? ml : 0);
    size_t lineno = v2, valid = v2 ? ml : 0;
    int rc = 0;
    for (char *nl; !rc && (nl = memchr(line, '\n', len - (size_t)(line - text))) != NULL;
         line = nl + 1) {
        lineno++;
        airllm_jrec r;
        size_t ll = (size_t)(nl - line);
        if (v2 && airllm_journal_decode(line, ll, &r) != 0) {
            rc = airllm_errf(err, "%s: line %zu is not a valid record: the journal is "
                                  "damaged, so this run cannot be resumed safely",
                             path, lineno);
            break;
        }
        valid = (size_t)(nl + 1 - text);
        /* format 1: a line it cannot read was ignored by its reader too */
        if (v1 && airllm_journal_decode_v1(line, ll, &r) != 0)
            continue;
        if (v1) {
            if (r.kind == AIRLLM_JR_UNIT) /* no checkpoint: see unit_proven() */
                memset(r.ck_sha, '0', 64);
            size_t n = airllm_journal_encode(&r, s->journal_rewrite + rl, cap - rl);
            rl += n;
        }
        rc = journal_apply(s, &units, &r, err);
    }
    free(text);
    airllm_index_free(&units);
    s->journal_valid = valid;
    s->journal_rewrite_len = rl;
    return rc;
}

/* Opens the journal for appending: a new one starts with its format line, a
 * torn last line is cut off (the step it records was never durable), a
 * format 1 journal is replaced by its re-encoding. */
static int journal_open(split_ctx *s, airllm_err *err)
{
    char jpath[4096];
    if (airllm_path_join(jpath, sizeof jpath, s->state_dir, JOURNAL_NAME, err))
        return -1;
    if (s->journal_rewrite &&
        airllm_write_file_atomic(s->state_dir, JOURNAL_NAME, s->journal_rewrite,
                                 s->journal_rewrite_len, err))
        return -1;
    s->journal_fd = open(jpath, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    struct stat st;
    if (s->journal_fd < 0 || fstat(s->journal_fd, &st) != 0)
        return airllm_errf(err, "%s: cannot open: %s", jpath, strerror(errno));
    if (st.st_size == 0 || (!s->journal_rewrite && s->journal_valid == 0)) {
        if (ftruncate(s->journal_fd, 0) != 0)
            return airllm_errf(err, "%s: cannot truncate: %s", jpath, strerror(errno));
        return airllm_write_full(s->journal_fd, AIRLLM_JOURNAL_MAGIC,
                                 strlen(AIRLLM_JOURNAL_MAGIC), jpath, err);
    }
    if (!s->journal_rewrite && (uint64_t)st.st_size > s->journal_valid &&
        (ftruncate(s->journal_fd, (off_t)s->journal_valid) != 0 ||
         fdatasync(s->journal_fd) != 0))
        return airllm_errf(err, "%s: cannot cut its torn last line: %s", jpath,
                           strerror(errno));
    return 0;
}

/* Names a source that the journal in state_dir records as deleted (and how
 * many it records), whatever the plan: for the --force check, which runs
 * when the plan does not match. Damaged lines are skipped. */
static size_t journal_deleted(const char *state_dir, char first[AIRLLM_JOURNAL_NAME_MAX + 1])
{
    char path[4096];
    char *text;
    size_t len, n = 0;
    first[0] = '\0';
    if (airllm_path_join(path, sizeof path, state_dir, JOURNAL_NAME, NULL) ||
        airllm_read_small_file(path, 256u << 20, &text, &len, NULL))
        return 0;
    size_t ml = strlen(AIRLLM_JOURNAL_MAGIC);
    bool v2 = len >= ml && memcmp(text, AIRLLM_JOURNAL_MAGIC, ml) == 0;
    char *line = text + (v2 ? ml : 0);
    for (char *nl; (nl = memchr(line, '\n', len - (size_t)(line - text))) != NULL;
         line = nl + 1) {
        airllm_jrec r;
        int rc = v2 ? airllm_journal_decode(line, (size_t)(nl - line), &r)
                    : airllm_journal_decode_v1(line, (size_t)(nl - line), &r);
        if (rc == 0 && r.kind == AIRLLM_JR_DELETED && n++ == 0)
            strcpy(first, r.name);
    }
    free(text);
    return n;
}

/* Records finished unit u with the source checkpoint its bytes end at. */
static int journal_unit(split_ctx *s, size_t u, airllm_err *err)
{
    const src_ck *k = &s->unit_ck[u];
    if (k->source == SIZE_MAX)
        return airllm_errf(err, "internal error: %s has no source checkpoint",
                           s->ck.units[u].file);
    airllm_jrec r = {.kind = AIRLLM_JR_UNIT, .size = s->unit_done[u].size,
                     .ck_offset = k->off};
    snprintf(r.name, sizeof r.name, "%s", s->ck.units[u].file);
    memcpy(r.sha, s->unit_done[u].sha, AIRLLM_SHA256_HEX);
    snprintf(r.ck_source, sizeof r.ck_source, "%s", s->ck.sources[k->source].file);
    memcpy(r.ck_sha, k->sha, AIRLLM_SHA256_HEX);
    return journal_append(s, &r, err);
}

/* ------------------------------------------------------------------ */
/* plan fingerprint: identifies "the same input with the same options"  */

static void fingerprint(const split_ctx *s, char out[AIRLLM_SHA256_HEX])
{
    airllm_sha256 *h = airllm_sha256_new();
    char line[2048];
    const airllm_ckpt *c = &s->ck;
    snprintf(line, sizeof line, "airllm-split plan 1\ncompress %s %d\n",
             s->o.zstd ? "zstd" : "none", s->o.zstd ? s->o.level : 0);
    airllm_sha256_update(h, line, strlen(line));
    if (s->o.quant) {
        snprintf(line, sizeof line, "quant %s %u %d %d %d converted %d\n",
                 airllm_quant_type_name(s->o.qtype), s->o.block, s->o.double_quant,
                 s->o.inc_embed, s->o.inc_lm_head, c->converted);
        airllm_sha256_update(h, line, strlen(line));
    }
    airllm_sha256_update(h, c->config_text, c->config_len);
    for (size_t i = 0; i < c->n_sources; i++) {
        snprintf(line, sizeof line, "\nsource %s %llu\n", c->sources[i].file,
                 (unsigned long long)c->sources[i].st.file_size);
        airllm_sha256_update(h, line, strlen(line));
    }
    for (size_t t = 0; t < c->n_tensors; t++) {
        const airllm_st_tensor *st = airllm_ckpt_st(c, t);
        int n = snprintf(line, sizeof line, "%s %u %s %llu %llu %u", st->name, st->dtype,
                         c->sources[c->tensors[t].source].file,
                         (unsigned long long)st->begin, (unsigned long long)st->end, st->ndim);
        for (unsigned d = 0; d < st->ndim && n < (int)sizeof line - 24; d++)
            n += snprintf(line + n, sizeof line - (size_t)n, " %llu",
                          (unsigned long long)st->shape[d]);
        snprintf(line + n, sizeof line - (size_t)n, "\n");
        airllm_sha256_update(h, line, strlen(line));
    }
    airllm_sha256_final_hex(h, out);
    airllm_sha256_free(h);
}

/* ------------------------------------------------------------------ */
/* unit writers                                                       */

static unsigned group_width(airllm_dtype dt)
{
    /* Byte grouping pays off for floats, whose sign/exponent bytes repeat. */
    switch (dt) {
    case AIRLLM_DTYPE_F16:
    case AIRLLM_DTYPE_BF16:
        return 2;
    case AIRLLM_DTYPE_F32:
        return 4;
    default:
        return 0;
    }
}

/* Hands the filled staging buffer to the I/O thread. Its length must keep
 * the file offset aligned: a full buffer, or the end of the file. */
static void writer_flush(unit_writer *w)
{
    if (!w->stage)
        return;
    if (w->stage_len) {
        io_submit(w->io, w->fd, w->tmp, w->stage, w->stage_len, w->stage_off);
        w->stage_off += w->stage_len;
    } else {
        io_release(w->io, w->stage);
    }
    w->stage = NULL;
    w->stage_len = 0;
}

/* Gives the staging buffer back while the unit waits for its next tensor:
 * a shard that interleaves many units (the safetensors library sorts by
 * dtype first, so F32 norms of every layer can come before any BF16 weight)
 * would otherwise hold one buffer per open unit and exhaust the pool. The
 * aligned part is written; the unaligned tail (< 4096 bytes) waits here. */
static void writer_park(unit_writer *w)
{
    if (!w->stage)
        return;
    size_t aligned = w->stage_len / AIRLLM_CT_ALIGN * AIRLLM_CT_ALIGN;
    w->tail_len = w->stage_len - aligned;
    memcpy(w->tail, w->stage + aligned, w->tail_len);
    w->stage_len = aligned;
    writer_flush(w);
}

static int writer_unpark(unit_writer *w, airllm_err *err)
{
    if (w->stage)
        return 0;
    if (!(w->stage = io_get_buffer(w->io, err)))
        return -1;
    memcpy(w->stage, w->tail, w->tail_len);
    w->stage_len = w->tail_len;
    w->tail_len = 0;
    return 0;
}

static int writer_emit(unit_writer *w, const void *data, size_t n, airllm_err *err)
{
    if (!w->header_last)
        airllm_sha256_update(w->hash, data, n);
    /* The part of [pos, pos + n) inside the current tensor's stored range
     * goes into its checksum; the header, padding and check block do not.
     * Its offset and stored_len are set before its first byte is emitted. */
    if (w->next < w->hdr.n_tensors) {
        const airllm_ct_tensor *t = &w->hdr.tensors[w->next];
        uint64_t lo = w->pos > t->offset ? w->pos : t->offset;
        uint64_t hi = w->pos + n < t->offset + t->stored_len ? w->pos + n
                                                               : t->offset + t->stored_len;
        if (lo < hi)
            airllm_xxh3_update(w->xs, (const uint8_t *)data + (lo - w->pos), (size_t)(hi - lo));
    }
    const uint8_t *p = data;
    while (n > 0) {
        if (writer_unpark(w, err))
            return -1;
        size_t k = IO_CHUNK - w->stage_len < n ? IO_CHUNK - w->stage_len : n;
        memcpy(w->stage + w->stage_len, p, k);
        w->stage_len += k;
        p += k;
        n -= k;
        w->pos += k;
        if (w->stage_len == IO_CHUNK)
            writer_flush(w);
    }
    return 0;
}

static int writer_pad_to(unit_writer *w, uint64_t target, airllm_err *err)
{
    static const uint8_t zeros[AIRLLM_CT_ALIGN];
    while (w->pos < target) {
        size_t n = (size_t)(target - w->pos < sizeof zeros ? target - w->pos : sizeof zeros);
        if (writer_emit(w, zeros, n, err))
            return -1;
    }
    return 0;
}

static void writer_free(unit_writer *w)
{
    if (!w)
        return;
    if (w->fd >= 0) {
        /* No write may be in flight on a descriptor we close. */
        io_drain(w->io, NULL);
        close(w->fd);
        unlink(w->tmp);
    }
    if (w->stage)
        io_release(w->io, w->stage);
    airllm_sha256_free(w->hash);
    airllm_xxh3_free(w->xs);
    airllm_ct_free(&w->hdr);
    free(w->z);
    free(w->qabsmax);
    free(w->qbs);
    free(w->qcarry);
    free(w);
}

static int writer_open(split_ctx *s, size_t unit, unit_writer **out, airllm_err *err)
{
    const airllm_ckpt_unit *un = &s->ck.units[unit];
    unit_writer *w = calloc(1, sizeof *w);
    if (!w)
        return airllm_errf(err, "out of memory");
    w->fd = -1;
    w->unit = unit;
    w->hash = airllm_sha256_new();
    w->xs = airllm_xxh3_new();
    w->hdr.n_tensors = (uint32_t)un->n_tensors;
    w->hdr.tensors = calloc(un->n_tensors, sizeof *w->hdr.tensors);
    w->hdr.unit_kind = un->kind;
    w->hdr.layer_index = un->layer;
    if (!w->hash || !w->xs || !w->hdr.tensors) {
        writer_free(w);
        return airllm_errf(err, "out of memory");
    }
    for (size_t i = 0; i < un->n_tensors; i++) {
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, un->tensors[i]);
        airllm_ct_tensor *ct = &w->hdr.tensors[i];
        ct->name = strdup(st->name);
        if (!ct->name) {
            writer_free(w);
            return airllm_errf(err, "out of memory");
        }
        ct->dtype = st->dtype;
        ct->ndim = st->ndim;
        memcpy(ct->shape, st->shape, sizeof ct->shape);
        size_t t = un->tensors[i];
        const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
        ct->raw_len = airllm_ckpt_raw_len(&s->ck, t);
        ct->stored_len = ct->raw_len;
        ct->encoding = AIRLLM_ENC_RAW;
        if (s->quantize && s->quantize[t]) {
            ct->encoding = airllm_quant_encoding(s->o.qtype);
            ct->enc_param[0] = s->o.block;
            ct->enc_param[1] = s->o.double_quant ? AIRLLM_CT_QFLAG_DOUBLE_QUANT : 0;
            airllm_ct_qlayout l;
            if (airllm_ct_tensor_qlayout(ct, &l, err)) {
                writer_free(w);
                return airllm_err_prefix(err, "%s", ct->name);
            }
            ct->stored_len = l.stored_len;
        } else if (src && src->encoding == AIRLLM_ENC_ZSTD) {
            /* Converted input: a lossless tensor that stays as it is keeps
             * its frames, copied byte for byte. */
            ct->encoding = AIRLLM_ENC_ZSTD;
            memcpy(ct->enc_param, src->enc_param, sizeof ct->enc_param);
            ct->stored_len = src->stored_len;
        }
    }
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", un->file);
    if (airllm_path_join(w->tmp, sizeof w->tmp, s->o.out_dir, tmpname, err) ||
        airllm_path_join(w->final, sizeof w->final, s->o.out_dir, un->file, err)) {
        writer_free(w);
        return -1;
    }
    w->io = &s->io;
    /* zstd units are read back for their digest (see writer_finish), so they
     * go through the page cache; raw units bypass it. */
    int direct = s->o.zstd ? 0 : O_DIRECT;
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | direct, 0644);
    if (w->fd < 0 && errno == EINVAL) /* tmpfs and others: no O_DIRECT */
        w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (w->fd < 0) {
        int e = errno;
        writer_free(w);
        return airllm_errf(err, "%s: cannot create: %s", w->tmp, strerror(e));
    }
    if (s->o.zstd) {
        /* zstd: compressed lengths are known only tensor by tensor, so the
         * header is written last. Its size depends only on the names, so
         * the data can start at its final place right away. */
        if (airllm_ct_layout(&w->hdr, err)) {
            writer_free(w);
            return -1;
        }
        w->header_last = true;
        w->pos = w->stage_off = w->hdr.data_start;
    } else {
        /* Raw: every length is known, so the header goes first and the
         * tensors follow as they are read. */
        uint8_t *hdr;
        size_t hdr_len;
        if (airllm_ct_layout(&w->hdr, err) || airllm_ct_encode(&w->hdr, &hdr, &hdr_len, err)) {
            writer_free(w);
            return -1;
        }
        int rc = writer_emit(w, hdr, hdr_len, err);
        free(hdr);
        if (rc) {
            writer_free(w);
            return -1;
        }
    }
    *out = w;
    return 0;
}

static int zbuf_reserve(unit_writer *w, size_t extra, airllm_err *err)
{
    if (w->zlen + extra <= w->zcap)
        return 0;
    size_t cap = w->zcap ? w->zcap : (1u << 20);
    while (cap < w->zlen + extra)
        cap *= 2;
    uint8_t *z = realloc(w->z, cap);
    if (!z)
        return airllm_errf(err, "out of memory while compressing %s", w->final);
    w->z = z;
    w->zcap = cap;
    return 0;
}

typedef struct {
    const uint8_t *src;
    size_t n;
    uint8_t *dst, *scratch;
    size_t dst_cap, dst_len;
    int level;
    unsigned width;
    int rc;
    airllm_err err;
} zjob;

static void *zjob_run(void *arg)
{
    zjob *j = arg;
    j->rc = airllm_zstd_chunk_compress(j->dst, j->dst_cap, &j->dst_len, j->src, j->n, j->level,
                                       j->width, j->scratch, &j->err);
    return NULL;
}

/* Compresses data (up to jobs chunks of the current tensor) in parallel and
 * appends the frames, in order, to the unit's buffer. */
static int writer_compress(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                           const uint8_t *data, size_t n, airllm_err *err)
{
    zjob jobs[64];
    pthread_t th[64];
    size_t nj = 0;
    unsigned width = group_width(ct->dtype);
    for (size_t off = 0; off < n; off += READ_CHUNK, nj++) {
        zjob *j = &jobs[nj];
        memset(j, 0, sizeof *j);
        j->src = data + off;
        j->n = n - off < READ_CHUNK ? n - off : READ_CHUNK;
        j->dst = s->zdst[nj];
        j->dst_cap = airllm_zstd_chunk_bound(READ_CHUNK);
        j->scratch = s->zscratch[nj];
        j->level = s->o.level;
        j->width = width;
    }
    for (size_t i = 1; i < nj; i++)
        if (pthread_create(&th[i], NULL, zjob_run, &jobs[i]) != 0)
            zjob_run(&jobs[i]), th[i] = 0;
    zjob_run(&jobs[0]);
    for (size_t i = 1; i < nj; i++)
        if (th[i])
            pthread_join(th[i], NULL);
    for (size_t i = 0; i < nj; i++) {
        if (jobs[i].rc) {
            *err = jobs[i].err;
            return airllm_err_prefix(err, "%s: tensor \"%s\"", w->final, ct->name);
        }
        if (zbuf_reserve(w, jobs[i].dst_len, err))
            return -1;
        memcpy(w->z + w->zlen, jobs[i].dst, jobs[i].dst_len);
        w->zlen += jobs[i].dst_len;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* quantization (airllm-quant)                                         */

static size_t elem_size(airllm_dtype dt)
{
    return airllm_dtype_bits(dt) / 8;
}

static size_t qcode_bytes(const split_ctx *s, uint64_t n)
{
    return airllm_quant_code_bytes(s->o.qtype, (size_t)n);
}

typedef struct {
    split_ctx *s;
    unit_writer *w;
    airllm_dtype dt;
    const uint8_t *src; /* n source elements, starting at element `first` */
    size_t n;
    uint64_t first;     /* a multiple of QSLICE */
    unsigned job, njobs;
    int rc;
    airllm_err err;
} qjob;

/* Quantizes every njobs-th slice of the batch: convert, quantize into the
 * batch's code buffer and the tensor's absmax, dequantize, and keep the
 * per-block error sums. Slices never share a block or a code byte. */
static void *qjob_run(void *arg)
{
    qjob *j = arg;
    split_ctx *s = j->s;
    unit_writer *w = j->w;
    size_t es = elem_size(j->dt), block = s->o.block;
    size_t nslices = (j->n + QSLICE - 1) / QSLICE;
    float *x = s->qx[j->job], *y = s->qy[j->job];
    for (size_t k = j->job; k < nslices && !j->rc; k += j->njobs) {
        size_t off = k * QSLICE, m = j->n - off < QSLICE ? j->n - off : QSLICE;
        size_t b0 = (size_t)((j->first + off) / block), nb = (m + block - 1) / block;
        size_t coff = qcode_bytes(s, off);
        if (airllm_float_to_f32_array(j->dt, j->src + off * es, m, x, &j->err) ||
            airllm_quantize(s->o.qtype, x, m, block, s->qcodes + coff, s->qcodes_cap - coff,
                            w->qabsmax + b0, nb, &j->err) ||
            airllm_dequantize(s->o.qtype, s->qcodes + coff, qcode_bytes(s, m), w->qabsmax + b0,
                              nb, m, block, y, &j->err) ||
            airllm_quant_block_stats(x, y, m, block, w->qabsmax + b0, w->qbs + b0, &j->err)) {
            airllm_err_prefix(&j->err, "elements from %llu",
                              (unsigned long long)(j->first + off));
            j->rc = -1;
        }
    }
    return NULL;
}

/* Quantizes n elements (whole slices, or the tensor's end) and writes
 * their codes. */
static int quant_batch(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                       const uint8_t *src, size_t n, airllm_err *err)
{
    qjob jobs[64];
    pthread_t th[64];
    size_t nslices = (n + QSLICE - 1) / QSLICE;
    unsigned nj = s->o.jobs < nslices ? s->o.jobs : (unsigned)nslices;
    if (qcode_bytes(s, n) > s->qcodes_cap)
        return airllm_errf(err, "internal error: quantization batch too large");
    for (unsigned i = 0; i < nj; i++)
        jobs[i] = (qjob){s, w, ct->dtype, src, n, w->qdone, i, nj, 0, {{0}}};
    for (unsigned i = 1; i < nj; i++)
        if (pthread_create(&th[i], NULL, qjob_run, &jobs[i]) != 0)
            qjob_run(&jobs[i]), th[i] = 0;
    if (nj)
        qjob_run(&jobs[0]);
    for (unsigned i = 1; i < nj; i++)
        if (th[i])
            pthread_join(th[i], NULL);
    for (unsigned i = 0; i < nj; i++)
        if (jobs[i].rc) {
            *err = jobs[i].err;
            return airllm_err_prefix(err, "%s: tensor \"%s\"", w->final, ct->name);
        }
    w->qdone += n;
    return writer_emit(w, s->qcodes, qcode_bytes(s, n), err);
}

static int quant_start(unit_writer *w, const airllm_ct_tensor *ct, airllm_err *err)
{
    if (airllm_ct_tensor_qlayout(ct, &w->ql, err))
        return airllm_err_prefix(err, "%s", ct->name);
    free(w->qabsmax);
    free(w->qbs);
    w->qabsmax = malloc((w->ql.nblocks ? w->ql.nblocks : 1) * sizeof *w->qabsmax);
    w->qbs = malloc((w->ql.nblocks ? w->ql.nblocks : 1) * sizeof *w->qbs);
    if (!w->qcarry)
        w->qcarry = malloc(QSLICE * 4);
    if (!w->qabsmax || !w->qbs || !w->qcarry)
        return airllm_errf(err, "out of memory for the block scales of %s", ct->name);
    w->qdone = 0;
    w->qcarry_len = 0;
    return 0;
}

/* Source bytes of the current tensor: whole slices go straight through,
 * the rest waits in the carry buffer. */
static int quant_feed(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                      const uint8_t *data, size_t n, airllm_err *err)
{
    size_t es = elem_size(ct->dtype), slice_bytes = QSLICE * es;
    while (n > 0) {
        if (w->qcarry_len || n < slice_bytes) {
            size_t take = slice_bytes - w->qcarry_len < n ? slice_bytes - w->qcarry_len : n;
            memcpy(w->qcarry + w->qcarry_len, data, take);
            w->qcarry_len += take;
            data += take;
            n -= take;
            if (w->qcarry_len == slice_bytes) {
                w->qcarry_len = 0;
                if (quant_batch(s, w, ct, w->qcarry, QSLICE, err))
                    return -1;
            }
        } else {
            size_t k = n / slice_bytes * slice_bytes;
            if (quant_batch(s, w, ct, data, k / es, err))
                return -1;
            data += k;
            n -= k;
        }
    }
    return 0;
}

/* Converted input: a zstd tensor's frames were collected in w->z; decode
 * them one chunk at a time into the quantizer. */
static int quant_feed_frames(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
                             const airllm_ct_tensor *src, airllm_err *err)
{
    size_t cap = src->enc_param[1];
    uint8_t *chunk = malloc(cap), *scratch = malloc(cap);
    const uint8_t *z = w->z;
    size_t zleft = w->zlen;
    uint64_t total = 0;
    int rc = chunk && scratch ? 0 : airllm_errf(err, "out of memory");
    while (!rc && zleft > 0) {
        size_t used, produced;
        rc = airllm_zstd_frame_decode(chunk, cap, &produced, z, zleft, &used, src->enc_param[0],
                                      scratch, err);
        if (rc)
            airllm_err_prefix(err, "%s: tensor \"%s\"", s->ck.dir, ct->name);
        for (size_t off = 0; !rc && off < produced; off += s->buf_size)
            rc = quant_feed(s, w, ct, chunk + off,
                            produced - off < s->buf_size ? produced - off : s->buf_size, err);
        z += used;
        zleft -= used;
        total += produced;
    }
    if (!rc && total != ct->raw_len)
        rc = airllm_errf(err, "%s: tensor \"%s\": frames decode to %llu bytes, %llu expected",
                         s->ck.dir, ct->name, (unsigned long long)total,
                         (unsigned long long)ct->raw_len);
    free(chunk);
    free(scratch);
    return rc;
}

/* 2^e as a double, |e| <= 1022. */
static double pow2(int32_t e)
{
    uint64_t b = (uint64_t)(1023 + e) << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static int emit_f32s(unit_writer *w, const float *v, size_t n, airllm_err *err)
{
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < n; k++, i++)
            airllm_put_lef32(buf + 4 * k, v[i]);
        if (writer_emit(w, buf, 4 * k, err))
            return -1;
    }
    return 0;
}

/* Ends a quantized tensor: the last partial slice, the scales (double
 * quantized if asked), and the error statistics of what is stored. */
static int quant_finish(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct, size_t t,
                        airllm_err *err)
{
    const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
    if (src && src->encoding == AIRLLM_ENC_ZSTD && quant_feed_frames(s, w, ct, src, err))
        return -1;
    size_t es = elem_size(ct->dtype);
    if (w->qcarry_len && quant_batch(s, w, ct, w->qcarry, w->qcarry_len / es, err))
        return -1;
    w->qcarry_len = 0;
    const airllm_ct_qlayout *l = &w->ql;
    if (w->qdone != l->n)
        return airllm_errf(err, "internal error: %s: %llu of %llu elements quantized", ct->name,
                           (unsigned long long)w->qdone, (unsigned long long)l->n);
    if (writer_pad_to(w, ct->offset + l->scales_off, err))
        return -1;
    size_t nb = (size_t)l->nblocks;
    float *stored = w->qabsmax; /* the absmax the runner will use */
    float *deq = NULL;
    uint8_t *q = NULL;
    float *a2 = NULL;
    int rc = 0;
    if (!l->double_quant) {
        rc = emit_f32s(w, w->qabsmax, nb, err);
    } else {
        float offset;
        q = malloc(nb);
        a2 = malloc((size_t)l->nblocks2 * sizeof *a2);
        deq = malloc(nb * sizeof *deq);
        if (!q || !a2 || !deq)
            rc = airllm_errf(err, "out of memory");
        if (!rc && (airllm_dq_compress(AIRLLM_DQ_BNB_LUT, w->qabsmax, nb, NULL, q, nb, a2,
                                       (size_t)l->nblocks2, &offset, err) ||
                    airllm_dq_decompress(q, nb, a2, (size_t)l->nblocks2, offset, deq, err)))
            rc = airllm_err_prefix(err, "%s: tensor \"%s\": double quantization", w->final,
                                   ct->name);
        if (!rc)
            rc = writer_emit(w, q, nb, err) ||
                 writer_pad_to(w, ct->offset + l->dq_offset_off, err) ||
                 emit_f32s(w, &offset, 1, err) || emit_f32s(w, a2, (size_t)l->nblocks2, err);
        stored = deq;
    }
    if (!rc && w->pos != ct->offset + ct->stored_len)
        rc = airllm_errf(err, "internal error: %s: %s takes %llu bytes, not %llu", w->final,
                         ct->name, (unsigned long long)(w->pos - ct->offset),
                         (unsigned long long)ct->stored_len);
    if (!rc) {
        /* x - v*a' = e + v*(a - a') for a scale a' that double quantization
         * moved: the sums give the exact squared error; the largest error
         * is bounded by max|e| + max|v| * |a - a'|. */
        double se2 = 0, sx2 = 0, maxe = 0;
        for (size_t b = 0; b < nb; b++) {
            const airllm_qblock_stats *bs = &w->qbs[b];
            /* In the block's scaled units (2^-exp), then back; |exp| <= 126,
             * so these powers of two are exact doubles. */
            double p = pow2(bs->exp), p2 = p * p;
            double d = ((double)w->qabsmax[b] - (double)stored[b]) / p;
            double e2 = (double)bs->e2 + 2 * d * bs->ev + d * d * bs->v2;
            double me = ((double)bs->max_e + (double)bs->max_v * fabs(d)) * p;
            se2 += e2 > 0 ? e2 * p2 : 0;
            sx2 += (double)bs->x2 * p2;
            maxe = me > maxe ? me : maxe;
        }
        airllm_quant_stats *st = &s->qstats[t];
        st->rmse = sqrt(se2 / (double)l->n);
        st->max_abs = maxe;
        st->rel_fro = sx2 > 0 ? sqrt(se2 / sx2) : 0;
    }
    free(q);
    free(a2);
    free(deq);
    return rc;
}

/* Feeds n bytes of the unit's current tensor. */
static int writer_feed(split_ctx *s, unit_writer *w, const uint8_t *data, size_t n,
                       airllm_err *err)
{
    airllm_ct_tensor *ct = &w->hdr.tensors[w->next];
    size_t t = s->ck.units[w->unit].tensors[w->next];
    if (s->o.zstd) {
        if (w->tensor_fill == 0)
            w->zlen = 0;
        if (n && writer_compress(s, w, ct, data, n, err))
            return -1;
    } else if (s->quantize && s->quantize[t]) {
        if (w->tensor_fill == 0) {
            w->q = true;
            w->zlen = 0;
            if (writer_pad_to(w, ct->offset, err) || quant_start(w, ct, err))
                return -1;
        }
        const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
        if (src && src->encoding == AIRLLM_ENC_ZSTD) {
            if (zbuf_reserve(w, n, err))
                return -1;
            memcpy(w->z + w->zlen, data, n);
            w->zlen += n;
        } else if (quant_feed(s, w, ct, data, n, err)) {
            return -1;
        }
    } else {
        if (w->tensor_fill == 0 && writer_pad_to(w, ct->offset, err))
            return -1;
        if (writer_emit(w, data, n, err))
            return -1;
    }
    w->tensor_fill += n;
    s->bytes_written += n;
    return 0;
}

/* zstd: writes the finished tensor at the next aligned offset, as frames,
 * or raw when zstd did not shrink it (smaller output, nothing to decode at
 * run time). Only this one tensor's frames are ever held in memory. */
static int writer_put_zstd_tensor(unit_writer *w, airllm_ct_tensor *ct, airllm_err *err)
{
    ct->offset = airllm_align_up(w->pos, AIRLLM_CT_ALIGN);
    if (writer_pad_to(w, ct->offset, err))
        return -1;
    if (w->zlen < ct->raw_len) {
        ct->encoding = AIRLLM_ENC_ZSTD;
        ct->stored_len = w->zlen;
        ct->enc_param[0] = group_width(ct->dtype);
        ct->enc_param[1] = READ_CHUNK;
        return writer_emit(w, w->z, w->zlen, err);
    }
    /* Decode our own frames back, one chunk at a time: the raw bytes are no
     * longer in memory, and re-reading the source would break the read-once
     * rule. Small tensors (norms, biases) and incompressible ones land here. */
    ct->encoding = AIRLLM_ENC_RAW;
    ct->stored_len = ct->raw_len;
    uint8_t *chunk = malloc(READ_CHUNK), *scratch = malloc(READ_CHUNK);
    const uint8_t *z = w->z;
    size_t zleft = w->zlen;
    int rc = chunk && scratch ? 0 : airllm_errf(err, "out of memory");
    while (!rc && zleft > 0) {
        size_t used, produced;
        rc = airllm_zstd_frame_decode(chunk, READ_CHUNK, &produced, z, zleft, &used,
                                      group_width(ct->dtype), scratch, err);
        if (!rc)
            rc = writer_emit(w, chunk, produced, err);
        z += used;
        zleft -= used;
    }
    free(chunk);
    free(scratch);
    return rc;
}

/* Ends the current tensor; *complete tells whether the unit has them all. */
static int writer_tensor_done(split_ctx *s, unit_writer *w, bool *complete, airllm_err *err)
{
    if (s->o.zstd && writer_put_zstd_tensor(w, &w->hdr.tensors[w->next], err))
        return -1;
    if (w->q && quant_finish(s, w, &w->hdr.tensors[w->next],
                             s->ck.units[w->unit].tensors[w->next], err))
        return -1;
    w->q = false;
    w->tensor_fill = 0;
    w->hdr.tensors[w->next].xxh3 = airllm_xxh3_final(w->xs);
    w->next++;
    *complete = w->next == w->hdr.n_tensors;
    return 0;
}

/* zstd: with the data on disk, the lengths are known: lay the header out
 * (the rule gives the offsets already used), write it at offset 0. */
/* Lays the header out again now that every length is final, and makes sure
 * no tensor moved from where its bytes were already written. */
static int writer_relayout(unit_writer *w, airllm_err *err)
{
    uint64_t *used = malloc((w->hdr.n_tensors + 1) * sizeof *used);
    if (!used)
        return airllm_errf(err, "out of memory");
    for (uint32_t i = 0; i < w->hdr.n_tensors; i++)
        used[i] = w->hdr.tensors[i].offset;
    int rc = airllm_ct_layout(&w->hdr, err);
    for (uint32_t i = 0; !rc && i < w->hdr.n_tensors; i++)
        if (used[i] != w->hdr.tensors[i].offset)
            rc = airllm_errf(err, "internal error: %s: layout moved a tensor", w->tmp);
    free(used);
    return rc;
}

static int writer_put_header_last(unit_writer *w, airllm_err *err)
{
    int rc = writer_relayout(w, err);
    if (!rc && w->pos != w->hdr.file_size)
        rc = airllm_errf(err, "internal error: %s: size differs from the layout", w->tmp);
    uint8_t *hdr = NULL, *aligned = NULL;
    size_t hdr_len = 0;
    if (!rc)
        rc = airllm_ct_encode(&w->hdr, &hdr, &hdr_len, err);
    /* O_DIRECT needs an aligned buffer; hdr_len is data_start, a multiple
     * of 4096. */
    if (!rc && posix_memalign((void **)&aligned, AIRLLM_CT_ALIGN, hdr_len) != 0)
        rc = airllm_errf(err, "out of memory");
    if (!rc) {
        memcpy(aligned, hdr, hdr_len);
        rc = io_write_one(&(io_req){w->fd, w->tmp, aligned, hdr_len, 0}, err);
    }
    free(hdr);
    free(aligned);
    return rc;
}

/* Appends the check block (format 1.2) at the aligned end of the data: the
 * tensors' XXH3 are complete only now, so it comes last in the file; it
 * ends at file_size. */
static int writer_put_checks(unit_writer *w, airllm_err *err)
{
    /* zstd: lengths are final only now; raw: the same layout again */
    int rc = writer_relayout(w, err);
    if (!rc && w->pos != w->hdr.check_offset)
        rc = airllm_errf(err, "internal error: %s: data ends at %llu, the check block "
                              "is at %llu",
                         w->tmp, (unsigned long long)w->pos,
                         (unsigned long long)w->hdr.check_offset);
    uint8_t *blk = NULL;
    size_t bl = 0;
    if (!rc)
        rc = airllm_ct_encode_checks(&w->hdr, &blk, &bl, err);
    if (!rc)
        rc = writer_emit(w, blk, bl, err);
    free(blk);
    return rc;
}

/* Writes what is buffered, pads, fsyncs and renames the unit into place, and
 * journals it. */
static int writer_finish(split_ctx *s, unit_writer *w, airllm_err *err)
{
    if (s->o.zstd && writer_pad_to(w, airllm_align_up(w->pos, AIRLLM_CT_ALIGN), err))
        return -1;
    if (!s->o.zstd && writer_pad_to(w, w->hdr.check_offset, err))
        return -1;
    if (writer_put_checks(w, err))
        return -1;
    if (writer_unpark(w, err)) /* a tail may wait even when nothing was added */
        return -1;
    writer_flush(w);
    if (io_drain(w->io, err))
        return -1;
    if (w->header_last && writer_put_header_last(w, err))
        return -1;
    if (fsync(w->fd) != 0)
        return airllm_errf(err, "%s: fsync failed: %s", w->tmp, strerror(errno));
    if (close(w->fd) != 0) {
        w->fd = -1;
        return airllm_errf(err, "%s: close failed: %s", w->tmp, strerror(errno));
    }
    w->fd = -1;
    char sha[AIRLLM_SHA256_HEX];
    if (w->header_last) {
        /* The digest comes from reading the file back: it was not written
         * in order. The read also proves the bytes reached the disk. */
        uint64_t size;
        if (airllm_sha256_file(w->tmp, sha, &size, err))
            return -1;
        if (size != w->pos)
            return airllm_errf(err, "%s: reads back %llu bytes, %llu written", w->tmp,
                               (unsigned long long)size, (unsigned long long)w->pos);
    } else {
        airllm_sha256_final_hex(w->hash, sha);
    }
    if (rename(w->tmp, w->final) != 0)
        return airllm_errf(err, "%s: cannot rename into place: %s", w->tmp, strerror(errno));
    if (airllm_fsync_path(s->o.out_dir, err))
        return -1;
    airllm_step("unit renamed");
    done_rec *r = &s->unit_done[w->unit];
    r->done = true;
    r->size = w->pos;
    memcpy(r->sha, sha, AIRLLM_SHA256_HEX);
    const airllm_ckpt_unit *un = &s->ck.units[w->unit];
    for (uint32_t i = 0; i < w->hdr.n_tensors; i++) {
        s->stored_len[un->tensors[i]] = w->hdr.tensors[i].stored_len;
        s->encoding[un->tensors[i]] = w->hdr.tensors[i].encoding;
    }
    airllm_jrec jr;
    for (uint32_t i = 0; i < w->hdr.n_tensors; i++) {
        size_t t = un->tensors[i];
        if (!airllm_encoding_is_quant(w->hdr.tensors[i].encoding))
            continue;
        jr = (airllm_jrec){.kind = AIRLLM_JR_QSTATS, .size = t,
                           .stats = {s->qstats[t].rmse, s->qstats[t].max_abs,
                                     s->qstats[t].rel_fro}};
        snprintf(jr.name, sizeof jr.name, "%s", w->hdr.tensors[i].name);
        if (journal_append(s, &jr, err))
            return -1;
    }
    return journal_unit(s, w->unit, err);
}

/* ------------------------------------------------------------------ */
/* resume: keep journaled units whose file still matches               */

/* Checks a journaled unit file against its digest and the plan, and picks
 * up each tensor's stored length and encoding for the manifest. */
/* Hashes unit u's file and compares it with its journal entry; path gets
 * the file's path. With from_disk, the page cache is dropped first, so the
 * bytes come from the device, not from memory that may never have reached
 * it. */
static int unit_matches_journal(split_ctx *s, size_t u, bool from_disk, const char *mismatch,
                                char path[4096], airllm_err *err)
{
    char sha[AIRLLM_SHA256_HEX];
    uint64_t size;
    if (airllm_path_join(path, 4096, s->o.out_dir, s->ck.units[u].file, err))
        return -1;
    if (from_disk) {
        int fd = airllm_open_input(path, 0, NULL);
        if (fd >= 0) {
            posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
            close(fd);
        }
    }
    if (airllm_sha256_file(path, sha, &size, err))
        return -1;
    if (size != s->unit_done[u].size || strcmp(sha, s->unit_done[u].sha) != 0)
        return airllm_errf(err, "%s: %s", path, mismatch);
    return 0;
}

static int unit_check_kept(split_ctx *s, size_t u, airllm_err *err)
{
    const airllm_ckpt_unit *un = &s->ck.units[u];
    char path[4096];
    airllm_ct_header h;
    if (unit_matches_journal(s, u, false, "does not match its journal entry", path, err))
        return -1;
    if (airllm_ct_read_file(path, &h, err))
        return -1;
    int rc = 0;
    if (h.n_tensors != un->n_tensors)
        rc = airllm_errf(err, "%s: tensor count differs from the plan", path);
    for (uint32_t i = 0; !rc && i < h.n_tensors; i++) {
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, un->tensors[i]);
        if (strcmp(h.tensors[i].name, st->name) != 0 || h.tensors[i].dtype != st->dtype ||
            h.tensors[i].raw_len != airllm_ckpt_raw_len(&s->ck, un->tensors[i]))
            rc = airllm_errf(err, "%s: tensor %u differs from the plan", path, i);
        s->stored_len[un->tensors[i]] = h.tensors[i].stored_len;
        s->encoding[un->tensors[i]] = h.tensors[i].encoding;
        if (!rc && airllm_encoding_is_quant(h.tensors[i].encoding) &&
            (!s->qstats || s->qstats[un->tensors[i]].rmse < 0))
            rc = airllm_errf(err, "%s: no error statistics journaled for %s", path,
                             h.tensors[i].name);
    }
    airllm_ct_free(&h);
    return rc;
}

/* ------------------------------------------------------------------ */
/* where the checkpoint's bytes really are                            */

/* Whether real (a path from realpath(), so its prefixes are its real
 * ancestors) is dir or lies inside it. Compared by device and inode: names
 * lie (symlinks, bind mounts, "..", case-insensitive file systems). */
static bool real_within(const char *real, const struct stat *dir)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", real);
    for (;;) {
        struct stat st;
        if (stat(p, &st) == 0 && st.st_dev == dir->st_dev && st.st_ino == dir->st_ino)
            return true;
        char *slash = strrchr(p, '/');
        if (!slash || p[1] == '\0')
            return false;
        slash[slash == p] = '\0'; /* "/x" goes to "/" */
    }
}

/* Whether the folder holding real is dir. */
static bool parent_is(const char *real, const char *dir)
{
    char p[PATH_MAX];
    struct stat a, b;
    snprintf(p, sizeof p, "%s", real);
    char *slash = strrchr(p, '/');
    if (!slash)
        return false;
    slash[slash == p] = '\0';
    return stat(p, &a) == 0 && stat(dir, &b) == 0 && a.st_dev == b.st_dev &&
           a.st_ino == b.st_ino;
}

/* A Hugging Face cache keeps a checkpoint as REPO/snapshots/REV/NAME, each a
 * link to REPO/blobs/HASH, where the bytes are. If hf_dir is such a REV
 * folder, repo gets REPO's real path. */
static bool hf_cache_repo(const char *hf_dir, char repo[PATH_MAX])
{
    char blobs[PATH_MAX + 8];
    struct stat st;
    if (!realpath(hf_dir, repo))
        return false;
    char *rev = strrchr(repo, '/');
    if (!rev || rev == repo)
        return false;
    *rev = '\0';
    char *snap = strrchr(repo, '/');
    if (!snap || strcmp(snap + 1, "snapshots") != 0)
        return false;
    *snap = '\0';
    snprintf(blobs, sizeof blobs, "%s/blobs", repo);
    return stat(blobs, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Whether a link under dir (a cache's snapshots/, every revision), other than
 * self, resolves to blob: two revisions share the blob of a file they both
 * hold, and deleting it would break the other. A folder that cannot be read
 * counts as sharing it: when in doubt, keep the blob. */
static bool blob_shared(const char *dir, int depth, const struct stat *blob,
                        const struct stat *self, char *other, size_t cap)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(other, cap, "%s (unreadable)", dir);
        return true;
    }
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        char p[4096];
        struct stat l, t;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name) >= (int)sizeof p || lstat(p, &l) != 0)
            continue;
        if (S_ISDIR(l.st_mode) && depth < 16) {
            found = blob_shared(p, depth + 1, blob, self, other, cap);
        } else if (S_ISLNK(l.st_mode) && !(l.st_dev == self->st_dev && l.st_ino == self->st_ino) &&
                   stat(p, &t) == 0 && t.st_dev == blob->st_dev && t.st_ino == blob->st_ino) {
            snprintf(other, cap, "%s", p);
            found = true;
        }
    }
    closedir(d);
    return found;
}

/* --delete-original removes path, a checkpoint file of hf_dir. In a Hugging
 * Face cache it is a link into REPO/blobs/, and removing only the link would
 * free nothing: the blob goes first (unless another snapshot links to it),
 * then the link. A run stopped in between leaves a dangling link, which the
 * checkpoint reader takes for a deleted shard (its header was saved before
 * any deletion) and a rerun removes; the other order could leave a blob that
 * nothing names. With present false the file was found missing: only such a
 * dangling link is removed. A link to anything else loses only the link. */
static int delete_checkpoint_file(const char *hf_dir, const char *path, bool present,
                                  airllm_err *err)
{
    struct stat l, t, hf;
    if (lstat(path, &l) != 0)
        return errno == ENOENT ? 0
                               : airllm_errf(err, "%s: cannot delete: %s", path, strerror(errno));
    bool dangling = S_ISLNK(l.st_mode) && stat(path, &t) != 0;
    if (!present && !dangling)
        return 0;
    char repo[PATH_MAX], real[PATH_MAX], dir[PATH_MAX + 16], other[4096];
    if (S_ISLNK(l.st_mode) && !dangling && realpath(path, real)) {
        bool cache = hf_cache_repo(hf_dir, repo);
        if (cache)
            snprintf(dir, sizeof dir, "%s/blobs", repo);
        if (cache && parent_is(real, dir)) {
            snprintf(dir, sizeof dir, "%s/snapshots", repo);
            if (blob_shared(dir, 0, &t, &l, other, sizeof other)) {
                cli_info("keeping %s: %s links to it too", real, other);
            } else {
                snprintf(dir, sizeof dir, "%s/blobs", repo);
                if (unlink(real) != 0 && errno != ENOENT)
                    return airllm_errf(err, "%s: cannot delete: %s", real, strerror(errno));
                if (airllm_fsync_path(dir, err))
                    return -1;
                airllm_step("blob deleted");
                cli_verbose("deleted %s", real);
            }
        } else if (stat(hf_dir, &hf) == 0 && !real_within(real, &hf)) {
            cli_info("%s: deleting the link only; %s, outside HF_DIR, is kept", path, real);
        }
    }
    if (unlink(path) != 0 && errno != ENOENT)
        return airllm_errf(err, "%s: cannot delete: %s", path, strerror(errno));
    return 0;
}

/* Before anything is written: every checkpoint file the run reads (shards,
 * index, config, tokenizer files) must really be inside HF_DIR, or in its
 * Hugging Face cache's blobs/, unless --follow-symlinks (a link to
 * /etc/passwd named tokenizer_config.json would be copied and published);
 * and none may really be inside OUT_DIR, where writing, or --force, would
 * destroy it. Each file's identity is kept for the check of OUT_DIR's
 * entries before --force clears them. */
static int check_sources(split_ctx *s, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    size_t n = c->n_sources + 1 + N_AUX;
    s->real_stat = calloc(n, sizeof *s->real_stat);
    s->real_name = calloc(n, sizeof *s->real_name);
    if (!s->real_stat || !s->real_name)
        return airllm_errf(err, "out of memory");
    struct stat hf, out;
    if (stat(c->dir, &hf) != 0)
        return airllm_errf(err, "%s: %s", c->dir, strerror(errno));
    bool have_out = stat(s->o.out_dir, &out) == 0;
    char repo[PATH_MAX], blobs[PATH_MAX + 8];
    bool cache = hf_cache_repo(c->dir, repo);
    if (cache)
        snprintf(blobs, sizeof blobs, "%s/blobs", repo);
    for (size_t k = 0; k < n; k++) {
        const char *name = k < c->n_sources    ? c->sources[k].file
                           : k == c->n_sources ? (c->sharded ? AIRLLM_INDEX_NAME : NULL)
                                               : aux_files[k - c->n_sources - 1];
        char path[4096], real[PATH_MAX];
        struct stat st;
        if (!name || (k < c->n_sources && !c->sources[k].present))
            continue;
        if (airllm_path_join(path, sizeof path, c->dir, name, err))
            return -1;
        if (stat(path, &st) != 0)
            continue; /* absent: not read */
        if (!realpath(path, real))
            return airllm_errf(err, "%s: cannot resolve: %s", path, strerror(errno));
        if (!s->o.follow_symlinks && !real_within(real, &hf) && !(cache && parent_is(real, blobs)))
            return airllm_errf(err, "%s: links to %s, outside HF_DIR; refusing to read it "
                                    "(--follow-symlinks allows it)", path, real);
        if (have_out && real_within(real, &out))
            return airllm_errf(err, "%s: its data is %s, inside OUT_DIR %s; refusing to write "
                                    "there (--force would delete it)", path, real, s->o.out_dir);
        s->real_name[s->n_real_stat] = name;
        s->real_stat[s->n_real_stat++] = st;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* --delete-original                                                  */

static bool source_units_done(const split_ctx *s, size_t i)
{
    for (size_t k = 0; k < s->n_src_units[i]; k++)
        if (!s->unit_done[s->src_units[i][k]].done)
            return false;
    return true;
}

static bool source_needed(const split_ctx *s, size_t i)
{
    return !s->src_done[i].done || !source_units_done(s, i);
}

/* Lists, for each source, the units holding its tensors: the completion and
 * deletion checks run after every unit, so they must not rescan every
 * tensor of the model (tens of thousands in large MoE checkpoints). */
static int build_source_units(split_ctx *s, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    size_t *last = malloc((c->n_units ? c->n_units : 1) * sizeof *last);
    s->src_units = calloc(c->n_sources, sizeof *s->src_units);
    s->n_src_units = calloc(c->n_sources, sizeof *s->n_src_units);
    if (!last || !s->src_units || !s->n_src_units) {
        free(last);
        return airllm_errf(err, "out of memory");
    }
    for (size_t u = 0; u < c->n_units; u++)
        last[u] = SIZE_MAX;
    for (size_t i = 0; i < c->n_sources; i++) {
        s->src_units[i] = malloc((c->n_units ? c->n_units : 1) * sizeof **s->src_units);
        if (!s->src_units[i]) {
            free(last);
            return airllm_errf(err, "out of memory");
        }
    }
    for (size_t t = 0; t < c->n_tensors; t++) {
        size_t i = c->tensors[t].source, u = c->tensors[t].unit;
        if (last[u] != i) {
            last[u] = i;
            s->src_units[i][s->n_src_units[i]++] = u;
        }
    }
    free(last);
    return 0;
}

/* Re-reads a finished unit from disk, once per run, and matches it against
 * its digest. */
static int unit_reverify(split_ctx *s, size_t u, airllm_err *err)
{
    char path[4096];
    if (s->unit_reverified[u])
        return 0;
    if (unit_matches_journal(s, u, true,
                             "re-read does not match the digest written; the source is kept",
                             path, err))
        return -1;
    s->unit_reverified[u] = true;
    return 0;
}

static int source_unchanged(const split_ctx *s, size_t i, bool rehash, airllm_err *err);

/* The deletion itself, once source i is proved converted and unchanged. */
static int delete_source_file(split_ctx *s, size_t i, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    char path[4096];
    if (airllm_path_join(path, sizeof path, c->dir, c->sources[i].file, err))
        return -1;
    /* A link into a Hugging Face cache's blobs/ takes its blob with it. */
    if (delete_checkpoint_file(c->dir, path, c->sources[i].present, err))
        return -1;
    if (airllm_fsync_path(c->dir, err))
        return -1;
    cli_verbose("deleted %s", path);
    return 0;
}

static int try_delete_sources(split_ctx *s, airllm_err *err)
{
    if (!s->o.delete_original)
        return 0;
    const airllm_ckpt *c = &s->ck;
    for (size_t i = 0; i < c->n_sources; i++) {
        if (s->src_deleted[i] || !s->src_done[i].done)
            continue;
        if (!source_units_done(s, i))
            continue;
        for (size_t k = 0; k < s->n_src_units[i]; k++)
            if (unit_reverify(s, s->src_units[i][k], err))
                return -1;
        /* The file deleted must be the bytes the units were made from. */
        if (c->sources[i].present && source_unchanged(s, i, true, err))
            return -1;
        if (delete_source_file(s, i, err))
            return -1;
        airllm_step("source deleted");
        s->src_deleted[i] = true;
        airllm_jrec jr = {.kind = AIRLLM_JR_DELETED};
        snprintf(jr.name, sizeof jr.name, "%s", c->sources[i].file);
        if (journal_append(s, &jr, err))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* streaming                                                          */


/* Streaming one source is a two-stage pipeline, so that the two SHA-256
 * passes (source and output) run on two cores and the reads overlap the
 * writes and fsyncs:
 *   reader (calling thread): pread a chunk, hash it as source bytes, queue it;
 *   writer (one thread):     hash it as unit bytes, write it, finish units,
 *                            journal, delete sources.
 * The writer thread owns all of split_ctx's mutable state while it runs;
 * the reader only reads the plan and its own buffers. */
typedef struct {
    uint8_t *buf;
    size_t n;
    size_t tensor; /* plan tensor index, or SIZE_MAX for the end of the source */
    bool last;     /* last chunk of the tensor */
    uint64_t end_off; /* last: the tensor's end in the source, and the */
    char end_sha[AIRLLM_SHA256_HEX]; /* digest of the source up to there */
} pipe_msg;

typedef struct {
    split_ctx *s;
    size_t source;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    pipe_msg q[PIPE_DEPTH];
    size_t head, count;
    uint8_t *free_bufs[PIPE_DEPTH];
    size_t n_free;
    bool failed; /* set by the writer: the reader stops */
    airllm_err err;
    char source_sha[AIRLLM_SHA256_HEX];
} pipeline;

static uint8_t *pipe_get_buffer(pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->n_free == 0 && !p->failed)
        pthread_cond_wait(&p->cond, &p->lock);
    uint8_t *b = p->failed ? NULL : p->free_bufs[--p->n_free];
    pthread_mutex_unlock(&p->lock);
    return b;
}

static void pipe_push(pipeline *p, pipe_msg m)
{
    pthread_mutex_lock(&p->lock);
    while (p->count == PIPE_DEPTH && !p->failed)
        pthread_cond_wait(&p->cond, &p->lock);
    if (!p->failed) {
        p->q[(p->head + p->count) % PIPE_DEPTH] = m;
        p->count++;
    }
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static pipe_msg pipe_pop(pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    while (p->count == 0)
        pthread_cond_wait(&p->cond, &p->lock);
    pipe_msg m = p->q[p->head];
    p->head = (p->head + 1) % PIPE_DEPTH;
    p->count--;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return m;
}

static void pipe_release(pipeline *p, uint8_t *buf)
{
    if (!buf)
        return;
    pthread_mutex_lock(&p->lock);
    p->free_bufs[p->n_free++] = buf;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static void pipe_fail(pipeline *p)
{
    pthread_mutex_lock(&p->lock);
    p->failed = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static int unit_complete(split_ctx *s, size_t u, airllm_err *err)
{
    int rc = writer_finish(s, s->writers[u], err);
    writer_free(s->writers[u]);
    s->writers[u] = NULL;
    if (rc || try_delete_sources(s, err))
        return -1;
    return 0;
}

/* Handles one chunk on the writer side. */
static int consume(pipeline *p, const pipe_msg *m, airllm_err *err)
{
    split_ctx *s = p->s;
    size_t u = s->ck.tensors[m->tensor].unit;
    if (!s->writers[u] && writer_open(s, u, &s->writers[u], err))
        return -1;
    unit_writer *w = s->writers[u];
    if (strcmp(w->hdr.tensors[w->next].name, s->ck.tensors[m->tensor].name) != 0)
        return airllm_errf(err, "internal error: %s arrives out of order",
                           s->ck.tensors[m->tensor].name);
    if (m->n && writer_feed(s, w, m->buf, m->n, err))
        return -1;
    bool complete = false;
    if (m->last) {
        /* The unit's bytes from this source end here (so far). */
        s->unit_ck[u] = (src_ck){p->source, m->end_off, {0}};
        memcpy(s->unit_ck[u].sha, m->end_sha, AIRLLM_SHA256_HEX);
    }
    if (m->last && writer_tensor_done(s, w, &complete, err))
        return -1;
    if (!complete || s->ck.converted) {
        /* A converted input's unit file is its own source: its unit is
         * finished only once the whole file matched its digest. */
        w->deferred = complete;
        writer_park(w);
        return 0;
    }
    return unit_complete(s, u, err);
}

static void *writer_thread(void *arg)
{
    pipeline *p = arg;
    split_ctx *s = p->s;
    for (;;) {
        pipe_msg m = pipe_pop(p);
        if (m.tensor == SIZE_MAX) {
            if (p->failed)
                break;
            /* End of the source: every byte hashed, every unit fed. */
            const airllm_ckpt_source *src = &s->ck.sources[p->source];
            if (src->ct && strcmp(src->sha256, p->source_sha) != 0) {
                airllm_errf(&p->err, "%s/%s: SHA-256 differs from the input manifest: the "
                                     "file is corrupted",
                            s->ck.dir, src->file);
                pipe_fail(p);
                break;
            }
            for (size_t k = 0; k < s->n_src_units[p->source]; k++) {
                size_t u = s->src_units[p->source][k];
                if (!s->writers[u] || !s->writers[u]->deferred)
                    continue;
                /* its bytes were proved only by the whole file's digest */
                s->unit_ck[u] = (src_ck){p->source, src->st.file_size, {0}};
                memcpy(s->unit_ck[u].sha, p->source_sha, AIRLLM_SHA256_HEX);
                if (unit_complete(s, u, &p->err))
                    pipe_fail(p);
            }
            if (p->failed)
                break;
            done_rec *r = &s->src_done[p->source];
            r->done = true;
            r->size = src->st.file_size;
            memcpy(r->sha, p->source_sha, AIRLLM_SHA256_HEX);
            airllm_jrec jr = {.kind = AIRLLM_JR_SOURCE, .size = r->size};
            snprintf(jr.name, sizeof jr.name, "%s", src->file);
            memcpy(jr.sha, r->sha, AIRLLM_SHA256_HEX);
            if (journal_append(s, &jr, &p->err) || try_delete_sources(s, &p->err))
                pipe_fail(p);
            break;
        }
        int rc = p->failed ? 0 : consume(p, &m, &p->err);
        pipe_release(p, m.buf);
        if (rc)
            pipe_fail(p);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* source identity: a source must be, when it is used, kept or deleted,
 * the bytes that were read from it                                    */

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* What to do about a source that changed: --force is only offered while it
 * can lose nothing, that is while no source has been deleted. */
static bool any_source_deleted(const split_ctx *s)
{
    for (size_t i = 0; i < s->ck.n_sources; i++)
        if (s->src_deleted[i] || !s->ck.sources[i].present)
            return true;
    return false;
}

static const char *changed_advice(const split_ctx *s)
{
    if (any_source_deleted(s))
        return "Restore the file as it was to finish the conversion (shards already "
                   "deleted have tensors that now exist only in OUT_DIR)";
    return "Restore the file as it was and rerun, or rerun with --force to convert it as "
           "it is now";
}

static int source_changed(const split_ctx *s, const char *path, uint64_t off, airllm_err *err)
{
    return airllm_errf(err, "%s: changed since it was read: its first %llu bytes no longer "
                            "match the SHA-256 journaled for them, and units already converted "
                            "hold the old bytes; nothing more is kept or deleted. %s",
                       path, (unsigned long long)off, changed_advice(s));
}

static bool has_jck(const split_ctx *s, size_t i, uint64_t off)
{
    for (size_t k = 0; k < s->n_jck; k++)
        if (s->jck[k].source == i && s->jck[k].off == off)
            return true;
    return false;
}

/* sha is the digest of source i's first off bytes as read now; the journal
 * must not have recorded another. */
static int check_jck(const split_ctx *s, size_t i, uint64_t off, const char *sha,
                     const char *path, airllm_err *err)
{
    for (size_t k = 0; k < s->n_jck; k++)
        if (s->jck[k].source == i && s->jck[k].off == off && strcmp(s->jck[k].sha, sha) != 0)
            return source_changed(s, path, off, err);
    return 0;
}

/* At the end of a tensor, source offset off: the digest so far, checked
 * against the journal's checkpoint there if there is one, and carried by the
 * tensor's last message, for its unit's journal record. */
static int tensor_end(const split_ctx *s, size_t i, airllm_sha256 *h, airllm_sha256 *scratch,
                      uint64_t off, bool send, pipe_msg *m, const char *path, airllm_err *err)
{
    bool ck = has_jck(s, i, off);
    if (!send && !ck)
        return 0;
    airllm_sha256_peek_hex(h, scratch, m->end_sha);
    m->end_off = off;
    return ck ? check_jck(s, i, off, m->end_sha, path, err) : 0;
}

/* After source i was read through fd: the file (and the path, which may
 * have been replaced) must be as it was when it was opened. */
static int source_as_read(const split_ctx *s, size_t i, int fd, const char *path,
                          airllm_err *err)
{
    struct stat a, b;
    if (fstat(fd, &a) != 0 || stat(path, &b) != 0 || !same_file_state(&s->src_stat[i], &a) ||
        !same_file_state(&s->src_stat[i], &b))
        return airllm_errf(err, "%s: modified while it was being read (its size, mtime or "
                                "inode changed); the units made from it are not trusted, and "
                                "nothing was deleted. %s",
                           path, changed_advice(s));
    return 0;
}

/* Before source i is deleted, and before a run that read it ends well: it
 * must still be the file that was read (size, mtime, inode) and, when
 * rehash is set, still hash to the digest computed while reading it. */
static int source_unchanged(const split_ctx *s, size_t i, bool rehash, airllm_err *err)
{
    char path[4096], sha[AIRLLM_SHA256_HEX];
    struct stat now;
    uint64_t size;
    if (airllm_path_join(path, sizeof path, s->ck.dir, s->ck.sources[i].file, err))
        return -1;
    if (stat(path, &now) != 0)
        return errno == ENOENT ? 0 : airllm_errf(err, "%s: cannot stat: %s", path,
                                                 strerror(errno));
    bool same = !s->src_stat_ok[i] || same_file_state(&s->src_stat[i], &now);
    if (same && rehash) {
        if (airllm_sha256_file(path, sha, &size, err))
            return -1;
        same = size == s->src_done[i].size && strcmp(sha, s->src_done[i].sha) == 0;
    }
    if (!same)
        return airllm_errf(err, "%s: changed since it was read (the output holds the bytes "
                                "read before the change): it is kept, and the conversion "
                                "stops. %s",
                           path, changed_advice(s));
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int hash_range(split_ctx *s, int fd, const char *path, airllm_sha256 *h, uint64_t *off,
                      uint64_t end, airllm_err *err);

/* Resume, before anything is kept, written or deleted: every present source
 * must hash, at each checkpoint the journal recorded for it, to the digest
 * recorded there. One sequential read per source, up to its last
 * checkpoint. */
static int verify_journaled_sources(split_ctx *s, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    airllm_sha256 *h = airllm_sha256_new(), *hs = airllm_sha256_new();
    uint64_t *offs = malloc((s->n_jck ? s->n_jck : 1) * sizeof *offs);
    int rc = h && hs && offs ? 0 : airllm_errf(err, "out of memory");
    for (size_t i = 0; !rc && i < c->n_sources; i++) {
        size_t n = 0;
        for (size_t k = 0; k < s->n_jck; k++)
            if (s->jck[k].source == i)
                offs[n++] = s->jck[k].off;
        if (n == 0 || !c->sources[i].present)
            continue;
        qsort(offs, n, sizeof *offs, cmp_u64);
        char path[4096], sha[AIRLLM_SHA256_HEX];
        if (airllm_path_join(path, sizeof path, c->dir, c->sources[i].file, err)) {
            rc = -1;
            break;
        }
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &s->src_stat[i]) != 0) {
            rc = airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
            if (fd >= 0)
                close(fd);
            break;
        }
        s->src_stat_ok[i] = true;
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        cli_verbose("checking %s against the journal", path);
        if ((uint64_t)s->src_stat[i].st_size < offs[n - 1])
            rc = source_changed(s, path, offs[n - 1], err);
        uint64_t off = 0;
        for (size_t j = 0; !rc && j < n; j++) {
            if (j && offs[j] == offs[j - 1])
                continue;
            rc = hash_range(s, fd, path, h, &off, offs[j], err);
            if (!rc) {
                airllm_sha256_peek_hex(h, hs, sha);
                rc = check_jck(s, i, off, sha, path, err);
            }
        }
        airllm_sha256_final_hex(h, sha); /* resets h for the next source */
        close(fd);
    }
    free(offs);
    airllm_sha256_free(h);
    airllm_sha256_free(hs);
    return rc;
}

/* A journaled unit is kept only if, for each source it has tensors in, a
 * checkpoint verified by verify_journaled_sources covers them: the bytes it
 * was made from are the bytes there now. Format 2 always journals one. A
 * unit journaled by format 1 has none; it is redone, unless one of its
 * sources is deleted: then it cannot be redone, and is kept as that
 * version would have kept it. */
static bool unit_proven(const split_ctx *s, size_t u)
{
    const airllm_ckpt *c = &s->ck;
    const airllm_ckpt_unit *un = &c->units[u];
    for (size_t k = 0; k < un->n_tensors; k++)
        if (!c->sources[c->tensors[un->tensors[k]].source].present)
            return true;
    for (size_t k = 0; k < un->n_tensors; k++) {
        size_t t = un->tensors[k], i = c->tensors[t].source;
        uint64_t end = c->sources[i].st.data_start + airllm_ckpt_st(c, t)->end;
        bool covered = false;
        for (size_t j = 0; j < s->n_jck && !covered; j++)
            covered = s->jck[j].source == i && s->jck[j].off >= end;
        if (!covered)
            return false;
    }
    return true;
}

/* Reads [*off, end) of a source that no writer needs (the header, the
 * padding between container tensors, the tail), only to hash it; *off ends
 * at end. */
static int hash_range(split_ctx *s, int fd, const char *path, airllm_sha256 *h, uint64_t *off,
                      uint64_t end, airllm_err *err)
{
    while (*off < end) {
        size_t n = (size_t)(end - *off < s->buf_size ? end - *off : s->buf_size);
        if (airllm_pread_full(fd, s->buf, n, *off, path, err))
            return -1;
        airllm_sha256_update(h, s->buf, n);
        *off += n;
    }
    return 0;
}

/* Reads source i once, front to back: hashes every byte and hands each
 * tensor's bytes to its unit's writer (through the pipeline). */
static int stream_source(split_ctx *s, size_t i, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    const airllm_ckpt_source *src = &c->sources[i];
    char path[4096];
    if (airllm_path_join(path, sizeof path, c->dir, src->file, err))
        return -1;
    if (!src->present)
        return airllm_errf(err, "%s: missing, and layers that need it are not complete; "
                                "it cannot be recovered", path);
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return airllm_errf(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    /* The file must still be what was planned: a shard swapped or grown
     * between planning and reading would corrupt the output silently. */
    if ((uint64_t)st.st_size != src->st.file_size) {
        close(fd);
        return airllm_errf(err, "%s: size changed since it was read (%llu, now %llu)", path,
                           (unsigned long long)src->st.file_size,
                           (unsigned long long)st.st_size);
    }
    /* Set before the writer thread starts, which reads it to delete. */
    s->src_stat[i] = st;
    s->src_stat_ok[i] = true;
    pipeline p;
    memset(&p, 0, sizeof p);
    p.s = s;
    p.source = i;
    pthread_mutex_init(&p.lock, NULL);
    pthread_cond_init(&p.cond, NULL);
    for (size_t b = 0; b < PIPE_DEPTH; b++)
        p.free_bufs[p.n_free++] = s->pipe_bufs[b];
    /* Which units still need data was fixed before this source started;
     * only the writer thread changes it, from data that we send. */
    bool *need = calloc(c->n_units, sizeof *need);
    airllm_sha256 *h = airllm_sha256_new(), *hs = airllm_sha256_new();
    pthread_t th;
    int rc = 0;
    if (!need || !h || !hs) {
        free(need);
        airllm_sha256_free(h);
        airllm_sha256_free(hs);
        close(fd);
        return airllm_errf(err, "out of memory");
    }
    for (size_t u = 0; u < c->n_units; u++)
        need[u] = !s->unit_done[u].done;
    if (pthread_create(&th, NULL, writer_thread, &p) != 0) {
        free(need);
        airllm_sha256_free(h);
        airllm_sha256_free(hs);
        close(fd);
        return airllm_errf(err, "cannot start the writer thread");
    }
    uint64_t off = 0;
    rc = hash_range(s, fd, path, h, &off, src->st.data_start, err);
    for (size_t t = 0; t < c->n_tensors && !rc; t++) {
        if (c->tensors[t].source != i)
            continue;
        const airllm_st_tensor *stt = airllm_ckpt_st(c, t);
        bool send = need[c->tensors[t].unit];
        uint64_t pos = src->st.data_start + stt->begin, end = src->st.data_start + stt->end;
        /* Container sources have padding between tensors: it is hashed too,
         * so the digest is the file's. */
        if (!rc)
            rc = hash_range(s, fd, path, h, &off, pos, err);
        if (pos == end) {
            pipe_msg m = {NULL, 0, t, true, 0, {0}};
            if (!rc)
                rc = tensor_end(s, i, h, hs, end, send, &m, path, err);
            if (send && !rc)
                pipe_push(&p, m);
        }
        while (pos < end && !rc) {
            size_t n = (size_t)(end - pos < s->buf_size ? end - pos : s->buf_size);
            uint8_t *buf = send ? pipe_get_buffer(&p) : s->buf;
            if (!buf)
                break; /* the writer failed; its error is reported below */
            rc = airllm_pread_full(fd, buf, n, pos, path, err);
            if (rc) {
                if (send)
                    pipe_release(&p, buf);
                break;
            }
            airllm_sha256_update(h, buf, n);
            pos += n;
            off = pos;
            pipe_msg m = {buf, n, t, pos == end, 0, {0}};
            if (pos == end && (rc = tensor_end(s, i, h, hs, end, send, &m, path, err)) != 0) {
                if (send)
                    pipe_release(&p, buf);
                break;
            }
            if (send)
                pipe_push(&p, m);
            s->bytes_read += n;
            cli_progress_add(&s->prog, n);
        }
    }
    if (!rc)
        rc = hash_range(s, fd, path, h, &off, src->st.file_size, err);
    airllm_sha256_final_hex(h, p.source_sha);
    if (!rc)
        rc = check_jck(s, i, src->st.file_size, p.source_sha, path, err);
    /* The bytes read must be the file's: a write during the read would
     * leave units, digest and file disagreeing. */
    if (!rc)
        rc = source_as_read(s, i, fd, path, err);
    if (rc)
        pipe_fail(&p);
    /* The end marker must get through even when the queue is full, so the
     * writer can stop: wait for room unless the writer already failed. */
    pthread_mutex_lock(&p.lock);
    while (p.count == PIPE_DEPTH && !p.failed)
        pthread_cond_wait(&p.cond, &p.lock);
    if (p.count < PIPE_DEPTH) {
        p.q[(p.head + p.count) % PIPE_DEPTH] = (pipe_msg){NULL, 0, SIZE_MAX, false, 0, {0}};
        p.count++;
    } else {
        /* Failed with a full queue: drop the queued chunks and stop. */
        p.q[p.head] = (pipe_msg){NULL, 0, SIZE_MAX, false, 0, {0}};
        p.count = 1;
    }
    pthread_cond_broadcast(&p.cond);
    pthread_mutex_unlock(&p.lock);
    pthread_join(th, NULL);
    if (!rc && p.failed) {
        *err = p.err;
        rc = -1;
    }
    pthread_mutex_destroy(&p.lock);
    pthread_cond_destroy(&p.cond);
    free(need);
    airllm_sha256_free(h);
    airllm_sha256_free(hs);
    close(fd);
    return rc;
}

/* ------------------------------------------------------------------ */
/* config/tokenizer copies, manifest                                   */

/* Copies HF_DIR/name to OUT_DIR/name atomically, hashing what it writes. */
static int copy_aux(split_ctx *s, const char *name, airllm_mf_file *rec, airllm_err *err)
{
    char src[4096];
    char *data;
    size_t len;
    if (airllm_path_join(src, sizeof src, s->ck.dir, name, err) ||
        airllm_read_small_file(src, 1u << 30, &data, &len, err))
        return -1;
    airllm_sha256 *h = airllm_sha256_new();
    if (!h) {
        free(data);
        return airllm_errf(err, "out of memory");
    }
    airllm_sha256_update(h, data, len);
    airllm_sha256_final_hex(h, rec->sha256);
    airllm_sha256_free(h);
    rec->size = len;
    rec->file = strdup(name);
    int rc = rec->file ? airllm_write_file_atomic(s->o.out_dir, name, data, len, err)
                       : airllm_errf(err, "out of memory");
    free(data);
    return rc;
}

static char *options_json(const split_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "compress", o->zstd ? "zstd" : "none");
    if (o->zstd) {
        cJSON_AddNumberToObject(j, "zstd_level", o->level);
        cJSON_AddNumberToObject(j, "zstd_chunk_bytes", READ_CHUNK);
    }
    if (o->quant) {
        cJSON_AddStringToObject(j, "quant_type", airllm_quant_type_name(o->qtype));
        cJSON_AddNumberToObject(j, "block_size", o->block);
        cJSON_AddBoolToObject(j, "double_quant", o->double_quant);
        cJSON *inc = cJSON_AddArrayToObject(j, "include");
        if (o->inc_embed)
            cJSON_AddItemToArray(inc, cJSON_CreateString("embed"));
        if (o->inc_lm_head)
            cJSON_AddItemToArray(inc, cJSON_CreateString("lm_head"));
    }
    char *text = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return text;
}

/* airllm_manifest_emit's output into fd through a 1 MiB buffer. */
typedef struct {
    int fd;
    const char *path;
    size_t len;
    char buf[1 << 20];
} manifest_out;

static int manifest_sink(void *ctx, const void *data, size_t n, airllm_err *err)
{
    manifest_out *o = ctx;
    if (o->len + n > sizeof o->buf) {
        if (airllm_write_full(o->fd, o->buf, o->len, o->path, err))
            return -1;
        o->len = 0;
        if (n > sizeof o->buf)
            return airllm_write_full(o->fd, data, n, o->path, err);
    }
    memcpy(o->buf + o->len, data, n);
    o->len += n;
    return 0;
}

static int write_manifest_fd(int fd, const char *path, void *ctx, airllm_err *err)
{
    manifest_out *o = malloc(sizeof *o);
    if (!o)
        return airllm_errf(err, "out of memory");
    o->fd = fd;
    o->path = path;
    o->len = 0;
    int rc = airllm_manifest_emit(ctx, manifest_sink, o, err) ||
                     airllm_write_full(fd, o->buf, o->len, path, err)
                 ? -1
                 : 0;
    free(o);
    return rc;
}

/* index, when non-NULL, is listed after the shards among the sources. */
static int write_manifest(split_ctx *s, airllm_mf_file *aux, size_t n_aux,
                          const airllm_mf_file *index, uint64_t *total_out, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    airllm_manifest m = {0};
    m.version_major = AIRLLM_CT_VERSION_MAJOR;
    /* The manifest's version follows the units': all are 1.2 now. */
    m.version_minor = AIRLLM_CT_VERSION_MINOR;
    m.complete = true;
    m.tool_name = TOOL_NAME;
    m.tool_version = AIRLLM_VERSION;
    m.options_json = options_json(&s->o);
    m.model.architecture = c->architecture;
    m.model.model_type = c->model_type;
    m.model.family = (char *)airllm_arch_family(c->arch);
    m.model.num_layers = c->num_layers;
    m.model.hidden_size = c->hidden_size;
    m.model.vocab_size = c->vocab_size;
    m.model.tie_word_embeddings = c->tied_to != NULL || c->tie_word_embeddings;
    m.n_units = c->n_units;
    m.units = calloc(c->n_units, sizeof *m.units);
    m.n_tensors = c->n_tensors;
    m.tensors = calloc(c->n_tensors ? c->n_tensors : 1, sizeof *m.tensors);
    m.n_sources = c->n_sources + (index != NULL);
    m.sources = calloc(m.n_sources, sizeof *m.sources);
    m.files = aux;
    m.n_files = n_aux;
    int rc = 0;
    if (!m.units || !m.tensors || !m.sources || !m.options_json) {
        rc = airllm_errf(err, "out of memory");
        goto out;
    }
    uint64_t total = 0;
    for (size_t u = 0; u < c->n_units; u++) {
        airllm_mf_unit *mu = &m.units[u];
        mu->name = (char *)c->units[u].name;
        mu->kind = c->units[u].kind;
        mu->layer = c->units[u].layer;
        if (c->units[u].n_tensors) {
            mu->file = (char *)c->units[u].file;
            mu->size = s->unit_done[u].size;
            memcpy(mu->sha256, s->unit_done[u].sha, AIRLLM_SHA256_HEX);
            total += mu->size;
        } else {
            mu->tied_to = c->tied_to;
        }
    }
    /* Tensors in execution order: unit by unit, each in file order. */
    size_t k = 0;
    for (size_t u = 0; u < c->n_units; u++)
        for (size_t i = 0; i < c->units[u].n_tensors; i++, k++) {
            size_t t = c->units[u].tensors[i];
            const airllm_st_tensor *st = airllm_ckpt_st(c, t);
            airllm_mf_tensor *mt = &m.tensors[k];
            mt->name = st->name;
            mt->dtype = st->dtype;
            mt->ndim = st->ndim;
            mt->shape = st->shape;
            mt->unit = u;
            mt->encoding = s->encoding[t];
            mt->raw_len = airllm_ckpt_raw_len(c, t);
            mt->stored_len = s->stored_len[t];
            if (airllm_encoding_is_quant(mt->encoding)) {
                mt->quant_block = s->o.block;
                mt->quant_double = s->o.double_quant;
                mt->quant_rmse = s->qstats[t].rmse;
                mt->quant_max_abs = s->qstats[t].max_abs;
                mt->quant_rel_fro = s->qstats[t].rel_fro;
            }
            mt->source = c->sources[c->tensors[t].source].file;
        }
    for (size_t i = 0; i < c->n_sources; i++) {
        m.sources[i].file = c->sources[i].file;
        m.sources[i].size = s->src_done[i].size;
        memcpy(m.sources[i].sha256, s->src_done[i].sha, AIRLLM_SHA256_HEX);
    }
    if (index)
        m.sources[c->n_sources] = *index;
    /* Streamed to the file: the whole text of a million-tensor manifest
     * would be a few hundred MiB. */
    rc = airllm_write_file_atomic_fn(s->o.out_dir, AIRLLM_MANIFEST_NAME, write_manifest_fd, &m,
                                     err);
    *total_out = total;
out:
    free(m.options_json);
    free(m.units);
    free(m.tensors);
    free(m.sources);
    return rc;
}

/* ------------------------------------------------------------------ */
/* OUT_DIR housekeeping                                               */

/* Removes the regular files of dir (and of its state directory, but for the
 * lock this run holds). Anything else (a subdirectory, a device) makes it
 * refuse: --force must never turn a mistyped path into a recursive delete.
 * check_clearable has already refused what this would stop at. */
static int clear_out_dir(const char *dir, bool include_state, airllm_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return airllm_errf(err, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[4096];
        struct stat st;
        if (airllm_path_join(path, sizeof path, dir, e->d_name, err) || lstat(path, &st) != 0) {
            rc = -1;
            break;
        }
        if (S_ISDIR(st.st_mode) && include_state && strcmp(e->d_name, STATE_DIR) == 0) {
            rc = clear_out_dir(path, false, err); /* the folder stays: it holds the lock */
        } else if (!include_state && strcmp(e->d_name, AIRLLM_LOCK_NAME) == 0) {
            continue;
        } else if (S_ISREG(st.st_mode) || S_ISLNK(st.st_mode)) {
            if (unlink(path) != 0)
                rc = airllm_errf(err, "%s: cannot remove: %s", path, strerror(errno));
        } else {
            rc = airllm_errf(err, "%s: refusing to remove %s (not a regular file)", dir,
                             e->d_name);
        }
    }
    closedir(d);
    return rc;
}

/* Whether the state folder holds a run's plan or journal. One with nothing
 * but the lock was made by a run that then refused, or was stopped before
 * writing its plan: no run at all. */
static bool state_dir_used(const char *state_dir)
{
    DIR *d = opendir(state_dir);
    if (!d)
        return false;
    struct dirent *e;
    bool used = false;
    while (!used && (e = readdir(d)) != NULL)
        used = strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
               strcmp(e->d_name, AIRLLM_LOCK_NAME);
    closedir(d);
    return used;
}

/* --force: every entry of OUT_DIR (and of its state folder) is checked
 * before the first is deleted, so that a refusal leaves everything as it
 * was. Only regular files and links are removed, and never a file that is
 * one of the checkpoint's (a hard link to it, or the file a link of HF_DIR
 * resolves to). */
static int check_clearable(const split_ctx *s, const char *dir, bool top, airllm_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return airllm_errf(err, "%s: cannot open: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (airllm_path_join(path, sizeof path, dir, e->d_name, err))
            rc = -1;
        else if (lstat(path, &st) != 0)
            rc = airllm_errf(err, "%s: cannot stat: %s", path, strerror(errno));
        else if (S_ISDIR(st.st_mode) && top && strcmp(e->d_name, STATE_DIR) == 0)
            rc = check_clearable(s, path, false, err);
        else if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode))
            rc = airllm_errf(err, "%s: refusing to remove %s (not a regular file)", dir,
                             e->d_name);
        for (size_t k = 0; !rc && S_ISREG(st.st_mode) && k < s->n_real_stat; k++)
            if (st.st_dev == s->real_stat[k].st_dev && st.st_ino == s->real_stat[k].st_ino)
                rc = airllm_errf(err, "%s: is the checkpoint's %s/%s (the same file); refusing "
                                      "to delete it", path, s->ck.dir, s->real_name[k]);
    }
    closedir(d);
    return rc;
}

/* 1 if dir has entries other than stale temporaries, 0 if empty or absent.
 * A state folder holding only a lock does not count. */
static int dir_nonempty(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    int n = 0;
    char state[4096];
    snprintf(state, sizeof state, "%s/%s", dir, STATE_DIR);
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            (strcmp(e->d_name, STATE_DIR) || state_dir_used(state)))
            n++;
    closedir(d);
    return n > 0;
}

/* Removes .*.tmp files left by an interrupted run. */
static void remove_stale_temps(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.' && l > 5 && strcmp(e->d_name + l - 4, ".tmp") == 0) {
            char path[4096];
            if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) < (int)sizeof path)
                unlink(path);
        }
    }
    closedir(d);
}

/* Removes the lock file if it is the one this run holds (still held until
 * exit: a contender that opened it first sees it replaced and looks again). */
static void remove_own_lock(split_ctx *s)
{
    char path[4096];
    struct stat a, b;
    if (s->lock_fd >= 0 &&
        airllm_path_join(path, sizeof path, s->state_dir, AIRLLM_LOCK_NAME, NULL) == 0 &&
        fstat(s->lock_fd, &a) == 0 && lstat(path, &b) == 0 && a.st_dev == b.st_dev &&
        a.st_ino == b.st_ino)
        unlink(path);
}

static int remove_state_dir(split_ctx *s, airllm_err *err)
{
    if (access(s->state_dir, F_OK) != 0)
        return 0;
    if (clear_out_dir(s->state_dir, false, err))
        return -1;
    remove_own_lock(s);
    /* Not empty: a new run created its lock as soon as ours was gone, and
     * owns the folder now. */
    if (rmdir(s->state_dir) != 0 && errno != ENOTEMPTY && errno != EEXIST)
        return airllm_errf(err, "%s: cannot remove: %s", s->state_dir, strerror(errno));
    return airllm_fsync_path(s->o.out_dir, err);
}

/* OUT_DIR must not hold HF_DIR: --force would empty it, and without --force
 * the checkpoint would sit among the outputs. Checked before anything is
 * created; a HF_DIR that does not exist is reported later, as before. */
static int check_out_place(const split_opts *o, airllm_err *err)
{
    struct stat out;
    char real[PATH_MAX];
    if (stat(o->out_dir, &out) != 0 || !realpath(o->hf_dir, real) || !real_within(real, &out))
        return 0;
    return airllm_errf(err, "%s: OUT_DIR contains the checkpoint directory %s; choose an "
                            "OUT_DIR outside it", o->out_dir, o->hf_dir);
}

/* One writer per OUT_DIR (airllm_lock_writer), taken before OUT_DIR is
 * looked at. A missing OUT_DIR is created for it (and removed at exit if the
 * run leaves it empty). An OUT_DIR that cannot be created or locked (not a
 * folder, read-only, not ours) is left, unless late, for the step that
 * creates OUT_DIR to report, after HF_DIR's checks, as before: a run that
 * has nothing to write (a finished conversion) does not need the lock. */
static int lock_out_dir(split_ctx *s, bool late, airllm_err *err)
{
    struct stat st;
    if (stat(s->o.out_dir, &st) != 0) {
        char top[4096];
        if (errno != ENOENT)
            return 0;
        airllm_existing_ancestor(s->o.out_dir, top, sizeof top);
        if (airllm_mkdir_p(s->o.out_dir, NULL)) {
            s->out_missing = true;
            return 0;
        }
        s->out_made = true;
        snprintf(s->out_above, sizeof s->out_above, "%s", top);
    } else if (!S_ISDIR(st.st_mode)) {
        return 0;
    }
    bool created;
    int rc = airllm_lock_writer(s->o.out_dir, TOOL_NAME, &s->lock_fd, &created, err);
    return rc == AIRLLM_LOCK_BUSY || (rc && late) ? -1 : 0;
}

/* At exit: a state folder holding nothing but this run's lock (it refused,
 * or had nothing to do) goes with the lock, and an OUT_DIR this run created
 * and left empty is removed, so that a refused run leaves no trace. close()
 * releases the lock. */
static void release_out_dir(split_ctx *s)
{
    if (s->lock_fd < 0)
        return;
    if (!state_dir_used(s->state_dir)) {
        remove_own_lock(s);
        rmdir(s->state_dir);
    }
    if (s->out_made) {
        char p[4096];
        snprintf(p, sizeof p, "%s", s->o.out_dir);
        while (strcmp(p, s->out_above) != 0 && (rmdir(p) == 0 || errno == ENOENT)) {
            char *slash = strrchr(p, '/');
            if (!slash || slash == p)
                break;
            *slash = '\0';
        }
    }
    close(s->lock_fd);
    s->lock_fd = -1;
}

/* After the manifest is durable: delete the index and the copied config and
 * tokenizer files from HF_DIR, each only if it still matches the digest the
 * manifest recorded for it. */
static int delete_leftovers(const char *hf_dir, const airllm_mf_file *files, size_t n,
                            airllm_err *err)
{
    for (size_t i = 0; i < n; i++) {
        char path[4096], sha[AIRLLM_SHA256_HEX];
        uint64_t size;
        if (airllm_path_join(path, sizeof path, hf_dir, files[i].file, err))
            return -1;
        if (access(path, F_OK) != 0) {
            /* gone, or a cache link whose blob a stopped run deleted */
            if (delete_checkpoint_file(hf_dir, path, false, err))
                return -1;
            continue;
        }
        if (airllm_sha256_file(path, sha, &size, err))
            return -1;
        if (size != files[i].size || strcmp(sha, files[i].sha256) != 0) {
            cli_info("keeping %s: it changed since it was converted", path);
            continue;
        }
        if (delete_checkpoint_file(hf_dir, path, true, err))
            return -1;
        airllm_step("leftover deleted");
    }
    return airllm_fsync_path(hf_dir, err);
}

/* ------------------------------------------------------------------ */
/* dry run and summary                                                */

typedef struct {
    uint64_t need;    /* free space the run needs (its peak, with a margin) */
    uint64_t written; /* unit bytes it writes in all */
    bool freed;       /* --delete-original frees space on OUT_DIR's filesystem */
} disk_plan;

static void print_plan(const split_ctx *s, const disk_plan *dp, uint64_t avail)
{
    const airllm_ckpt *c = &s->ck;
    char a[32], b[32], d[32];
    if (s->o.json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "dry-run");
        cJSON_AddStringToObject(j, "family", airllm_arch_family(c->arch));
        cJSON_AddNumberToObject(j, "layers", (double)c->num_layers);
        cJSON_AddNumberToObject(j, "tensors", (double)c->n_tensors);
        cJSON_AddNumberToObject(j, "sources", (double)c->n_sources);
        cJSON *units = cJSON_AddArrayToObject(j, "units");
        for (size_t u = 0; u < c->n_units; u++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", c->units[u].name);
            if (c->units[u].n_tensors)
                cJSON_AddStringToObject(o, "file", c->units[u].file);
            else
                cJSON_AddStringToObject(o, "tied_to", c->tied_to);
            cJSON_AddNumberToObject(o, "tensors", (double)c->units[u].n_tensors);
            cJSON_AddNumberToObject(o, "bytes", (double)c->units[u].raw_bytes);
            cJSON_AddItemToArray(units, o);
        }
        cJSON_AddNumberToObject(j, "disk_needed", (double)dp->need);
        cJSON_AddNumberToObject(j, "disk_written", (double)dp->written);
        cJSON_AddBoolToObject(j, "sources_deleted_as_it_goes", dp->freed);
        cJSON_AddNumberToObject(j, "disk_available", (double)avail);
        char *text = cJSON_Print(j);
        puts(text);
        free(text);
        cJSON_Delete(j);
        return;
    }
    printf("plan: %s -> %s\n", c->dir, s->o.out_dir);
    printf("model: %s (family %s), %lld layers, %zu tensors in %zu source file(s)\n",
           *c->architecture ? c->architecture : c->model_type, airllm_arch_family(c->arch),
           (long long)c->num_layers, c->n_tensors, c->n_sources);
    printf("%-12s %-20s %8s %14s\n", "unit", "file", "tensors", "bytes");
    for (size_t u = 0; u < c->n_units; u++) {
        const airllm_ckpt_unit *un = &c->units[u];
        if (un->n_tensors)
            printf("%-12s %-20s %8zu %14llu\n", un->name, un->file, un->n_tensors,
                   (unsigned long long)un->raw_bytes);
        else {
            char *tied = cli_escape(c->tied_to); /* a name from the checkpoint */
            printf("%-12s %-20s %8s %14s  (tied to %s)\n", un->name, "-", "-", "-",
                   tied ? tied : "?");
            free(tied);
        }
    }
    printf("tensor bytes: %s; disk needed: %s%s; available: %s\n",
           cli_human_size(c->total_tensor_bytes, a), cli_human_size(dp->need, b),
           s->o.zstd ? " (at most)" : "", cli_human_size(avail, d));
    if (dp->freed)
        printf("--delete-original: %s written in all; the need above is the peak, as each "
               "source is deleted once its units are written\n",
               cli_human_size(dp->written, a));
}

/* Bytes unit u's file takes: the layout the writer gives it, quantized
 * tensors at their quantized size (codes, scales, padding) as
 * airllm_ct_tensor_qlayout lays them out. For zstd an upper bound: a tensor
 * that does not shrink is stored raw. */
static uint64_t unit_file_bytes(const split_ctx *s, size_t u)
{
    const airllm_ckpt_unit *un = &s->ck.units[u];
    uint64_t bound =
        un->raw_bytes + (uint64_t)un->n_tensors * AIRLLM_CT_ALIGN + 2 * AIRLLM_CT_ALIGN;
    airllm_ct_header h = {0};
    h.n_tensors = (uint32_t)un->n_tensors;
    h.tensors = calloc(un->n_tensors ? un->n_tensors : 1, sizeof *h.tensors);
    if (!h.tensors)
        return bound;
    for (size_t i = 0; i < un->n_tensors; i++) {
        size_t t = un->tensors[i];
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, t);
        const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
        airllm_ct_tensor *ct = &h.tensors[i];
        ct->name = (char *)st->name;
        ct->dtype = st->dtype;
        ct->ndim = st->ndim;
        memcpy(ct->shape, st->shape, sizeof ct->shape);
        ct->raw_len = ct->stored_len = airllm_ckpt_raw_len(&s->ck, t);
        if (s->quantize && s->quantize[t]) {
            airllm_ct_qlayout l;
            ct->encoding = airllm_quant_encoding(s->o.qtype);
            ct->enc_param[0] = s->o.block;
            ct->enc_param[1] = s->o.double_quant ? AIRLLM_CT_QFLAG_DOUBLE_QUANT : 0;
            if (airllm_ct_tensor_qlayout(ct, &l, NULL) == 0)
                ct->stored_len = l.stored_len;
        } else if (src && src->encoding == AIRLLM_ENC_ZSTD) {
            ct->stored_len = src->stored_len;
        }
    }
    uint64_t size = airllm_ct_layout(&h, NULL) == 0 ? h.file_size : bound;
    free(h.tensors);
    return size;
}

static bool plan_all_done(const split_ctx *s, const bool *done, size_t i)
{
    for (size_t k = 0; k < s->n_src_units[i]; k++)
        if (!done[s->src_units[i][k]])
            return false;
    return true;
}

/* The source bytes try_delete_sources would delete now, in plan_disk's
 * replay. */
static uint64_t plan_deletions(const split_ctx *s, const disk_plan *dp, const bool *sdone,
                               const bool *done, bool *gone)
{
    uint64_t freed = 0;
    for (size_t j = 0; s->o.delete_original && j < s->ck.n_sources; j++)
        if (!gone[j] && sdone[j] && plan_all_done(s, done, j)) {
            gone[j] = true;
            freed += dp->freed ? s->ck.sources[j].st.file_size : 0;
        }
    return freed;
}

/* Without --delete-original a run needs room for every unit still to be
 * written. With it, sources are deleted as it goes, so what it needs is
 * the peak of (bytes written - source bytes deleted), replayed in the order
 * the run works: sources in order; a unit's file counted whole from its
 * first tensor on; units finished when their last tensor arrives (a
 * converted input's at the end of its source); a source deleted once it is
 * read and all its units are finished, as try_delete_sources does. Deleting
 * frees space for OUT_DIR only on the same filesystem (probe: OUT_DIR or its
 * closest existing ancestor). Copied config/tokenizer files and 1 MiB of
 * margin come on top. */
static void plan_disk(const split_ctx *s, const char *probe, disk_plan *dp)
{
    const airllm_ckpt *c = &s->ck;
    struct stat a, b;
    memset(dp, 0, sizeof *dp);
    dp->freed = s->o.delete_original && stat(c->dir, &a) == 0 && stat(probe, &b) == 0 &&
                a.st_dev == b.st_dev;
    uint64_t extra = 1u << 20;
    for (size_t i = 0; i < N_AUX; i++) {
        char p[4096];
        struct stat st;
        if (airllm_path_join(p, sizeof p, c->dir, aux_files[i], NULL) == 0 && stat(p, &st) == 0)
            extra += (uint64_t)st.st_size;
    }
    bool *done = calloc(c->n_units + 1, sizeof *done), *opened = calloc(c->n_units + 1, 1);
    size_t *left = calloc(c->n_units + 1, sizeof *left);
    bool *sdone = calloc(c->n_sources + 1, sizeof *sdone), *gone = calloc(c->n_sources + 1, 1);
    uint64_t *size = calloc(c->n_units + 1, sizeof *size);
    if (!done || !opened || !left || !sdone || !gone || !size) {
        /* no memory for the replay: count every unit, free nothing */
        for (size_t u = 0; u < c->n_units; u++)
            if (c->units[u].n_tensors && !(s->unit_done && s->unit_done[u].done))
                dp->written += unit_file_bytes(s, u);
        dp->need = dp->written + extra;
        dp->freed = false;
        goto out;
    }
    for (size_t u = 0; u < c->n_units; u++) {
        done[u] = !c->units[u].n_tensors || (s->unit_done && s->unit_done[u].done);
        left[u] = c->units[u].n_tensors;
        size[u] = done[u] ? 0 : unit_file_bytes(s, u);
    }
    for (size_t i = 0; i < c->n_sources; i++) {
        sdone[i] = s->src_done && s->src_done[i].done;
        gone[i] = (s->src_deleted && s->src_deleted[i]) || !c->sources[i].present;
    }
    uint64_t written = 0, freed = 0, peak = 0;
    for (size_t i = 0; i < c->n_sources; i++) {
        if (sdone[i] && plan_all_done(s, done, i))
            continue; /* not read again: source_needed() */
        for (size_t t = 0; t < c->n_tensors; t++) {
            size_t u = c->tensors[t].unit;
            if (c->tensors[t].source != i || done[u])
                continue;
            if (!opened[u]) {
                opened[u] = true;
                written += size[u];
                /* freed may exceed written: a resumed run deletes sources
                 * whose units an earlier run wrote */
                if (written > freed && written - freed > peak)
                    peak = written - freed;
            }
            if (--left[u] == 0 && !c->converted) {
                done[u] = true;
                freed += plan_deletions(s, dp, sdone, done, gone);
            }
        }
        sdone[i] = true;
        for (size_t k = 0; k < s->n_src_units[i]; k++)
            done[s->src_units[i][k]] |= left[s->src_units[i][k]] == 0;
        freed += plan_deletions(s, dp, sdone, done, gone);
    }
    dp->written = written;
    dp->need = peak + extra;
out:
    free(done);
    free(opened);
    free(left);
    free(sdone);
    free(gone);
    free(size);
}

static uint64_t disk_available(const char *dir)
{
    struct statvfs v;
    if (statvfs(dir, &v) != 0)
        return UINT64_MAX;
    return (uint64_t)v.f_bavail * v.f_frsize;
}

/* The options and notes airllm-split and airllm-quant share. */
#define USAGE_COMMON                                                                   \
    "  -n, --dry-run          print the plan (units, sizes, disk needed) and exit\n"      \
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

#ifdef AIRLLM_QUANT_TOOL
static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-quant [options] IN_DIR OUT_DIR\n"
            "Quantize a model block-wise to 4 or 8 bits. IN_DIR is a Hugging Face\n"
            "safetensors checkpoint (split and quantized in one pass, no unquantized copy\n"
            "is written) or a directory written by airllm-split.\n\n"
            "  -t, --type TYPE        nf4 (default), fp4 or int8\n"
            "  -b, --block-size N     elements per block: a power of two, 32-4096 (default 64)\n"
            "      --double-quant     quantize the per-block scales to 8 bits as well\n"
            "                         (bitsandbytes' compress_statistics)\n"
            "      --include LIST     also quantize: lm_head, embed (comma-separated);\n"
            "                         by default only the linear layers of attention, MLP\n"
            "                         and experts are\n"
            "      --report           print each quantized tensor's error (RMSE, max abs,\n"
            "                         relative Frobenius) as a table\n"
            "  -j, --jobs N           quantization threads (default 1)\n"
            USAGE_COMMON);
}
#else
static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-split [options] HF_DIR OUT_DIR\n"
            "Convert a Hugging Face safetensors checkpoint into per-layer containers.\n\n"
            "  -c, --compress MODE    none (default) or zstd[:LEVEL] (lossless, level 1-19,\n"
            "                         default 3; 16/32-bit floats are byte-grouped)\n"
            "  -j, --jobs N           threads for compression (default 1)\n"
            "      --delete-original  delete each source shard once every layer holding its\n"
            "                         tensors is written, synced and re-read; index and\n"
            "                         config files go last, after the manifest\n"
            USAGE_COMMON);
}
#endif

/* ------------------------------------------------------------------ */

static int parse_include(const char *arg, split_opts *o)
{
    char buf[256];
    if (strlen(arg) >= sizeof buf)
        return cli_usage_error("--include: too long");
    strcpy(buf, arg);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (strcmp(tok, "embed") == 0)
            o->inc_embed = true;
        else if (strcmp(tok, "lm_head") == 0)
            o->inc_lm_head = true;
        else
            return cli_usage_error("--include: unknown part '%s' (lm_head, embed)", tok);
    }
    return 0;
}

static int parse_args(int argc, char **argv, split_opts *o)
{
    static const struct option longopts[] = {
        {"compress", required_argument, 0, 'c'},
        {"jobs", required_argument, 0, 'j'},
        {"delete-original", no_argument, 0, 'D'},
        {"dry-run", no_argument, 0, 'n'},
        {"force", no_argument, 0, 'f'},
        {"json", no_argument, 0, 'J'},
        {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {"type", required_argument, 0, 't'},
        {"block-size", required_argument, 0, 'b'},
        {"double-quant", no_argument, 0, 'Q'},
        {"include", required_argument, 0, 'I'},
        {"report", no_argument, 0, 'R'},
        {"follow-symlinks", no_argument, 0, 'L'},
        {0, 0, 0, 0},
    };
    memset(o, 0, sizeof *o);
    o->jobs = 1;
    o->level = 3;
#ifdef AIRLLM_QUANT_TOOL
    o->quant = true;
    o->qtype = AIRLLM_QUANT_NF4;
    o->block = AIRLLM_QUANT_BLOCK_DEFAULT;
    const char *shortopts = "t:b:j:nfqvhV";
#else
    const char *shortopts = "c:j:nfqvhV";
#endif
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, shortopts, longopts, NULL)) != -1) {
        bool quant_opt = ch == 't' || ch == 'b' || ch == 'Q' || ch == 'I' || ch == 'R';
        if (quant_opt != o->quant && (quant_opt || ch == 'c' || ch == 'D'))
            return cli_usage_error("bad option");
        switch (ch) {
        case 't':
            if (airllm_quant_type_from_name(optarg, &o->qtype))
                return cli_usage_error("unknown --type '%s' (nf4, fp4, int8)", optarg);
            break;
        case 'b':
            if (cli_parse_uint(optarg, AIRLLM_QUANT_BLOCK_MIN, AIRLLM_QUANT_BLOCK_MAX, &v) ||
                (v & (v - 1)) != 0)
                return cli_usage_error("bad --block-size '%s' (a power of two, 32-4096)",
                                       optarg);
            o->block = (uint32_t)v;
            break;
        case 'Q': o->double_quant = true; break;
        case 'I':
            if (parse_include(optarg, o))
                return AIRLLM_EXIT_USAGE;
            break;
        case 'R': o->report = true; break;
        case 'c':
            if (strcmp(optarg, "none") == 0) {
                o->zstd = false;
            } else if (strncmp(optarg, "zstd", 4) == 0 &&
                       (optarg[4] == '\0' || optarg[4] == ':')) {
                o->zstd = true;
                if (optarg[4] == ':') {
                    if (cli_parse_uint(optarg + 5, 1, 19, &v))
                        return cli_usage_error("bad zstd level '%s' (1-19)", optarg + 5);
                    o->level = (int)v;
                }
            } else {
                return cli_usage_error("unknown --compress mode '%s' (none, zstd[:LEVEL])",
                                       optarg);
            }
            break;
        case 'j':
            if (cli_parse_uint(optarg, 1, 64, &v))
                return cli_usage_error("bad --jobs '%s' (1-64)", optarg);
            o->jobs = (unsigned)v;
            break;
        case 'D': o->delete_original = true; break;
        case 'n': o->dry_run = true; break;
        case 'f': o->force = true; break;
        case 'L': o->follow_symlinks = true; break;
        case 'J': o->json = true; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': usage(stdout); exit(AIRLLM_EXIT_OK);
        case 'V': printf("%s %s\n", TOOL_NAME, AIRLLM_VERSION); exit(AIRLLM_EXIT_OK);
        default: return cli_usage_error("bad option");
        }
    }
    if (argc - optind != 2)
        return cli_usage_error(o->quant ? "expected IN_DIR and OUT_DIR"
                                        : "expected HF_DIR and OUT_DIR");
    o->hf_dir = argv[optind];
    o->out_dir = argv[optind + 1];
    return 0;
}

static bool same_dir(const char *a, const char *b)
{
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

static int fail(const split_opts *o, airllm_err *err)
{
    cli_error("%s", err->msg);
    if (o->json) {
        char *m = cli_json_string(err->msg);
        printf("{\"status\": \"error\", \"error\": %s}\n", m ? m : "\"\"");
        free(m);
    }
    return AIRLLM_EXIT_FAIL;
}

/* The manifest is complete but the state directory survived: the run was
 * stopped while finishing. Redo the finishing steps. */
static int finish_completed(split_ctx *s, airllm_err *err)
{
    airllm_manifest m;
    if (airllm_manifest_load(s->o.out_dir, &m, err))
        return -1;
    int rc = 0;
    if (s->o.delete_original) {
        /* The index is among the sources; the shards are gone already. */
        rc = delete_leftovers(s->o.hf_dir, m.sources, m.n_sources, err) ||
             delete_leftovers(s->o.hf_dir, m.files, m.n_files, err);
    }
    airllm_manifest_free(&m);
    return rc ? -1 : remove_state_dir(s, err);
}

/* A rerun of a finished command is a no-op: the manifest was written with
 * the same options, and each source it lists is either gone (deleted by
 * --delete-original) or still there with the same size. Digests are
 * airllm-verify's job. */
static bool same_completed_run(split_ctx *s)
{
    airllm_manifest m;
    airllm_err err;
    if (airllm_manifest_load(s->o.out_dir, &m, &err))
        return false;
    char *opts = options_json(&s->o);
    bool same = m.complete && opts && strcmp(opts, m.options_json) == 0;
    for (size_t i = 0; same && i < m.n_sources; i++) {
        char path[4096];
        struct stat st;
        if (airllm_path_join(path, sizeof path, s->o.hf_dir, m.sources[i].file, NULL) ||
            (stat(path, &st) == 0 && (uint64_t)st.st_size != m.sources[i].size))
            same = false;
    }
    /* ...and every checkpoint file in HF_DIR is one the manifest lists. */
    DIR *d = same ? opendir(s->o.hf_dir) : NULL;
    struct dirent *e;
    while (d && same && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (!(l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0) &&
            strcmp(e->d_name, AIRLLM_INDEX_NAME) != 0)
            continue;
        bool listed = false;
        for (size_t i = 0; i < m.n_sources && !listed; i++)
            listed = strcmp(m.sources[i].file, e->d_name) == 0;
        same = listed;
    }
    if (d)
        closedir(d);
    free(opts);
    airllm_manifest_free(&m);
    return same;
}

/* Router weights of mixture-of-experts layers: small, and their errors
 * change which experts run, so they stay exact. */
static bool is_router(const char *name)
{
    static const char *const suffixes[] = {".block_sparse_moe.gate.weight", ".mlp.gate.weight",
                                           ".shared_expert_gate.weight", ".router.weight",
                                           ".moe.gate.weight"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof suffixes / sizeof *suffixes; i++) {
        size_t k = strlen(suffixes[i]);
        if (n >= k && strcmp(name + n - k, suffixes[i]) == 0)
            return true;
    }
    return false;
}

/* Which tensors airllm-quant quantizes: 2-D float ".weight" matrices of
 * decoder layers (attention, MLP, experts) but not routers; the embeddings
 * and the LM head only when --include names them. Norms and biases are
 * 1-D and stay as they are. */
static int plan_quant(split_ctx *s, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    s->quantize = calloc(c->n_tensors + 1, sizeof *s->quantize);
    s->qstats = calloc(c->n_tensors + 1, sizeof *s->qstats);
    if (!s->quantize || !s->qstats)
        return airllm_errf(err, "out of memory");
    for (size_t t = 0; t < c->n_tensors; t++) {
        const airllm_st_tensor *st = airllm_ckpt_st(c, t);
        const airllm_ct_tensor *src = airllm_ckpt_ct(c, t);
        if (src && airllm_encoding_is_quant(src->encoding))
            return airllm_errf(err, "%s/%s: tensor \"%s\" is already quantized (%s); "
                                    "quantize from the checkpoint or an unquantized directory",
                               c->dir, c->sources[c->tensors[t].source].file, st->name,
                               airllm_encoding_name(src->encoding));
        s->qstats[t].rmse = -1; /* not known yet (resume: from the journal) */
        size_t nl = strlen(st->name);
        bool is_float = st->dtype == AIRLLM_DTYPE_F32 || st->dtype == AIRLLM_DTYPE_F16 ||
                        st->dtype == AIRLLM_DTYPE_BF16;
        if (!is_float || st->ndim != 2 || st->shape[0] == 0 || st->shape[1] == 0 || nl < 7 ||
            strcmp(st->name + nl - 7, ".weight") != 0)
            continue;
        switch (c->units[c->tensors[t].unit].kind) {
        case AIRLLM_UNIT_LAYER: s->quantize[t] = !is_router(st->name); break;
        case AIRLLM_UNIT_EMBED: s->quantize[t] = s->o.inc_embed; break;
        case AIRLLM_UNIT_LM_HEAD: s->quantize[t] = s->o.inc_lm_head; break;
        default: break;
        }
    }
    if (s->o.inc_lm_head && !s->o.inc_embed && c->tied_to)
        cli_info("note: the LM head is tied to the embeddings; add --include embed to "
                 "quantize it");
    return 0;
}

/* Size and bits per weight of what was quantized, and the error table. */
static void quant_summary(const split_ctx *s, cJSON *j)
{
    const airllm_ckpt *c = &s->ck;
    uint64_t nq = 0, elems = 0, qstored = 0, qsrc = 0;
    double worst_rel = 0;
    for (size_t t = 0; t < c->n_tensors; t++) {
        if (!airllm_encoding_is_quant(s->encoding[t]))
            continue;
        /* quantized tensors are F32, F16 or BF16: whole bytes per element */
        uint64_t n = airllm_ckpt_raw_len(c, t) / elem_size(airllm_ckpt_st(c, t)->dtype);
        nq++;
        elems += n;
        qstored += s->stored_len[t];
        qsrc += airllm_ckpt_raw_len(c, t);
        if (s->qstats[t].rel_fro > worst_rel)
            worst_rel = s->qstats[t].rel_fro;
    }
    double bpw = elems ? 8.0 * (double)qstored / (double)elems : 0;
    if (j) {
        cJSON *q = cJSON_AddObjectToObject(j, "quant");
        cJSON_AddStringToObject(q, "type", airllm_quant_type_name(s->o.qtype));
        cJSON_AddNumberToObject(q, "block_size", s->o.block);
        cJSON_AddBoolToObject(q, "double_quant", s->o.double_quant);
        cJSON_AddNumberToObject(q, "tensors", (double)nq);
        cJSON_AddNumberToObject(q, "weights", (double)elems);
        cJSON_AddNumberToObject(q, "bits_per_weight", bpw);
        cJSON_AddNumberToObject(q, "source_bytes", (double)qsrc);
        cJSON_AddNumberToObject(q, "stored_bytes", (double)qstored);
        cJSON_AddNumberToObject(q, "worst_rel_frobenius_error", worst_rel);
        return;
    }
    char a[32], b[32];
    cli_info("quantized %llu tensors (%llu weights) to %s, block %u%s: %.3f bits per weight, "
             "%s -> %s; worst relative Frobenius error %.4g",
             (unsigned long long)nq, (unsigned long long)elems,
             airllm_quant_type_name(s->o.qtype), s->o.block,
             s->o.double_quant ? ", double quant" : "", bpw, cli_human_size(qsrc, a),
             cli_human_size(qstored, b), worst_rel);
}

static void quant_report(const split_ctx *s)
{
    const airllm_ckpt *c = &s->ck;
    printf("%-56s %-6s %12s %12s %12s %8s\n", "tensor", "type", "rmse", "max_abs",
           "rel_fro", "bits/w");
    for (size_t u = 0; u < c->n_units; u++)
        for (size_t i = 0; i < c->units[u].n_tensors; i++) {
            size_t t = c->units[u].tensors[i];
            if (!airllm_encoding_is_quant(s->encoding[t]))
                continue;
            const airllm_st_tensor *st = airllm_ckpt_st(c, t);
            uint64_t n = airllm_ckpt_raw_len(c, t) / elem_size(st->dtype);
            char *name = cli_escape(st->name); /* a name from the checkpoint */
            printf("%-56s %-6s %12.5g %12.5g %12.5g %8.3f\n", name ? name : "?",
                   airllm_encoding_name(s->encoding[t]), s->qstats[t].rmse,
                   s->qstats[t].max_abs, s->qstats[t].rel_fro,
                   n ? 8.0 * (double)s->stored_len[t] / (double)n : 0.0);
            free(name);
        }
}

static int split_main(split_ctx *sp, int argc, char **argv)
{
    int rc = parse_args(argc, argv, &sp->o);
    if (rc)
        return rc;
    /* A file size limit (RLIMIT_FSIZE) must surface as a write error that we
     * report and clean up after, not as a signal that kills us. */
    signal(SIGXFSZ, SIG_IGN);
    cli_install_fault_hook();
    airllm_err err = {{0}};
    double t0 = cli_now();
    split_opts *o = &sp->o;
    snprintf(sp->state_dir, sizeof sp->state_dir, "%s/%s", o->out_dir, STATE_DIR);

    if (same_dir(o->hf_dir, o->out_dir)) {
        airllm_errf(&err, "%s: OUT_DIR must not be the checkpoint directory", o->out_dir);
        return fail(o, &err);
    }
    if (check_out_place(o, &err) || (!o->dry_run && lock_out_dir(sp, false, &err)))
        return fail(o, &err);
    bool have_state = state_dir_used(sp->state_dir);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", o->out_dir, AIRLLM_MANIFEST_NAME);
    if (access(mpath, F_OK) == 0 && !o->force) {
        if (have_state && !o->dry_run) {
            if (finish_completed(sp, &err))
                return fail(o, &err);
            cli_info("%s: the conversion was already complete; finished its last steps",
                     o->out_dir);
            if (o->json)
                printf("{\"status\": \"ok\", \"already_complete\": true}\n");
            return AIRLLM_EXIT_OK;
        }
        if (!o->dry_run && same_completed_run(sp)) {
            cli_info("%s: already complete; nothing to do", o->out_dir);
            if (o->json)
                printf("{\"status\": \"ok\", \"already_complete\": true}\n");
            return AIRLLM_EXIT_OK;
        }
        airllm_errf(&err, "%s: already holds a complete conversion (manifest.json) of another "
                          "input or with other options; use --force to replace it",
                    o->out_dir);
        return fail(o, &err);
    }

    char in_manifest[4096];
    snprintf(in_manifest, sizeof in_manifest, "%s/%s", o->hf_dir, AIRLLM_MANIFEST_NAME);
    if (o->quant && access(in_manifest, F_OK) == 0) {
        if (airllm_ckpt_open_converted(o->hf_dir, &sp->ck, &err))
            return fail(o, &err);
    } else if (airllm_ckpt_open(o->hf_dir, have_state ? sp->state_dir : NULL, &sp->ck, &err)) {
        return fail(o, &err);
    }
    const airllm_ckpt *c = &sp->ck;
    if ((o->quant && plan_quant(sp, &err)) || check_sources(sp, &err))
        return fail(o, &err);

    char fp[AIRLLM_SHA256_HEX];
    fingerprint(sp, fp);
    bool resume = false, stale_state = false;
    if (have_state) {
        /* A state directory without a plan is from a run stopped before it
         * wrote anything else: safe to start over. */
        char ppath[4096];
        stale_state = airllm_path_join(ppath, sizeof ppath, sp->state_dir, PLAN_NAME, NULL) == 0 &&
                      access(ppath, F_OK) != 0;
    }
    if (have_state) {
        char ppath[4096];
        char *saved = NULL;
        if (airllm_path_join(ppath, sizeof ppath, sp->state_dir, PLAN_NAME, NULL) == 0 &&
            airllm_read_small_file(ppath, 4096, &saved, NULL, NULL) == 0)
            resume = strncmp(saved, fp, 64) == 0;
        free(saved);
    }
    if (!resume && have_state) {
        /* Replacing the directory would lose tensors whose only copy it
         * holds: --force must not, and no message may suggest it. */
        char first[AIRLLM_JOURNAL_NAME_MAX + 1];
        size_t nd = journal_deleted(sp->state_dir, first);
        if (nd) {
            char more[64] = "";
            if (nd > 1)
                snprintf(more, sizeof more, " and %zu more", nd - 1);
            airllm_errf(&err, "%s: an interrupted --delete-original run deleted %s%s from its "
                              "checkpoint: their tensors now exist only in this directory, so "
                              "it cannot be replaced, not even with --force. Finish that run "
                              "first: rerun it with the same HF_DIR and options (the "
                              "shards left as they were)",
                        o->out_dir, first, more);
            return fail(o, &err);
        }
    }
    if (!resume && !stale_state && dir_nonempty(o->out_dir) && !o->force) {
        airllm_errf(&err, "%s: not empty and not an interrupted conversion of this input "
                          "with these options; use --force to replace its contents",
                    o->out_dir);
        return fail(o, &err);
    }

    sp->unit_done = calloc(c->n_units, sizeof *sp->unit_done);
    sp->unit_reverified = calloc(c->n_units, sizeof *sp->unit_reverified);
    sp->writers = calloc(c->n_units, sizeof *sp->writers);
    sp->src_done = calloc(c->n_sources, sizeof *sp->src_done);
    sp->src_deleted = calloc(c->n_sources, sizeof *sp->src_deleted);
    sp->unit_ck = calloc(c->n_units + 1, sizeof *sp->unit_ck);
    sp->src_stat = calloc(c->n_sources, sizeof *sp->src_stat);
    sp->src_stat_ok = calloc(c->n_sources, sizeof *sp->src_stat_ok);
    for (size_t u = 0; sp->unit_ck && u < c->n_units; u++)
        sp->unit_ck[u].source = SIZE_MAX;
    sp->stored_len = calloc(c->n_tensors + 1, sizeof *sp->stored_len);
    sp->encoding = calloc(c->n_tensors + 1, sizeof *sp->encoding);
    sp->buf_size = (size_t)READ_CHUNK * (o->zstd ? o->jobs : 2);
    sp->buf = malloc(sp->buf_size);
    bool bufs_ok = sp->buf != NULL;
    for (int b = 0; b < PIPE_DEPTH; b++)
        bufs_ok &= (sp->pipe_bufs[b] = malloc(sp->buf_size)) != NULL;
    sp->zdst = calloc(o->jobs, sizeof *sp->zdst);
    sp->zscratch = calloc(o->jobs, sizeof *sp->zscratch);
    if (!sp->unit_done || !sp->unit_reverified || !sp->writers || !sp->src_done || !sp->src_deleted ||
        !sp->stored_len || !sp->encoding || !bufs_ok || !sp->zdst || !sp->zscratch ||
        !sp->unit_ck || !sp->src_stat || !sp->src_stat_ok) {
        airllm_errf(&err, "out of memory");
        return fail(o, &err);
    }
    if (o->quant) {
        sp->qx = calloc(o->jobs, sizeof *sp->qx);
        sp->qy = calloc(o->jobs, sizeof *sp->qy);
        sp->qcodes_cap = sp->buf_size + QSLICE;
        sp->qcodes = malloc(sp->qcodes_cap);
        bool ok = sp->qx && sp->qy && sp->qcodes;
        for (unsigned j = 0; ok && j < o->jobs; j++)
            ok = (sp->qx[j] = malloc(QSLICE * sizeof(float))) != NULL &&
                 (sp->qy[j] = malloc(QSLICE * sizeof(float))) != NULL;
        if (!ok) {
            airllm_errf(&err, "out of memory");
            return fail(o, &err);
        }
    }
    if (o->zstd)
        for (unsigned j = 0; j < o->jobs; j++) {
            sp->zdst[j] = malloc(airllm_zstd_chunk_bound(READ_CHUNK));
            sp->zscratch[j] = malloc(READ_CHUNK);
            if (!sp->zdst[j] || !sp->zscratch[j]) {
                airllm_errf(&err, "out of memory");
                return fail(o, &err);
            }
        }
    if (build_source_units(sp, &err) || (resume && journal_load(sp, &err)))
        return fail(o, &err);

    if (o->dry_run) {
        char probe[4096];
        disk_plan dp;
        airllm_existing_ancestor(o->out_dir, probe, sizeof probe);
        plan_disk(sp, probe, &dp);
        print_plan(sp, &dp, disk_available(probe));
        return AIRLLM_EXIT_OK;
    }
    /* A resumed run first proves that each source is still the bytes the
     * journal says its units were made from, before it keeps, writes or
     * deletes anything. */
    if (resume && verify_journaled_sources(sp, &err)) {
        if (!o->force || any_source_deleted(sp))
            return fail(o, &err);
        /* --force, and every source is still there: start over from the
         * sources as they are now, forgetting the journal. */
        cli_info("%s; starting over (--force)", err.msg);
        resume = false;
        memset(sp->unit_done, 0, c->n_units * sizeof *sp->unit_done);
        memset(sp->src_done, 0, c->n_sources * sizeof *sp->src_done);
        for (size_t u = 0; u < c->n_units; u++)
            sp->unit_ck[u].source = SIZE_MAX;
        sp->n_jck = 0;
        free(sp->journal_rewrite);
        sp->journal_rewrite = NULL;
        sp->journal_valid = 0;
    }

    /* Free space first, before anything is created. */
    {
        char probe[4096];
        disk_plan dp;
        airllm_existing_ancestor(o->out_dir, probe, sizeof probe);
        plan_disk(sp, probe, &dp);
        uint64_t need = dp.need, avail = disk_available(probe);
        if (need > avail) {
            char a[32], b[32];
            airllm_errf(&err, "%s: not enough free space: need %s, %s available", o->out_dir,
                        cli_human_size(need, a), cli_human_size(avail, b));
            return fail(o, &err);
        }
    }
    /* Prepare OUT_DIR. */
    if (airllm_mkdir_p(o->out_dir, &err))
        return fail(o, &err);
    if (sp->lock_fd < 0) {
        /* If OUT_DIR could not be created at the start and now could, what
         * was checked then no longer holds if another run wrote it since. */
        bool was_missing = sp->out_missing;
        if (lock_out_dir(sp, true, &err))
            return fail(o, &err);
        if (was_missing && dir_nonempty(o->out_dir)) {
            airllm_errf(&err, "%s: another run wrote OUT_DIR while this one started; run the "
                              "command again", o->out_dir);
            return fail(o, &err);
        }
    }
    if (!resume && dir_nonempty(o->out_dir)) {
        /* The manifest goes first: an interrupted --force must not leave an
         * old manifest standing over a half-cleared directory. Before it,
         * everything that would stop the clearing is refused. */
        char mp[4096];
        if (check_clearable(sp, o->out_dir, true, &err))
            return fail(o, &err);
        if (airllm_path_join(mp, sizeof mp, o->out_dir, AIRLLM_MANIFEST_NAME, &err) ||
            (unlink(mp) != 0 && errno != ENOENT) || airllm_fsync_path(o->out_dir, &err) ||
            clear_out_dir(o->out_dir, true, &err)) {
            if (!err.msg[0])
                airllm_errf(&err, "%s: cannot remove: %s", mp, strerror(errno));
            return fail(o, &err);
        }
    }
    if (resume) {
        /* Keep only the units whose files still match their journal entry. */
        for (size_t u = 0; u < c->n_units; u++) {
            if (!sp->unit_done[u].done)
                continue;
            airllm_err kerr;
            if (!unit_proven(sp, u)) {
                cli_info("redoing %s: the journal cannot prove its source bytes unchanged",
                         c->units[u].file);
                sp->unit_done[u].done = false;
            } else if (unit_check_kept(sp, u, &kerr) == 0) {
                sp->units_kept++;
                cli_verbose("keeping %s", c->units[u].file);
            } else {
                cli_info("redoing %s: %s", c->units[u].file, kerr.msg);
                sp->unit_done[u].done = false;
            }
        }
        remove_stale_temps(o->out_dir);
    }
    if (!resume) {
        if ((mkdir(sp->state_dir, 0755) != 0 && errno != EEXIST) ||
            airllm_fsync_path(o->out_dir, &err)) {
            if (!err.msg[0])
                airllm_errf(&err, "%s: cannot create: %s", sp->state_dir, strerror(errno));
            return fail(o, &err);
        }
        /* The plan goes first: from then on OUT_DIR is a resumable run. The
         * shard headers follow, before any shard can be deleted. */
        char plan[80];
        snprintf(plan, sizeof plan, "%s\n", fp);
        if (airllm_write_file_atomic(sp->state_dir, PLAN_NAME, plan, strlen(plan), &err))
            return fail(o, &err);
    }
    /* Every run saves the headers of the shards still present (a run stopped
     * mid-way may not have saved them all). */
    for (size_t i = 0; i < c->n_sources; i++)
        if (c->sources[i].present && airllm_ckpt_save_header(c, i, sp->state_dir, &err))
            return fail(o, &err);
    if (journal_open(sp, &err))
        return fail(o, &err);

    if (io_start(&sp->io, &err))
        return fail(o, &err);
    uint64_t todo = 0;
    /* One pass over the tensors: a pass per source was quadratic when the
     * sources are the unit files of a converted directory. */
    bool *needed = calloc(c->n_sources ? c->n_sources : 1, sizeof *needed);
    if (!needed) {
        airllm_errf(&err, "out of memory");
        return fail(o, &err);
    }
    for (size_t i = 0; i < c->n_sources; i++)
        needed[i] = source_needed(sp, i);
    for (size_t t = 0; t < c->n_tensors; t++)
        if (needed[c->tensors[t].source])
            todo += airllm_ckpt_st(c, t)->end - airllm_ckpt_st(c, t)->begin;
    free(needed);
    cli_progress_init(&sp->prog, TOOL_NAME, todo);
    for (size_t i = 0; i < c->n_sources; i++) {
        if (source_needed(sp, i) && stream_source(sp, i, &err)) {
            cli_progress_finish(&sp->prog);
            return fail(o, &err);
        }
    }
    cli_progress_finish(&sp->prog);
    if (try_delete_sources(sp, &err))
        return fail(o, &err);
    for (size_t u = 0; u < c->n_units; u++)
        if (c->units[u].n_tensors && !sp->unit_done[u].done) {
            airllm_errf(&err, "internal error: %s was not written", c->units[u].file);
            return fail(o, &err);
        }
    /* No manifest over sources that changed after they were read. */
    for (size_t i = 0; i < c->n_sources; i++)
        if (c->sources[i].present && !sp->src_deleted[i] && source_unchanged(sp, i, false, &err))
            return fail(o, &err);

    /* Copies, then the manifest, last. */
    airllm_mf_file *aux = sp->aux;
    size_t n_aux = 0;
    for (size_t i = 0; i < N_AUX; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", c->dir, aux_files[i]);
        if (access(p, F_OK) != 0)
            continue;
        if (copy_aux(sp, aux_files[i], &aux[n_aux], &err))
            return fail(o, &err);
        sp->n_aux = ++n_aux;
    }
    /* The index is a source too: record its digest, so that it can be
     * deleted safely last. */
    airllm_mf_file idx = {AIRLLM_INDEX_NAME, 0, {0}};
    if (c->sharded) {
        char p[4096];
        if (airllm_path_join(p, sizeof p, c->dir, AIRLLM_INDEX_NAME, &err) ||
            airllm_sha256_file(p, idx.sha256, &idx.size, &err))
            return fail(o, &err);
    }
    uint64_t total_out = 0;
    if (write_manifest(sp, aux, n_aux, c->sharded ? &idx : NULL, &total_out, &err))
        return fail(o, &err);
    if (o->delete_original && ((c->sharded && delete_leftovers(c->dir, &idx, 1, &err)) ||
                               delete_leftovers(c->dir, aux, n_aux, &err)))
        return fail(o, &err);
    if (remove_state_dir(sp, &err))
        return fail(o, &err);

    double secs = cli_now() - t0;
    uint64_t src_total = idx.size;
    for (size_t i = 0; i < c->n_sources; i++)
        src_total += sp->src_done[i].size;
    double ratio = src_total ? (double)total_out / (double)src_total : 0;
    if (o->json) {
        cJSON *j = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "status", "ok");
        cJSON_AddStringToObject(j, "out_dir", o->out_dir);
        cJSON_AddStringToObject(j, "family", airllm_arch_family(c->arch));
        cJSON_AddNumberToObject(j, "units", (double)c->n_units);
        cJSON_AddNumberToObject(j, "tensors", (double)c->n_tensors);
        cJSON_AddNumberToObject(j, "units_kept", (double)sp->units_kept);
        cJSON_AddNumberToObject(j, "bytes_read", (double)sp->bytes_read);
        cJSON_AddNumberToObject(j, "source_bytes", (double)src_total);
        cJSON_AddNumberToObject(j, "output_bytes", (double)total_out);
        cJSON_AddNumberToObject(j, "size_ratio", ratio);
        cJSON_AddStringToObject(j, "compress", o->zstd ? "zstd" : "none");
        cJSON_AddBoolToObject(j, "deleted_original", o->delete_original);
        cJSON_AddNumberToObject(j, "seconds", secs);
        if (o->quant)
            quant_summary(sp, j);
        char *text = cJSON_Print(j);
        puts(text);
        free(text);
        cJSON_Delete(j);
    } else {
        char a[32], b[32];
        cli_info("%s: %zu units, %zu tensors, %s written (%.3f of the source's %s)%s in %.2f s",
                 o->out_dir, c->n_units, c->n_tensors, cli_human_size(total_out, a), ratio,
                 cli_human_size(src_total, b),
                 sp->units_kept ? " (resumed)" : "", secs);
        if (o->quant)
            quant_summary(sp, NULL);
    }
    if (o->report)
        quant_report(sp);
    return AIRLLM_EXIT_OK;
}

static void split_ctx_free(split_ctx *s)
{
    for (size_t i = 0; s->src_units && i < s->ck.n_sources; i++)
        free(s->src_units[i]);
    free(s->src_units);
    free(s->n_src_units);
    for (size_t i = 0; i < s->n_aux; i++)
        free(s->aux[i].file);
    if (s->writers)
        for (size_t u = 0; u < s->ck.n_units; u++)
            writer_free(s->writers[u]);
    io_stop(&s->io);
    free(s->buf);
    for (int b = 0; b < PIPE_DEPTH; b++)
        free(s->pipe_bufs[b]);
    for (unsigned j = 0; s->zdst && j < s->o.jobs; j++) {
        free(s->zdst[j]);
        free(s->zscratch[j]);
    }
    free(s->zdst);
    free(s->zscratch);
    if (s->journal_fd >= 0)
        close(s->journal_fd);
    free(s->unit_done);
    free(s->unit_reverified);
    free(s->writers);
    free(s->src_done);
    free(s->src_deleted);
    free(s->unit_ck);
    free(s->jck);
    free(s->src_stat);
    free(s->src_stat_ok);
    free(s->journal_rewrite);
    free(s->stored_len);
    free(s->encoding);
    free(s->quantize);
    free(s->qstats);
    for (unsigned j = 0; s->qx && j < s->o.jobs; j++) {
        free(s->qx[j]);
        free(s->qy[j]);
    }
    free(s->qx);
    free(s->qy);
    free(s->qcodes);
    free(s->real_stat);
    free(s->real_name);
    airllm_ckpt_free(&s->ck);
}

int main(int argc, char **argv)
{
    cli_prog = TOOL_NAME;
    split_ctx s;
    memset(&s, 0, sizeof s);
    s.journal_fd = -1;
    s.lock_fd = -1;
    int rc = split_main(&s, argc, argv);
    split_ctx_free(&s); /* stops the I/O thread first: the lock outlives every write */
    release_out_dir(&s);
    return rc;
}
