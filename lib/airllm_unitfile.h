/* The unit file writer: one container file (formats/container.md), written
 * append-only from 4096-aligned staging buffers, hashed as it goes, and put
 * in place atomically (temporary name, fsync, rename, fsync of the
 * directory).
 *
 * Calling sequence:
 *   airllm_uf_init(&uf);                  fills nothing but defaults
 *   fill uf.hdr: n_tensors, tensors[] (name, dtype, shape, raw_len,
 *       encoding, enc_param, stored_len where known), unit_kind, layer_index
 *   airllm_uf_open(&uf, dir, file, header_last, direct, sink, err)
 *       creates DIR/.FILE.tmp; lays the header out; without header_last it
 *       writes the header now (every stored_len must then be final)
 *   per tensor uf.next = 0, 1, ...:
 *       set uf.hdr.tensors[uf.next].offset and stored_len (header_last:
 *       when they become known, before its first byte), then
 *       airllm_uf_pad_to(offset) and airllm_uf_emit(bytes)... ;
 *       airllm_uf_tensor_done() records its XXH3 and moves uf.next on
 *   airllm_uf_park(&uf) between tensors gives the staging buffer back
 *   airllm_uf_finish(&uf, sha, err)       pads, appends the check block,
 *       writes the header (header_last), fsyncs, renames DIR/FILE into
 *       place, fsyncs DIR; sha gets the file's SHA-256 (header_last: read
 *       back from the file, which also proves the bytes reached the disk)
 *   airllm_uf_free(&uf)                   always; removes the temporary file
 *       when the unit was not finished
 *
 * Error contract: every function but init, park and free returns 0, or -1
 * with err set ("<tmp path>: ..."). After an error the only call left is
 * airllm_uf_free: the temporary file is removed, DIR/FILE is untouched.
 * A write error may surface late (the sink writes asynchronously): at the
 * next buffer, or at finish.
 *
 * Threads: one airllm_unitfile is used by one thread at a time; the sink
 * may hand its buffers to a thread of its own (tools/convert_aio.c does). */
#ifndef AIRLLM_UNITFILE_H
#define AIRLLM_UNITFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_container.h"
#include "airllm_err.h"
#include "airllm_hash.h"

/* Where the staging buffers come from and where they go. get returns a
 * free buffer of chunk bytes, AIRLLM_CT_ALIGN-aligned, or NULL with err once
 * a write failed; submit writes buf[0..n) at off of fd (then the buffer is
 * the sink's again); release gives a buffer back unwritten; drain waits for
 * every submitted write and returns -1 with the first error since the last
 * drain (err may be NULL). chunk is a multiple of AIRLLM_CT_ALIGN. */
typedef struct {
    void *ctx;
    size_t chunk;
    uint8_t *(*get)(void *ctx, airllm_err *err);
    void (*submit)(void *ctx, int fd, const char *path, uint8_t *buf, size_t n, uint64_t off);
    void (*release)(void *ctx, uint8_t *buf);
    int (*drain)(void *ctx, airllm_err *err);
} airllm_uf_sink;

typedef struct {
    /* The caller's: filled before open, offsets and stored lengths as the
     * sequence above says; read only after finish. */
    airllm_ct_header hdr;
    /* Read only for the caller. */
    uint32_t next; /* the tensor being written (index within the unit) */
    uint64_t pos;  /* bytes emitted so far (the file offset of the next) */
    char tmp[4096], final[4096], dir[4096];
    bool header_last;
    /* Private. */
    int fd;
    const airllm_uf_sink *sink;
    uint8_t *stage;     /* staging buffer being filled; NULL when parked */
    size_t stage_len;
    uint64_t stage_off; /* file offset of stage[0], a multiple of 4096 */
    uint8_t tail[AIRLLM_CT_ALIGN]; /* unaligned end of the data while parked */
    size_t tail_len;
    airllm_sha256 *hash;
    airllm_xxh3_state *xs; /* XXH3 of the current tensor's stored bytes */
} airllm_unitfile;

void airllm_uf_init(airllm_unitfile *uf);
/* header_last: the stored lengths become known tensor by tensor (zstd), so
 * the header is written at the end and the file's digest is read back.
 * direct: try O_DIRECT (falls back to buffered writes where refused). */
int airllm_uf_open(airllm_unitfile *uf, const char *dir, const char *file, bool header_last,
                   bool direct, const airllm_uf_sink *sink, airllm_err *err);
int airllm_uf_emit(airllm_unitfile *uf, const void *data, size_t n, airllm_err *err);
/* Emits zeros up to file offset target (nothing when already there). */
int airllm_uf_pad_to(airllm_unitfile *uf, uint64_t target, airllm_err *err);
void airllm_uf_tensor_done(airllm_unitfile *uf);
void airllm_uf_park(airllm_unitfile *uf);
int airllm_uf_finish(airllm_unitfile *uf, char sha[AIRLLM_SHA256_HEX], airllm_err *err);
void airllm_uf_free(airllm_unitfile *uf);

/* pwrite of all n bytes, retried on EINTR; where O_DIRECT is refused at
 * write time (EINVAL), the descriptor drops it and the write is retried.
 * Errors: "<path>: write error: <reason>". */
int airllm_uf_pwrite(int fd, const char *path, const uint8_t *buf, size_t n, uint64_t off,
                     airllm_err *err);

/* A sink that writes at submit, on the calling thread, from buffers it
 * allocates per get: for tests and single-threaded callers. */
typedef struct {
    airllm_uf_sink sink;
    bool failed;
    airllm_err err;
} airllm_uf_sync;
void airllm_uf_sync_init(airllm_uf_sync *s, size_t chunk);

#endif
