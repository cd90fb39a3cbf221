/* airllm-verify --against: decodes each tensor (raw, zstd, quantized) and
 * compares it with the source checkpoint, in buffers bounded by the chunk
 * size, not by the tensor. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "airllm_checkpoint.h"
#include "airllm_codec.h"
#include "airllm_container.h"
#include "airllm_hash.h"
#include "airllm_index.h"
#include "airllm_io.h"
#include "airllm_json.h"
#include "airllm_bytes.h"
#include "airllm_manifest.h"
#include "airllm_quant.h"
#include "cli.h"
#include "rt.h"
#include "verify.h"

typedef struct {
    int fd;
    const char *path;
} rfile;

static int compare_tensor_bufs(verify_ctx *v, const airllm_mf_unit *mu, int ufd,
                               const char *upath, const airllm_ct_tensor *ct, uint8_t *a,
                               uint8_t *b, uint8_t *zin, uint8_t *scratch);

/* Buffers are sized per tensor: one decoded chunk each side, so memory stays
 * bounded by the chunk size, not by the tensor. */
void compare_tensor(verify_ctx *v, const airllm_mf_unit *mu, int ufd, const char *upath,
                    const airllm_ct_tensor *ct)
{
    size_t chunk = ct->encoding == AIRLLM_ENC_ZSTD ? ct->enc_param[1] : CMP_CHUNK;
    uint8_t *a = malloc(chunk), *b = malloc(chunk);
    uint8_t *zin = ct->encoding == AIRLLM_ENC_ZSTD ? malloc(airllm_zstd_chunk_bound(chunk)) : NULL;
    uint8_t *scratch = ct->encoding == AIRLLM_ENC_ZSTD ? malloc(chunk) : NULL;
    if (!a || !b || (ct->encoding == AIRLLM_ENC_ZSTD && (!zin || !scratch)))
        report(v, mu->file, ct->name, "out of memory");
    else
        compare_tensor_bufs(v, mu, ufd, upath, ct, a, b, zin, scratch);
    free(a);
    free(b);
    free(zin);
    free(scratch);
}

/* Elements compared per step for a quantized tensor (a multiple of every
 * block size). */
#define QCMP_ELEMS ((size_t)1 << 18)

/* A quantized tensor against its source: every element within the bound
 * of docs/quantization.md, from the block's true absmax a (recomputed from
 * the source) and the stored one a' (which double quantization moves):
 *   |x - y| <= g * a + |a - a'| + 1e-6 * max(a, a') + 1e-37
 * with g half the largest codebook gap (nf4 0.1519, fp4 1/6) or 1/254
 * (int8); the last two terms are float rounding and the subnormal floor.
 * Codes stream in steps; the scales are read whole (1/16 of the codes or
 * less). */
