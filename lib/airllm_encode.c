/* Tensor encoders (see airllm_encode.h for the calling sequence). */
#include "airllm_encode.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_bytes.h"
#include "airllm_codec.h"
#include "airllm_dtype.h"

#define QSLICE AIRLLM_ENC_QSLICE
#define MAX_JOBS 64

struct airllm_encoder {
    airllm_enc_opts o;
    size_t max_feed;
    /* the tensor being encoded, from begin to finish */
    const airllm_ct_tensor *t;
    const char *label;
    airllm_enc_out out;
    uint64_t written;          /* stored bytes handed to out */
    /* zstd: per job one compressed chunk and one grouping scratch; the
     * tensor's frames, in order */
    uint8_t **zdst, **zscratch;
    uint8_t *z;
    size_t zlen, zcap;
    /* quant: per job QSLICE floats in and out; the codes of one batch */
    float **qx, **qy;
    uint8_t *qcodes;
    size_t qcodes_cap;
    uint32_t block;
    airllm_quant_type qtype;   /* of the current tensor's encoding */
    airllm_ct_qlayout ql;
    float *qabsmax;            /* (ql.nblocks) */
    airllm_qblock_stats *qbs;  /* (ql.nblocks) */
    size_t qblocks_cap;
    uint64_t qdone;            /* elements quantized so far */
    uint8_t *qcarry;           /* source bytes of an unfinished slice */
    size_t qcarry_len;
};

unsigned airllm_enc_group_width(airllm_dtype dt)
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

void airllm_enc_free(airllm_encoder *e)
{
    if (!e)
        return;
    for (unsigned j = 0; j < e->o.jobs; j++) {
        if (e->zdst)
            free(e->zdst[j]), free(e->zscratch[j]);
        if (e->qx)
            free(e->qx[j]), free(e->qy[j]);
    }
    free(e->zdst);
    free(e->zscratch);
    free(e->z);
    free(e->qx);
    free(e->qy);
    free(e->qcodes);
    free(e->qabsmax);
    free(e->qbs);
    free(e->qcarry);
    free(e);
}

airllm_encoder *airllm_enc_new(const airllm_enc_opts *o, size_t max_feed, airllm_err *err)
{
    if (o->jobs < 1 || o->jobs > MAX_JOBS) {
        airllm_errf(err, "encoder: %u jobs (1-%d)", o->jobs, MAX_JOBS);
        return NULL;
    }
    if (o->kind == AIRLLM_ENC_KIND_ZSTD && (o->chunk == 0 || o->chunk % 4 != 0)) {
        airllm_errf(err, "encoder: zstd chunk %u is not a positive multiple of 4", o->chunk);
        return NULL;
    }
    airllm_encoder *e = calloc(1, sizeof *e);
    bool ok = e != NULL;
    if (ok) {
        e->o = *o;
        e->max_feed = max_feed;
    }
    if (ok && o->kind == AIRLLM_ENC_KIND_ZSTD) {
        ok = (e->zdst = calloc(o->jobs, sizeof *e->zdst)) != NULL &&
             (e->zscratch = calloc(o->jobs, sizeof *e->zscratch)) != NULL;
        for (unsigned j = 0; ok && j < o->jobs; j++)
            ok = (e->zdst[j] = malloc(airllm_zstd_chunk_bound(o->chunk))) != NULL &&
                 (e->zscratch[j] = malloc(o->chunk)) != NULL;
    }
    if (ok && o->kind == AIRLLM_ENC_KIND_QUANT) {
        e->qcodes_cap = max_feed + QSLICE;
        ok = (e->qx = calloc(o->jobs, sizeof *e->qx)) != NULL &&
             (e->qy = calloc(o->jobs, sizeof *e->qy)) != NULL &&
             (e->qcodes = malloc(e->qcodes_cap)) != NULL;
        for (unsigned j = 0; ok && j < o->jobs; j++)
            ok = (e->qx[j] = malloc(QSLICE * sizeof(float))) != NULL &&
                 (e->qy[j] = malloc(QSLICE * sizeof(float))) != NULL;
    }
    if (!ok) {
        airllm_enc_free(e);
        airllm_errf(err, "out of memory");
        return NULL;
    }
    return e;
}

