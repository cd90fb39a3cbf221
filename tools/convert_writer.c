/* The unit writer: one unit file, written append-only from 4096-aligned
 * staging buffers handed to the I/O thread, hashed (SHA-256 of the file,
 * XXH3 per tensor) as the bytes go out; raw, zstd (byte grouping, raw
 * fallback) and quantized tensors (convert_quant.c). Writer thread only. */
#include "convert.h"

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
void writer_park(unit_writer *w)
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

int writer_emit(unit_writer *w, const void *data, size_t n, airllm_err *err)
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

int writer_pad_to(unit_writer *w, uint64_t target, airllm_err *err)
{
    static const uint8_t zeros[AIRLLM_CT_ALIGN];
    while (w->pos < target) {
        size_t n = (size_t)(target - w->pos < sizeof zeros ? target - w->pos : sizeof zeros);
        if (writer_emit(w, zeros, n, err))
            return -1;
    }
    return 0;
}

void writer_free(unit_writer *w)
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

int writer_open(split_ctx *s, size_t unit, unit_writer **out, airllm_err *err)
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

/* Feeds n bytes of the unit's current tensor. */
int writer_feed(split_ctx *s, unit_writer *w, const uint8_t *data, size_t n,
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
int writer_tensor_done(split_ctx *s, unit_writer *w, bool *complete, airllm_err *err)
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
int writer_finish(split_ctx *s, unit_writer *w, airllm_err *err)
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
