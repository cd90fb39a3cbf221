/* Internal to lib/airllm_spm*.c: the loaded model, shared by the loader
 * (airllm_spm.c) and the encoder/decoder (airllm_spm_encode.c). */
#ifndef AIRLLM_SPM_IMPL_H
#define AIRLLM_SPM_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_spm.h"

/* "▁" U+2581, what escape_whitespaces turns ' ' into */
static const uint8_t SPM_WS[3] = {0xE2, 0x96, 0x81};

typedef struct {
    uint32_t off, len; /* into the arena */
    float score;
    uint8_t type;
} spm_piece;

struct airllm_spm {
    uint8_t *arena;
    size_t arena_n;
    spm_piece *pc;
    size_t n;
    uint32_t *map; /* open addressing: id + 1, 0 empty */
    size_t map_cap;
    int32_t unk, bos, eos, pad;
    int32_t byte_id[256];
    bool byte_fallback, add_dummy_prefix, remove_ws, escape_ws;
    bool unigram;                 /* model_type UNIGRAM (else BPE) */
    float min_score, max_score;   /* over NORMAL pieces, for unigram */
    size_t max_len;               /* longest NORMAL/USER_DEFINED/UNUSED piece */
    uint32_t unk_surface_off, unk_surface_len;
    /* user-defined symbols: bytes they start with, and their lengths */
    bool ud_first[256];
    uint32_t *ud_len; /* distinct lengths, longest first */
    size_t n_ud_len;
};

/* The id of a piece's bytes, or -1. */
int32_t airllm_spm_map_get(const airllm_spm *m, const uint8_t *s, size_t n);
/* The byte of a "<0xAB>" piece, or -1. */
int airllm_spm_byte_of_piece(const uint8_t *s, size_t n);

#endif
