/* The lossless "zstd" tensor encoding: byte grouping plus one independent
 * zstd frame per chunk (formats/container.md, "Encoding 1: zstd"). */
#include "airllm_codec.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

void airllm_bytegroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned width)
{
    if (width <= 1) {
        if (n)
            memcpy(dst, src, n);
        return;
    }
    size_t k = n / width;
    for (size_t i = 0; i < k; i++)
        for (unsigned j = 0; j < width; j++)
            dst[j * k + i] = src[i * width + j];
    /* n is meant to be a multiple of width; a ragged tail is copied as is so
     * a caller's mistake can never read or write out of bounds. */
    for (size_t i = k * width; i < n; i++)
        dst[i] = src[i];
}

void airllm_byteungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned width)
{
    if (width <= 1) {
        if (n)
            memcpy(dst, src, n);
        return;
    }
    size_t k = n / width;
    for (size_t i = 0; i < k; i++)
        for (unsigned j = 0; j < width; j++)
            dst[i * width + j] = src[j * k + i];
    for (size_t i = k * width; i < n; i++)
        dst[i] = src[i];
}

size_t airllm_zstd_chunk_bound(size_t n)
{
    return ZSTD_compressBound(n);
}

/* One compression and one decompression context per thread, created on first
 * use and freed when the thread exits: contexts hold megabytes of tables, and
 * a 4 MiB chunk is too small to pay for creating them every time. Every call
 * resets the context and sets all parameters, so reuse cannot change the
 * output (determinism). */
static pthread_key_t cctx_key, dctx_key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_ok;

static void free_cctx(void *p) { ZSTD_freeCCtx(p); }
static void free_dctx(void *p) { ZSTD_freeDCtx(p); }

static void make_keys(void)
{
    if (pthread_key_create(&cctx_key, free_cctx) != 0)
        return;
    if (pthread_key_create(&dctx_key, free_dctx) != 0) {
        pthread_key_delete(cctx_key);
        return;
    }
    key_ok = 1;
}

static ZSTD_CCtx *get_cctx(void)
{
    pthread_once(&key_once, make_keys);
    if (!key_ok)
        return NULL;
    ZSTD_CCtx *c = pthread_getspecific(cctx_key);
    if (!c) {
        c = ZSTD_createCCtx();
        if (c && pthread_setspecific(cctx_key, c) != 0) {
            ZSTD_freeCCtx(c);
            c = NULL;
        }
    }
    return c;
}

static ZSTD_DCtx *get_dctx(void)
{
    pthread_once(&key_once, make_keys);
    if (!key_ok)
        return NULL;
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (!d) {
        d = ZSTD_createDCtx();
        if (d && pthread_setspecific(dctx_key, d) != 0) {
            ZSTD_freeDCtx(d);
            d = NULL;
        }
    }
    return d;
}

static int width_ok(unsigned w) { return w == 0 || w == 2 || w == 4; }

int airllm_zstd_chunk_compress(uint8_t *dst, size_t dst_cap, size_t *dst_len,
                               const uint8_t *src, size_t n, int level,
                               unsigned width, uint8_t *scratch, airllm_err *err)
{
    *dst_len = 0;
    if (!width_ok(width))
        return airllm_errf(err, "zstd: byte-group width %u, must be 0, 2 or 4", width);
    if (width && n % width != 0)
        return airllm_errf(err, "zstd: chunk of %zu bytes is not a multiple of the "
                                "byte-group width %u",
                           n, width);
    if (level < ZSTD_minCLevel() || level > ZSTD_maxCLevel())
        return airllm_errf(err, "zstd: compression level %d outside %d..%d", level,
                           ZSTD_minCLevel(), ZSTD_maxCLevel());
    ZSTD_CCtx *c = get_cctx();
    if (!c)
        return airllm_errf(err, "zstd: cannot create a compression context");
    const uint8_t *in = src;
    if (width) {
        airllm_bytegroup(scratch, src, n, width);
        in = scratch;
    }
    size_t r = ZSTD_CCtx_reset(c, ZSTD_reset_session_and_parameters);
    /* Content size in the frame header is what lets a reader bound and
     * check each frame before decoding it; no checksum because the unit
     * file's SHA-256 already covers the bytes; no worker threads because the
     * caller parallelizes over chunks and threads would cost determinism. */
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_compressionLevel, level);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_contentSizeFlag, 1);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_checksumFlag, 0);
    if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(c, ZSTD_c_nbWorkers, 0);
    if (ZSTD_isError(r))
        return airllm_errf(err, "zstd: cannot set parameters: %s", ZSTD_getErrorName(r));
    r = ZSTD_compress2(c, dst, dst_cap, in, n);
    if (ZSTD_isError(r))
        return airllm_errf(err, "zstd: compression failed: %s", ZSTD_getErrorName(r));
    *dst_len = r;
    return 0;
}

