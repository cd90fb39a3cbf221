/* The unit file writer (lib/airllm_unitfile.c): the file it leaves is a
 * valid container whose tensors hold exactly the bytes emitted, at the
 * offsets the layout gives, with their XXH3 in the check block; the digest
 * it returns is the file's; header-first and header-last writes, parking
 * between tensors and any staging size give the same bytes; a failed write
 * leaves neither the file nor its temporary. */
#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "airllm_container.h"
#include "airllm_hash.h"
#include "airllm_io.h"
#include "airllm_unitfile.h"
#include "test_util.h"

#define NT 3

/* Three F32 tensors: [3, 700] (8400 bytes, crosses 4096-byte buffers),
 * [5] (a norm: 20 bytes) and [1024, 8] (32768 bytes). */
static const uint64_t shapes[NT][2] = {{3, 700}, {5, 1}, {1024, 8}};
static const unsigned ndims[NT] = {2, 1, 2};
static uint8_t *data[NT];
static uint64_t lens[NT];

static void fill_header(airllm_unitfile *uf)
{
    static const char *names[NT] = {"model.layers.0.self_attn.q_proj.weight",
                                    "model.layers.0.input_layernorm.weight",
                                    "model.layers.0.mlp.down_proj.weight"};
    uf->hdr.n_tensors = NT;
    uf->hdr.tensors = calloc(NT, sizeof *uf->hdr.tensors);
    uf->hdr.unit_kind = AIRLLM_UNIT_LAYER;
    uf->hdr.layer_index = 0;
    for (int i = 0; i < NT; i++) {
        airllm_ct_tensor *t = &uf->hdr.tensors[i];
        t->name = strdup(names[i]);
        t->dtype = AIRLLM_DTYPE_F32;
        t->ndim = ndims[i];
        t->shape[0] = shapes[i][0];
        t->shape[1] = shapes[i][1];
        t->raw_len = t->stored_len = lens[i];
        t->encoding = AIRLLM_ENC_RAW;
    }
}

/* Writes the unit to dir/file with staging buffers of chunk bytes;
 * park_after: park after this tensor (-1: never), emitting its bytes in
 * pieces of piece bytes. Returns the writer's rc; sha gets its digest. */
