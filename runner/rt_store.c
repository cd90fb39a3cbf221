/* The unit store: which units stay in memory and how the others stream.
 *
 * Resident units are read once at startup into their own slot. The other
 * units ("streamed") share two slots: while the model computes with one, a
 * prefetch thread reads the next streamed unit into the other, cycling
 * through them in execution order and wrapping around to the first streamed
 * unit of the next forward pass. Slots are allocated once, sized for the
 * largest streamed unit, and reused: no allocation per layer.
 *
 * A streamed raw or quantized unit of the CPU backend is mapped instead of
 * read (zero-copy, rt_map.c): the model computes on the page cache in
 * place, and the slot holds the mapping until its next unit.
 *
 * Otherwise a load reads the whole unit file with pread (or O_DIRECT).
 * Either way it parses the header from the bytes and checks it against
 * the header seen at startup (so a file swapped or damaged since is
 * caught), checks the bytes (--verify-load: by default each tensor's XXH3
 * from the format 1.2 check block, before anything is handed to compute;
 * or the file's SHA-256 against the manifest), then decodes what the
 * kernels cannot use as stored: zstd tensors into the slot's decode area,
 * double-quantized scales into its absmax area. Quantized codes and raw
 * tensors are used in place, never widened. */
#include "rt_store_impl.h"

#include <errno.h>
#include <math.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airllm_bytes.h"
#include "airllm_codec.h"
#include "airllm_hash.h"
#include "airllm_io.h"
#include "airllm_quant.h"

/* Bytes a slot needs for unit u: the file, the decoded zstd tensors, the
 * double-quant absmax. */
static int unit_needs(rt_unit *u, airllm_err *err)
{
    u->need_buf = (size_t)u->file_size;
    u->need_dec = 0;
    u->need_absmax = 0;
    u->dec_off = calloc(u->hdr.n_tensors + 1, sizeof *u->dec_off);
    u->abs_off = calloc(u->hdr.n_tensors + 1, sizeof *u->abs_off);
    if (!u->dec_off || !u->abs_off)
        return airllm_errf(err, "out of memory");
    for (uint32_t i = 0; i < u->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &u->hdr.tensors[i];
        u->moe |= rt_is_expert(t->name);
        u->dec_off[i] = u->need_dec;
        u->abs_off[i] = u->need_absmax;
        if (t->encoding == AIRLLM_ENC_ZSTD) {
            u->need_dec += (size_t)airllm_align_up(t->raw_len, 64);
        } else if (airllm_encoding_is_quant(t->encoding)) {
            airllm_ct_qlayout l;
            if (airllm_ct_tensor_qlayout(t, &l, err))
                return airllm_err_prefix(err, "%s: %s", u->file, t->name);
            if (l.double_quant)
                u->need_absmax += (size_t)airllm_align_up(l.nblocks, 16);
        }
    }
    return 0;
}

static void *mem_alloc(const rt_store *s, size_t bytes, size_t align)
{
    if (s->alloc.alloc)
        return s->alloc.alloc(bytes, s->alloc.ctx);
    void *p;
    return posix_memalign(&p, align, bytes) == 0 ? p : NULL;
}

static void mem_free(const rt_store *s, void *p)
{
    if (p && s->alloc.free)
        s->alloc.free(p, s->alloc.ctx);
    else
        free(p);
}

static void slot_free(const rt_store *s, rt_slot *sl)
{
    rt_map_close(&sl->map);
    mem_free(s, sl->buf);
    mem_free(s, sl->dec);
    mem_free(s, sl->absmax);
    free(sl->tensors);
    memset(sl, 0, sizeof *sl);
    sl->unit = -1;
}

