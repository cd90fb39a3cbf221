/* The unit file writer (see airllm_unitfile.h for the calling sequence). */
#include "airllm_unitfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airllm_io.h"

int airllm_uf_pwrite(int fd, const char *path, const uint8_t *buf, size_t n, uint64_t off,
                     airllm_err *err)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(fd, buf + done, n - done, (off_t)(off + done));
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EINVAL) {
            /* Some filesystems accept O_DIRECT at open but not at write:
             * fall back to buffered writes for this file. */
            int fl = fcntl(fd, F_GETFL);
            if (fl >= 0 && (fl & O_DIRECT) && fcntl(fd, F_SETFL, fl & ~O_DIRECT) == 0)
                continue;
        }
        if (w < 0)
            return airllm_errf(err, "%s: write error: %s", path, strerror(errno));
        if (w == 0)
            return airllm_errf(err, "%s: write error: no progress", path);
        done += (size_t)w;
    }
    return 0;
}

void airllm_uf_init(airllm_unitfile *uf)
{
    memset(uf, 0, sizeof *uf);
    uf->fd = -1;
}

/* Hands the filled staging buffer to the sink. Its length must keep the
 * file offset aligned: a full buffer, or the end of the file. */
static void uf_flush(airllm_unitfile *uf)
{
    if (!uf->stage)
        return;
    if (uf->stage_len) {
        uf->sink->submit(uf->sink->ctx, uf->fd, uf->tmp, uf->stage, uf->stage_len,
                         uf->stage_off);
        uf->stage_off += uf->stage_len;
    } else {
        uf->sink->release(uf->sink->ctx, uf->stage);
    }
    uf->stage = NULL;
    uf->stage_len = 0;
}

/* Gives the staging buffer back while the unit waits for its next tensor:
 * a shard that interleaves many units (the safetensors library sorts by
 * dtype first, so F32 norms of every layer can come before any BF16 weight)
 * would otherwise hold one buffer per open unit and exhaust the pool. The
 * aligned part is written; the unaligned tail (< 4096 bytes) waits here. */
void airllm_uf_park(airllm_unitfile *uf)
{
    if (!uf->stage)
        return;
    size_t aligned = uf->stage_len / AIRLLM_CT_ALIGN * AIRLLM_CT_ALIGN;
    uf->tail_len = uf->stage_len - aligned;
    memcpy(uf->tail, uf->stage + aligned, uf->tail_len);
    uf->stage_len = aligned;
    uf_flush(uf);
}

static int uf_unpark(airllm_unitfile *uf, airllm_err *err)
{
    if (uf->stage)
        return 0;
    if (!(uf->stage = uf->sink->get(uf->sink->ctx, err)))
        return -1;
    memcpy(uf->stage, uf->tail, uf->tail_len);
    uf->stage_len = uf->tail_len;
    uf->tail_len = 0;
    return 0;
}

int airllm_uf_emit(airllm_unitfile *uf, const void *data, size_t n, airllm_err *err)
{
    if (!uf->header_last)
        airllm_sha256_update(uf->hash, data, n);
    /* The part of [pos, pos + n) inside the current tensor's stored range
     * goes into its checksum; the header, padding and check block do not.
     * Its offset and stored_len are set before its first byte is emitted. */
    if (uf->next < uf->hdr.n_tensors) {
        const airllm_ct_tensor *t = &uf->hdr.tensors[uf->next];
        uint64_t lo = uf->pos > t->offset ? uf->pos : t->offset;
        uint64_t hi = uf->pos + n < t->offset + t->stored_len ? uf->pos + n
                                                               : t->offset + t->stored_len;
        if (lo < hi)
            airllm_xxh3_update(uf->xs, (const uint8_t *)data + (lo - uf->pos), (size_t)(hi - lo));
    }
    const uint8_t *p = data;
    size_t chunk = uf->sink->chunk;
    while (n > 0) {
        if (uf_unpark(uf, err))
            return -1;
        size_t k = chunk - uf->stage_len < n ? chunk - uf->stage_len : n;
        memcpy(uf->stage + uf->stage_len, p, k);
        uf->stage_len += k;
        p += k;
        n -= k;
        uf->pos += k;
        if (uf->stage_len == chunk)
            uf_flush(uf);
    }
    return 0;
}

int airllm_uf_pad_to(airllm_unitfile *uf, uint64_t target, airllm_err *err)
{
    static const uint8_t zeros[AIRLLM_CT_ALIGN];
    while (uf->pos < target) {
        size_t n = (size_t)(target - uf->pos < sizeof zeros ? target - uf->pos : sizeof zeros);
        if (airllm_uf_emit(uf, zeros, n, err))
            return -1;
    }
    return 0;
}

