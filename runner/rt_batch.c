/* The continuous-batching engine (see rt_batch.h). One thread, the engine,
 * owns the model, the sequences (rt_seq: KV caches) and the logits; the
 * lock below owns the queue, the counters and every request's shared
 * fields. A step: under the lock, admit queued requests (their prompt runs
 * in this step's pass) and drop cancelled ones; without it, one rt_forward
 * over all running sequences; under it again, sample one token for each
 * and wake the waiters. */
#include "rt_batch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct rt_batch {
    rt_model *m;
    size_t max_batch, max_queue;
    uint64_t kv_budget; /* bytes; 0: no limit */
    rt_batch_stop_fn is_stop;
    void *stop_ctx;
    pthread_t thread;
    bool started;
    /* owned by lock: */
    pthread_mutex_t lock;
    pthread_cond_t work;     /* engine waits: a request came, or closing */
    pthread_cond_t progress; /* waiters: tokens came, or a request is done */
    rt_breq *q_head, *q_tail;
    size_t n_queued;
    bool closing;
    /* A failed step (a damaged layer file, out of memory) may leave the
     * store mid-stream: no further step runs, every request gets the
     * error. */
    bool failed;
    char fail_msg[1024];
    rt_batch_stats st;
    /* engine thread only (n_run also under lock: submit reads it): */
    rt_breq **run;      /* [max_batch] running requests */
    size_t n_run;
    uint64_t kv_used;
    rt_seq **seqs;      /* [max_batch] */
    float *logits;      /* [max_batch, vocab] */
    void *cand;         /* the sampler's candidate buffer, shared by all */
};

uint64_t rt_batch_kv_bytes(const rt_model *m, size_t ctx)
{
    const rt_config *c = &m->cfg;
    return 2ull * sizeof(float) * (uint64_t)c->n_layers * ctx * (uint64_t)c->n_kv_heads *
           (uint64_t)c->head_dim;
}

/* Under the lock: r is finished; its sequence is freed by the caller. */
static void finish(rt_batch *b, rt_breq *r, rt_finish f, const char *msg)
{
    r->done = true;
    r->running = r->queued = false;
    r->finish = f;
    if (msg)
        snprintf(r->error, sizeof r->error, "%s", msg);
    r->t_end = airllm_now();
    pthread_cond_broadcast(&b->progress);
}

/* Under the lock: moves queued requests into the batch while there is room
 * in it and in the KV budget (the queue keeps its order: a request that
 * does not fit waits, and so do those behind it). */
static void admit(rt_batch *b)
{
    while (b->q_head && b->n_run < b->max_batch) {
        rt_breq *r = b->q_head;
        if (r->cancel) {
            b->q_head = r->next;
            b->n_queued--;
            finish(b, r, RT_FINISH_NONE, NULL);
            continue;
        }
        size_t ctx = r->n_prompt + r->max_new;
        uint64_t kv = rt_batch_kv_bytes(b->m, ctx);
        if (b->kv_budget && b->n_run && b->kv_used + kv > b->kv_budget)
            break; /* waits for a running one to leave (alone it always runs) */
        b->q_head = r->next;
        if (!b->q_head)
            b->q_tail = NULL;
        b->n_queued--;
        airllm_err err = {{0}};
        if (rt_seq_init(&r->seq, b->m, r->ids, r->n_prompt, ctx, &err)) {
            finish(b, r, RT_FINISH_ERROR, err.msg);
            continue;
        }
        r->queued = false;
        r->running = true;
        r->t_start = airllm_now();
        b->kv_used += kv;
        b->run[b->n_run++] = r;
    }
}

/* Under the lock: removes finished or cancelled requests from the batch. */
static void compact(rt_batch *b)
{
    size_t k = 0;
    for (size_t i = 0; i < b->n_run; i++) {
        rt_breq *r = b->run[i];
        if (r->cancel && !r->done)
            finish(b, r, RT_FINISH_NONE, NULL);
        if (r->done) {
            b->kv_used -= rt_batch_kv_bytes(b->m, r->seq.ctx);
            rt_seq_free(&r->seq);
            continue;
        }
        b->run[k++] = r;
    }
    b->n_run = k;
}