static int slot_alloc(const rt_store *s, rt_slot *sl, size_t buf, size_t dec, size_t absmax,
                      size_t n_tensors, airllm_err *err)
{
    memset(sl, 0, sizeof *sl);
    sl->unit = -1;
    buf = (size_t)airllm_align_up(buf ? buf : 1, AIRLLM_CT_ALIGN);
    sl->buf = mem_alloc(s, buf, AIRLLM_CT_ALIGN);
    sl->cap = buf;
    if (dec)
        sl->dec = mem_alloc(s, dec, 64);
    sl->dec_cap = dec;
    if (absmax)
        sl->absmax = mem_alloc(s, absmax * sizeof(float), 64);
    sl->absmax_cap = absmax;
    sl->tensors = calloc(n_tensors ? n_tensors : 1, sizeof *sl->tensors);
    if (!sl->buf || (dec && !sl->dec) || (absmax && !sl->absmax) || !sl->tensors) {
        slot_free(s, sl);
        return airllm_errf(err, "out of memory for a %zu-byte layer buffer", buf + dec);
    }
    return 0;
}

/* Whether n floats are all finite: |bits| below the infinity pattern, the
 * largest found with four independent maxima and no early exit (a
 * 7B-shaped nf4 layer has 3.2 M block scales; an isfinite loop with a
 * return in it took 7% of a streamed decode's samples). */
static bool scales_finite(const float *a, uint64_t n)
{
    uint32_t m[4] = {0, 0, 0, 0};
    uint64_t b = 0;
    for (; b + 4 <= n; b += 4) {
        uint32_t x[4];
        memcpy(x, a + b, sizeof x); /* the bits, without type punning */
        for (int k = 0; k < 4; k++)
            m[k] = (x[k] & 0x7fffffffu) > m[k] ? (x[k] & 0x7fffffffu) : m[k];
    }
    for (; b < n; b++) {
        uint32_t x;
        memcpy(&x, a + b, sizeof x);
        m[0] = (x & 0x7fffffffu) > m[0] ? (x & 0x7fffffffu) : m[0];
    }
    uint32_t top = m[0];
    for (int k = 1; k < 4; k++)
        top = m[k] > top ? m[k] : top;
    return top < 0x7f800000u; /* the infinity pattern; NaNs are above it */
}

/* Builds tensor i's view from the bytes in sl->bytes: zstd decoded into
 * the slot's decode area, double-quant scales decompressed, the rest in
 * place. scales_known: the scales were found finite at an earlier load of
 * this unit, and this load's check (fast or full, before any compute)
 * proves the bytes unchanged or the user turned the checks off
 * (--verify-load off), so they are not scanned again. */
static int tensor_decode(const rt_unit *u, rt_slot *sl, uint32_t i, const char *path,
                         bool scales_known, airllm_err *err)
{
    const airllm_ct_tensor *t = &u->hdr.tensors[i];
    rt_tensor *v = &sl->tensors[i];
    const uint8_t *stored = sl->bytes + t->offset;
    int rc = 0;
    if (t->encoding == AIRLLM_ENC_RAW) {
        v->data = stored;
    } else if (t->encoding == AIRLLM_ENC_ZSTD) {
        uint8_t *dst = sl->dec + u->dec_off[i];
        unsigned w = t->enc_param[0];
        uint8_t *scratch = w ? malloc(t->enc_param[1]) : NULL;
        if (w && !scratch)
            return airllm_errf(err, "out of memory");
        rc = airllm_zstd_tensor_decode(dst, t->raw_len, stored, t->stored_len, w,
                                       t->enc_param[1], scratch, err);
        free(scratch);
        if (rc)
            return airllm_err_prefix(err, "%s: %s", path, t->name);
        v->data = dst;
    } else {
        airllm_ct_qlayout l;
        if (airllm_ct_tensor_qlayout(t, &l, err))
            return airllm_err_prefix(err, "%s: %s", path, t->name);
        v->data = stored;
        v->block = l.block;
        if (l.double_quant) {
            float *a = sl->absmax + u->abs_off[i];
            if (airllm_ct_quant_absmax(&l, stored + l.scales_off, a, err))
                return airllm_err_prefix(err, "%s: %s", path, t->name);
            v->absmax = a;
        } else {
            /* Stored little-endian at a 64-byte aligned offset: used in
             * place on a little-endian host, checked to be finite. */
            v->absmax = (const float *)(const void *)(stored + l.scales_off);
            if (!scales_known && !scales_finite(v->absmax, l.nblocks)) {
                for (uint64_t b = 0; b < l.nblocks; b++)
                    if (!isfinite(v->absmax[b]))
                        return airllm_errf(err, "%s: %s: block %llu scale is not finite", path,
                                           t->name, (unsigned long long)b);
            }
        }
    }
    v->loaded = true;
    return 0;
}


