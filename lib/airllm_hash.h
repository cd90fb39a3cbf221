/* SHA-256 through OpenSSL's EVP API, plus hex helpers. */
#ifndef AIRLLM_HASH_H
#define AIRLLM_HASH_H

#include <stdint.h>
#include <stddef.h>

#include "airllm_err.h"

#define AIRLLM_SHA256_HEX 65 /* 64 hex digits + NUL */

typedef struct airllm_sha256 airllm_sha256;

airllm_sha256 *airllm_sha256_new(void); /* NULL on allocation failure */
void airllm_sha256_update(airllm_sha256 *h, const void *data, size_t n);
/* Writes 64 lower-case hex digits and a NUL; the context can then be reused
 * (it is reset). */
void airllm_sha256_final_hex(airllm_sha256 *h, char hex[AIRLLM_SHA256_HEX]);
void airllm_sha256_free(airllm_sha256 *h);
/* The digest of what h has hashed so far, without ending h: a prefix's
 * digest, computed on the way. scratch is any context (it is overwritten),
 * kept by the caller so that this allocates nothing. */
void airllm_sha256_peek_hex(const airllm_sha256 *h, airllm_sha256 *scratch,
                            char hex[AIRLLM_SHA256_HEX]);

/* Hashes a whole file with large sequential reads. Sets *size to the bytes
 * hashed. Messages name the file. */
int airllm_sha256_file(const char *path, char hex[AIRLLM_SHA256_HEX], uint64_t *size,
                       airllm_err *err);

/* XXH3-64 (seed 0) from libxxhash: the per-tensor checksums of container
 * format 1.2. A non-cryptographic hash at tens of GB/s per core: it finds
 * media corruption on every load at a cost SHA-256 cannot meet. */
uint64_t airllm_xxh3(const void *data, size_t n);

typedef struct airllm_xxh3_state airllm_xxh3_state;
airllm_xxh3_state *airllm_xxh3_new(void); /* NULL on allocation failure; reset */
void airllm_xxh3_update(airllm_xxh3_state *h, const void *data, size_t n);
/* The hash of what was fed since the last reset; then resets. */
uint64_t airllm_xxh3_final(airllm_xxh3_state *h);
void airllm_xxh3_free(airllm_xxh3_state *h);

/* 1 if s is exactly 64 lower-case hex digits. */
int airllm_sha256_hex_valid(const char *s);

#endif