/* Frame magic 0xFD2FB528, little-endian. Checked explicitly so skippable
 * frames (which zstd would happily decode to nothing) are refused. */
static int is_zstd_frame(const uint8_t *src, size_t len)
{
    return len >= 4 && src[0] == 0x28 && src[1] == 0xB5 && src[2] == 0x2F &&
           src[3] == 0xFD;
}

int airllm_zstd_frame_decode(uint8_t *dst, size_t dst_cap, size_t *produced,
                             const uint8_t *src, size_t src_len, size_t *consumed,
                             unsigned width, uint8_t *scratch, airllm_err *err)
{
    *produced = 0;
    *consumed = 0;
    if (!width_ok(width))
        return airllm_errf(err, "zstd: byte-group width %u, must be 0, 2 or 4", width);
    if (!is_zstd_frame(src, src_len))
        return airllm_errf(err, "zstd: not a zstd frame (bad or missing magic)");
    unsigned long long fcs = ZSTD_getFrameContentSize(src, src_len);
    if (fcs == ZSTD_CONTENTSIZE_ERROR)
        return airllm_errf(err, "zstd: invalid or truncated frame header");
    if (fcs == ZSTD_CONTENTSIZE_UNKNOWN)
        return airllm_errf(err, "zstd: frame does not record its content size");
    if (fcs > dst_cap)
        return airllm_errf(err, "zstd: frame content size %llu exceeds the %zu-byte buffer",
                           fcs, dst_cap);
    if (width && fcs % width != 0)
        return airllm_errf(err, "zstd: frame content size %llu is not a multiple of the "
                                "byte-group width %u",
                           fcs, width);
    size_t csize = ZSTD_findFrameCompressedSize(src, src_len);
    if (ZSTD_isError(csize))
        return airllm_errf(err, "zstd: malformed or truncated frame: %s",
                           ZSTD_getErrorName(csize));
    if (csize > src_len) /* zstd guarantees this; kept because it is cheap */
        return airllm_errf(err, "zstd: frame runs past the input");
    ZSTD_DCtx *d = get_dctx();
    if (!d)
        return airllm_errf(err, "zstd: cannot create a decompression context");
    uint8_t *target = width ? scratch : dst;
    size_t r = ZSTD_decompressDCtx(d, target, (size_t)fcs, src, csize);
    if (ZSTD_isError(r))
        return airllm_errf(err, "zstd: corrupt frame: %s", ZSTD_getErrorName(r));
    if (r != fcs)
        return airllm_errf(err, "zstd: frame decoded to %zu bytes, header says %llu", r,
                           fcs);
    if (width)
        airllm_byteungroup(dst, scratch, r, width);
    *produced = r;
    *consumed = csize;
    return 0;
}

void airllm_zstd_frames_init(airllm_zstd_frames *it, const uint8_t *src, size_t len,
                             unsigned width)
{
    *it = (airllm_zstd_frames){src, len, 0, 0, 0, width};
}

