/* The prefetch thread and the model's side of streaming: the thread loads
 * the next streamed unit into the free one of two slots while the model
 * computes with the other (rt_store_acquire / rt_store_release), and
 * either of them hashes a slot whose fast check was deferred. The store's
 * lock owns the slot states and the check counters (rt.h). */
#include "rt_store_impl.h"

#include <stdio.h>
#ifdef __linux__
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "airllm_io.h"

/* Hashes unclaimed tensors of streamed slot k (unit ui) until none is left
 * or one failed. Called with the lock held; released around each hash. */
static void deferred_check(rt_store *s, int k, size_t ui)
{
    const rt_unit *u = &s->units[ui];
    const uint8_t *buf = s->sslots[k].bytes; /* read or mapped */
    while (s->chk_next[k] < s->chk_n[k] && s->chk_bad[k] < 0) {
        uint32_t i = s->chk_next[k]++;
        pthread_mutex_unlock(&s->lock);
        airllm_err e;
        /* the startup header: slot_load found the file's entries and check
         * values equal to it */
        int bad = rt_map_check_tensor(&u->hdr, i, buf + u->hdr.tensors[i].offset, &e);
        pthread_mutex_lock(&s->lock);
        s->chk_done[k]++;
        if (bad && (s->chk_bad[k] < 0 || (long)i < s->chk_bad[k])) {
            s->chk_bad[k] = (long)i;
            s->chk_err[k] = e;
        }
        if (s->chk_done[k] == s->chk_next[k])
            pthread_cond_broadcast(&s->cond);
    }
}

/* When every streamed unit is mapped in place and checked on load, the
 * prefetch thread's work is page faults and the hashes, and the compute
 * threads of a batch or a prefill (all cores, rt_model.c) need the cores
 * more: at normal priority the hashes took turns with them, and each
 * matrix waited for its slowest thread (7B nf4 stream, 16 sequences:
 * nice 19 made steps 9% faster; one sequence, which leaves the prefetch
 * thread a core of its own, unchanged). Whatever the thread has not hashed when a unit is
 * needed, the model hashes itself (rt_store_acquire). Reading threads
 * (pread, O_DIRECT, zstd) keep their priority: the disk must not wait. */
static void lower_priority_if_mapped(const rt_store *s)
{
#ifdef __linux__
    for (size_t k = 0; k < s->n_stream; k++)
        if (!s->units[s->stream[k]].mapped)
            return;
    /* every unit mapped, so busy means a hash pass. Without one (load
     * checks off, or files without XXH3 check blocks under fast) the
     * thread's page faults are what keeps the model from faulting the
     * pages in itself: measured, nice 19 then made a streamed 7B nf4
     * token 1.2x slower */
    if (!rt_store_prefetch_busy(s))
        return;
    /* per thread on Linux: the thread id as the process; best effort */
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
#else
    (void)s;
#endif
}

