/* Safetensors header reader.
 *
 * A safetensors file is: an 8-byte little-endian header length N, N bytes of
 * UTF-8 JSON (an object mapping tensor names to {dtype, shape, data_offsets},
 * plus an optional "__metadata__" object of string values), then the data
 * buffer. Offsets in data_offsets are relative to the data buffer (byte 8+N).
 *
 * The parser trusts nothing: every length, count and offset is bounded by the
 * bytes that exist before it is used. It works on a memory buffer so that it
 * can be fuzzed; airllm_st_read_file() is a thin wrapper that reads the header
 * bytes from disk. */
#ifndef AIRLLM_SAFETENSORS_H
#define AIRLLM_SAFETENSORS_H

#include <stdint.h>
#include <stddef.h>

#include "airllm_bytes.h"
#include "airllm_dtype.h"
#include "airllm_err.h"

/* Headers larger than this are refused: real checkpoints use a few hundred
 * KiB, and the limit bounds what a hostile file can make us allocate. */
#define AIRLLM_ST_MAX_HEADER (100u * 1000u * 1000u)
/* Tensor names longer than this are refused. */
#define AIRLLM_ST_MAX_NAME 1024

typedef struct {
    char *name;          /* NUL-terminated UTF-8, in the file's names arena */
    airllm_dtype dtype;
    unsigned ndim;
    uint64_t shape[AIRLLM_MAX_DIMS];
    uint64_t begin, end; /* [begin, end) relative to data_start */
} airllm_st_tensor;

typedef struct {
    uint64_t header_len; /* N */
    uint64_t data_start; /* 8 + N: absolute file offset of the data buffer */
    uint64_t file_size;
    size_t n_tensors;
    airllm_st_tensor *tensors; /* sorted by begin (file order) */
    char *names;               /* every tensor's name, one block (NULL when the
                                  names are borrowed, as for a converted
                                  input's unit header) */
} airllm_st_file;

/* Parses a safetensors header. buf holds at least the first 8 bytes of the
 * file and up to the whole file; file_size is the true size of the file, used
 * to check that the data buffer is exactly covered (no truncation, no
 * trailing garbage, no gaps, no overlaps). If buf is shorter than 8+N the
 * header is reported as truncated. On success *out owns its memory (free with
 * airllm_st_free). On failure *out is left empty and err says why; the
 * message does not include a file name (callers add it). */
int airllm_st_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                    airllm_st_file *out, airllm_err *err);

/* Reads and parses the header of the file at path. Messages name the file. */
int airllm_st_read_file(const char *path, airllm_st_file *out, airllm_err *err);

void airllm_st_free(airllm_st_file *f);

/* Index of the tensor named name, or -1. O(n). */
long airllm_st_find(const airllm_st_file *f, const char *name);


#endif