static void compare_quantized(verify_ctx *v, const airllm_mf_unit *mu, int ufd, const char *upath,
                              const airllm_ct_tensor *ct, int sfd, const char *spath,
                              uint64_t src_off)
{
    airllm_err err;
    airllm_ct_qlayout l;
    if (airllm_ct_tensor_qlayout(ct, &l, &err)) {
        report(v, mu->file, ct->name, "%s", err.msg);
        return;
    }
    if (l.n == 0)
        return;
    airllm_quant_type type = airllm_encoding_quant_type(ct->encoding);
    double g = type == AIRLLM_QUANT_NF4 ? 0.15190640 : type == AIRLLM_QUANT_FP4 ? 1.0 / 6 : 1.0 / 254;
    size_t es = airllm_dtype_bits(ct->dtype) / 8;
    size_t scales_len = (size_t)(l.stored_len - l.scales_off);
    uint8_t *scales = malloc(scales_len);
    float *absmax = malloc(l.nblocks * sizeof *absmax);
    uint8_t *codes = malloc(QCMP_ELEMS), *src = malloc(QCMP_ELEMS * es);
    float *x = malloc(QCMP_ELEMS * sizeof *x), *y = malloc(QCMP_ELEMS * sizeof *y);
    if (!scales || !absmax || !codes || !src || !x || !y) {
        report(v, mu->file, ct->name, "out of memory");
        goto out;
    }
    if (airllm_pread_full(ufd, scales, scales_len, ct->offset + l.scales_off, upath, &err) ||
        airllm_ct_quant_absmax(&l, scales, absmax, &err)) {
        report(v, mu->file, ct->name, "%s", strip_dir(v, err.msg));
        goto out;
    }
    uint64_t bad = 0, first_bad = 0;
    double worst = 0;
    for (uint64_t e0 = 0; e0 < l.n; e0 += QCMP_ELEMS) {
        size_t m = (size_t)(l.n - e0 < QCMP_ELEMS ? l.n - e0 : QCMP_ELEMS);
        size_t c0 = (size_t)(type == AIRLLM_QUANT_INT8 ? e0 : e0 / 2);
        size_t clen = type == AIRLLM_QUANT_INT8 ? m : (m + 1) / 2;
        size_t b0 = (size_t)(e0 / l.block), nb = (m + l.block - 1) / l.block;
        if (airllm_pread_full(ufd, codes, clen, ct->offset + c0, upath, &err) ||
            airllm_pread_full(sfd, src, m * es, src_off + e0 * es, spath, &err)) {
            report(v, mu->file, ct->name, "%s", strip_dir(v, err.msg));
            goto out;
        }
        if (airllm_float_to_f32_array(ct->dtype, src, m, x, &err) ||
            airllm_dequantize(type, codes, clen, absmax + b0, nb, m, l.block, y, &err)) {
            report(v, mu->file, ct->name, "cannot dequantize: %s", err.msg);
            goto out;
        }
        for (size_t b = 0; b < nb; b++) {
            size_t lo = b * l.block, hi = lo + l.block < m ? lo + l.block : m;
            double a = 0, as = absmax[b0 + b];
            for (size_t i = lo; i < hi; i++)
                a = fabs((double)x[i]) > a ? fabs((double)x[i]) : a;
            double bound = g * a + fabs(a - as) + 1e-6 * (a > as ? a : as) + 1e-37;
            for (size_t i = lo; i < hi; i++) {
                double d = fabs((double)x[i] - (double)y[i]);
                if (!(d <= bound)) {
                    if (!bad++)
                        first_bad = e0 + i;
                    if (d > worst)
                        worst = d;
                }
            }
        }
    }
    if (bad)
        report(v, mu->file, ct->name,
               "%llu elements exceed the %s error bound (first at element %llu, worst "
               "error %.6g)",
               (unsigned long long)bad, airllm_encoding_name(ct->encoding),
               (unsigned long long)first_bad, worst);
out:
    free(scales);
    free(absmax);
    free(codes);
    free(src);
    free(x);
    free(y);
}

/* Where two buffers known to differ first do: the chunk's start is only
 * where the search began. */
static size_t first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    size_t i = 0;
    while (i < n && a[i] == b[i])
        i++;
    return i;
}