void *rt_prefetch_main(void *arg)
{
    rt_store *s = arg;
    lower_priority_if_mapped(s);
    pthread_mutex_lock(&s->lock);
    for (;;) {
        /* Load the next unit into a free slot, never more than one pass
         * ahead of the model (two slots: at most one unit ahead). */
        int free_slot = -1;
        for (int k = 0; k < 2; k++)
            if (s->slot_state[k] == 0)
                free_slot = k;
        while (!s->stop && !s->failed && (free_slot < 0 || s->next_load > s->next_use + 1)) {
            /* Nothing to read yet: help with a loaded slot's deferred check
             * (reading comes first: from the page cache it is the slower
             * side, so the model hashes while the next unit is read). */
            int h = -1;
            for (int k = 0; k < 2; k++)
                if (s->slot_state[k] >= 2 && s->chk_next[k] < s->chk_n[k] && s->chk_bad[k] < 0)
                    h = k;
            if (h >= 0)
                deferred_check(s, h, (size_t)s->sslots[h].unit);
            else
                pthread_cond_wait(&s->cond, &s->lock);
            free_slot = -1;
            for (int k = 0; k < 2; k++)
                if (s->slot_state[k] == 0)
                    free_slot = k;
        }
        if (s->stop || s->failed)
            break;
        size_t seq = s->next_load++;
        s->slot_state[free_slot] = 1;
        s->slot_seq[free_slot] = seq;
        pthread_mutex_unlock(&s->lock);
        size_t ui = s->stream[seq % s->n_stream];
        airllm_err e;
        bool defer = false;
        int rc = rt_slot_load(s, ui, &s->sslots[free_slot], &defer, &e);
        pthread_mutex_lock(&s->lock);
        if (rc) {
            s->failed = true;
            s->load_err = e;
        } else {
            s->chk_n[free_slot] = defer ? s->units[ui].hdr.n_tensors : 0;
            s->chk_next[free_slot] = s->chk_done[free_slot] = 0;
            s->chk_bad[free_slot] = -1;
            s->slot_state[free_slot] = 2;
            s->read_s += s->sslots[free_slot].read_s;
            s->decode_s += s->sslots[free_slot].decode_s;
            s->unit_read_s[ui] += s->sslots[free_slot].read_s;
            s->unit_decode_s[ui] += s->sslots[free_slot].decode_s;
        }
        pthread_cond_broadcast(&s->cond);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

int rt_store_acquire(rt_store *s, size_t ui, rt_slot **out, airllm_err *err)
{
    rt_unit *u = &s->units[ui];
    if (u->resident) {
        *out = u->slot;
        return 0;
    }
    size_t seq = s->next_use;
    if (s->stream[seq % s->n_stream] != ui)
        return airllm_errf(err, "internal error: %s taken out of order", u->file);
    if (!s->prefetch) {
        rt_slot *sl = &s->sslots[0];
        if (rt_store_load(s, ui, sl, err))
            return -1;
        s->next_use++;
        *out = sl;
        return 0;
    }
    double t0 = airllm_now();
    pthread_mutex_lock(&s->lock);
    int k = -1;
    for (;;) {
        for (int j = 0; j < 2; j++)
            if (s->slot_state[j] == 2 && s->slot_seq[j] == seq)
                k = j;
        if (k >= 0 || s->failed)
            break;
        pthread_cond_wait(&s->cond, &s->lock);
    }
    if (k < 0) {
        *err = s->load_err;
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    s->slot_state[k] = 3;
    s->next_use++;
    pthread_cond_broadcast(&s->cond);
    /* A deferred check: hash what the prefetch thread has not claimed, and
     * wait for what it has; nothing is computed from the slot before. */
    deferred_check(s, k, ui);
    while (s->chk_done[k] != s->chk_next[k])
        pthread_cond_wait(&s->cond, &s->lock);
    if (s->chk_n[k] && s->chk_bad[k] >= 0) {
        *err = s->chk_err[k];
        char path[4096];
        if (!airllm_path_join(path, sizeof path, s->dir, u->file, NULL))
            airllm_err_prefix(err, "%s", path); /* as slot_load's messages */
        s->slot_state[k] = 0; /* not computed on; the run stops here */
        s->failed = true;
        s->load_err = *err;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return -1;
    }
    pthread_mutex_unlock(&s->lock);
    double w = airllm_now() - t0;
    s->wait_s += w;
    s->unit_wait_s[ui] += w;
    *out = &s->sslots[k];
    return 0;
}

void rt_store_release(rt_store *s, size_t ui)
{
    if (s->units[ui].resident || !s->prefetch)
        return;
    pthread_mutex_lock(&s->lock);
    for (int j = 0; j < 2; j++)
        if (s->slot_state[j] == 3 && s->sslots[j].unit == (long)ui)
            s->slot_state[j] = 0;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
}


uint64_t rt_store_bytes_read(const rt_store *s)
{
    /* the prefetch thread may still be loading; the lock is not part of the
     * store's value */
    pthread_mutex_t *mu = (pthread_mutex_t *)&s->lock;
    pthread_mutex_lock(mu);
    uint64_t b = s->bytes_read;
    pthread_mutex_unlock(mu);
    return b;
}

bool rt_store_prefetch_busy(const rt_store *s)
{
    if (!s->prefetch)
        return false;
    for (size_t k = 0; k < s->n_stream; k++) {
        const rt_unit *u = &s->units[s->stream[k]];
        if (!u->mapped)
            return true; /* a copy out of the page cache, or a decode */
        if (s->verify_load == RT_VERIFY_FULL ||
            (s->verify_load == RT_VERIFY_FAST && u->hdr.has_checks))
            return true; /* a hash pass over every byte */
    }
    return false;
}

void rt_store_stop(rt_store *s)
{
    if (!s->thread_started)
        return;
    pthread_mutex_lock(&s->lock);
    s->stop = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    s->thread_started = false;
}