/* Reads unit ui into sl and builds its tensor views. A streamed MoE layer
 * (without --verify-load, which needs every byte) is read without its
 * experts: the model fetches the ones its router picks (rt_store_ensure). */
/* Whether a streamed load may leave its fast check to rt_store_acquire and
 * the prefetch thread's idle time (deferred_check): only where nothing is
 * decoded from the stored bytes first (zstd frames are checked before they
 * are decompressed) and the whole file is read (not a partial MoE load). */
static bool can_defer_check(const rt_store *s, const rt_unit *u, bool partial)
{
    if (s->verify_load != RT_VERIFY_FAST || !u->hdr.has_checks || partial || s->readers > 1)
        return false;
    for (uint32_t i = 0; i < u->hdr.n_tensors; i++)
        if (u->hdr.tensors[i].encoding == AIRLLM_ENC_ZSTD)
            return false;
    return true;
}

/* defer: the caller checks the tensors afterwards (deferred_check); set to
 * whether it must, or NULL to check here. */
int rt_slot_load(rt_store *s, size_t ui, rt_slot *sl, bool *defer, airllm_err *err)
{
    rt_unit *u = &s->units[ui];
    char path[4096];
    if ((!u->mapped && u->need_buf > sl->cap) || u->need_dec > sl->dec_cap || u->need_absmax > sl->absmax_cap)
        return airllm_errf(err, "internal error: %s does not fit its slot", u->file);
    bool partial = u->moe && !u->resident && !u->external && s->verify_load != RT_VERIFY_FULL;
    bool deferred = defer && can_defer_check(s, u, partial);
    if (defer)
        *defer = deferred;
    double t0 = airllm_now();
    rt_map_close(&sl->map); /* the slot's previous unit, if it was mapped */
    sl->bytes = sl->buf;
    int rc = 0;
    uint64_t bytes = 0;
    bool checked = false;
    int fd = -1;
    if (u->mapped) {
        /* Zero-copy: the file mapped, its size checked on the descriptor
         * first (rt_map.c). fast: the XXH3 pass touches every page (here,
         * or deferred to whichever thread is free), so only the header is
         * faulted in now; full: the SHA-256 pass touches it; off (and an
         * unchecked 1.0/1.1 file under fast): fault the whole file in now,
         * in the prefetch thread, ahead of the compute. */
        if (airllm_path_join(path, 4096, s->dir, u->file, err) ||
            rt_map_open(&sl->map, path, u->file_size, err))
            return -1;
        sl->bytes = sl->map.base;
        bytes = u->file_size;
        char step[96];
        snprintf(step, sizeof step, "mapped %s", u->file);
        airllm_step(step); /* tests change the file here (AIRLLM_FAULT_HOOK) */
        bool whole = s->verify_load == RT_VERIFY_OFF ||
                     (s->verify_load == RT_VERIFY_FAST && !u->hdr.has_checks);
        /* The parse below reads the header and the check block (at the end
         * of a 1.2 file): fault those in first, so that a file cut short
         * is an error here. */
        rc = rt_map_populate(&sl->map, 0, whole ? sl->map.len : (size_t)u->hdr.data_start, path,
                             err);
        if (!rc && !whole && u->hdr.check_offset)
            rc = rt_map_populate(&sl->map, (size_t)u->hdr.check_offset,
                                 sl->map.len - (size_t)u->hdr.check_offset, path, err);
    } else {
        fd = rt_open_unit(s, u, path, err);
        if (fd < 0)
            return -1;
        struct stat st;
        if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != u->file_size)
            rc = airllm_errf(err, "%s: size changed since it was opened (now %lld bytes, the "
                                  "manifest says %llu)",
                             path, (long long)st.st_size, (unsigned long long)u->file_size);
        /* The file size and every tensor offset are multiples of 4096, so
         * these reads also suit O_DIRECT. fast, one reader: hashed as it is
         * read (page cache: 2 MiB chunks hashed while hot; O_DIRECT: 16 MiB
         * pieces read by a thread, hashed behind it, as 2 MiB direct reads
         * one at a time keep too few requests in flight: +60% ms/token
         * streamed). Several readers share the tensors out after the read
         * (rt_check_tensors). */
        checked = !rc && !partial && !deferred && s->verify_load == RT_VERIFY_FAST &&
                  u->hdr.has_checks && s->readers <= 1;
        if (checked) {
            rc = s->direct ? rt_read_checked_direct(fd, sl->buf, u, path, err)
                           : rt_read_checked(fd, sl->buf, u, path, err);
            bytes = u->file_size;
        } else if (!rc && !partial) {
            rc = rt_read_parallel(fd, sl->buf, (size_t)u->file_size, s->readers, path, err);
            bytes = u->file_size;
        } else if (!rc) {
            rc = airllm_pread_full(fd, sl->buf, (size_t)u->hdr.data_start, 0, path, err);
            bytes = u->hdr.data_start;
            for (uint32_t i = 0; !rc && i < u->hdr.n_tensors; i++)
                if (!rt_is_expert(u->hdr.tensors[i].name))
                    rc = rt_read_tensor(fd, u, sl, &u->hdr.tensors[i], path, &bytes, err);
        }
    }
    if (fd >= 0)
        close(fd);
    if (rc)
        return -1;
    double t1 = airllm_now();
    sl->read_s = t1 - t0;
    pthread_mutex_lock(&s->lock); /* the prefetch thread and the model both load */
    s->bytes_read += bytes;
    pthread_mutex_unlock(&s->lock);
    airllm_ct_header h;
    size_t hlen = partial ? (size_t)u->hdr.data_start : (size_t)u->file_size;
    if (airllm_ct_parse(sl->bytes, hlen, u->file_size, &h, err))
        return airllm_err_prefix(err, "%s", path);
    bool same = h.n_tensors == u->hdr.n_tensors && h.data_start == u->hdr.data_start;
    for (uint32_t i = 0; same && i < h.n_tensors; i++) {
        const airllm_ct_tensor *a = &h.tensors[i], *b = &u->hdr.tensors[i];
        same = strcmp(a->name, b->name) == 0 && a->encoding == b->encoding &&
               a->offset == b->offset && a->stored_len == b->stored_len &&
               a->raw_len == b->raw_len && a->dtype == b->dtype &&
               memcmp(a->enc_param, b->enc_param, sizeof a->enc_param) == 0 &&
               (!h.has_checks || !u->hdr.has_checks || a->xxh3 == b->xxh3);
    }
    if (!same) {
        airllm_ct_free(&h);
        return airllm_errf(err, "%s: header changed since the model was opened", path);
    }
    /* A whole read carries its check block, applied by the parse; a
     * partial one (the header region) is checked with the startup header's
     * block, whose entries it was just compared with. */
    const airllm_ct_header *hc = h.has_checks ? &h : &u->hdr;
    if (checked && !h.has_checks) {
        airllm_ct_free(&h);
        return airllm_errf(err, "%s: header changed since the model was opened", path);
    }
    if (!checked && !deferred && s->verify_load == RT_VERIFY_FAST && hc->has_checks &&
        rt_check_tensors(s, hc, sl->bytes, partial, path, err)) {
        airllm_ct_free(&h);
        return -1;
    }
    if (s->verify_load == RT_VERIFY_FULL) {
        char sha[AIRLLM_SHA256_HEX];
        if (rt_map_sha256(sl->bytes, (size_t)u->file_size, path, sha, err)) {
            airllm_ct_free(&h);
            return -1;
        }
        if (strcmp(sha, u->sha256) != 0) {
            /* a 1.2 file also says which tensor is damaged */
            airllm_err e2;
            if (hc->has_checks && rt_check_tensors(s, hc, sl->bytes, false, "first damage", &e2)) {
                airllm_ct_free(&h);
                return airllm_errf(err, "%s: SHA-256 differs from the manifest (%s)", path,
                                   e2.msg);
            }
            airllm_ct_free(&h);
            return airllm_errf(err, "%s: SHA-256 differs from the manifest: the file is "
                                    "corrupted",
                               path);
        }
    }
    airllm_ct_free(&h);
    sl->n_tensors = u->hdr.n_tensors;
    sl->unit = -1;
    /* Under off nothing proves a reload unchanged, but nothing else about
     * the bytes is checked either: a rescan would only turn one kind of
     * silent damage (a scale made non-finite: NaN logits, never a wild
     * access, since no kernel indexes by a scale) into an error, at a
     * pass over every scale of every streamed layer per step (a 7B nf4
     * layer has 3.2 M). The first load still refuses a file whose scales
     * were never finite. */
    bool scales_known = u->scales_ok && (s->verify_load == RT_VERIFY_OFF || u->hdr.has_checks);
    for (uint32_t i = 0; i < u->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &u->hdr.tensors[i];
        rt_tensor *v = &sl->tensors[i];
        memset(v, 0, sizeof *v);
        v->name = t->name;
        v->index = i;
        v->dtype = t->dtype;
        v->enc = t->encoding == AIRLLM_ENC_ZSTD ? AIRLLM_ENC_RAW : t->encoding;
        v->rows = t->ndim >= 2 ? t->shape[0] : 1;
        v->cols = t->ndim >= 2 ? t->shape[1] : (t->ndim == 1 ? t->shape[0] : 1);
        for (unsigned d = 2; d < t->ndim; d++)
            v->cols *= t->shape[d];
        if (partial && rt_is_expert(t->name))
            continue;
        if (tensor_decode(u, sl, i, path, scales_known, err))
            return -1;
    }
    /* Only the thread loading a streamed unit reads or writes this (the
     * prefetch thread, or the model without prefetch). */
    u->scales_ok = true;
    sl->unit = (long)ui;
    sl->decode_s = airllm_now() - t1;
    if (u->mapped) {
        char step[96];
        snprintf(step, sizeof step, "ready %s", u->file);
        airllm_step(step); /* tests change the file here (AIRLLM_FAULT_HOOK) */
    }
    return 0;
}