static int compare_tensor_bufs(verify_ctx *v, const airllm_mf_unit *mu, int ufd,
                               const char *upath, const airllm_ct_tensor *ct, uint8_t *a,
                               uint8_t *b, uint8_t *zin, uint8_t *scratch)
{
    const airllm_ckpt *c = &v->src;
    long found = find_name(v->src_by_name, c->n_tensors, ct->name);
    if (found < 0) {
        report(v, mu->file, ct->name, "not in the source checkpoint");
        return 0;
    }
    size_t t = (size_t)found;
    size_t src_i = c->tensors[t].source;
    const airllm_st_tensor *st = airllm_ckpt_st(c, t);
    if (st->dtype != ct->dtype || st->ndim != ct->ndim ||
        memcmp(st->shape, ct->shape, ct->ndim * sizeof ct->shape[0]) != 0) {
        report(v, mu->file, ct->name, "dtype or shape differ from the source");
        return 0;
    }
    char spath[4096];
    airllm_err err;
    snprintf(spath, sizeof spath, "%s/%s", c->dir, c->sources[src_i].file);
    int sfd = airllm_open_input(spath, 0, &err);
    if (sfd < 0) {
        report(v, c->sources[src_i].file, ct->name, "cannot open the source: %s",
               errno == EINVAL ? "not a regular file" : strerror(errno));
        return 0;
    }
    uint64_t src_off = c->sources[src_i].st.data_start + st->begin;
    uint64_t done = 0;
    int rc = 0;
    if (ct->encoding == AIRLLM_ENC_RAW) {
        while (done < ct->raw_len && !rc) {
            size_t n = (size_t)(ct->raw_len - done < CMP_CHUNK ? ct->raw_len - done : CMP_CHUNK);
            if (airllm_pread_full(ufd, a, n, ct->offset + done, upath, &err) ||
                airllm_pread_full(sfd, b, n, src_off + done, spath, &err)) {
                report(v, mu->file, ct->name, "%s", strip_dir(v, err.msg));
                rc = -1;
            } else if (memcmp(a, b, n) != 0) {
                report(v, mu->file, ct->name, "bytes differ from the source at offset %llu "
                       "of the tensor's data", (unsigned long long)(done + first_diff(a, b, n)));
                rc = -1;
            }
            done += n;
        }
    } else if (ct->encoding == AIRLLM_ENC_ZSTD) {
        /* Stream the frames: keep a window of compressed bytes, decode one
         * frame (at most chunk bytes) at a time. */
        size_t zcap = airllm_zstd_chunk_bound(ct->enc_param[1]), have = 0;
        uint64_t zpos = 0;
        while (!rc && (done < ct->raw_len || zpos < ct->stored_len || have)) {
            size_t want = zcap - have;
            if (want > ct->stored_len - zpos)
                want = (size_t)(ct->stored_len - zpos);
            if (want && airllm_pread_full(ufd, zin + have, want, ct->offset + zpos, upath, &err)) {
                report(v, mu->file, ct->name, "%s", strip_dir(v, err.msg));
                rc = -1;
                break;
            }
            have += want;
            zpos += want;
            /* The shared frame walk, over the window: one frame per pass. */
            airllm_zstd_frames it;
            airllm_zstd_frames_init(&it, zin, have, ct->enc_param[0]);
            size_t produced;
            if (airllm_zstd_frames_next(&it, a, ct->enc_param[1], &produced, scratch, &err) < 0) {
                report(v, mu->file, ct->name, "cannot decode: %s", err.msg);
                rc = -1;
                break;
            }
            size_t used = it.pos;
            if (produced > ct->raw_len - done) {
                report(v, mu->file, ct->name, "decodes to more bytes than its shape holds");
                rc = -1;
                break;
            }
            if (airllm_pread_full(sfd, b, produced, src_off + done, spath, &err)) {
                report(v, mu->file, ct->name, "%s", err.msg);
                rc = -1;
            } else if (memcmp(a, b, produced) != 0) {
                report(v, mu->file, ct->name, "decoded bytes differ from the source at offset "
                       "%llu of the tensor's data",
                       (unsigned long long)(done + first_diff(a, b, produced)));
                rc = -1;
            }
            done += produced;
            memmove(zin, zin + used, have - used);
            have -= used;
            if (produced == 0 && used == 0)
                break;
        }
        if (!rc && done != ct->raw_len)
            report(v, mu->file, ct->name, "decodes to %llu bytes, expected %llu",
                   (unsigned long long)done, (unsigned long long)ct->raw_len);
    } else if (airllm_encoding_is_quant(ct->encoding)) {
        compare_quantized(v, mu, ufd, upath, ct, sfd, spath, src_off);
    } else {
        report(v, mu->file, ct->name, "encoding %s cannot be compared",
               airllm_encoding_name(ct->encoding));
    }
    close(sfd);
    return 0;
}

