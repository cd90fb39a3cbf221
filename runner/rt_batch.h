/* Continuous batching (rt_batch.c): one engine thread owns the model and
 * runs steps; each step is one rt_forward over every running sequence, in
 * which sequences that joined since the last step run their whole prompt
 * (prefill) and the others one token (decode), so each streamed layer read
 * serves all of them. Requests wait in a bounded queue and join at a step
 * boundary while the batch has room (--max-batch) and their KV cache fits
 * the KV budget; a sequence leaves when done, or at the next boundary after
 * its client cancels it. Each request has its own sampler seeded with its
 * own seed, so its tokens are those of a solo airllm-run with that seed.
 * Nothing here prints. */
#ifndef AIRLLM_RT_BATCH_H
#define AIRLLM_RT_BATCH_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rt.h"
#include "rt_chat.h"

typedef enum { RT_FINISH_NONE, RT_FINISH_STOP, RT_FINISH_LENGTH, RT_FINISH_ERROR } rt_finish;

/* One request. The submitter fills the inputs, then shares it with the
 * engine until done: every field below "shared" is owned by the engine's
 * lock (rt_batch_wait reads them under it). */
typedef struct rt_breq {
    /* inputs, read-only once submitted */
    int32_t *ids; /* prompt ids, n_prompt of them (the submitter's memory) */
    size_t n_prompt;
    size_t max_new;          /* >= 1 */
    rt_sampler smp;          /* temperature, top_k, top_p, rng (the seed); buf unset */
    /* shared, under the engine lock */
    int32_t *out;            /* generated ids, max_new allocated by the engine */
    size_t n_out;
    bool queued, running, done, cancel;
    rt_finish finish;
    char error[1024]; /* RT_FINISH_ERROR: why (an airllm_err message) */
    double t_submit, t_start, t_first, t_end; /* rt_now() seconds */
    /* engine only */
    rt_seq seq;
    struct rt_breq *next;    /* queue link */
} rt_breq;

typedef struct {
    uint64_t steps, tokens, prompt_tokens, requests, rejected, bytes_read;
    size_t running, queued;
    bool failed; /* a step failed: every request since gets its error */
} rt_batch_stats;

typedef struct rt_batch rt_batch;

/* is_stop(ctx, id): whether id ends an answer (EOS, template stops). */
typedef bool (*rt_batch_stop_fn)(void *ctx, int32_t id);

/* Starts the engine thread on m (which it then owns until rt_batch_free):
 * at most max_batch sequences run together; max_queue requests may wait
 * beyond the batch's free places; kv_budget bytes of KV caches may be held
 * by running sequences (0: no limit; a request alone always runs). */
int rt_batch_new(rt_model *m, size_t max_batch, size_t max_queue, uint64_t kv_budget,
                 rt_batch_stop_fn is_stop, void *stop_ctx, rt_batch **out, airllm_err *err);
/* Queues r: 0, or -1 when the queue is full or the engine is closing (the
 * caller answers 503), with a message. */
int rt_batch_submit(rt_batch *b, rt_breq *r, airllm_err *err);
/* Waits until r has more than have tokens, or is done; returns the number
 * of tokens now (copied from r->out by the caller under no lock: entries
 * below the returned count never change). timeout_s < 0: no limit. */
size_t rt_batch_wait(rt_batch *b, rt_breq *r, size_t have, bool *done, double timeout_s);
/* Asks the engine to drop r at the next step boundary (a disconnected
 * client, a stop string found); r stays the caller's only after
 * rt_batch_release. */
void rt_batch_cancel(rt_batch *b, rt_breq *r);
/* Waits until the engine no longer uses r, then frees what it allocated
 * (out): call once per submitted request, after the last read. */
void rt_batch_release(rt_batch *b, rt_breq *r);
/* A snapshot of the counters. */
void rt_batch_get_stats(rt_batch *b, rt_batch_stats *s);
/* Stops taking requests (submit fails), lets queued and running ones
 * finish, then stops the engine thread. */
void rt_batch_drain(rt_batch *b);
void rt_batch_free(rt_batch *b);
/* KV cache bytes of a sequence of ctx positions. */
uint64_t rt_batch_kv_bytes(const rt_model *m, size_t ctx);

#endif