int rt_store_ensure(rt_store *s, rt_slot *sl, const rt_tensor *t, airllm_err *err)
{
    if (t->loaded)
        return 0;
    if (sl->unit < 0)
        return airllm_errf(err, "internal error: expert of an empty slot");
    const rt_unit *u = &s->units[sl->unit];
    char path[4096];
    double t0 = airllm_now();
    int fd = rt_open_unit(s, u, path, err);
    if (fd < 0)
        return -1;
    uint64_t bytes = 0;
    int rc = rt_read_tensor(fd, u, sl, &u->hdr.tensors[t->index], path, &bytes, err);
    close(fd);
    if (!rc && s->verify_load == RT_VERIFY_FAST && u->hdr.has_checks &&
        airllm_ct_check_tensor(&u->hdr, t->index, sl->buf + u->hdr.tensors[t->index].offset,
                               err))
        rc = airllm_err_prefix(err, "%s", path);
    if (!rc)
        rc = tensor_decode(u, sl, t->index, path, false, err);
    pthread_mutex_lock(&s->lock); /* the prefetch thread and the model both load */
    s->bytes_read += bytes;
    pthread_mutex_unlock(&s->lock);
    s->expert_read_s += airllm_now() - t0;
    return rc;
}

const rt_tensor *rt_slot_need(const rt_slot *sl, const char *unit, const char *suffix,
                              uint64_t rows, uint64_t cols, airllm_err *err)
{
    const rt_tensor *t = rt_slot_find(sl, suffix);
    if (!t) {
        airllm_errf(err, "%s: no tensor \"*.%s\"", unit, suffix);
        return NULL;
    }
    if (t->rows != rows || t->cols != cols) {
        airllm_errf(err, "%s: %s is [%llu, %llu], expected [%llu, %llu]", unit, t->name,
                    (unsigned long long)t->rows, (unsigned long long)t->cols,
                    (unsigned long long)rows, (unsigned long long)cols);
        return NULL;
    }
    return t;
}

