/* The journal (what is durable: units and sources with their digests),
 * resume from it, the plan fingerprint, and --delete-original: which
 * sources every unit holding their tensors has made safe to delete.
 *
 * Called from convert_run.c before the pipeline starts (load, open) and
 * from the writer thread while it runs (append, unit, try_delete_sources):
 * never from both at once. */
#include "convert.h"

/* ------------------------------------------------------------------ */
/* journal                                                            */

int journal_append(split_ctx *s, const airllm_jrec *r, airllm_err *err)
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
int journal_load(split_ctx *s, airllm_err *err)
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
int journal_open(split_ctx *s, airllm_err *err)
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
size_t journal_deleted(const char *state_dir, char first[AIRLLM_JOURNAL_NAME_MAX + 1])
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
int journal_unit(split_ctx *s, size_t u, airllm_err *err)
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

void fingerprint(const split_ctx *s, char out[AIRLLM_SHA256_HEX])
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
        /* only when given, so plans made before PART=TYPE keep their print */
        if (s->o.embed_qtype || s->o.lm_head_qtype) {
            snprintf(line, sizeof line, "part types %s %s\n",
                     s->o.embed_qtype ? airllm_quant_type_name(s->o.embed_qtype) : "-",
                     s->o.lm_head_qtype ? airllm_quant_type_name(s->o.lm_head_qtype) : "-");
            airllm_sha256_update(h, line, strlen(line));
        }
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

int unit_check_kept(split_ctx *s, size_t u, airllm_err *err)
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
/* --delete-original                                                  */

static bool source_units_done(const split_ctx *s, size_t i)
{
    for (size_t k = 0; k < s->n_src_units[i]; k++)
        if (!s->unit_done[s->src_units[i][k]].done)
            return false;
    return true;
}

bool source_needed(const split_ctx *s, size_t i)
{
    return !s->src_done[i].done || !source_units_done(s, i);
}

/* Lists, for each source, the units holding its tensors: the completion and
 * deletion checks run after every unit, so they must not rescan every
 * tensor of the model (tens of thousands in large MoE checkpoints). */
int build_source_units(split_ctx *s, airllm_err *err)
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

int try_delete_sources(split_ctx *s, airllm_err *err)
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
