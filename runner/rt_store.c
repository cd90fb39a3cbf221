/* The unit store: which units stay in memory and how the others stream.
 *
 * Resident units are read once at startup into their own slot. The other
 * units ("streamed") share two slots: while the model computes with one, a
 * prefetch thread reads the next streamed unit into the other, cycling
 * through them in execution order and wrapping around to the first streamed
 * unit of the next forward pass. Slots are allocated once, sized for the
 * largest streamed unit, and reused: no allocation per layer.
 *
 * A load reads the whole unit file with pread (or O_DIRECT), parses its
 * header from the bytes read and checks it against the header seen at
 * startup (so a file swapped or damaged since is caught), checks it
 * (--verify-load: by default each tensor's XXH3 from the format 1.2 check
 * block, in the thread that read it, before anything is decoded or handed
 * to compute; or the file's SHA-256 against the manifest), then decodes what the
 * kernels cannot use as stored: zstd tensors into the slot's decode area,
 * double-quantized scales into its absmax area. Quantized codes and raw
 * tensors are used in place, never widened. */
#include "rt.h"

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

static bool is_expert(const char *name)
{
    return strstr(name, ".experts.") != NULL;
}

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
        u->moe |= is_expert(t->name);
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

/* Builds tensor i's view from the bytes in sl->buf: zstd decoded into the
 * slot's decode area, double-quant scales decompressed, the rest in place. */
static int tensor_decode(const rt_unit *u, rt_slot *sl, uint32_t i, const char *path,
                         airllm_err *err)
{
    const airllm_ct_tensor *t = &u->hdr.tensors[i];
    rt_tensor *v = &sl->tensors[i];
    const uint8_t *stored = sl->buf + t->offset;
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
            for (uint64_t b = 0; b < l.nblocks; b++)
                if (!isfinite(v->absmax[b]))
                    return airllm_errf(err, "%s: %s: block %llu scale is not finite", path,
                                       t->name, (unsigned long long)b);
        }
    }
    v->loaded = true;
    return 0;
}

/* The aligned file range holding tensor t (tensors start on 4096 and the
 * file ends on 4096, so the range stays inside the file). */
static int read_tensor(int fd, const rt_unit *u, rt_slot *sl, const airllm_ct_tensor *t,
                       const char *path, uint64_t *bytes, airllm_err *err)
{
    uint64_t end = airllm_align_up(t->offset + t->stored_len, AIRLLM_CT_ALIGN);
    if (end > u->file_size)
        end = u->file_size;
    if (end <= t->offset)
        return 0;
    *bytes += end - t->offset;
    return airllm_pread_full(fd, sl->buf + t->offset, (size_t)(end - t->offset), t->offset, path,
                             err);
}

/* One reader's share of read_parallel. */
typedef struct {
    int fd;
    uint8_t *buf;
    size_t len;
    uint64_t off;
    const char *path;
    int rc;
    airllm_err err;
} read_part;

static void *read_part_main(void *arg)
{
    read_part *p = arg;
    p->rc = airllm_pread_full(p->fd, p->buf, p->len, p->off, p->path, &p->err);
    return NULL;
}

/* Reads n bytes at offset 0 with up to `readers` threads, each a contiguous
 * part (multiples of 1 MiB, so O_DIRECT alignment holds): one core copying
 * out of the page cache moves 6-12 GB/s, less than a PCIe 4/5 link takes,
 * so a device backend reads with several. */
static int read_parallel(int fd, uint8_t *buf, size_t n, int readers, const char *path,
                         airllm_err *err)
{
    const size_t MIB = (size_t)1 << 20;
    if (readers > 16)
        readers = 16;
    if (readers <= 1 || n < 4 * MIB)
        return airllm_pread_full(fd, buf, n, 0, path, err);
    size_t part = (n / (size_t)readers + MIB - 1) / MIB * MIB;
    read_part p[16];
    pthread_t th[16];
    bool started[16] = {0};
    int k = 0;
    for (size_t off = 0; off < n; off += part, k++)
        p[k] = (read_part){fd, buf + off, n - off < part ? n - off : part, off, path, 0, {{0}}};
    for (int i = 1; i < k; i++)
        started[i] = pthread_create(&th[i], NULL, read_part_main, &p[i]) == 0;
    read_part_main(&p[0]);
    for (int i = 1; i < k; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            read_part_main(&p[i]); /* no thread: read it here */
    }
    for (int i = 0; i < k; i++)
        if (p[i].rc) {
            *err = p[i].err;
            return -1;
        }
    return 0;
}

