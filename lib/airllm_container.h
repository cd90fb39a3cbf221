/* The per-unit container file (formats/container.md is the normative spec).
 *
 * A container holds the tensors of one execution unit (the embeddings, one
 * decoder layer, the final norm or the LM head). Layout:
 *
 *   [fixed header 64 B][tensor table n*128 B][name bytes][zero padding]
 *   [tensor data, each tensor starting at a multiple of 4096][zero padding]
 *
 * The file size is a multiple of 4096 so every tensor can be read with
 * O_DIRECT using aligned lengths. All integers are little-endian. */
#ifndef AIRLLM_CONTAINER_H
#define AIRLLM_CONTAINER_H

#include <stdint.h>
#include <stddef.h>

#include "airllm_dtype.h"
#include "airllm_err.h"
#include "airllm_quant.h"

#define AIRLLM_CT_MAGIC "AIRLLMCT" /* 8 bytes, no NUL in the file */
#define AIRLLM_CT_VERSION_MAJOR 1
/* The highest minor version this code reads and writes. Writers write 1.2:
 * every new file carries its check block. 1.0 and 1.1 files still read. */
#define AIRLLM_CT_VERSION_MINOR 2
#define AIRLLM_CT_ALIGN 4096u
#define AIRLLM_CT_FIXED_SIZE 64u
#define AIRLLM_CT_ENTRY_SIZE 128u
#define AIRLLM_CT_MAX_NAME 1024u
#define AIRLLM_CT_MAX_TENSORS 1000000u

typedef enum {
    AIRLLM_UNIT_EMBED = 0,
    AIRLLM_UNIT_LAYER = 1,
    AIRLLM_UNIT_NORM = 2,
    AIRLLM_UNIT_LM_HEAD = 3,
    AIRLLM_UNIT_KIND_COUNT
} airllm_unit_kind;

/* Tensor encodings. Codes 2..4 (block-quantized nf4, fp4, int8) need format
 * 1.1; a 1.0 reader refuses them by name. */
typedef enum {
    AIRLLM_ENC_RAW = 0,  /* bytes exactly as in the source */
    AIRLLM_ENC_ZSTD = 1, /* lossless: see airllm_codec.h */
    AIRLLM_ENC_NF4 = 2,
    AIRLLM_ENC_FP4 = 3,
    AIRLLM_ENC_INT8 = 4,
    AIRLLM_ENC_COUNT
} airllm_encoding;

typedef struct {
    char *name; /* owned, NUL-terminated */
    airllm_dtype dtype;
    unsigned ndim;
    uint64_t shape[AIRLLM_MAX_DIMS];
    airllm_encoding encoding;
    uint32_t enc_param[4]; /* zstd: [0] byte-group width (0,2,4), [1] chunk bytes;
                              nf4/fp4/int8: [0] block size, [1] flags
                              (AIRLLM_CT_QFLAG_*) */
    uint64_t offset;       /* absolute file offset, multiple of 4096 */
    uint64_t stored_len;   /* bytes in the file */
    uint64_t raw_len;      /* decoded bytes = shape x dtype size */
    uint64_t xxh3;         /* format 1.2: XXH3-64 its stored bytes must have (the
                              check block's value with the entry's share taken
                              out, so it also covers the entry and the name);
                              valid when the header's has_checks. Writers set
                              it to the stored bytes' XXH3-64. */
} airllm_ct_tensor;

typedef struct {
    uint16_t version_major, version_minor;
    airllm_unit_kind unit_kind;
    int32_t layer_index; /* decoder layer number, -1 for other units */
    uint64_t header_bytes; /* fixed + table + names, before padding */
    uint64_t data_start;   /* multiple of 4096 */
    uint64_t file_size;    /* multiple of 4096 */
    uint64_t check_offset; /* format 1.2: the check block's offset; 0 before */
    int has_checks;        /* the check block was read, its fixed-header hash
                              matched, and the tensors' xxh3 are set */
    uint32_t n_tensors;
    airllm_ct_tensor *tensors; /* in file order, ascending offset */
} airllm_ct_header;

/* ---- block-quantized tensors (format 1.1, formats/container.md 7.3) ----
 *
 * A quantized tensor keeps the dtype and shape of its source (F32, F16 or
 * BF16; raw_len = shape x that dtype) and stores, from its offset:
 *   codes      codes_len bytes (4-bit: two per byte, high nibble first;
 *              int8: one per byte), at 0
 *   scales     at scales_off = align_up(codes_len, 64):
 *     plain:        nblocks float32 absmax
 *     double quant: nblocks uint8 codes of the absmax values, then at
 *                   dq_offset_off = align_up(scales_off + nblocks, 4) one
 *                   float32 offset and nblocks2 = ceil(nblocks / 256)
 *                   float32 absmax2 at dq_absmax2_off
 * and nothing after. docs/quantization.md defines the numbers. */
#define AIRLLM_CT_QFLAG_DOUBLE_QUANT 1u
#define AIRLLM_CT_QFLAGS_KNOWN 1u

typedef struct {
    uint64_t n;           /* elements */
    uint32_t block;
    int double_quant;
    uint64_t nblocks;     /* ceil(n / block) */
    uint64_t codes_len;
    uint64_t scales_off;
    uint64_t dq_offset_off, dq_absmax2_off, nblocks2; /* double quant only */
    uint64_t stored_len;
} airllm_ct_qlayout;

