/* A Hugging Face checkpoint directory, read and planned for conversion:
 * config.json, then either model.safetensors or the shards named by
 * model.safetensors.index.json, every tensor assigned to an execution unit.
 * Only headers are read here; tensor data is streamed by the tools. */
#ifndef AIRLLM_CHECKPOINT_H
#define AIRLLM_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

#include "airllm_arch.h"
#include "airllm_container.h"
#include "airllm_err.h"
#include "airllm_safetensors.h"

#define AIRLLM_INDEX_NAME "model.safetensors.index.json"
#define AIRLLM_SINGLE_NAME "model.safetensors"
#define AIRLLM_CONFIG_NAME "config.json"

typedef struct {
    char *file;        /* name inside the checkpoint directory */
    bool present;      /* false: deleted by an earlier --delete-original run,
                          header taken from the saved copy */
    airllm_st_file st; /* parsed header; st.file_size is the file's size */
    /* Converted input (airllm_ckpt_open_converted): the unit file's header,
     * whose tensor i is st.tensors[i] (there begin/end are the stored bytes'
     * absolute offsets and st.data_start is 0), and the file's digest from
     * the input manifest. NULL for a safetensors source. */
    airllm_ct_header *ct;
    char sha256[65];
} airllm_ckpt_source;

typedef struct {
    const char *name;   /* points into the source's header */
    uint32_t source;    /* index into sources */
    uint32_t st_index;  /* index into sources[source].st.tensors */
    uint32_t unit;      /* index into units */
} airllm_ckpt_tensor;

typedef struct {
    char name[32];      /* "embed", "layer.0", "norm", "lm_head" */
    char file[32];      /* "embed.airc", "layer.00000.airc", ... */
    airllm_unit_kind kind;
    int32_t layer;
    uint32_t *tensors;  /* indices into the tensor list, in file order:
                           by (source, offset), the order they are read */
    size_t n_tensors;
    uint64_t raw_bytes; /* sum of the tensors' bytes */
} airllm_ckpt_unit;

typedef struct {
    char *dir;
    char *config_text; /* config.json as read */
    size_t config_len;
    char *architecture, *model_type;
    const airllm_arch *arch;
    int64_t num_layers, hidden_size, vocab_size; /* -1 when absent */
    bool tie_word_embeddings;
    bool sharded;      /* an index file is present */
    airllm_ckpt_source *sources; /* sorted by file name */
    size_t n_sources;
    airllm_ckpt_tensor *tensors;
    size_t n_tensors;
    airllm_ckpt_unit *units; /* execution order: embed, layers, norm, lm_head */
    size_t n_units;
    char *tied_to;     /* tensor a tied LM head reuses, or NULL */
    uint64_t total_tensor_bytes;
    bool converted;    /* opened by airllm_ckpt_open_converted */
} airllm_ckpt;

/* Opens and plans the checkpoint in dir. If saved_headers_dir is non-NULL, a
 * shard that the index names but that no longer exists is taken from
 * saved_headers_dir/<shard>.hdr (written by airllm_ckpt_save_header) and
 * marked not present. Messages name the offending file. */
int airllm_ckpt_open(const char *dir, const char *saved_headers_dir, airllm_ckpt *c,
                     airllm_err *err);
void airllm_ckpt_free(airllm_ckpt *c);

/* Opens a directory written by airllm-split or airllm-quant as a source:
 * its manifest must be complete and every unit file must have the size the
 * manifest gives and a valid header. Each unit file becomes one source and
 * the units are planned from config.json as for a checkpoint, so they come
 * out with the same names and tensor order. */
int airllm_ckpt_open_converted(const char *dir, airllm_ckpt *c, airllm_err *err);

/* Decoded bytes of plan tensor t (its stored bytes for a safetensors
 * source). */
uint64_t airllm_ckpt_raw_len(const airllm_ckpt *c, size_t t);
/* The container entry behind plan tensor t, or NULL for a safetensors
 * source. */
const airllm_ct_tensor *airllm_ckpt_ct(const airllm_ckpt *c, size_t t);

/* Saves a present source's header bytes (and its size) so that a resumed run
 * can plan without the shard, once --delete-original has removed it.
 * Written atomically to out_dir/<shard>.hdr. */
int airllm_ckpt_save_header(const airllm_ckpt *c, size_t source, const char *out_dir,
                            airllm_err *err);

/* The source tensor behind a plan entry. */
static inline const airllm_st_tensor *airllm_ckpt_st(const airllm_ckpt *c, size_t t)
{
    return &c->sources[c->tensors[t].source].st.tensors[c->tensors[t].st_index];
}

#endif
