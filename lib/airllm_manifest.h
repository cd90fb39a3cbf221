/* manifest.json: the table of contents of a converted directory
 * (formats/manifest.schema.json is the normative schema). It is written last
 * and atomically; a directory without it is incomplete. */
#ifndef AIRLLM_MANIFEST_H
#define AIRLLM_MANIFEST_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "airllm_container.h"
#include "airllm_dtype.h"
#include "airllm_err.h"
#include "airllm_hash.h"

#define AIRLLM_MANIFEST_NAME "manifest.json"
#define AIRLLM_MANIFEST_FORMAT "airllm"
#define AIRLLM_MANIFEST_MAX_BYTES (256u << 20)

typedef struct {
    char *file; /* plain file name inside the directory (no '/') */
    uint64_t size;
    char sha256[AIRLLM_SHA256_HEX];
} airllm_mf_file;

typedef struct {
    char *name; /* "embed", "layer.0", "norm", "lm_head" */
    airllm_unit_kind kind;
    int32_t layer;  /* -1 unless kind == layer */
    char *file;     /* NULL for a tied LM head, which has no file of its own */
    uint64_t size;
    char sha256[AIRLLM_SHA256_HEX];
    char *tied_to;  /* tensor reused by a tied LM head, else NULL */
} airllm_mf_unit;

/* One tensor: 96 bytes on 64-bit systems, plus its shape and name, which a
 * parsed manifest keeps in its arena (a manifest built to be written points
 * them wherever the caller keeps them). A million-tensor manifest is read
 * in about 150 MiB this way. */
typedef struct {
    char *name;
    airllm_dtype dtype;
    unsigned ndim;
    const uint64_t *shape; /* ndim dimensions */
    size_t unit;    /* index into units */
    airllm_encoding encoding;
    uint64_t raw_len;    /* decoded bytes */
    uint64_t stored_len; /* bytes in the unit file */
    char *source;   /* source file it came from (a parsed manifest points at
                       the sources entry's name) */
    /* nf4/fp4/int8 only (format 1.1): the block size, double quantization,
     * and what quantization cost against the source values. */
    uint32_t quant_block;
    bool quant_double;
    double quant_rmse, quant_max_abs, quant_rel_fro;
} airllm_mf_tensor;

typedef struct {
    char *architecture, *model_type, *family;
    int64_t num_layers, hidden_size, vocab_size; /* -1 when not known */
    bool tie_word_embeddings;
} airllm_mf_model;

typedef struct {
    unsigned version_major, version_minor;
    bool complete;
    char *tool_name, *tool_version;
    char *options_json; /* the tool's options, a JSON object as text */
    airllm_mf_model model;
    airllm_mf_unit *units;
    size_t n_units;
    airllm_mf_tensor *tensors;
    size_t n_tensors;
    airllm_mf_file *sources; /* the checkpoint files read */
    size_t n_sources;
    airllm_mf_file *files;   /* config/tokenizer files copied verbatim */
    size_t n_files;
    void *arena; /* parsed: every string and shape above, in blocks */
} airllm_manifest;

/* Parses and validates manifest JSON from a buffer (schema, version, digests,
 * file names, unit references, uniqueness); airllm_manifest_parse.c. No JSON
 * tree: memory is the tables, the strings and about 100 bytes a tensor. */
int airllm_manifest_parse(const char *json, size_t len, airllm_manifest *m, airllm_err *err);
/* Reads DIR/manifest.json; messages name the file. */
int airllm_manifest_load(const char *dir, airllm_manifest *m, airllm_err *err);
/* Serializes with a fixed key order and formatting, so the same manifest
 * always gives the same bytes. */
int airllm_manifest_to_json(const airllm_manifest *m, char **out, airllm_err *err);
/* The same bytes, handed to sink piece by piece (a non-zero return from
 * sink stops it): memory stays bounded by one tensor's entry rather than
 * the whole document. */
typedef int (*airllm_sink)(void *ctx, const void *data, size_t n, airllm_err *err);
int airllm_manifest_emit(const airllm_manifest *m, airllm_sink sink, void *ctx, airllm_err *err);
/* Frees what airllm_manifest_parse allocated: the tables, the arena and
 * options_json. A manifest assembled by a caller to be written is the
 * caller's to free. */
void airllm_manifest_free(airllm_manifest *m);

/* 1 if name is a safe plain file name: non-empty, no '/', not "." or "..",
 * no control characters. */
int airllm_safe_filename(const char *name);

#endif
