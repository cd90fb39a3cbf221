/* Element types, shared by the safetensors reader and the container.
 * The numeric codes are part of the container format (formats/container.md)
 * and must never be renumbered. */
#ifndef AIRLLM_DTYPE_H
#define AIRLLM_DTYPE_H

#include <stdint.h>
#include <stddef.h>

typedef enum {
    AIRLLM_DTYPE_BOOL = 0,
    AIRLLM_DTYPE_U8 = 1,
    AIRLLM_DTYPE_I8 = 2,
    AIRLLM_DTYPE_U16 = 3,
    AIRLLM_DTYPE_I16 = 4,
    AIRLLM_DTYPE_U32 = 5,
    AIRLLM_DTYPE_I32 = 6,
    AIRLLM_DTYPE_U64 = 7,
    AIRLLM_DTYPE_I64 = 8,
    AIRLLM_DTYPE_F16 = 9,
    AIRLLM_DTYPE_BF16 = 10,
    AIRLLM_DTYPE_F32 = 11,
    AIRLLM_DTYPE_F64 = 12,
    AIRLLM_DTYPE_F8_E4M3 = 13,
    AIRLLM_DTYPE_F8_E5M2 = 14,
    AIRLLM_DTYPE_F8_E8M0 = 15,
    AIRLLM_DTYPE_C64 = 16,
    AIRLLM_DTYPE_F4 = 17,      /* 4 bits per element, packed */
    AIRLLM_DTYPE_F6_E2M3 = 18, /* 6 bits per element, packed */
    AIRLLM_DTYPE_F6_E3M2 = 19,
    AIRLLM_DTYPE_COUNT
} airllm_dtype;

#define AIRLLM_MAX_DIMS 8

/* Safetensors spelling ("BF16"), or NULL for an unknown code. */
const char *airllm_dtype_name(airllm_dtype dt);
/* Parses a safetensors dtype string; returns -1 if unknown. */
int airllm_dtype_from_name(const char *name, airllm_dtype *out);
/* Bits per element (1..128). */
unsigned airllm_dtype_bits(airllm_dtype dt);

/* Number of elements of a shape, and the byte size for a dtype. Returns -1 if
 * the product or the byte count overflows uint64, or if the bit count is not
 * a whole number of bytes. A 0-d shape (ndim 0) has one element. */
int airllm_shape_nbytes(airllm_dtype dt, const uint64_t *shape, unsigned ndim,
                        uint64_t *nelems, uint64_t *nbytes);

#endif