/* One checker's share of check_tensors: tensors first, first + step, ... */
typedef struct {
    const airllm_ct_header *hc;
    const uint8_t *buf;
    bool skip_experts;
    uint32_t first, step;
    long bad; /* the first tensor that failed, -1 */
    airllm_err err;
} check_part;

static void *check_part_main(void *arg)
{
    check_part *p = arg;
    p->bad = -1;
    for (uint32_t i = p->first; i < p->hc->n_tensors; i += p->step) {
        const airllm_ct_tensor *t = &p->hc->tensors[i];
        if (p->skip_experts && is_expert(t->name))
            continue; /* not read: rt_store_ensure checks them */
        if (airllm_ct_check_tensor(p->hc, i, p->buf + t->offset, &p->err)) {
            p->bad = (long)i;
            break;
        }
    }
    return NULL;
}

/* Checks the XXH3 of every tensor read into buf against hc's check block,
 * with as many threads as read the unit (XXH3 runs at tens of GB/s on one
 * core, but a device backend reads with several to keep up with the bus).
 * The message names the file and the first damaged tensor. */
static int check_tensors(const rt_store *s, const airllm_ct_header *hc, const uint8_t *buf,
                         bool skip_experts, const char *path, airllm_err *err)
{
    int k = s->readers < 1 ? 1 : s->readers > 16 ? 16 : s->readers;
    if ((uint32_t)k > hc->n_tensors)
        k = hc->n_tensors ? (int)hc->n_tensors : 1;
    check_part p[16];
    pthread_t th[16];
    bool started[16] = {0};
    for (int i = 0; i < k; i++)
        p[i] = (check_part){hc, buf, skip_experts, (uint32_t)i, (uint32_t)k, -1, {{0}}};
    for (int i = 1; i < k; i++)
        started[i] = pthread_create(&th[i], NULL, check_part_main, &p[i]) == 0;
    check_part_main(&p[0]);
    for (int i = 1; i < k; i++) {
        if (started[i])
            pthread_join(th[i], NULL);
        else
            check_part_main(&p[i]);
    }
    int worst = -1;
    for (int i = 0; i < k; i++)
        if (p[i].bad >= 0 && (worst < 0 || p[i].bad < p[worst].bad))
            worst = i;
    if (worst < 0)
        return 0;
    *err = p[worst].err;
    return airllm_err_prefix(err, "%s", path);
}

/* Reads the whole file of u into buf in chunks small enough to stay in the
 * cache, hashing each tensor's bytes right after they land: on one reader
 * the check then costs the hash of hot data, not a second pass over
 * memory. Checked against the startup header's check block; slot_load then
 * makes sure the header just read carries the same values. */
static int read_checked(int fd, uint8_t *buf, const rt_unit *u, const char *path,
                        airllm_err *err)
{
    const size_t CHUNK = (size_t)2 << 20; /* a multiple of 4096: O_DIRECT holds */
    const airllm_ct_header *h = &u->hdr;
    airllm_xxh3_state *xs = airllm_xxh3_new();
    if (!xs)
        return airllm_errf(err, "out of memory");
    uint32_t ti = 0; /* the tensor being hashed or the next one */
    int rc = 0;
    for (uint64_t pos = 0; !rc && pos < u->file_size;) {
        size_t n = u->file_size - pos < CHUNK ? (size_t)(u->file_size - pos) : CHUNK;
        rc = airllm_pread_full(fd, buf + pos, n, pos, path, err);
        uint64_t end = pos + n;
        while (!rc && ti < h->n_tensors) {
            const airllm_ct_tensor *t = &h->tensors[ti];
            uint64_t te = t->offset + t->stored_len;
            uint64_t lo = pos > t->offset ? pos : t->offset, hi = end < te ? end : te;
            if (lo < hi)
                airllm_xxh3_update(xs, buf + lo, (size_t)(hi - lo));
            if (te > end)
                break;
            if (airllm_ct_check_value(h, ti, airllm_xxh3_final(xs), err))
                rc = airllm_err_prefix(err, "%s", path);
            ti++;
        }
        pos = end;
    }
    airllm_xxh3_free(xs);
    return rc;
}

/* O_DIRECT: a thread reads the file in large pieces (many requests in
 * flight each) and publishes how far it got; the loader hashes behind it,
 * so the hash runs while the device works instead of after it. */