static int out_write(airllm_encoder *e, const void *data, size_t n, airllm_err *err)
{
    e->written += n;
    return e->out.write(e->out.ctx, data, n, err);
}

static int out_pad_to(airllm_encoder *e, uint64_t target, airllm_err *err)
{
    static const uint8_t zeros[AIRLLM_CT_ALIGN];
    while (e->written < target) {
        size_t n = (size_t)(target - e->written < sizeof zeros ? target - e->written
                                                                : sizeof zeros);
        if (out_write(e, zeros, n, err))
            return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ */
/* zstd                                                               */

static int zbuf_reserve(airllm_encoder *e, size_t extra, airllm_err *err)
{
    if (e->zlen + extra <= e->zcap)
        return 0;
    size_t cap = e->zcap ? e->zcap : (1u << 20);
    while (cap < e->zlen + extra)
        cap *= 2;
    uint8_t *z = realloc(e->z, cap);
    if (!z)
        return airllm_errf(err, "out of memory while compressing %s", e->label);
    e->z = z;
    e->zcap = cap;
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
 * appends the frames, in order, to the tensor's frames. */
static int zstd_feed(airllm_encoder *e, const uint8_t *data, size_t n, airllm_err *err)
{
    zjob jobs[MAX_JOBS];
    pthread_t th[MAX_JOBS];
    size_t nj = 0, chunk = e->o.chunk;
    if ((n + chunk - 1) / chunk > e->o.jobs)
        return airllm_errf(err, "internal error: %s: a feed of %zu bytes is over %u chunks",
                           e->label, n, e->o.jobs);
    unsigned width = airllm_enc_group_width(e->t->dtype);
    for (size_t off = 0; off < n; off += chunk, nj++) {
        zjob *j = &jobs[nj];
        memset(j, 0, sizeof *j);
        j->src = data + off;
        j->n = n - off < chunk ? n - off : chunk;
        j->dst = e->zdst[nj];
        j->dst_cap = airllm_zstd_chunk_bound(chunk);
        j->scratch = e->zscratch[nj];
        j->level = e->o.level;
        j->width = width;
    }
    for (size_t i = 1; i < nj; i++)
        if (pthread_create(&th[i], NULL, zjob_run, &jobs[i]) != 0)
            zjob_run(&jobs[i]), th[i] = 0;
    if (nj)
        zjob_run(&jobs[0]);
    for (size_t i = 1; i < nj; i++)
        if (th[i])
            pthread_join(th[i], NULL);
    for (size_t i = 0; i < nj; i++) {
        if (jobs[i].rc) {
            *err = jobs[i].err;
            return airllm_err_prefix(err, "%s: tensor \"%s\"", e->label, e->t->name);
        }
        if (zbuf_reserve(e, jobs[i].dst_len, err))
            return -1;
        memcpy(e->z + e->zlen, jobs[i].dst, jobs[i].dst_len);
        e->zlen += jobs[i].dst_len;
    }
    return 0;
}

/* Writes the tensor as its frames, or raw when zstd did not shrink it
 * (smaller output, nothing to decode at run time). Only this one tensor's
 * frames are ever held in memory. */
static int zstd_finish(airllm_encoder *e, airllm_enc_result *r, airllm_err *err)
{
    const airllm_ct_tensor *t = e->t;
    if (e->zlen < t->raw_len) {
        r->encoding = AIRLLM_ENC_ZSTD;
        r->stored_len = e->zlen;
        r->enc_param[0] = airllm_enc_group_width(t->dtype);
        r->enc_param[1] = e->o.chunk;
        if (e->out.start(e->out.ctx, r, err))
            return -1;
        return out_write(e, e->z, e->zlen, err);
    }
    /* Decode our own frames back, one chunk at a time: the raw bytes are no
     * longer in memory, and reading the input again would break the
     * read-once rule. Small tensors (norms, biases) and incompressible ones
     * land here. */
    r->encoding = AIRLLM_ENC_RAW;
    r->stored_len = t->raw_len;
    if (e->out.start(e->out.ctx, r, err))
        return -1;
    uint8_t *chunk = malloc(e->o.chunk), *scratch = malloc(e->o.chunk);
    int rc = chunk && scratch ? 0 : airllm_errf(err, "out of memory");
    airllm_zstd_frames it;
    airllm_zstd_frames_init(&it, e->z, e->zlen, airllm_enc_group_width(t->dtype));
    size_t produced;
    while (!rc && (rc = airllm_zstd_frames_next(&it, chunk, e->o.chunk, &produced, scratch,
                                                err)) > 0)
        rc = out_write(e, chunk, produced, err);
    free(chunk);
    free(scratch);
    return rc;
}

/* ------------------------------------------------------------------ */
/* quantization                                                       */

static size_t elem_size(airllm_dtype dt)
{
    return airllm_dtype_bits(dt) / 8;
}

static size_t qcode_bytes(const airllm_encoder *e, uint64_t n)
{
    return airllm_quant_code_bytes(e->qtype, (size_t)n);
}

typedef struct {
    airllm_encoder *e;
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
    airllm_encoder *e = j->e;
    size_t es = elem_size(j->dt), block = e->block;
    size_t nslices = (j->n + QSLICE - 1) / QSLICE;
    float *x = e->qx[j->job], *y = e->qy[j->job];
    for (size_t k = j->job; k < nslices && !j->rc; k += j->njobs) {
        size_t off = k * QSLICE, m = j->n - off < QSLICE ? j->n - off : QSLICE;
        size_t b0 = (size_t)((j->first + off) / block), nb = (m + block - 1) / block;
        size_t coff = qcode_bytes(e, off);
        if (airllm_float_to_f32_array(j->dt, j->src + off * es, m, x, &j->err) ||
            airllm_quantize(e->qtype, x, m, block, e->qcodes + coff, e->qcodes_cap - coff,
                            e->qabsmax + b0, nb, &j->err) ||
            airllm_dequantize(e->qtype, e->qcodes + coff, qcode_bytes(e, m), e->qabsmax + b0,
                              nb, m, block, y, &j->err) ||
            airllm_quant_block_stats(x, y, m, block, e->qabsmax + b0, e->qbs + b0, &j->err)) {
            airllm_err_prefix(&j->err, "elements from %llu",
                              (unsigned long long)(j->first + off));
            j->rc = -1;
        }
    }
    return NULL;
}

/* Quantizes n elements (whole slices, or the tensor's end) and writes
 * their codes. */
static int quant_batch(airllm_encoder *e, const uint8_t *src, size_t n, airllm_err *err)
{
    qjob jobs[MAX_JOBS];
    pthread_t th[MAX_JOBS];
    size_t nslices = (n + QSLICE - 1) / QSLICE;
    unsigned nj = e->o.jobs < nslices ? e->o.jobs : (unsigned)nslices;
    if (qcode_bytes(e, n) > e->qcodes_cap)
        return airllm_errf(err, "internal error: quantization batch too large");
    if (e->qdone + n > e->ql.n)
        return airllm_errf(err, "internal error: %s: more than %llu elements fed", e->t->name,
                           (unsigned long long)e->ql.n);
    for (unsigned i = 0; i < nj; i++)
        jobs[i] = (qjob){e, e->t->dtype, src, n, e->qdone, i, nj, 0, {{0}}};
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
            return airllm_err_prefix(err, "%s: tensor \"%s\"", e->label, e->t->name);
        }
    e->qdone += n;
    return out_write(e, e->qcodes, qcode_bytes(e, n), err);
}

static int quant_begin(airllm_encoder *e, const airllm_ct_tensor *t, airllm_err *err)
{
    if (airllm_ct_tensor_qlayout(t, &e->ql, err))
        return airllm_err_prefix(err, "%s", t->name);
    size_t nb = e->ql.nblocks ? (size_t)e->ql.nblocks : 1;
    if (nb > e->qblocks_cap) {
        free(e->qabsmax);
        free(e->qbs);
        e->qabsmax = malloc(nb * sizeof *e->qabsmax);
        e->qbs = malloc(nb * sizeof *e->qbs);
        e->qblocks_cap = e->qabsmax && e->qbs ? nb : 0;
    }
    if (!e->qcarry)
        e->qcarry = malloc(QSLICE * 4);
    if (!e->qabsmax || !e->qbs || !e->qcarry)
        return airllm_errf(err, "out of memory for the block scales of %s", t->name);
    e->block = t->enc_param[0];
    e->qtype = airllm_encoding_quant_type(t->encoding); /* qlayout: a quantized one */
    e->qdone = 0;
    e->qcarry_len = 0;
    return 0;
}

/* Source bytes of the current tensor: whole slices go straight through,
 * the rest waits in the carry buffer. */
static int quant_feed(airllm_encoder *e, const uint8_t *data, size_t n, airllm_err *err)
{
    size_t es = elem_size(e->t->dtype), slice_bytes = QSLICE * es;
    while (n > 0) {
        if (e->qcarry_len || n < slice_bytes) {
            size_t take = slice_bytes - e->qcarry_len < n ? slice_bytes - e->qcarry_len : n;
            memcpy(e->qcarry + e->qcarry_len, data, take);
            e->qcarry_len += take;
            data += take;
            n -= take;
            if (e->qcarry_len == slice_bytes) {
                e->qcarry_len = 0;
                if (quant_batch(e, e->qcarry, QSLICE, err))
                    return -1;
            }
        } else {
            size_t k = n / slice_bytes * slice_bytes;
            if (quant_batch(e, data, k / es, err))
                return -1;
            data += k;
            n -= k;
        }
    }
    return 0;
}

/* 2^e as a double, |e| <= 1022. */
static double pow2(int32_t e)
{
    uint64_t b = (uint64_t)(1023 + e) << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static int write_f32s(airllm_encoder *e, const float *v, size_t n, airllm_err *err)
{
    uint8_t buf[4096];
    for (size_t i = 0; i < n;) {
        size_t k = 0;
        for (; k < sizeof buf / 4 && i < n; k++, i++)
            airllm_put_lef32(buf + 4 * k, v[i]);
        if (out_write(e, buf, 4 * k, err))
            return -1;
    }
    return 0;
}

/* Ends a quantized tensor: the last partial slice, the scales (double
 * quantized if asked), and the error statistics of what is stored. */
static int quant_finish(airllm_encoder *e, airllm_enc_result *r, airllm_err *err)
{
    const airllm_ct_tensor *ct = e->t;
    size_t es = elem_size(ct->dtype);
    if (e->qcarry_len && quant_batch(e, e->qcarry, e->qcarry_len / es, err))
        return -1;
    e->qcarry_len = 0;
    const airllm_ct_qlayout *l = &e->ql;
    if (e->qdone != l->n)
        return airllm_errf(err, "internal error: %s: %llu of %llu elements quantized", ct->name,
                           (unsigned long long)e->qdone, (unsigned long long)l->n);
    if (out_pad_to(e, l->scales_off, err))
        return -1;
    size_t nb = (size_t)l->nblocks;
    float *stored = e->qabsmax; /* the absmax the runner will use */
    float *deq = NULL;
    uint8_t *q = NULL;
    float *a2 = NULL;
    int rc = 0;
    if (!l->double_quant) {
        rc = write_f32s(e, e->qabsmax, nb, err);
    } else {
        float offset;
        q = malloc(nb);
        a2 = malloc((size_t)l->nblocks2 * sizeof *a2);
        deq = malloc(nb * sizeof *deq);
        if (!q || !a2 || !deq)
            rc = airllm_errf(err, "out of memory");
        if (!rc && (airllm_dq_compress(AIRLLM_DQ_BNB_LUT, e->qabsmax, nb, NULL, q, nb, a2,
                                       (size_t)l->nblocks2, &offset, err) ||
                    airllm_dq_decompress(q, nb, a2, (size_t)l->nblocks2, offset, deq, err)))
            rc = airllm_err_prefix(err, "%s: tensor \"%s\": double quantization", e->label,
                                   ct->name);
        if (!rc)
            rc = out_write(e, q, nb, err) || out_pad_to(e, l->dq_offset_off, err) ||
                 write_f32s(e, &offset, 1, err) || write_f32s(e, a2, (size_t)l->nblocks2, err);
        stored = deq;
    }
    if (!rc && e->written != ct->stored_len)
        rc = airllm_errf(err, "internal error: %s: %s takes %llu bytes, not %llu", e->label,
                         ct->name, (unsigned long long)e->written,
                         (unsigned long long)ct->stored_len);
    if (!rc) {
        /* x - v*a' = e + v*(a - a') for a scale a' that double quantization
         * moved: the sums give the exact squared error; the largest error
         * is bounded by max|e| + max|v| * |a - a'|. */
        double se2 = 0, sx2 = 0, maxe = 0;
        for (size_t b = 0; b < nb; b++) {
            const airllm_qblock_stats *bs = &e->qbs[b];
            /* In the block's scaled units (2^-exp), then back; |exp| <= 126,
             * so these powers of two are exact doubles. */
            double p = pow2(bs->exp), p2 = p * p;
            double d = ((double)e->qabsmax[b] - (double)stored[b]) / p;
            double e2 = (double)bs->e2 + 2 * d * bs->ev + d * d * bs->v2;
            double me = ((double)bs->max_e + (double)bs->max_v * fabs(d)) * p;
            se2 += e2 > 0 ? e2 * p2 : 0;
            sx2 += (double)bs->x2 * p2;
            maxe = me > maxe ? me : maxe;
        }
        r->has_stats = true;
        r->stats.rmse = sqrt(se2 / (double)l->n);
        r->stats.max_abs = maxe;
        r->stats.rel_fro = sx2 > 0 ? sqrt(se2 / sx2) : 0;
    }
    free(q);
    free(a2);
    free(deq);
    return rc;
}

/* ------------------------------------------------------------------ */
/* the interface                                                       */

int airllm_enc_begin(airllm_encoder *e, const airllm_ct_tensor *t, const char *label,
                     const airllm_enc_out *out, airllm_err *err)
{
    e->t = t;
    e->label = label;
    e->out = *out;
    e->written = 0;
    e->zlen = 0;
    airllm_enc_result r = {.encoding = t->encoding, .stored_len = t->stored_len};
    memcpy(r.enc_param, t->enc_param, sizeof r.enc_param);
    switch (e->o.kind) {
    case AIRLLM_ENC_KIND_RAW:
        return out->start(out->ctx, &r, err);
    case AIRLLM_ENC_KIND_ZSTD:
        return 0; /* the stored form is known at finish */
    case AIRLLM_ENC_KIND_QUANT:
        if (quant_begin(e, t, err))
            return -1;
        return out->start(out->ctx, &r, err);
    }
    return airllm_errf(err, "encoder: unknown kind %d", (int)e->o.kind);
}

int airllm_enc_feed(airllm_encoder *e, const uint8_t *data, size_t n, airllm_err *err)
{
    switch (e->o.kind) {
    case AIRLLM_ENC_KIND_RAW:
        return out_write(e, data, n, err);
    case AIRLLM_ENC_KIND_ZSTD:
        return n ? zstd_feed(e, data, n, err) : 0;
    case AIRLLM_ENC_KIND_QUANT:
        return quant_feed(e, data, n, err);
    }
    return airllm_errf(err, "encoder: unknown kind %d", (int)e->o.kind);
}

int airllm_enc_finish(airllm_encoder *e, airllm_enc_result *r, airllm_err *err)
{
    const airllm_ct_tensor *t = e->t;
    memset(r, 0, sizeof *r);
    r->encoding = t->encoding;
    r->stored_len = t->stored_len;
    memcpy(r->enc_param, t->enc_param, sizeof r->enc_param);
    switch (e->o.kind) {
    case AIRLLM_ENC_KIND_RAW:
        return 0;
    case AIRLLM_ENC_KIND_ZSTD:
        return zstd_finish(e, r, err);
    case AIRLLM_ENC_KIND_QUANT:
        return quant_finish(e, r, err);
    }
    return airllm_errf(err, "encoder: unknown kind %d", (int)e->o.kind);
}
