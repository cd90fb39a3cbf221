/* airllm-quant: which tensors are quantized (plan_quant), the quantizing
 * encoder behind the unit writer (slices of QSLICE elements shared out to
 * --jobs threads, each slice owned by one job), and the error summary. */
#include "convert.h"

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
            return airllm_err_prefix(err, "%s: tensor \"%s\"", w->uf.final, ct->name);
        }
    w->qdone += n;
    return airllm_uf_emit(&w->uf, s->qcodes, qcode_bytes(s, n), err);
}

int quant_start(unit_writer *w, const airllm_ct_tensor *ct, airllm_err *err)
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
int quant_feed(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct,
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
        if (airllm_uf_emit(&w->uf, buf, 4 * k, err))
            return -1;
    }
    return 0;
}

/* Ends a quantized tensor: the last partial slice, the scales (double
 * quantized if asked), and the error statistics of what is stored. */
int quant_finish(split_ctx *s, unit_writer *w, const airllm_ct_tensor *ct, size_t t,
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
    if (airllm_uf_pad_to(&w->uf, ct->offset + l->scales_off, err))
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
            rc = airllm_err_prefix(err, "%s: tensor \"%s\": double quantization", w->uf.final,
                                   ct->name);
        if (!rc)
            rc = airllm_uf_emit(&w->uf, q, nb, err) ||
                 airllm_uf_pad_to(&w->uf, ct->offset + l->dq_offset_off, err) ||
                 emit_f32s(w, &offset, 1, err) || emit_f32s(w, a2, (size_t)l->nblocks2, err);
        stored = deq;
    }
    if (!rc && w->uf.pos != ct->offset + ct->stored_len)
        rc = airllm_errf(err, "internal error: %s: %s takes %llu bytes, not %llu", w->uf.final,
                         ct->name, (unsigned long long)(w->uf.pos - ct->offset),
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
int plan_quant(split_ctx *s, airllm_err *err)
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
void quant_summary(const split_ctx *s, cJSON *j)
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

void quant_report(const split_ctx *s)
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