void airllm_uf_tensor_done(airllm_unitfile *uf)
{
    uf->hdr.tensors[uf->next].xxh3 = airllm_xxh3_final(uf->xs);
    uf->next++;
}

void airllm_uf_free(airllm_unitfile *uf)
{
    if (uf->fd >= 0) {
        /* No write may be in flight on a descriptor we close. */
        uf->sink->drain(uf->sink->ctx, NULL);
        close(uf->fd);
        unlink(uf->tmp);
    }
    if (uf->stage)
        uf->sink->release(uf->sink->ctx, uf->stage);
    airllm_sha256_free(uf->hash);
    airllm_xxh3_free(uf->xs);
    airllm_ct_free(&uf->hdr);
    airllm_uf_init(uf);
}

int airllm_uf_open(airllm_unitfile *uf, const char *dir, const char *file, bool header_last,
                   bool direct, const airllm_uf_sink *sink, airllm_err *err)
{
    if (!(uf->hash = airllm_sha256_new()) || !(uf->xs = airllm_xxh3_new()))
        return airllm_errf(err, "out of memory");
    char tmpname[64];
    snprintf(tmpname, sizeof tmpname, ".%s.tmp", file);
    if (airllm_path_join(uf->tmp, sizeof uf->tmp, dir, tmpname, err) ||
        airllm_path_join(uf->final, sizeof uf->final, dir, file, err))
        return -1;
    snprintf(uf->dir, sizeof uf->dir, "%s", dir);
    uf->sink = sink;
    /* Units whose header comes last are read back for their digest (see
     * airllm_uf_finish), so they go through the page cache. */
    int flags = direct ? O_DIRECT : 0;
    uf->fd = open(uf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | flags, 0644);
    if (uf->fd < 0 && errno == EINVAL) /* tmpfs and others: no O_DIRECT */
        uf->fd = open(uf->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (uf->fd < 0)
        return airllm_errf(err, "%s: cannot create: %s", uf->tmp, strerror(errno));
    if (header_last) {
        /* Stored lengths are known only tensor by tensor, so the header is
         * written last. Its size depends only on the names, so the data can
         * start at its final place right away. */
        if (airllm_ct_layout(&uf->hdr, err))
            return -1;
        uf->header_last = true;
        uf->pos = uf->stage_off = uf->hdr.data_start;
        return 0;
    }
    /* Every length is known, so the header goes first and the tensors
     * follow as they are read. */
    uint8_t *hdr;
    size_t hdr_len;
    if (airllm_ct_layout(&uf->hdr, err) || airllm_ct_encode(&uf->hdr, &hdr, &hdr_len, err))
        return -1;
    int rc = airllm_uf_emit(uf, hdr, hdr_len, err);
    free(hdr);
    return rc;
}

/* Lays the header out again now that every length is final, and makes sure
 * no tensor moved from where its bytes were already written. */
static int uf_relayout(airllm_unitfile *uf, airllm_err *err)
{
    uint64_t *used = malloc((uf->hdr.n_tensors + 1) * sizeof *used);
    if (!used)
        return airllm_errf(err, "out of memory");
    for (uint32_t i = 0; i < uf->hdr.n_tensors; i++)
        used[i] = uf->hdr.tensors[i].offset;
    int rc = airllm_ct_layout(&uf->hdr, err);
    for (uint32_t i = 0; !rc && i < uf->hdr.n_tensors; i++)
        if (used[i] != uf->hdr.tensors[i].offset)
            rc = airllm_errf(err, "internal error: %s: layout moved a tensor", uf->tmp);
    free(used);
    return rc;
}

/* header_last: with the data on disk, the lengths are known: lay the
 * header out (the rule gives the offsets already used), write it at 0. */
static int uf_put_header_last(airllm_unitfile *uf, airllm_err *err)
{
    int rc = uf_relayout(uf, err);
    if (!rc && uf->pos != uf->hdr.file_size)
        rc = airllm_errf(err, "internal error: %s: size differs from the layout", uf->tmp);
    uint8_t *hdr = NULL, *aligned = NULL;
    size_t hdr_len = 0;
    if (!rc)
        rc = airllm_ct_encode(&uf->hdr, &hdr, &hdr_len, err);
    /* O_DIRECT needs an aligned buffer; hdr_len is data_start, a multiple
     * of 4096. */
    if (!rc && posix_memalign((void **)&aligned, AIRLLM_CT_ALIGN, hdr_len) != 0)
        rc = airllm_errf(err, "out of memory");
    if (!rc) {
        memcpy(aligned, hdr, hdr_len);
        rc = airllm_uf_pwrite(uf->fd, uf->tmp, aligned, hdr_len, 0, err);
    }
    free(hdr);
    free(aligned);
    return rc;
}

/* Appends the check block (format 1.2) at the aligned end of the data: the
 * tensors' XXH3 are complete only now, so it comes last in the file; it
 * ends at file_size. */
static int uf_put_checks(airllm_unitfile *uf, airllm_err *err)
{
    /* header_last: lengths are final only now; otherwise the same layout */
    int rc = uf_relayout(uf, err);
    if (!rc && uf->pos != uf->hdr.check_offset)
        rc = airllm_errf(err, "internal error: %s: data ends at %llu, the check block "
                              "is at %llu",
                         uf->tmp, (unsigned long long)uf->pos,
                         (unsigned long long)uf->hdr.check_offset);
    uint8_t *blk = NULL;
    size_t bl = 0;
    if (!rc)
        rc = airllm_ct_encode_checks(&uf->hdr, &blk, &bl, err);
    if (!rc)
        rc = airllm_uf_emit(uf, blk, bl, err);
    free(blk);
    return rc;
}

int airllm_uf_finish(airllm_unitfile *uf, char sha[AIRLLM_SHA256_HEX], airllm_err *err)
{
    if (uf->header_last && airllm_uf_pad_to(uf, airllm_align_up(uf->pos, AIRLLM_CT_ALIGN), err))
        return -1;
    if (!uf->header_last && airllm_uf_pad_to(uf, uf->hdr.check_offset, err))
        return -1;
    if (uf_put_checks(uf, err))
        return -1;
    if (uf_unpark(uf, err)) /* a tail may wait even when nothing was added */
        return -1;
    uf_flush(uf);
    if (uf->sink->drain(uf->sink->ctx, err))
        return -1;
    if (uf->header_last && uf_put_header_last(uf, err))
        return -1;
    if (fsync(uf->fd) != 0)
        return airllm_errf(err, "%s: fsync failed: %s", uf->tmp, strerror(errno));
    if (close(uf->fd) != 0) {
        uf->fd = -1;
        return airllm_errf(err, "%s: close failed: %s", uf->tmp, strerror(errno));
    }
    uf->fd = -1;
    if (uf->header_last) {
        /* The digest comes from reading the file back: it was not written
         * in order. The read also proves the bytes reached the disk. */
        uint64_t size;
        if (airllm_sha256_file(uf->tmp, sha, &size, err))
            return -1;
        if (size != uf->pos)
            return airllm_errf(err, "%s: reads back %llu bytes, %llu written", uf->tmp,
                               (unsigned long long)size, (unsigned long long)uf->pos);
    } else {
        airllm_sha256_final_hex(uf->hash, sha);
    }
    if (rename(uf->tmp, uf->final) != 0)
        return airllm_errf(err, "%s: cannot rename into place: %s", uf->tmp, strerror(errno));
    if (airllm_fsync_path(uf->dir, err))
        return -1;
    airllm_step("unit renamed");
    return 0;
}

/* ------------------------------------------------------------------ */
/* the synchronous sink                                                */

static uint8_t *sync_get(void *ctx, airllm_err *err)
{
    airllm_uf_sync *s = ctx;
    if (s->failed) {
        *err = s->err;
        return NULL;
    }
    uint8_t *b = NULL;
    if (posix_memalign((void **)&b, AIRLLM_CT_ALIGN, s->sink.chunk) != 0) {
        airllm_errf(err, "out of memory");
        return NULL;
    }
    return b;
}

static void sync_submit(void *ctx, int fd, const char *path, uint8_t *buf, size_t n,
                        uint64_t off)
{
    airllm_uf_sync *s = ctx;
    airllm_err e;
    if (!s->failed && airllm_uf_pwrite(fd, path, buf, n, off, &e)) {
        s->failed = true;
        s->err = e;
    }
    free(buf);
}

static void sync_release(void *ctx, uint8_t *buf)
{
    (void)ctx;
    free(buf);
}

static int sync_drain(void *ctx, airllm_err *err)
{
    airllm_uf_sync *s = ctx;
    if (!s->failed)
        return 0;
    if (err)
        *err = s->err;
    s->failed = false;
    return -1;
}

void airllm_uf_sync_init(airllm_uf_sync *s, size_t chunk)
{
    memset(s, 0, sizeof *s);
    s->sink = (airllm_uf_sink){s, chunk, sync_get, sync_submit, sync_release, sync_drain};
}
