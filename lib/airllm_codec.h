/* The lossless "zstd" tensor encoding.
 *
 * The raw tensor bytes are cut into chunks of chunk_bytes (the last may be
 * shorter). Each chunk is optionally byte-grouped, then compressed as one
 * independent zstd frame with its content size recorded. The stored tensor is
 * the concatenation of the frames. Independent frames make compression and
 * decompression parallel and streamable in bounded memory.
 *
 * Byte grouping with width w (2 or 4) rewrites a chunk of k*w bytes as w
 * planes: plane j holds byte j of every element, in element order. Float
 * exponents/sign bytes then sit together and compress far better. A chunk's
 * length must be a multiple of w (chunk_bytes is, and a tensor's raw length
 * is a multiple of its element size). Width 0 means no grouping. */
#ifndef AIRLLM_CODEC_H
#define AIRLLM_CODEC_H

#include <stdint.h>
#include <stddef.h>

#include "airllm_err.h"

#define AIRLLM_ZSTD_CHUNK_DEFAULT (4u << 20)

/* dst and src must not overlap; n must be a multiple of width. */
void airllm_bytegroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned width);
void airllm_byteungroup(uint8_t *dst, const uint8_t *src, size_t n, unsigned width);

/* Upper bound of one compressed chunk of n input bytes. */
size_t airllm_zstd_chunk_bound(size_t n);

/* Compresses one chunk (n <= chunk_bytes) into dst (capacity dst_cap >=
 * airllm_zstd_chunk_bound(n)); scratch must hold n bytes when width != 0.
 * Deterministic: same input, level and width give the same bytes. */
int airllm_zstd_chunk_compress(uint8_t *dst, size_t dst_cap, size_t *dst_len,
                               const uint8_t *src, size_t n, int level,
                               unsigned width, uint8_t *scratch, airllm_err *err);

/* Decodes a whole zstd-encoded tensor: src[0..src_len) must be a sequence of
 * frames whose content sizes add up to exactly raw_len, each frame at most
 * chunk_bytes. Writes raw_len bytes to dst; scratch holds chunk_bytes when
 * width != 0. Any malformed or truncated frame is an error. */
int airllm_zstd_tensor_decode(uint8_t *dst, uint64_t raw_len, const uint8_t *src,
                              uint64_t src_len, unsigned width, uint32_t chunk_bytes,
                              uint8_t *scratch, airllm_err *err);

/* Decodes the first frame of src[0..src_len) into dst (capacity dst_cap,
 * which must hold the frame's recorded content size). Sets *consumed to the
 * frame's compressed length and *produced to its content size. scratch holds
 * dst_cap bytes when width != 0. Used to decode a tensor in bounded memory,
 * one chunk at a time. */
int airllm_zstd_frame_decode(uint8_t *dst, size_t dst_cap, size_t *produced,
                             const uint8_t *src, size_t src_len, size_t *consumed,
                             unsigned width, uint8_t *scratch, airllm_err *err);

/* The one walk over a zstd-encoded tensor's frames (split, quant, verify
 * and run all use it): each call decodes the next frame of src[0..len)
 * with airllm_zstd_frame_decode's checks.
 *   airllm_zstd_frames it;
 *   airllm_zstd_frames_init(&it, src, len, width);
 *   while ((rc = airllm_zstd_frames_next(&it, dst, cap, &n, scratch, err)) > 0)
 *       use dst[0..n);
 * rc 0: every byte of src consumed; -1: err set (not prefixed: callers name
 * the tensor, and it.frame and it.pos say which frame, from where). */
typedef struct {
    const uint8_t *src;
    size_t len;
    size_t pos;                /* bytes of src consumed by whole frames */
    unsigned long long frame;  /* frames decoded */
    uint64_t produced;         /* bytes decoded */
    unsigned width;
} airllm_zstd_frames;

void airllm_zstd_frames_init(airllm_zstd_frames *it, const uint8_t *src, size_t len,
                             unsigned width);
/* dst (capacity cap) must hold the frame's content size; scratch holds cap
 * bytes when width != 0. */
int airllm_zstd_frames_next(airllm_zstd_frames *it, uint8_t *dst, size_t cap, size_t *n,
                            uint8_t *scratch, airllm_err *err);

#endif