static int write_unit(const char *dir, const char *file, bool header_last, size_t chunk,
                      int park_after, size_t piece, char sha[AIRLLM_SHA256_HEX],
                      airllm_err *err)
{
    airllm_uf_sync sync;
    airllm_uf_sync_init(&sync, chunk);
    airllm_unitfile uf;
    airllm_uf_init(&uf);
    fill_header(&uf);
    int rc = airllm_uf_open(&uf, dir, file, header_last, false, &sync.sink, err);
    for (int i = 0; !rc && i < NT; i++) {
        airllm_ct_tensor *t = &uf.hdr.tensors[i];
        if (header_last)
            t->offset = airllm_align_up(uf.pos, AIRLLM_CT_ALIGN);
        rc = airllm_uf_pad_to(&uf, t->offset, err);
        for (uint64_t off = 0; !rc && off < lens[i]; off += piece)
            rc = airllm_uf_emit(&uf, data[i] + off, lens[i] - off < piece ? lens[i] - off : piece,
                                err);
        if (!rc)
            airllm_uf_tensor_done(&uf);
        if (i == park_after)
            airllm_uf_park(&uf);
    }
    if (!rc)
        rc = airllm_uf_finish(&uf, sha, err);
    airllm_uf_free(&uf);
    return rc;
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc(*n ? *n : 1);
    if (fread(b, 1, *n, f) != *n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    return b;
}

/* Checks dir/file as a container holding data[] exactly. */
static void check_file(const char *dir, const char *file, const char *sha, const char *what)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    size_t n = 0;
    uint8_t *b = read_all(path, &n);
    CHECK(b != NULL, "%s: %s not written", what, path);
    if (!b)
        return;
    CHECK(n % AIRLLM_CT_ALIGN == 0, "%s: size %zu is not a multiple of 4096", what, n);
    char want[AIRLLM_SHA256_HEX];
    uint64_t size;
    airllm_err err = {{0}};
    CHECK(airllm_sha256_file(path, want, &size, &err) == 0 && strcmp(want, sha) == 0,
          "%s: digest %s, the file's is %s", what, sha, want);
    airllm_ct_header h = {0};
    int rc = airllm_ct_parse(b, n, n, &h, &err);
    CHECK(rc == 0, "%s: not a valid container: %s", what, err.msg);
    CHECK(rc == 0 && h.has_checks, "%s: no check block", what);
    for (uint32_t i = 0; rc == 0 && i < h.n_tensors && i < NT; i++) {
        const airllm_ct_tensor *t = &h.tensors[i];
        CHECK(t->stored_len == lens[i] && t->offset + lens[i] <= n &&
                  memcmp(b + t->offset, data[i], lens[i]) == 0,
              "%s: tensor %u does not hold the bytes emitted", what, i);
        CHECK(t->xxh3 == airllm_xxh3(data[i], lens[i]),
              "%s: tensor %u: check block XXH3 %016llx, its bytes hash to %016llx", what, i,
              (unsigned long long)t->xxh3, (unsigned long long)airllm_xxh3(data[i], lens[i]));
        CHECK(airllm_ct_check_tensor(&h, i, b + t->offset, &err) == 0, "%s: %s", what, err.msg);
    }
    CHECK(rc != 0 || h.n_tensors == NT, "%s: %u tensors", what, h.n_tensors);
    airllm_ct_free(&h);
    free(b);
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += e->d_name[0] != '.' || (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."));
    if (d)
        closedir(d);
    return n;
}

/* A sink whose k-th submit fails: a full disk mid-unit. */
typedef struct {
    airllm_uf_sync base;
    int left;
} failing_sink;

static void failing_submit(void *ctx, int fd, const char *path, uint8_t *buf, size_t n,
                           uint64_t off)
{
    failing_sink *f = ctx;
    if (--f->left == 0 && !f->base.failed) {
        f->base.failed = true;
        airllm_errf(&f->base.err, "%s: write error: No space left on device", path);
        free(buf);
        return;
    }
    airllm_uf_sink s = f->base.sink;
    s.submit(&f->base, fd, path, buf, n, off);
}

int main(void)
{
    char dir[] = "/tmp/test_unitfile.XXXXXX";
    if (!mkdtemp(dir)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    for (int i = 0; i < NT; i++) {
        lens[i] = shapes[i][0] * shapes[i][1] * 4;
        data[i] = malloc(lens[i]);
        for (uint64_t k = 0; k < lens[i]; k++)
            data[i][k] = (uint8_t)(k * 131 + i * 7 + (k >> 9));
    }
    airllm_err err = {{0}};
    char sha[AIRLLM_SHA256_HEX];

    /* header first, small staging buffers, odd pieces */
    CHECK(write_unit(dir, "a.airc", false, 4096, -1, 1000, sha, &err) == 0, "write: %s",
          err.msg);
    check_file(dir, "a.airc", sha, "header first");
    char sha_a[AIRLLM_SHA256_HEX];
    memcpy(sha_a, sha, sizeof sha);

    /* the same unit with large buffers, whole tensors, parked after the
     * first tensor (its 8400 bytes end mid-block): the same bytes */
    CHECK(write_unit(dir, "b.airc", false, 1 << 20, 0, 1 << 20, sha, &err) == 0, "write: %s",
          err.msg);
    check_file(dir, "b.airc", sha, "parked");
    CHECK(strcmp(sha, sha_a) == 0, "staging size or parking changed the bytes");

    /* header last (offsets set tensor by tensor): a valid file, the same
     * bytes as header first (the layout rule gives the same offsets) */
    CHECK(write_unit(dir, "c.airc", true, 8192, 1, 3000, sha, &err) == 0, "write: %s",
          err.msg);
    check_file(dir, "c.airc", sha, "header last");
    CHECK(strcmp(sha, sha_a) == 0, "header-last file differs from header-first");
    CHECK(count_entries(dir) == 3, "temporary files left: %d entries", count_entries(dir));

    /* a write that fails: an error naming the temporary file, and neither
     * the file nor its temporary left behind */
    {
        failing_sink f;
        airllm_uf_sync_init(&f.base, 4096); /* its ctx, &f.base, is &f */
        f.left = 3;
        airllm_uf_sink s = f.base.sink;
        s.submit = failing_submit;
        airllm_unitfile uf;
        airllm_uf_init(&uf);
        fill_header(&uf);
        int rc = airllm_uf_open(&uf, dir, "d.airc", false, false, &s, &err);
        for (int i = 0; !rc && i < NT; i++) {
            rc = airllm_uf_pad_to(&uf, uf.hdr.tensors[i].offset, &err);
            if (!rc)
                rc = airllm_uf_emit(&uf, data[i], lens[i], &err);
            if (!rc)
                airllm_uf_tensor_done(&uf);
        }
        if (!rc)
            rc = airllm_uf_finish(&uf, sha, &err);
        CHECK(rc != 0, "a failed write was not reported");
        CHECK(strstr(err.msg, ".d.airc.tmp: write error: No space left") != NULL,
              "message: %s", err.msg);
        airllm_uf_free(&uf);
        char p[4096];
        snprintf(p, sizeof p, "%s/d.airc", dir);
        CHECK(access(p, F_OK) != 0, "d.airc exists after a failed write");
        CHECK(count_entries(dir) == 3, "a temporary file was left: %d entries",
              count_entries(dir));
    }

    /* a directory that does not exist: "cannot create", naming the file */
    {
        airllm_uf_sync sync;
        airllm_uf_sync_init(&sync, 4096);
        airllm_unitfile uf;
        airllm_uf_init(&uf);
        fill_header(&uf);
        char missing[4200];
        snprintf(missing, sizeof missing, "%s/none", dir);
        int rc = airllm_uf_open(&uf, missing, "e.airc", false, false, &sync.sink, &err);
        CHECK(rc != 0 && strstr(err.msg, "/none/.e.airc.tmp: cannot create") != NULL,
              "open in a missing directory: rc %d, %s", rc, err.msg);
        airllm_uf_free(&uf);
    }

    const char *names[] = {"a.airc", "b.airc", "c.airc"};
    for (int i = 0; i < 3; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, names[i]);
        unlink(p);
    }
    rmdir(dir);
    for (int i = 0; i < NT; i++)
        free(data[i]);
    return test_summary();
}
