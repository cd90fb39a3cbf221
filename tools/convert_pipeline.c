/* reader -> writer: streams one source, hashing it, and hands each
 * tensor's bytes to the unit writer on a thread of its own. */
#include "convert.h"

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
    size_t u = m->tensor->unit;
    if (!s->writers[u] && writer_open(s, u, &s->writers[u], err))
        return -1;
    unit_writer *w = s->writers[u];
    if (strcmp(w->uf.hdr.tensors[w->uf.next].name, m->tensor->name) != 0)
        return airllm_errf(err, "internal error: %s arrives out of order",
                           m->tensor->name);
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
        airllm_uf_park(&w->uf);
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
        if (!m.tensor) {
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

/* Reads [*off, end) of a source that no writer needs (the header, the
 * padding between container tensors, the tail), only to hash it; *off ends
 * at end. */
int hash_range(split_ctx *s, int fd, const char *path, airllm_sha256 *h, uint64_t *off,
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
int stream_source(split_ctx *s, size_t i, airllm_err *err)
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
            pipe_msg m = {NULL, 0, &c->tensors[t], true, 0, {0}};
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
            pipe_msg m = {buf, n, &c->tensors[t], pos == end, 0, {0}};
            if (pos == end && (rc = tensor_end(s, i, h, hs, end, send, &m, path, err)) != 0) {
                if (send)
                    pipe_release(&p, buf);
                break;
            }
            if (send)
                pipe_push(&p, m);
            s->bytes_read += n;
            s->prog.add(s->prog.user, n);
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
        p.q[(p.head + p.count) % PIPE_DEPTH] = (pipe_msg){NULL, 0, NULL, false, 0, {0}};
        p.count++;
    } else {
        /* Failed with a full queue: drop the queued chunks and stop. */
        p.q[p.head] = (pipe_msg){NULL, 0, NULL, false, 0, {0}};
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
