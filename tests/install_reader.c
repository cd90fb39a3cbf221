/* A program outside the tree, built against an installed libairllm through
 * `pkg-config --cflags --libs airllm` (tests/install.sh): it reads a
 * directory that airllm-split wrote, using only the installed public
 * headers. For each unit with a file it checks the file's SHA-256 against
 * manifest.json, parses the container header, and checks every tensor's
 * stored bytes against the header's XXH3 (format 1.2). Prints one line per
 * unit and a summary; exit 0 when everything holds, 1 otherwise (the
 * message names the file).
 *
 *   install_reader DIR */
#define _POSIX_C_SOURCE 200809L /* fseeko */
#define _FILE_OFFSET_BITS 64
#include <airllm_container.h>
#include <airllm_hash.h>
#include <airllm_manifest.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Every tensor's stored bytes of one unit file against its check block. */
static int check_tensors(const char *path, const airllm_ct_header *h, airllm_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return airllm_errf(err, "%s: cannot open", path);
    int rc = 0;
    for (uint32_t i = 0; i < h->n_tensors && !rc; i++) {
        const airllm_ct_tensor *t = &h->tensors[i];
        /* stored_len is bounded by the file size: airllm_ct_read_file checked it */
        uint8_t *buf = malloc(t->stored_len ? t->stored_len : 1);
        if (!buf) {
            rc = airllm_errf(err, "out of memory");
            break;
        }
        if (fseeko(f, (off_t)t->offset, SEEK_SET) ||
            fread(buf, 1, t->stored_len, f) != t->stored_len)
            rc = airllm_errf(err, "%s: short read of tensor %s", path, t->name);
        else if (airllm_ct_check_tensor(h, i, buf, err))
            rc = airllm_err_prefix(err, "%s", path);
        free(buf);
    }
    fclose(f);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: install_reader DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    airllm_err err = {{0}};
    airllm_manifest m;
    if (airllm_manifest_load(dir, &m, &err)) {
        fprintf(stderr, "install_reader: %s\n", err.msg);
        return 1;
    }
    int rc = 0;
    size_t checked = 0;
    for (size_t u = 0; u < m.n_units && !rc; u++) {
        const airllm_mf_unit *unit = &m.units[u];
        if (!unit->file) /* a tied LM head */
            continue;
        char path[4096], hex[AIRLLM_SHA256_HEX];
        uint64_t size;
        airllm_ct_header h;
        snprintf(path, sizeof path, "%s/%s", dir, unit->file);
        if (airllm_sha256_file(path, hex, &size, &err)) {
            rc = 1;
        } else if (size != unit->size || strcmp(hex, unit->sha256)) {
            airllm_errf(&err, "%s: size or SHA-256 differs from manifest.json", path);
            rc = 1;
        } else if (airllm_ct_read_file(path, &h, &err)) {
            rc = 1;
        } else {
            if (!h.has_checks) {
                airllm_errf(&err, "%s: no check block (format %u.%u)", path, h.version_major,
                            h.version_minor);
                rc = 1;
            } else if (check_tensors(path, &h, &err))
                rc = 1;
            else
                printf("%s %s %u tensors\n", unit->name, unit->file, h.n_tensors);
            checked += h.n_tensors;
            airllm_ct_free(&h);
        }
    }
    if (!rc)
        printf("%zu units, %zu tensors in files, %zu in manifest.json, model %s\n", m.n_units,
               checked, m.n_tensors, m.model.architecture ? m.model.architecture : "?");
    else
        fprintf(stderr, "install_reader: %s\n", err.msg);
    airllm_manifest_free(&m);
    return rc;
}
