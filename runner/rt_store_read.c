/* Reading unit files into memory: whole (pread, several readers, or
 * O_DIRECT piped through a reader thread), hashed as they are read or
 * checked after, one tensor at a time (MoE experts), embedding rows on
 * demand, and the checks of files read outside a slot. rt_store.c decides
 * which load takes which path; zero-copy (mapped) loads are rt_map.c's. */
#include "rt_store_impl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "airllm_bytes.h"
#include "airllm_hash.h"
#include "airllm_io.h"
#include "airllm_quant.h"

/* The aligned file range holding tensor t (tensors start on 4096 and the
 * file ends on 4096, so the range stays inside the file). */
int rt_read_tensor(int fd, const rt_unit *u, rt_slot *sl, const airllm_ct_tensor *t,
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
int rt_read_parallel(int fd, uint8_t *buf, size_t n, int readers, const char *path,
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
        if (p->skip_experts && rt_is_expert(t->name))
            continue; /* not read: rt_store_ensure checks them */
        if (rt_map_check_tensor(p->hc, i, p->buf + t->offset, &p->err)) {
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
int rt_check_tensors(const rt_store *s, const airllm_ct_header *hc, const uint8_t *buf,
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
int rt_read_checked(int fd, uint8_t *buf, const rt_unit *u, const char *path,
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

int rt_read_checked_direct(int fd, uint8_t *buf, const rt_unit *u, const char *path,
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

int rt_open_unit(const rt_store *s, const rt_unit *u, char path[4096], airllm_err *err)
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


/* Embedding rows read on demand are never loaded whole, so the file is
 * checked once here, in bounded memory: XXH3 per tensor (fast) or SHA-256
 * (full). */
int rt_check_rows_file(const rt_store *s, const rt_unit *u, airllm_err *err)
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