typedef struct {
    int fd;
    uint8_t *buf;
    uint64_t size;
    const char *path;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t done; /* bytes [0, done) are in buf */
    bool over;     /* finished, or failed (rc) */
    int rc;
    airllm_err err;
} piped_read;

static void *piped_read_main(void *arg)
{
    piped_read *p = arg;
    const size_t PIECE = (size_t)16 << 20; /* a multiple of 4096 */
    for (uint64_t pos = 0; pos < p->size;) {
        size_t n = p->size - pos < PIECE ? (size_t)(p->size - pos) : PIECE;
        airllm_err e;
        int rc = airllm_pread_full(p->fd, p->buf + pos, n, pos, p->path, &e);
        pthread_mutex_lock(&p->mu);
        if (rc) {
            p->rc = rc;
            p->err = e;
            p->over = true;
        } else {
            p->done = pos + n;
        }
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
        if (rc)
            return NULL;
        pos += n;
    }
    pthread_mutex_lock(&p->mu);
    p->over = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int read_checked_direct(int fd, uint8_t *buf, const rt_unit *u, const char *path,
                               airllm_err *err)
{
    piped_read p = {.fd = fd, .buf = buf, .size = u->file_size, .path = path};
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.cv, NULL);
    pthread_t th;
    bool threaded = pthread_create(&th, NULL, piped_read_main, &p) == 0;
    if (!threaded)
        piped_read_main(&p); /* no thread: read first, hash after */
    const airllm_ct_header *h = &u->hdr;
    airllm_xxh3_state *xs = airllm_xxh3_new();
    int rc = xs ? 0 : airllm_errf(err, "out of memory");
    uint64_t hashed = 0; /* bytes of the file looked at */
    for (uint32_t ti = 0; !rc && ti < h->n_tensors; ti++) {
        const airllm_ct_tensor *t = &h->tensors[ti];
        uint64_t te = t->offset + t->stored_len;
        hashed = t->offset;
        while (!rc && hashed < te) {
            pthread_mutex_lock(&p.mu);
            while (p.done <= hashed && !p.over)
                pthread_cond_wait(&p.cv, &p.mu);
            uint64_t avail = p.done;
            if (p.rc) {
                rc = -1;
                *err = p.err;
            }
            pthread_mutex_unlock(&p.mu);
            if (rc)
                break;
            if (avail <= hashed) {
                rc = airllm_errf(err, "%s: internal error: the read stopped short", path);
                break;
            }
            uint64_t hi = avail < te ? avail : te;
            airllm_xxh3_update(xs, buf + hashed, (size_t)(hi - hashed));
            hashed = hi;
        }
        if (rc)
            break;
        if (airllm_ct_check_value(h, ti, airllm_xxh3_final(xs), err))
            rc = airllm_err_prefix(err, "%s", path);
    }
    if (threaded)
        pthread_join(th, NULL); /* the buffer is ours again only now */
    if (!rc && p.rc) {
        rc = -1;
        *err = p.err;
    }
    airllm_xxh3_free(xs);
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.cv);
    return rc;
}

