#include "airllm_hash.h"

#include "airllm_io.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

struct airllm_sha256 {
    EVP_MD_CTX *ctx;
};

airllm_sha256 *airllm_sha256_new(void)
{
    airllm_sha256 *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->ctx = EVP_MD_CTX_new();
    if (!h->ctx || EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(h->ctx);
        free(h);
        return NULL;
    }
    return h;
}

void airllm_sha256_update(airllm_sha256 *h, const void *data, size_t n)
{
    /* EVP_DigestUpdate cannot fail for SHA-256 on an initialised context. */
    EVP_DigestUpdate(h->ctx, data, n);
}

void airllm_sha256_final_hex(airllm_sha256 *h, char hex[AIRLLM_SHA256_HEX])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_DigestFinal_ex(h->ctx, md, &len);
    for (unsigned i = 0; i < 32; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 15];
    }
    hex[64] = '\0';
    EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL);
}

void airllm_sha256_peek_hex(const airllm_sha256 *h, airllm_sha256 *scratch,
                            char hex[AIRLLM_SHA256_HEX])
{
    EVP_MD_CTX_copy_ex(scratch->ctx, h->ctx);
    airllm_sha256_final_hex(scratch, hex);
}

void airllm_sha256_free(airllm_sha256 *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->ctx);
    free(h);
}

int airllm_sha256_file(const char *path, char hex[AIRLLM_SHA256_HEX], uint64_t *size,
                       airllm_err *err)
{
    /* 4 MiB reads: large enough that syscalls cost nothing next to hashing,
     * small enough to stay in L2/L3 while the digest runs over them. */
    enum { BUF = 4 << 20 };
    int fd = airllm_open_input(path, 0, err);
    if (fd < 0)
        return -1;
    posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint8_t *buf = malloc(BUF);
    airllm_sha256 *h = airllm_sha256_new();
    int rc = 0;
    uint64_t total = 0;
    if (!buf || !h) {
        rc = airllm_errf(err, "%s: out of memory", path);
        goto out;
    }
    for (;;) {
        ssize_t n = read(fd, buf, BUF);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            rc = airllm_errf(err, "%s: read error: %s", path, strerror(errno));
            goto out;
        }
        if (n == 0)
            break;
        airllm_sha256_update(h, buf, (size_t)n);
        total += (uint64_t)n;
    }
    airllm_sha256_final_hex(h, hex);
    if (size)
        *size = total;
out:
    airllm_sha256_free(h);
    free(buf);
    close(fd);
    return rc;
}

int airllm_sha256_hex_valid(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return 0;
    }
    return 1;
}

/* ---- XXH3-64 ---- */


#include <xxhash.h>
#if defined(__x86_64__) || defined(__i386__)
/* libxxhash's x86 dispatcher picks SSE2, AVX2 or AVX-512 at run time; the
 * plain entry points are built for the baseline (SSE2) only. */
#include <xxh_x86dispatch.h>
#define AIRLLM_XXH3 XXH3_64bits_dispatch
#define AIRLLM_XXH3_UPDATE XXH3_64bits_update_dispatch
#else
#define AIRLLM_XXH3 XXH3_64bits
#define AIRLLM_XXH3_UPDATE XXH3_64bits_update
#endif

struct airllm_xxh3_state {
    XXH3_state_t *st;
};

uint64_t airllm_xxh3(const void *data, size_t n)
{
    return (uint64_t)AIRLLM_XXH3(data, n);
}

airllm_xxh3_state *airllm_xxh3_new(void)
{
    airllm_xxh3_state *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->st = XXH3_createState();
    if (!h->st || XXH3_64bits_reset(h->st) != XXH_OK) {
        XXH3_freeState(h->st);
        free(h);
        return NULL;
    }
    return h;
}

void airllm_xxh3_update(airllm_xxh3_state *h, const void *data, size_t n)
{
    if (n)
        AIRLLM_XXH3_UPDATE(h->st, data, n);
}

uint64_t airllm_xxh3_final(airllm_xxh3_state *h)
{
    uint64_t v = (uint64_t)XXH3_64bits_digest(h->st);
    XXH3_64bits_reset(h->st);
    return v;
}

void airllm_xxh3_free(airllm_xxh3_state *h)
{
    if (!h)
        return;
    XXH3_freeState(h->st);
    free(h);
}