static void *engine(void *arg)
{
    rt_batch *b = arg;
    const rt_config *c = &b->m->cfg;
    pthread_mutex_lock(&b->lock);
    for (;;) {
        compact(b);
        admit(b);
        b->st.running = b->n_run;
        b->st.queued = b->n_queued;
        if (!b->n_run) {
            if (b->closing && !b->q_head)
                break;
            pthread_cond_wait(&b->work, &b->lock);
            continue;
        }
        if (b->failed) {
            for (size_t i = 0; i < b->n_run; i++)
                finish(b, b->run[i], RT_FINISH_ERROR, b->fail_msg);
            continue;
        }
        size_t n = b->n_run, prompt = 0;
        for (size_t i = 0; i < n; i++) {
            b->seqs[i] = &b->run[i]->seq;
            prompt += b->run[i]->seq.n_cached ? 0 : b->run[i]->n_prompt;
        }
        pthread_mutex_unlock(&b->lock);
        /* The run set cannot change while unlocked: only this thread
         * changes it; a cancel takes effect at the next boundary. */
        airllm_err err = {{0}};
        int rc = rt_forward(b->m, b->seqs, n, b->logits, &err);
        uint64_t bytes;
        pthread_mutex_lock(&b->m->store.lock);
        bytes = b->m->store.bytes_read;
        pthread_mutex_unlock(&b->m->store.lock);
        pthread_mutex_lock(&b->lock);
        b->st.steps++;
        b->st.prompt_tokens += prompt;
        b->st.bytes_read = bytes;
        double now = airllm_now();
        if (rc) {
            b->failed = b->st.failed = true;
            snprintf(b->fail_msg, sizeof b->fail_msg, "%s", err.msg);
        }
        for (size_t i = 0; i < n; i++) {
            rt_breq *r = b->run[i];
            if (rc) {
                finish(b, r, RT_FINISH_ERROR, err.msg);
                continue;
            }
            /* As airllm-run: sample, append, then EOS or length ends it. */
            r->smp.buf = b->cand;
            int32_t id = rt_sample(&r->smp, b->logits + i * (size_t)c->vocab, c->vocab);
            r->smp.buf = NULL;
            r->seq.ids[r->seq.n_ids++] = id;
            r->out[r->n_out++] = id;
            b->st.tokens++;
            if (r->n_out == 1)
                r->t_first = now;
            if (b->is_stop && b->is_stop(b->stop_ctx, id))
                finish(b, r, RT_FINISH_STOP, NULL);
            else if (r->n_out >= r->max_new)
                finish(b, r, RT_FINISH_LENGTH, NULL);
        }
        pthread_cond_broadcast(&b->progress);
    }
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

int rt_batch_new(rt_model *m, size_t max_batch, size_t max_queue, uint64_t kv_budget,
                 rt_batch_stop_fn is_stop, void *stop_ctx, rt_batch **out, airllm_err *err)
{
    *out = NULL;
    if (max_batch < 1)
        return airllm_errf(err, "max batch must be at least 1");
    rt_batch *b = calloc(1, sizeof *b);
    if (!b)
        return airllm_errf(err, "out of memory");
    b->m = m;
    b->max_batch = max_batch;
    b->max_queue = max_queue;
    b->kv_budget = kv_budget;
    b->is_stop = is_stop;
    b->stop_ctx = stop_ctx;
    b->run = calloc(max_batch, sizeof *b->run);
    b->seqs = calloc(max_batch, sizeof *b->seqs);
    b->logits = malloc(sizeof(float) * max_batch * (size_t)m->cfg.vocab);
    rt_sampler tmp = {0};
    if (!b->run || !b->seqs || !b->logits || rt_sampler_init(&tmp, m->cfg.vocab, err)) {
        rt_sampler_free(&tmp);
        free(b->run);
        free(b->seqs);
        free(b->logits);
        free(b);
        return airllm_errf(err, "out of memory");
    }
    b->cand = tmp.buf;
    free(tmp.seen); /* requests carry no repeat penalty: only the buffer is kept */
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->progress, NULL);
    if (pthread_create(&b->thread, NULL, engine, b)) {
        rt_batch_free(b);
        return airllm_errf(err, "cannot start the engine thread");
    }
    b->started = true;
    *out = b;
    return 0;
}