const rt_tensor *rt_slot_find(const rt_slot *sl, const char *suffix)
{
    size_t k = strlen(suffix);
    for (size_t i = 0; i < sl->n_tensors; i++) {
        const char *n = sl->tensors[i].name;
        size_t l = strlen(n);
        if (l >= k && strcmp(n + l - k, suffix) == 0 && (l == k || n[l - k - 1] == '.'))
            return &sl->tensors[i];
    }
    return NULL;
}


/* ---- open / close ---- */

int rt_store_scan(rt_store *s, const char *dir, bool prefetch, bool direct,
                  rt_verify verify_load, airllm_err *err)
{
    memset(s, 0, sizeof *s);
    s->embed_unit = s->norm_unit = s->head_unit = s->first_layer_unit = -1;
    s->sslots[0].unit = s->sslots[1].unit = -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->prefetch = prefetch;
    s->direct = direct;
    s->verify_load = verify_load;
    s->readers = 1;
    /* Zero-copy streaming unless AIRLLM_STREAM_READ=pread (measurement:
     * scripts/bench_stream.sh compares the two in one run). */
    const char *sr = getenv("AIRLLM_STREAM_READ");
    s->map_streamed = !(sr && strcmp(sr, "pread") == 0);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cond, NULL);
    if (airllm_manifest_load(dir, &s->mf, err))
        return -1;
    if (!s->mf.complete)
        return airllm_errf(err, "%s: the manifest is not marked complete", dir);
    s->units = calloc(s->mf.n_units, sizeof *s->units);
    s->unit_read_s = calloc(s->mf.n_units, sizeof(double));
    s->unit_decode_s = calloc(s->mf.n_units, sizeof(double));
    s->unit_wait_s = calloc(s->mf.n_units, sizeof(double));
    s->unit_compute_s = calloc(s->mf.n_units, sizeof(double));
    s->stream = calloc(s->mf.n_units + 2, sizeof *s->stream);
    if (!s->units || !s->unit_read_s || !s->unit_decode_s || !s->unit_wait_s ||
        !s->unit_compute_s || !s->stream)
        return airllm_errf(err, "out of memory");
    for (size_t i = 0; i < s->mf.n_units; i++) {
        const airllm_mf_unit *mu = &s->mf.units[i];
        if (!mu->file)
            continue; /* a tied LM head: the embedding serves */
        rt_unit *u = &s->units[s->n_units];
        snprintf(u->file, sizeof u->file, "%s", mu->file);
        u->kind = mu->kind;
        u->layer = mu->layer;
        u->file_size = mu->size;
        memcpy(u->sha256, mu->sha256, sizeof u->sha256);
        char path[4096];
        struct stat st;
        if (airllm_path_join(path, sizeof path, dir, mu->file, err))
            return -1;
        if (stat(path, &st) != 0)
            return airllm_errf(err, "%s: %s", path, strerror(errno));
        if ((uint64_t)st.st_size != mu->size)
            return airllm_errf(err, "%s: %lld bytes, the manifest says %llu: truncated or "
                                    "changed",
                               path, (long long)st.st_size, (unsigned long long)mu->size);
        if (airllm_ct_read_file(path, &u->hdr, err))
            return -1;
        /* Counted before the checks below, so that rt_store_close frees the
         * header (and unit_needs' tables) of a unit they refuse. */
        size_t idx = s->n_units++;
        if (!u->hdr.has_checks)
            s->n_unchecked++;
        if (u->hdr.unit_kind != mu->kind || u->hdr.layer_index != mu->layer)
            return airllm_errf(err, "%s: header and manifest disagree on the unit", path);
        if (unit_needs(u, err))
            return -1;
        if (mu->kind == AIRLLM_UNIT_EMBED)
            s->embed_unit = (long)idx;
        else if (mu->kind == AIRLLM_UNIT_NORM)
            s->norm_unit = (long)idx;
        else if (mu->kind == AIRLLM_UNIT_LM_HEAD)
            s->head_unit = (long)idx;
        else if (s->first_layer_unit < 0)
            s->first_layer_unit = (long)idx;
    }
    if (s->embed_unit < 0 || s->norm_unit < 0 || s->first_layer_unit < 0)
        return airllm_errf(err, "%s: the model needs embed, layer and norm units", dir);
    return 0;
}

