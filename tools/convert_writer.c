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

void writer_free(unit_writer *w)
{
    if (!w)
        return;
    airllm_uf_free(&w->uf);
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
    airllm_uf_init(&w->uf);
    w->unit = unit;
    w->uf.hdr.n_tensors = (uint32_t)un->n_tensors;
    w->uf.hdr.tensors = calloc(un->n_tensors, sizeof *w->uf.hdr.tensors);
    w->uf.hdr.unit_kind = un->kind;
    w->uf.hdr.layer_index = un->layer;
    if (!w->uf.hdr.tensors) {
        writer_free(w);
        return airllm_errf(err, "out of memory");
    }
    for (size_t i = 0; i < un->n_tensors; i++) {
        const airllm_st_tensor *st = airllm_ckpt_st(&s->ck, un->tensors[i]);
        airllm_ct_tensor *ct = &w->uf.hdr.tensors[i];
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
    /* zstd: compressed lengths are known only tensor by tensor, so the
     * header is written last, and the unit is read back for its digest:
     * it goes through the page cache; raw units bypass it. */
    if (airllm_uf_open(&w->uf, s->o.out_dir, un->file, s->o.zstd, !s->o.zstd, &s->io_sink,
                       err)) {
        writer_free(w);
        return -1;
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
        return airllm_errf(err, "out of memory while compressing %s", w->uf.final);
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
            return airllm_err_prefix(err, "%s: tensor \"%s\"", w->uf.final, ct->name);
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
    airllm_ct_tensor *ct = &w->uf.hdr.tensors[w->uf.next];
    size_t t = s->ck.units[w->unit].tensors[w->uf.next];
    if (s->o.zstd) {
        if (w->tensor_fill == 0)
            w->zlen = 0;
        if (n && writer_compress(s, w, ct, data, n, err))
            return -1;
    } else if (s->quantize && s->quantize[t]) {
        if (w->tensor_fill == 0) {
            w->q = true;
            w->zlen = 0;
            if (airllm_uf_pad_to(&w->uf, ct->offset, err) || quant_start(w, ct, err))
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
        if (w->tensor_fill == 0 && airllm_uf_pad_to(&w->uf, ct->offset, err))
            return -1;
        if (airllm_uf_emit(&w->uf, data, n, err))
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
    ct->offset = airllm_align_up(w->uf.pos, AIRLLM_CT_ALIGN);
    if (airllm_uf_pad_to(&w->uf, ct->offset, err))
        return -1;
    if (w->zlen < ct->raw_len) {
        ct->encoding = AIRLLM_ENC_ZSTD;
        ct->stored_len = w->zlen;
        ct->enc_param[0] = group_width(ct->dtype);
        ct->enc_param[1] = READ_CHUNK;
        return airllm_uf_emit(&w->uf, w->z, w->zlen, err);
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
            rc = airllm_uf_emit(&w->uf, chunk, produced, err);
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
    if (s->o.zstd && writer_put_zstd_tensor(w, &w->uf.hdr.tensors[w->uf.next], err))
        return -1;
    if (w->q && quant_finish(s, w, &w->uf.hdr.tensors[w->uf.next],
                             s->ck.units[w->unit].tensors[w->uf.next], err))
        return -1;
    w->q = false;
    w->tensor_fill = 0;
    airllm_uf_tensor_done(&w->uf);
    *complete = w->uf.next == w->uf.hdr.n_tensors;
    return 0;
}

/* Writes what is buffered, pads, fsyncs and renames the unit into place, and
 * journals it. */
int writer_finish(split_ctx *s, unit_writer *w, airllm_err *err)
{
    char sha[AIRLLM_SHA256_HEX];
    if (airllm_uf_finish(&w->uf, sha, err))
        return -1;
    done_rec *r = &s->unit_done[w->unit];
    r->done = true;
    r->size = w->uf.pos;
    memcpy(r->sha, sha, AIRLLM_SHA256_HEX);
    const airllm_ckpt_unit *un = &s->ck.units[w->unit];
    for (uint32_t i = 0; i < w->uf.hdr.n_tensors; i++) {
        s->stored_len[un->tensors[i]] = w->uf.hdr.tensors[i].stored_len;
        s->encoding[un->tensors[i]] = w->uf.hdr.tensors[i].encoding;
    }
    airllm_jrec jr;
    for (uint32_t i = 0; i < w->uf.hdr.n_tensors; i++) {
        size_t t = un->tensors[i];
        if (!airllm_encoding_is_quant(w->uf.hdr.tensors[i].encoding))
            continue;
        jr = (airllm_jrec){.kind = AIRLLM_JR_QSTATS, .size = t,
                           .stats = {s->qstats[t].rmse, s->qstats[t].max_abs,
                                     s->qstats[t].rel_fro}};
        snprintf(jr.name, sizeof jr.name, "%s", w->uf.hdr.tensors[i].name);
        if (journal_append(s, &jr, err))
            return -1;
    }
    return journal_unit(s, w->unit, err);
}