/* 1 for nf4, fp4, int8. */
int airllm_encoding_is_quant(airllm_encoding e);
/* The codebook of a quantized encoding, and back (the codes differ:
 * encodings are file codes, types are the kernels' enum). */
airllm_quant_type airllm_encoding_quant_type(airllm_encoding e); /* e must be quantized */
airllm_encoding airllm_quant_encoding(airllm_quant_type t);
/* Layout of a quantized tensor of n elements. Fails on a bad encoding or
 * block size or on overflow. */
int airllm_ct_qlayout_make(airllm_encoding enc, uint64_t n, uint32_t block, int double_quant,
                           airllm_ct_qlayout *out, airllm_err *err);
/* The layout of a parsed quantized tensor entry. */
int airllm_ct_tensor_qlayout(const airllm_ct_tensor *t, airllm_ct_qlayout *out,
                             airllm_err *err);
/* The per-block absmax of a quantized tensor from its scales section (the
 * stored bytes from scales_off to stored_len): copied, or decompressed for
 * double quant. absmax has room for l->nblocks floats. Fails on a
 * non-finite value. */
int airllm_ct_quant_absmax(const airllm_ct_qlayout *l, const uint8_t *scales, float *absmax,
                           airllm_err *err);
/* Dequantizes a whole quantized tensor into out (l->n floats). */
int airllm_ct_dequantize(airllm_encoding enc, const airllm_ct_qlayout *l, const uint8_t *stored,
                         float *out, airllm_err *err);

const char *airllm_unit_kind_name(airllm_unit_kind k); /* "embed", "layer", ... */
int airllm_unit_kind_from_name(const char *s, airllm_unit_kind *out);
const char *airllm_encoding_name(airllm_encoding e);    /* "raw", "zstd", ... */

/* Fills header_bytes, data_start, each tensor's offset (in table order,
 * each aligned to 4096) and file_size, from the names and stored_len of the
 * tensors already in h. Also sets the version. Returns -1 on overflow. */
int airllm_ct_layout(airllm_ct_header *h, airllm_err *err);

/* Serializes the header region [0, data_start) into a newly malloc'ed buffer
 * of data_start bytes (zero padded). h must have been laid out. */
int airllm_ct_encode(const airllm_ct_header *h, uint8_t **out, size_t *out_len,
                     airllm_err *err);

/* Parses and validates a container header. buf holds the first len bytes of
 * the file (at least header_bytes of them; the whole file is fine);
 * file_size is the real size of the file. Checks magic, version, counts
 * bounded by bytes present, names (length, UTF-8, unique), dtype, encoding,
 * shape x dtype == raw_len without overflow, raw stored_len == raw_len,
 * alignment, ascending non-overlapping in-range offsets, file_size equal to
 * the aligned end of the last tensor. Messages do not name the file. */
int airllm_ct_parse(const uint8_t *buf, size_t len, uint64_t file_size,
                    airllm_ct_header *out, airllm_err *err);

/* Reads the header of a container file; messages name the file. For format
 * 1.2 it also reads the check block, checks the fixed header's XXH3 and
 * sets has_checks and the tensors' xxh3. */
int airllm_ct_read_file(const char *path, airllm_ct_header *out, airllm_err *err);

/* ---- format 1.2 check block (formats/container.md section 4.1) ---- */

/* Bytes of the check block's content for n tensors: 8 + 8n. */
uint64_t airllm_ct_checks_len(uint32_t n);

/* Serializes the check block region [check_offset, file_size) (zero padded)
 * of a laid-out 1.2 header whose tensors' xxh3 hold their stored bytes'
 * XXH3-64. */
int airllm_ct_encode_checks(const airllm_ct_header *h, uint8_t **out, size_t *out_len,
                            airllm_err *err);

/* Applies a check block to a parsed 1.2 header: hdr holds the file's first
 * hdr_len >= header_bytes bytes, blk the blk_len bytes from check_offset
 * (at least airllm_ct_checks_len; any more must be zero padding). Checks the
 * fixed header's XXH3 and sets has_checks and every tensor's xxh3. Parsing
 * a buffer that covers the block does this already. */
int airllm_ct_apply_checks(airllm_ct_header *h, const uint8_t *hdr, size_t hdr_len,
                           const uint8_t *blk, size_t blk_len, airllm_err *err);

/* Compares XXH3-64 of tensor i's stored bytes with the check block (the
 * header must have has_checks). The message names the tensor, not the
 * file. */
int airllm_ct_check_tensor(const airllm_ct_header *h, uint32_t i, const uint8_t *stored,
                           airllm_err *err);
/* The same for an XXH3-64 the caller computed itself (streamed, in parts). */
int airllm_ct_check_value(const airllm_ct_header *h, uint32_t i, uint64_t got,
                          airllm_err *err);

void airllm_ct_free(airllm_ct_header *h);

long airllm_ct_find(const airllm_ct_header *h, const char *name);

static inline uint64_t airllm_align_up(uint64_t x, uint64_t a)
{
    return (x + (a - 1)) / a * a;
}

#endif