bool rt_store_rows_readable(const rt_store *s)
{
    const rt_unit *eu = &s->units[s->embed_unit];
    bool ok = false;
    for (uint32_t i = 0; i < eu->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &eu->hdr.tensors[i];
        if (t->ndim != 2)
            continue;
        airllm_ct_qlayout l;
        ok = t->encoding == AIRLLM_ENC_RAW ||
             (airllm_encoding_is_quant(t->encoding) &&
              airllm_ct_tensor_qlayout(t, &l, NULL) == 0 && !l.double_quant &&
              t->shape[1] % l.block == 0);
    }
    return ok;
}

uint64_t rt_unit_bytes(const rt_unit *u)
{
    return u->need_buf + u->need_dec + 4 * (uint64_t)u->need_absmax;
}

int rt_store_slot_new(rt_store *s, const size_t *units, size_t n, rt_slot *sl, airllm_err *err)
{
    size_t buf = 0, dec = 0, abs = 0, nt = 0;
    for (size_t i = 0; i < n; i++) {
        const rt_unit *u = &s->units[units[i]];
        buf = u->need_buf > buf ? u->need_buf : buf;
        dec = u->need_dec > dec ? u->need_dec : dec;
        abs = u->need_absmax > abs ? u->need_absmax : abs;
        nt = u->hdr.n_tensors > nt ? u->hdr.n_tensors : nt;
    }
    return slot_alloc(s, sl, buf, dec, abs, nt, err);
}

