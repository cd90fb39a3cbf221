/* Tensor encoders: one interface for the ways a tensor's bytes are stored
 * in a unit file (formats/container.md): raw, zstd (byte grouping, raw
 * fallback where it does not shrink) and the block quantizations nf4, fp4
 * and int8 (with double quantization of the scales).
 *
 * Calling sequence, one tensor at a time per encoder:
 *   e = airllm_enc_new(opts, max_feed, err)        once
 *   airllm_enc_begin(e, t, label, out, err)         t: the tensor's entry
 *       (name, dtype, raw_len; quant: encoding and enc_param as laid out)
 *   airllm_enc_feed(e, raw bytes, n, err) ...       n <= max_feed; zstd:
 *       every feed but the tensor's last is a multiple of opts.chunk (the
 *       frames are cut at chunk offsets of each feed)
 *   airllm_enc_finish(e, &result, err)              encoding, stored_len,
 *       enc_param, and for quant the error statistics of what is stored
 *   airllm_enc_free(e)
 *
 * The stored bytes go to out: out->start first, once, when the encoding and
 * the stored length are final (raw and quant: at begin; zstd: at finish,
 * which holds the tensor's frames until then), then out->write in order,
 * stored_len bytes in all. Errors: -1 with err set; messages name label
 * (the unit file) and the tensor. After an error, begin starts over.
 *
 * Threads: an encoder is used by one thread; with opts.jobs > 1, zstd and
 * quant share each feed out to threads of their own, each owning its
 * chunk or slice, and join them before feed returns. The output does not
 * depend on jobs. */
#ifndef AIRLLM_ENCODE_H
#define AIRLLM_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_container.h"
#include "airllm_err.h"
#include "airllm_quant.h"

typedef enum { AIRLLM_ENC_KIND_RAW, AIRLLM_ENC_KIND_ZSTD, AIRLLM_ENC_KIND_QUANT } airllm_enc_kind;

typedef struct {
    airllm_enc_kind kind;
    unsigned jobs;             /* 1-64 */
    /* zstd */
    int level;
    uint32_t chunk;            /* bytes per frame, e.g. AIRLLM_ZSTD_CHUNK_DEFAULT */
    /* quant: the type, block size and double quantization come from each
     * tensor's encoding and enc_param, so one encoder serves a model whose
     * parts have different types (airllm-quant --include lm_head=int8) */
} airllm_enc_opts;

typedef struct {
    airllm_encoding encoding;
    uint32_t enc_param[4];
    uint64_t stored_len;
    bool has_stats;            /* quant */
    airllm_quant_stats stats;  /* error of the stored tensor against its input */
} airllm_enc_result;

typedef struct {
    void *ctx;
    int (*start)(void *ctx, const airllm_enc_result *r, airllm_err *err);
    int (*write)(void *ctx, const void *data, size_t n, airllm_err *err);
} airllm_enc_out;

/* Quantization works on slices of this many elements at fixed positions of
 * the tensor (a multiple of every block size), whatever the feeds: slices
 * are what the jobs share out, and fixed positions keep the output and the
 * statistics the same for any jobs and any input layout. */
#define AIRLLM_ENC_QSLICE ((size_t)1 << 16)

typedef struct airllm_encoder airllm_encoder;

/* NULL with err ("out of memory") on failure. max_feed bounds each feed. */
airllm_encoder *airllm_enc_new(const airllm_enc_opts *o, size_t max_feed, airllm_err *err);
int airllm_enc_begin(airllm_encoder *e, const airllm_ct_tensor *t, const char *label,
                     const airllm_enc_out *out, airllm_err *err);
int airllm_enc_feed(airllm_encoder *e, const uint8_t *data, size_t n, airllm_err *err);
int airllm_enc_finish(airllm_encoder *e, airllm_enc_result *r, airllm_err *err);
void airllm_enc_free(airllm_encoder *e);

/* The byte-group width zstd uses for a dtype: 2 for 16-bit floats, 4 for
 * 32-bit ones (their sign/exponent bytes repeat), 0 otherwise. */
unsigned airllm_enc_group_width(airllm_dtype dt);

#endif
