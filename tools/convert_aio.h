/* The I/O thread that writes unit files, and its pool of IO_DEPTH staging
 * buffers of IO_CHUNK bytes, 4096-aligned.
 *
 * Calling sequence (one producer, the writer thread):
 *   io_start; then per chunk io_get_buffer (blocks for a free buffer), fill
 *   it, io_submit (or io_release to give it back unused); io_drain before
 *   fsync or close waits for every write and returns the first error since
 *   the last drain; io_stop joins the thread and frees the buffers.
 * Errors: a failed write is kept in err; later requests are skipped and
 * io_get_buffer returns NULL with it, until io_drain hands it over.
 *
 * Who changes what: every field below `lock` is changed only under it; the
 * producer owns a buffer between io_get_buffer and io_submit/io_release,
 * the I/O thread between taking its request and putting it back on
 * free_bufs. th, started and bufs are set by io_start and io_stop only,
 * from the producer, while the thread is not running. */
#ifndef AIRLLM_CONVERT_AIO_H
#define AIRLLM_CONVERT_AIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_err.h"
#include "airllm_unitfile.h"

/* Unit files are written from 4096-aligned staging buffers by a thread of
 * their own, with O_DIRECT where the filesystem allows it: the data goes to
 * the device without a copy into the page cache, and the writer thread,
 * which hashes, never waits for the disk. Every write is aligned (unit
 * files are multiples of 4096 bytes), as O_DIRECT requires. */
#define IO_CHUNK (8u << 20)
#define IO_DEPTH 4

typedef struct {
    int fd;
    const char *path;
    uint8_t *buf;
    size_t n;
    uint64_t off;
} io_req;

typedef struct io_queue {
    pthread_t th;
    bool started;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    uint8_t *bufs[IO_DEPTH];
    uint8_t *free_bufs[IO_DEPTH];
    size_t n_free;
    io_req q[IO_DEPTH];
    size_t head, count, busy; /* busy: a request being written */
    bool stop, failed;
    airllm_err err;
} io_queue;

int io_start(io_queue *io, airllm_err *err);
void io_stop(io_queue *io);
uint8_t *io_get_buffer(io_queue *io, airllm_err *err);
void io_submit(io_queue *io, int fd, const char *path, uint8_t *buf, size_t n,
               uint64_t off);
void io_release(io_queue *io, uint8_t *buf);
int io_drain(io_queue *io, airllm_err *err);
/* io as the sink of unit files (airllm_uf_open): its buffers, its thread. */
airllm_uf_sink io_sink(io_queue *io);

#endif
