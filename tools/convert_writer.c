/* The unit writer: a unit's file (lib/airllm_unitfile.c, its staging
 * buffers going to the I/O thread) fed tensor by tensor through an encoder
 * (lib/airllm_encode.c: raw, zstd, quantized); then the unit's digest and
 * statistics into the plan and the journal. Writer thread only. */
#include "convert.h"

void writer_free(unit_writer *w)
{
    if (!w)
        return;
    airllm_uf_free(&w->uf);
    free(w->z);
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
            ct->encoding = airllm_quant_encoding((airllm_quant_type)s->quantize[t]);
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

/* The encoder's output goes to the unit file: at the tensor's offset (the
 * next aligned one where the header comes last, and with the encoding the
 * encoder chose), then byte after byte. */
static int enc_start(void *ctx, const airllm_enc_result *r, airllm_err *err)
{
    unit_writer *w = ctx;
    airllm_ct_tensor *ct = &w->uf.hdr.tensors[w->uf.next];
    if (w->uf.header_last) {
        ct->offset = airllm_align_up(w->uf.pos, AIRLLM_CT_ALIGN);
        ct->encoding = r->encoding;
        ct->stored_len = r->stored_len;
        memcpy(ct->enc_param, r->enc_param, sizeof ct->enc_param);
    }
    return airllm_uf_pad_to(&w->uf, ct->offset, err);
}

static int enc_write(void *ctx, const void *data, size_t n, airllm_err *err)
{
    unit_writer *w = ctx;
    return airllm_uf_emit(&w->uf, data, n, err);
}

/* Starts the unit's current tensor (plan tensor t) on its encoder: zstd
 * for split --compress zstd, the quantizer for the tensors airllm-quant
 * quantizes, raw for the rest (a converted input's zstd tensor that stays
 * as it is is copied as its frames, byte for byte). */
static int writer_begin(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct, size_t t,
                        airllm_err *err)
{
    bool quant = s->quantize && s->quantize[t];
    const airllm_ct_tensor *src = airllm_ckpt_ct(&s->ck, t);
    w->enc = s->o.zstd || quant ? s->enc : s->enc_raw;
    /* A converted input's zstd tensor is quantized from its decoded frames,
     * gathered until the tensor is complete (quant_feed_frames). */
    w->frames = quant && src && src->encoding == AIRLLM_ENC_ZSTD;
    w->zlen = 0;
    airllm_enc_out out = {w, enc_start, enc_write};
    return airllm_enc_begin(w->enc, ct, w->uf.final, &out, err);
}

/* Feeds n bytes of the unit's current tensor. */
int writer_feed(split_ctx *s, unit_writer *w, const uint8_t *data, size_t n,
                airllm_err *err)
{
    airllm_ct_tensor *ct = &w->uf.hdr.tensors[w->uf.next];
    size_t t = s->ck.units[w->unit].tensors[w->uf.next];
    if (w->tensor_fill == 0 && writer_begin(s, w, ct, t, err))
        return -1;
    if (w->frames) {
        if (zbuf_reserve(w, n, err))
            return -1;
        memcpy(w->z + w->zlen, data, n);
        w->zlen += n;
    } else if (airllm_enc_feed(w->enc, data, n, err)) {
        return -1;
    }
    w->tensor_fill += n;
    s->bytes_written += n;
    return 0;
}

/* Ends the current tensor; *complete tells whether the unit has them all. */
int writer_tensor_done(split_ctx *s, unit_writer *w, bool *complete, airllm_err *err)
{
    airllm_ct_tensor *ct = &w->uf.hdr.tensors[w->uf.next];
    size_t t = s->ck.units[w->unit].tensors[w->uf.next];
    /* An empty tensor had no feed: with zstd it is still stored (raw, 0
     * bytes); raw and quantized ones have nothing to write. */
    if (!w->enc && s->o.zstd && writer_begin(s, w, ct, t, err))
        return -1;
    if (w->enc) {
        airllm_enc_result r;
        if (w->frames && quant_feed_frames(s, w, ct, airllm_ckpt_ct(&s->ck, t), err))
            return -1;
        if (airllm_enc_finish(w->enc, &r, err))
            return -1;
        if (r.has_stats)
            s->qstats[t] = r.stats;
    }
    w->enc = NULL;
    w->frames = false;
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
