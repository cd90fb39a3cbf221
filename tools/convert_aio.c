/* The unit files' I/O thread and its buffer pool (see convert_aio.h). */
#include "convert.h"

static void *io_thread(void *arg)
{
    io_queue *io = arg;
    pthread_mutex_lock(&io->lock);
    for (;;) {
        while (io->count == 0 && !io->stop)
            pthread_cond_wait(&io->cond, &io->lock);
        if (io->count == 0)
            break;
        io_req r = io->q[io->head];
        io->head = (io->head + 1) % IO_DEPTH;
        io->count--;
        io->busy = 1;
        bool skip = io->failed;
        pthread_mutex_unlock(&io->lock);
        airllm_err e;
        int rc = skip ? 0 : airllm_uf_pwrite(r.fd, r.path, r.buf, r.n, r.off, &e);
        pthread_mutex_lock(&io->lock);
        if (rc && !io->failed) {
            io->failed = true;
            io->err = e;
        }
        io->free_bufs[io->n_free++] = r.buf;
        io->busy = 0;
        pthread_cond_broadcast(&io->cond);
    }
    pthread_mutex_unlock(&io->lock);
    return NULL;
}

int io_start(io_queue *io, airllm_err *err)
{
    memset(io, 0, sizeof *io);
    pthread_mutex_init(&io->lock, NULL);
    pthread_cond_init(&io->cond, NULL);
    for (int i = 0; i < IO_DEPTH; i++) {
        if (posix_memalign((void **)&io->bufs[i], AIRLLM_CT_ALIGN, IO_CHUNK) != 0)
            return airllm_errf(err, "out of memory");
        io->free_bufs[io->n_free++] = io->bufs[i];
    }
    if (pthread_create(&io->th, NULL, io_thread, io) != 0)
        return airllm_errf(err, "cannot start the I/O thread");
    io->started = true;
    return 0;
}

void io_stop(io_queue *io)
{
    if (io->started) {
        pthread_mutex_lock(&io->lock);
        io->stop = true;
        pthread_cond_broadcast(&io->cond);
        pthread_mutex_unlock(&io->lock);
        pthread_join(io->th, NULL);
        pthread_mutex_destroy(&io->lock);
        pthread_cond_destroy(&io->cond);
    }
    for (int i = 0; i < IO_DEPTH; i++)
        free(io->bufs[i]);
    memset(io, 0, sizeof *io);
}

/* A free staging buffer; NULL (with err) once a write has failed. */
uint8_t *io_get_buffer(io_queue *io, airllm_err *err)
{
    pthread_mutex_lock(&io->lock);
    while (io->n_free == 0 && !io->failed)
        pthread_cond_wait(&io->cond, &io->lock);
    uint8_t *b = NULL;
    if (io->failed)
        *err = io->err;
    else
        b = io->free_bufs[--io->n_free];
    pthread_mutex_unlock(&io->lock);
    return b;
}

void io_submit(io_queue *io, int fd, const char *path, uint8_t *buf, size_t n,
               uint64_t off)
{
    pthread_mutex_lock(&io->lock);
    /* count < IO_DEPTH always holds: a request owns one of the buffers. */
    io->q[(io->head + io->count) % IO_DEPTH] = (io_req){fd, path, buf, n, off};
    io->count++;
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

void io_release(io_queue *io, uint8_t *buf)
{
    pthread_mutex_lock(&io->lock);
    io->free_bufs[io->n_free++] = buf;
    pthread_cond_broadcast(&io->cond);
    pthread_mutex_unlock(&io->lock);
}

/* Waits until every submitted write is done. Returns -1 with the first
 * write error since the last drain, and clears it. */
int io_drain(io_queue *io, airllm_err *err)
{
    pthread_mutex_lock(&io->lock);
    while (io->count > 0 || io->busy)
        pthread_cond_wait(&io->cond, &io->lock);
    int rc = 0;
    if (io->failed) {
        if (err)
            *err = io->err;
        io->failed = false;
        rc = -1;
    }
    pthread_mutex_unlock(&io->lock);
    return rc;
}

/* The queue as a unit file's sink (lib/airllm_unitfile.h). */
static uint8_t *sink_get(void *ctx, airllm_err *err) { return io_get_buffer(ctx, err); }
static void sink_submit(void *ctx, int fd, const char *path, uint8_t *buf, size_t n,
                        uint64_t off)
{
    io_submit(ctx, fd, path, buf, n, off);
}
static void sink_release(void *ctx, uint8_t *buf) { io_release(ctx, buf); }
static int sink_drain(void *ctx, airllm_err *err) { return io_drain(ctx, err); }

airllm_uf_sink io_sink(io_queue *io)
{
    return (airllm_uf_sink){io, IO_CHUNK, sink_get, sink_submit, sink_release, sink_drain};
}