int rt_store_load(rt_store *s, size_t ui, rt_slot *sl, airllm_err *err)
{
    if (rt_slot_load(s, ui, sl, NULL, err))
        return -1;
    /* the prefetch thread may be updating the same counters */
    pthread_mutex_lock(&s->lock);
    s->read_s += sl->read_s;
    s->decode_s += sl->decode_s;
    s->unit_read_s[ui] += sl->read_s;
    s->unit_decode_s[ui] += sl->decode_s;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

void rt_store_slot_free(rt_store *s, rt_slot *sl)
{
    slot_free(s, sl);
}
int rt_store_start(rt_store *s, uint64_t budget, const rt_allocator *alloc, airllm_err *err)
{
    if (alloc)
        s->alloc = *alloc;
    size_t max_tensors = 1;
    for (size_t i = 0; i < s->n_units; i++)
        if (s->units[i].hdr.n_tensors > max_tensors)
            max_tensors = s->units[i].hdr.n_tensors;
    /* Residency: layers, the norm and the head in execution order while
     * the budget lasts, then the embedding (streamed, it costs only the
     * rows the tokens need, unless the head is tied to it). */
    uint64_t used = 0, largest = 0;
    for (size_t i = 0; i < s->n_units; i++)
        if (!s->units[i].external && rt_unit_bytes(&s->units[i]) > largest)
            largest = rt_unit_bytes(&s->units[i]);
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < s->n_units; i++) {
            rt_unit *u = &s->units[i];
            bool embed_pass = (long)i == s->embed_unit;
            if (embed_pass != (pass == 1) || u->external)
                continue;
            uint64_t need = rt_unit_bytes(u);
            /* A tiny unit (the final norm: 16 KiB of a 7B model's 146 MiB
             * layers) stays resident past the budget: streamed, it holds
             * one of the two slots while the last layer computes, so the
             * head could only be read after it, with nothing to overlap
             * (measured: 25 ms of each 260 ms batch-16 step of the 7B nf4
             * model waited for the head). */
            bool tiny = need <= RT_TINY_UNIT && need <= largest / 64;
            if (budget != UINT64_MAX && used + need > budget && !tiny)
                continue;
            u->resident = true;
            used += need;
        }
    s->resident_bytes = used;
    /* The embedding: rows are read on demand when its matrix is raw or
     * plainly quantized with whole blocks per row; otherwise it streams
     * whole at the start of each pass. A tied head streams it (again) at
     * the end, unless a device backend holds it. The stream list is in the
     * order the model takes units. */
    rt_unit *eu = &s->units[s->embed_unit];
    s->embed_rows = rt_store_rows_readable(s) && !eu->resident;
    if (eu->external && !s->embed_rows)
        return airllm_errf(err, "internal error: %s is held by the device but its rows "
                                "cannot be read from the file",
                           eu->file);
    if (s->embed_rows && rt_check_rows_file(s, eu, err))
        return -1;
    if (!eu->resident && !s->embed_rows)
        s->stream[s->n_stream++] = (size_t)s->embed_unit;
    for (size_t i = 0; i < s->n_units; i++)
        if (!s->units[i].resident && !s->units[i].external && (long)i != s->embed_unit)
            s->stream[s->n_stream++] = i;
    if (!eu->resident && !eu->external && s->head_unit < 0)
        s->stream[s->n_stream++] = (size_t)s->embed_unit;
    size_t max_buf = 0, max_dec = 0, max_abs = 0;
    for (size_t i = 0; i < s->n_units; i++) {
        rt_unit *u = &s->units[i];
        if (u->external)
            continue;
        if (u->resident) {
            u->slot = calloc(1, sizeof *u->slot);
            if (!u->slot || rt_store_slot_new(s, &i, 1, u->slot, err))
                return u->slot ? -1 : airllm_errf(err, "out of memory");
            if (rt_store_load(s, i, u->slot, err))
                return -1;
            continue;
        }
        /* Mapped in place, the CPU backend's streamed units need no read
         * buffer: the model computes on the page cache. Not with --direct
         * (O_DIRECT bypasses the page cache on purpose), not for a device
         * backend's pinned slots (copied to the device from there), not
         * for zstd tensors (decoded anyway) and not for MoE layers (their
         * experts are read one by one when the router picks them). */
        bool zstd = false;
        for (uint32_t t = 0; t < u->hdr.n_tensors; t++)
            zstd |= u->hdr.tensors[t].encoding == AIRLLM_ENC_ZSTD;
        u->mapped = s->map_streamed && !s->direct && !s->alloc.alloc && !zstd && !u->moe;
        if (!u->mapped)
            max_buf = u->need_buf > max_buf ? u->need_buf : max_buf;
        max_dec = u->need_dec > max_dec ? u->need_dec : max_dec;
        max_abs = u->need_absmax > max_abs ? u->need_absmax : max_abs;
    }
    if (s->n_stream) {
        for (int k = 0; k < (s->prefetch ? 2 : 1); k++)
            if (slot_alloc(s, &s->sslots[k], max_buf, max_dec, max_abs, max_tensors, err))
                return -1;
        if (s->prefetch) {
            if (pthread_create(&s->thread, NULL, rt_prefetch_main, s) != 0)
                return airllm_errf(err, "cannot start the prefetch thread");
            s->thread_started = true;
        }
    }
    return 0;
}

void rt_store_close(rt_store *s)
{
    rt_store_stop(s);
    for (size_t i = 0; s->units && i < s->n_units; i++) {
        if (s->units[i].slot) {
            slot_free(s, s->units[i].slot);
            free(s->units[i].slot);
        }
        airllm_ct_free(&s->units[i].hdr);
        free(s->units[i].dec_off);
        free(s->units[i].abs_off);
    }
    slot_free(s, &s->sslots[0]);
    slot_free(s, &s->sslots[1]);
    free(s->units);
    free(s->stream);
    free(s->unit_read_s);
    free(s->unit_decode_s);
    free(s->unit_wait_s);
    free(s->unit_compute_s);
    airllm_manifest_free(&s->mf);
    pthread_mutex_destroy(&s->lock);
    pthread_cond_destroy(&s->cond);
}