int rt_batch_submit(rt_batch *b, rt_breq *r, airllm_err *err)
{
    if (r->n_prompt == 0 || r->max_new == 0)
        return airllm_errf(err, "empty prompt or no tokens to generate");
    int32_t *out = malloc(sizeof(int32_t) * r->max_new);
    if (!out)
        return airllm_errf(err, "out of memory");
    pthread_mutex_lock(&b->lock);
    int rc = 0;
    if (b->closing)
        rc = airllm_errf(err, "the server is shutting down");
    /* Free places in the batch take requests too (they wait in the queue
     * only until the next step boundary); max_queue counts those beyond. */
    else if (b->n_queued >= b->max_queue + (b->max_batch - (b->n_run < b->max_batch
                                                                 ? b->n_run : b->max_batch)))
        rc = airllm_errf(err, "the queue is full (%zu requests waiting)", b->n_queued);
    if (rc) {
        b->st.rejected++;
        pthread_mutex_unlock(&b->lock);
        free(out);
        return -1;
    }
    r->out = out;
    r->n_out = 0;
    r->queued = true;
    r->running = r->done = r->cancel = false;
    r->finish = RT_FINISH_NONE;
    r->error[0] = 0;
    r->t_submit = airllm_now();
    r->t_start = r->t_first = r->t_end = 0;
    r->next = NULL;
    if (b->q_tail)
        b->q_tail->next = r;
    else
        b->q_head = r;
    b->q_tail = r;
    b->n_queued++;
    b->st.requests++;
    b->st.queued = b->n_queued;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

size_t rt_batch_wait(rt_batch *b, rt_breq *r, size_t have, bool *done, double timeout_s)
{
    struct timespec until;
    if (timeout_s >= 0) {
        clock_gettime(CLOCK_REALTIME, &until);
        double t = (double)until.tv_sec + until.tv_nsec * 1e-9 + timeout_s;
        until.tv_sec = (time_t)t;
        until.tv_nsec = (long)((t - (double)until.tv_sec) * 1e9);
    }
    pthread_mutex_lock(&b->lock);
    while (r->n_out <= have && !r->done) {
        if (timeout_s < 0)
            pthread_cond_wait(&b->progress, &b->lock);
        else if (pthread_cond_timedwait(&b->progress, &b->lock, &until) == ETIMEDOUT)
            break;
    }
    size_t n = r->n_out;
    *done = r->done;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void rt_batch_cancel(rt_batch *b, rt_breq *r)
{
    pthread_mutex_lock(&b->lock);
    r->cancel = true;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
}

void rt_batch_release(rt_batch *b, rt_breq *r)
{
    pthread_mutex_lock(&b->lock);
    if (!r->done) {
        r->cancel = true;
        pthread_cond_signal(&b->work);
        while (!r->done)
            pthread_cond_wait(&b->progress, &b->lock);
    }
    pthread_mutex_unlock(&b->lock);
    free(r->out);
    r->out = NULL;
}

void rt_batch_get_stats(rt_batch *b, rt_batch_stats *s)
{
    pthread_mutex_lock(&b->lock);
    *s = b->st;
    pthread_mutex_unlock(&b->lock);
}

void rt_batch_drain(rt_batch *b)
{
    pthread_mutex_lock(&b->lock);
    b->closing = true;
    pthread_cond_signal(&b->work);
    pthread_mutex_unlock(&b->lock);
    if (b->started)
        pthread_join(b->thread, NULL);
    b->started = false;
}

void rt_batch_free(rt_batch *b)
{
    if (!b)
        return;
    rt_batch_drain(b);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->progress);
    rt_sampler tmp = {.buf = b->cand};
    rt_sampler_free(&tmp);
    free(b->run);
    free(b->seqs);
    free(b->logits);
    free(b);
}
