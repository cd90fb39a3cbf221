/* OUT_DIR: the config/tokenizer copies, manifest.json (written last), the
 * lock, clearing (--force), stale temporaries and the leftovers that
 * --delete-original removes after the manifest. */
#include "convert.h"

/* Files copied verbatim next to the units when the checkpoint has them. */
const char *const aux_files[N_AUX] = {
    "config.json",      "generation_config.json",  "tokenizer.json",
    "tokenizer_config.json", "tokenizer.model",    "special_tokens_map.json",
    "added_tokens.json", "vocab.json",             "merges.txt",
    "qwen.tiktoken",
};

/* ------------------------------------------------------------------ */
/* config/tokenizer copies, manifest                                   */

/* Copies HF_DIR/name to OUT_DIR/name atomically, hashing what it writes. */
int copy_aux(split_ctx *s, const char *name, airllm_mf_file *rec, airllm_err *err)
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

char *options_json(const split_opts *o)
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
        char part[32];
        if (o->inc_embed) {
            snprintf(part, sizeof part, "embed%s%s", o->embed_qtype ? "=" : "",
                     o->embed_qtype ? airllm_quant_type_name(o->embed_qtype) : "");
            cJSON_AddItemToArray(inc, cJSON_CreateString(part));
        }
        if (o->inc_lm_head) {
            snprintf(part, sizeof part, "lm_head%s%s", o->lm_head_qtype ? "=" : "",
                     o->lm_head_qtype ? airllm_quant_type_name(o->lm_head_qtype) : "");
            cJSON_AddItemToArray(inc, cJSON_CreateString(part));
        }
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
int write_manifest(split_ctx *s, airllm_mf_file *aux, size_t n_aux,
                   const airllm_mf_file *index, uint64_t *total_out, airllm_err *err)
{
    const airllm_ckpt *c = &s->ck;
    airllm_manifest m = {0};
    m.version_major = AIRLLM_CT_VERSION_MAJOR;
    /* The manifest's version follows the units': all are 1.2 now. */
    m.version_minor = AIRLLM_CT_VERSION_MINOR;
    m.complete = true;
    m.tool_name = (char *)cli_prog; /* only read: the manifest is written, not freed */
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
int clear_out_dir(const char *dir, bool include_state, airllm_err *err)
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
bool state_dir_used(const char *state_dir)
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
int check_clearable(const split_ctx *s, const char *dir, bool top, airllm_err *err)
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
int dir_nonempty(const char *dir)
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
void remove_stale_temps(const char *dir)
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

int remove_state_dir(split_ctx *s, airllm_err *err)
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
int check_out_place(const split_opts *o, airllm_err *err)
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
int lock_out_dir(split_ctx *s, bool late, airllm_err *err)
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
    int rc = airllm_lock_writer(s->o.out_dir, cli_prog, &s->lock_fd, &created, err);
    return rc == AIRLLM_LOCK_BUSY || (rc && late) ? -1 : 0;
}

/* At exit: a state folder holding nothing but this run's lock (it refused,
 * or had nothing to do) goes with the lock, and an OUT_DIR this run created
 * and left empty is removed, so that a refused run leaves no trace. close()
 * releases the lock. */
void release_out_dir(split_ctx *s)
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
int delete_leftovers(const char *hf_dir, const airllm_mf_file *files, size_t n,
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
