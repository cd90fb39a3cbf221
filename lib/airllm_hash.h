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

/* 1 if s is exactly 64 lower-case hex digits. */
int airllm_sha256_hex_valid(const char *s);

#endif