static int open_unit(const rt_store *s, const rt_unit *u, char path[4096], airllm_err *err)
{
    if (airllm_path_join(path, 4096, s->dir, u->file, err))
        return -1;
    int fd = -1;
    if (s->direct)
        fd = airllm_open_input(path, O_DIRECT, err);
    if (fd < 0)
        fd = airllm_open_input(path, 0, err);
    return fd;
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
static int slot_load(rt_store *s, size_t ui, rt_slot *sl, bool *defer, airllm_err *err)
{
    rt_unit *u = &s->units[ui];
    char path[4096];
    if (u->need_buf > sl->cap || u->need_dec > sl->dec_cap || u->need_absmax > sl->absmax_cap)
        return airllm_errf(err, "internal error: %s does not fit its slot", u->file);
    bool partial = u->moe && !u->resident && !u->external && s->verify_load != RT_VERIFY_FULL;
    bool deferred = defer && can_defer_check(s, u, partial);
    if (defer)
        *defer = deferred;
    double t0 = airllm_now();
    int fd = open_unit(s, u, path, err);
    if (fd < 0)
        return -1;
    struct stat st;
    int rc = 0;
    uint64_t bytes = 0;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != u->file_size)
        rc = airllm_errf(err, "%s: size changed since it was opened (now %lld bytes, the "
                              "manifest says %llu)",
                         path, (long long)st.st_size, (unsigned long long)u->file_size);
    /* The file size and every tensor offset are multiples of 4096, so these
     * reads also suit O_DIRECT. */
    /* fast, one reader: hashed as it is read (page cache: 2 MiB chunks
     * hashed while hot; O_DIRECT: 16 MiB pieces read by a thread, hashed
     * behind it, as 2 MiB direct reads one at a time keep too few requests
     * in flight: +60% ms/token streamed). Several readers share the tensors
     * out after the read (check_tensors). */
    bool checked = !rc && !partial && !deferred && s->verify_load == RT_VERIFY_FAST &&
                   u->hdr.has_checks && s->readers <= 1;
    if (checked) {
        rc = s->direct ? read_checked_direct(fd, sl->buf, u, path, err)
                       : read_checked(fd, sl->buf, u, path, err);
        bytes = u->file_size;
    } else if (!rc && !partial) {
        rc = read_parallel(fd, sl->buf, (size_t)u->file_size, s->readers, path, err);
        bytes = u->file_size;
    } else if (!rc) {
        rc = airllm_pread_full(fd, sl->buf, (size_t)u->hdr.data_start, 0, path, err);
        bytes = u->hdr.data_start;
        for (uint32_t i = 0; !rc && i < u->hdr.n_tensors; i++)
            if (!is_expert(u->hdr.tensors[i].name))
                rc = read_tensor(fd, u, sl, &u->hdr.tensors[i], path, &bytes, err);
    }
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
    if (airllm_ct_parse(sl->buf, hlen, u->file_size, &h, err))
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
        check_tensors(s, hc, sl->buf, partial, path, err)) {
        airllm_ct_free(&h);
        return -1;
    }
    if (s->verify_load == RT_VERIFY_FULL) {
        char sha[AIRLLM_SHA256_HEX];
        airllm_sha256 *hs = airllm_sha256_new();
        if (!hs) {
            airllm_ct_free(&h);
            return airllm_errf(err, "out of memory");
        }
        airllm_sha256_update(hs, sl->buf, (size_t)u->file_size);
        airllm_sha256_final_hex(hs, sha);
        airllm_sha256_free(hs);
        if (strcmp(sha, u->sha256) != 0) {
            /* a 1.2 file also says which tensor is damaged */
            airllm_err e2;
            if (hc->has_checks && check_tensors(s, hc, sl->buf, false, "first damage", &e2)) {
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
        if (partial && is_expert(t->name))
            continue;
        if (tensor_decode(u, sl, i, path, err))
            return -1;
    }
    sl->unit = (long)ui;
    sl->decode_s = airllm_now() - t1;
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
    int fd = open_unit(s, u, path, err);
    if (fd < 0)
        return -1;
    uint64_t bytes = 0;
    int rc = read_tensor(fd, u, sl, &u->hdr.tensors[t->index], path, &bytes, err);
    close(fd);
    if (!rc && s->verify_load == RT_VERIFY_FAST && u->hdr.has_checks &&
        airllm_ct_check_tensor(&u->hdr, t->index, sl->buf + u->hdr.tensors[t->index].offset,
                               err))
        rc = airllm_err_prefix(err, "%s", path);
    if (!rc)
        rc = tensor_decode(u, sl, t->index, path, err);
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

/* ---- prefetch thread ---- */


/* Hashes unclaimed tensors of streamed slot k (unit ui) until none is left
 * or one failed. Called with the lock held; released around each hash. */
static void deferred_check(rt_store *s, int k, size_t ui)
{
    const rt_unit *u = &s->units[ui];
    const uint8_t *buf = s->sslots[k].buf;
    while (s->chk_next[k] < s->chk_n[k] && s->chk_bad[k] < 0) {
        uint32_t i = s->chk_next[k]++;
        pthread_mutex_unlock(&s->lock);
        airllm_err e;
        /* the startup header: slot_load found the file's entries and check
         * values equal to it */
        int bad = airllm_ct_check_tensor(&u->hdr, i, buf + u->hdr.tensors[i].offset, &e);
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

static void *prefetch_main(void *arg)
{
    rt_store *s = arg;
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
        int rc = slot_load(s, ui, &s->sslots[free_slot], &defer, &e);
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

/* ---- embedding rows straight from the file ---- */

int rt_store_embed_rows(rt_store *s, const int32_t *ids, size_t n, int hidden, float *out,
                        airllm_err *err)
{
    rt_unit *u = &s->units[s->embed_unit];
    const airllm_ct_tensor *t = NULL;
    for (uint32_t i = 0; i < u->hdr.n_tensors; i++)
        if (u->hdr.tensors[i].ndim == 2 && u->hdr.tensors[i].shape[1] == (uint64_t)hidden)
            t = &u->hdr.tensors[i];
    if (!t)
        return airllm_errf(err, "%s: no [vocab, %d] embedding matrix", u->file, hidden);
    char path[4096];
    if (airllm_path_join(path, sizeof path, s->dir, u->file, err))
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    int rc = 0;
    uint64_t rows = t->shape[0];
    size_t es = airllm_dtype_bits(t->dtype) / 8;
    airllm_ct_qlayout l = {0};
    /* rt_store_open allows row reads only for raw and plain quantized
     * matrices with whole blocks per row. The buffer is sized from what is
     * read into it, and the dtype checked first: a 64-bit dtype read into a
     * buffer sized for floats overflowed the heap with file bytes. */
    size_t cb = 0, nb = 0, need = 0;
    if (t->encoding == AIRLLM_ENC_RAW) {
        if (t->dtype != AIRLLM_DTYPE_F32 && t->dtype != AIRLLM_DTYPE_F16 &&
            t->dtype != AIRLLM_DTYPE_BF16)
            rc = airllm_errf(err, "%s: %s is %s: airllm-run reads F32, F16 or BF16 rows", path,
                             t->name, airllm_dtype_name(t->dtype));
        cb = (size_t)hidden * es;
        need = cb;
        if (!rc && rows * cb > t->stored_len)
            rc = airllm_errf(err, "%s: %s: %llu rows of %zu bytes do not fit its %llu bytes",
                             path, t->name, (unsigned long long)rows, cb,
                             (unsigned long long)t->stored_len);
    } else if (airllm_ct_tensor_qlayout(t, &l, err)) {
        rc = -1;
    } else {
        nb = (size_t)hidden / l.block;
        cb = t->encoding == AIRLLM_ENC_INT8 ? (size_t)hidden : (size_t)hidden / 2;
        need = ((cb + 63) & ~(size_t)63) + nb * 4;
        if (rows * cb > l.scales_off || l.scales_off + rows * nb * 4 > t->stored_len)
            rc = airllm_errf(err, "%s: %s: %llu rows of codes and scales do not fit its %llu "
                                  "bytes",
                             path, t->name, (unsigned long long)rows,
                             (unsigned long long)t->stored_len);
    }
    uint8_t *tmp = rc ? NULL : malloc(need ? need : 1);
    if (!rc && !tmp)
        rc = airllm_errf(err, "out of memory");
    for (size_t i = 0; !rc && i < n; i++) {
        if (ids[i] < 0 || (uint64_t)ids[i] >= rows) {
            rc = airllm_errf(err, "token id %d is outside the embedding's %llu rows", ids[i],
                             (unsigned long long)rows);
            break;
        }
        float *o = out + i * (size_t)hidden;
        uint64_t r = (uint64_t)ids[i];
        if (t->encoding == AIRLLM_ENC_RAW) {
            rc = airllm_pread_full(fd, tmp, cb, t->offset + r * cb, path, err);
            rt_tensor v = {.name = t->name, .enc = AIRLLM_ENC_RAW, .dtype = t->dtype, .data = tmp,
                           .rows = 1, .cols = (uint64_t)hidden, .loaded = true};
            if (!rc)
                rc = rt_tensor_row(&v, 0, o, err);
        } else {
            /* One row of codes and its blocks' scales. */
            float *a = (float *)(void *)(tmp + ((cb + 63) & ~(size_t)63));
            uint8_t *codes = tmp;
            rc = airllm_pread_full(fd, codes, cb, t->offset + r * cb, path, err);
            if (!rc)
                rc = airllm_pread_full(fd, a, (size_t)nb * 4,
                                       t->offset + l.scales_off + r * nb * 4, path, err);
            rt_tensor v = {.name = t->name, .enc = t->encoding, .dtype = t->dtype, .data = codes,
                           .absmax = a, .block = l.block, .rows = 1, .cols = (uint64_t)hidden,
                           .loaded = true};
            if (!rc)
                rc = rt_tensor_row(&v, 0, o, err);
        }
    }
    free(tmp);
    close(fd);
    return rc;
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

int rt_store_check_unit(rt_store *s, size_t ui, airllm_err *err)
{
    const rt_unit *u = &s->units[ui];
    if (!u->hdr.has_checks)
        return 0;
    char path[4096];
    if (airllm_path_join(path, sizeof path, s->dir, u->file, err))
        return -1;
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    int rc = 0;
    for (uint32_t i = 0; !rc && i < u->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &u->hdr.tensors[i];
        /* stored_len is bounded by the file size the header parser checked */
        uint8_t *b = malloc(t->stored_len ? (size_t)t->stored_len : 1);
        if (!b)
            rc = airllm_errf(err, "out of memory");
        else if (airllm_pread_full(fd, b, (size_t)t->stored_len, t->offset, path, err) ||
                 airllm_ct_check_tensor(&u->hdr, i, b, err))
            rc = airllm_err_prefix(err, "%s", path);
        free(b);
    }
    close(fd);
    return rc;
}

int rt_store_load(rt_store *s, size_t ui, rt_slot *sl, airllm_err *err)
{
    if (slot_load(s, ui, sl, NULL, err))
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

/* Embedding rows read on demand are never loaded whole, so the file is
 * checked once here, in bounded memory: XXH3 per tensor (fast) or SHA-256
 * (full). */
static int check_rows_file(const rt_store *s, const rt_unit *u, airllm_err *err)
{
    char path[4096];
    if (airllm_path_join(path, sizeof path, s->dir, u->file, err))
        return -1;
    if (s->verify_load == RT_VERIFY_FULL) {
        char sha[AIRLLM_SHA256_HEX];
        uint64_t size;
        if (airllm_sha256_file(path, sha, &size, err))
            return -1;
        if (strcmp(sha, u->sha256) != 0)
            return airllm_errf(err, "%s: SHA-256 differs from the manifest: the file is "
                                    "corrupted",
                               path);
        return 0;
    }
    if (s->verify_load != RT_VERIFY_FAST || !u->hdr.has_checks)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return airllm_errf(err, "%s: cannot open: %s", path, strerror(errno));
    const size_t CHUNK = (size_t)4 << 20;
    uint8_t *buf = malloc(CHUNK);
    airllm_xxh3_state *xs = airllm_xxh3_new();
    int rc = buf && xs ? 0 : airllm_errf(err, "out of memory");
    for (uint32_t i = 0; !rc && i < u->hdr.n_tensors; i++) {
        const airllm_ct_tensor *t = &u->hdr.tensors[i];
        for (uint64_t done = 0; !rc && done < t->stored_len;) {
            size_t n = t->stored_len - done < CHUNK ? (size_t)(t->stored_len - done) : CHUNK;
            rc = airllm_pread_full(fd, buf, n, t->offset + done, path, err);
            if (!rc)
                airllm_xxh3_update(xs, buf, n);
            done += n;
        }
        uint64_t got = airllm_xxh3_final(xs);
        if (!rc && airllm_ct_check_value(&u->hdr, i, got, err))
            rc = airllm_err_prefix(err, "%s", path);
    }
    airllm_xxh3_free(xs);
    free(buf);
    close(fd);
    return rc;
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
    uint64_t used = 0;
    for (size_t pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < s->n_units; i++) {
            rt_unit *u = &s->units[i];
            bool embed_pass = (long)i == s->embed_unit;
            if (embed_pass != (pass == 1) || u->external)
                continue;
            uint64_t need = rt_unit_bytes(u);
            if (budget != UINT64_MAX && used + need > budget)
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
    if (s->embed_rows && check_rows_file(s, eu, err))
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
        max_buf = u->need_buf > max_buf ? u->need_buf : max_buf;
        max_dec = u->need_dec > max_dec ? u->need_dec : max_dec;
        max_abs = u->need_absmax > max_abs ? u->need_absmax : max_abs;
    }
    if (s->n_stream) {
        for (int k = 0; k < (s->prefetch ? 2 : 1); k++)
            if (slot_alloc(s, &s->sslots[k], max_buf, max_dec, max_abs, max_tensors, err))
                return -1;
        if (s->prefetch) {
            if (pthread_create(&s->thread, NULL, prefetch_main, s) != 0)
                return airllm_errf(err, "cannot start the prefetch thread");
            s->thread_started = true;
        }
    }
    return 0;
}

void rt_store_stop(rt_store *s)
{
    if (s->thread_started) {
        pthread_mutex_lock(&s->lock);
        s->stop = true;
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
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
