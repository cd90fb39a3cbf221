/* The checkpoint's files: where their bytes really are (symlinks, the
 * Hugging Face cache), and source identity: a source must be, when it is
 * used, kept or deleted, the bytes that were read from it. */
#include "convert.h"

/* ------------------------------------------------------------------ */
/* where the checkpoint's bytes really are                            */

/* Whether real (a path from realpath(), so its prefixes are its real
 * ancestors) is dir or lies inside it. Compared by device and inode: names
 * lie (symlinks, bind mounts, "..", case-insensitive file systems). */
bool real_within(const char *real, const struct stat *dir)
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
int delete_checkpoint_file(const char *hf_dir, const char *path, bool present,
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
int check_sources(split_ctx *s, airllm_err *err)
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
/* source identity: a source must be, when it is used, kept or deleted,
 * the bytes that were read from it                                    */

static bool same_file_state(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* What to do about a source that changed: --force is only offered while it
 * can lose nothing, that is while no source has been deleted. */
bool any_source_deleted(const split_ctx *s)
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
int check_jck(const split_ctx *s, size_t i, uint64_t off, const char *sha,
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
int tensor_end(const split_ctx *s, size_t i, airllm_sha256 *h, airllm_sha256 *scratch,
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
int source_as_read(const split_ctx *s, size_t i, int fd, const char *path,
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
int source_unchanged(const split_ctx *s, size_t i, bool rehash, airllm_err *err)
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

/* Resume, before anything is kept, written or deleted: every present source
 * must hash, at each checkpoint the journal recorded for it, to the digest
 * recorded there. One sequential read per source, up to its last
 * checkpoint. */
int verify_journaled_sources(split_ctx *s, airllm_err *err)
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
bool unit_proven(const split_ctx *s, size_t u)
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