int airllm_zstd_frames_next(airllm_zstd_frames *it, uint8_t *dst, size_t cap, size_t *n,
                            uint8_t *scratch, airllm_err *err)
{
    *n = 0;
    if (it->pos >= it->len)
        return 0;
    size_t used;
    if (airllm_zstd_frame_decode(dst, cap, n, it->src + it->pos, it->len - it->pos, &used,
                                 it->width, scratch, err))
        return -1;
    it->pos += used;
    it->produced += *n;
    it->frame++;
    return 1;
}

int airllm_zstd_tensor_decode(uint8_t *dst, uint64_t raw_len, const uint8_t *src,
                              uint64_t src_len, unsigned width, uint32_t chunk_bytes,
                              uint8_t *scratch, airllm_err *err)
{
    if (!width_ok(width))
        return airllm_errf(err, "zstd: byte-group width %u, must be 0, 2 or 4", width);
    if (chunk_bytes == 0 || (width && chunk_bytes % width != 0))
        return airllm_errf(err, "zstd: chunk size %u is zero or not a multiple of the "
                                "byte-group width %u",
                           chunk_bytes, width);
    if (src_len > SIZE_MAX || raw_len > SIZE_MAX)
        return airllm_errf(err, "zstd: tensor too large for this machine");
    airllm_zstd_frames it;
    airllm_zstd_frames_init(&it, src, (size_t)src_len, width);
    uint64_t out = 0;
    while (it.pos < src_len) {
        uint64_t in = it.pos;
        unsigned long long frame = it.frame;
        const uint8_t *p = src + in;
        size_t left = (size_t)(src_len - in);
        if (out == raw_len)
            return airllm_errf(err, "zstd: %zu trailing bytes after the last frame "
                                    "(raw_len %llu already decoded)",
                               left, (unsigned long long)raw_len);
        /* Every chunk but the last holds exactly chunk_bytes, so a frame's
         * expected size is known before decoding it: refuse any other. */
        uint64_t expect = raw_len - out < chunk_bytes ? raw_len - out : chunk_bytes;
        unsigned long long fcs =
            is_zstd_frame(p, left) ? ZSTD_getFrameContentSize(p, left) : ZSTD_CONTENTSIZE_ERROR;
        if (fcs == ZSTD_CONTENTSIZE_ERROR) {
            airllm_errf(err, "zstd: not a valid zstd frame header");
            return airllm_err_prefix(err, "frame %llu at byte %llu", frame,
                                     (unsigned long long)in);
        }
        if (fcs == ZSTD_CONTENTSIZE_UNKNOWN) {
            airllm_errf(err, "zstd: frame does not record its content size");
            return airllm_err_prefix(err, "frame %llu at byte %llu", frame,
                                     (unsigned long long)in);
        }
        if (fcs > chunk_bytes)
            return airllm_errf(err, "frame %llu: content size %llu exceeds the chunk size %u",
                               frame, fcs, chunk_bytes);
        if (fcs > raw_len - out)
            return airllm_errf(err, "frame %llu: content size %llu runs past raw_len %llu "
                                    "(total size mismatch)",
                               frame, fcs, (unsigned long long)raw_len);
        if (fcs != expect)
            return airllm_errf(err, "frame %llu: content size %llu, expected %llu (all "
                                    "chunks but the last hold %u bytes)",
                               frame, fcs, (unsigned long long)expect, chunk_bytes);
        size_t produced;
        if (airllm_zstd_frames_next(&it, dst + out, (size_t)expect, &produced, scratch, err) < 0)
            return airllm_err_prefix(err, "frame %llu at byte %llu", frame,
                                     (unsigned long long)in);
        out += produced;
    }
    if (out != raw_len)
        return airllm_errf(err, "zstd: frames decode to %llu bytes, raw_len is %llu "
                                "(total size mismatch)",
                           (unsigned long long)out, (unsigned long long)raw_len);
    return 0;
}
