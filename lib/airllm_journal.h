/* The line encoding of airllm-split's resume journal
 * (OUT_DIR/.airllm-split/journal). One record per line. Names are written
 * length-prefixed ("<bytes>:<name>"), so that every name
 * airllm_safe_filename allows (spaces, any UTF-8, 255 bytes) and every
 * tensor name round-trips: the first format split them with sscanf("%s"),
 * so a shard name with a space made a crashed --delete-original run
 * impossible to resume. Neither kind of name can hold a newline.
 *
 * Format 2 (this one) starts with the line AIRLLM_JOURNAL_MAGIC:
 *   unit    NAME SIZE SHA SOURCE OFFSET SOURCE_SHA
 *   source  NAME SIZE SHA
 *   deleted NAME
 *   qstats  INDEX RMSE MAX_ABS REL_FRO NAME        (hex floats: exact)
 * Each line ends in a fixed-length digest or a length-prefixed name, so no
 * torn prefix of a record reads as a record.
 * A unit record also says which source bytes it was made from: SOURCE_SHA
 * is the SHA-256 of SOURCE's first OFFSET bytes when the unit was
 * finished, so that a resumed run can prove the source unchanged before it
 * keeps the unit. A unit read from format 1 has no checkpoint: SOURCE is
 * empty ("0:").
 *
 * Format 1 (no magic line) had the same records with bare names, no
 * checkpoint in unit records. airllm_journal_decode_v1 reads its lines
 * exactly, names with spaces included: the fixed fields are taken from the
 * end of the line, whatever the name holds. */
#ifndef AIRLLM_JOURNAL_H
#define AIRLLM_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "airllm_hash.h"

#define AIRLLM_JOURNAL_MAGIC "airllm-split journal 2\n"
#define AIRLLM_JOURNAL_NAME_MAX 1024 /* tensor names: AIRLLM_CT_MAX_NAME */
/* Longest encoded line, newline included. */
#define AIRLLM_JOURNAL_LINE_MAX (2 * AIRLLM_JOURNAL_NAME_MAX + 512)

typedef enum {
    AIRLLM_JR_UNIT,
    AIRLLM_JR_SOURCE,
    AIRLLM_JR_DELETED,
    AIRLLM_JR_QSTATS,
} airllm_jr_kind;

typedef struct {
    airllm_jr_kind kind;
    char name[AIRLLM_JOURNAL_NAME_MAX + 1];
    uint64_t size;                 /* unit/source: bytes; qstats: tensor index */
    char sha[AIRLLM_SHA256_HEX];   /* unit/source */
    /* unit: its source checkpoint; ck_source is "" when the record has none
     * (format 1) */
    char ck_source[AIRLLM_JOURNAL_NAME_MAX + 1];
    uint64_t ck_offset;
    char ck_sha[AIRLLM_SHA256_HEX];
    double stats[3];               /* qstats: rmse, max_abs, rel_fro */
} airllm_jrec;

/* Encodes r as one line ending in '\n' into out; returns its length, or 0
 * if a name is empty, too long or holds a newline, or cap is too small. */
size_t airllm_journal_encode(const airllm_jrec *r, char *out, size_t cap);

/* Decodes one line of format 2 (len bytes, without its '\n'). Returns 0,
 * or -1 if the line is not exactly one valid record. */
int airllm_journal_decode(const char *line, size_t len, airllm_jrec *r);

/* The same for a line of format 1. */
int airllm_journal_decode_v1(const char *line, size_t len, airllm_jrec *r);

#endif
