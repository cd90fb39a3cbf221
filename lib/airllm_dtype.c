#include "airllm_dtype.h"

#include <string.h>

static const struct {
    const char *name;
    unsigned bits;
} dtype_info[AIRLLM_DTYPE_COUNT] = {
    [AIRLLM_DTYPE_BOOL] = {"BOOL", 8},       [AIRLLM_DTYPE_U8] = {"U8", 8},
    [AIRLLM_DTYPE_I8] = {"I8", 8},           [AIRLLM_DTYPE_U16] = {"U16", 16},
    [AIRLLM_DTYPE_I16] = {"I16", 16},        [AIRLLM_DTYPE_U32] = {"U32", 32},
    [AIRLLM_DTYPE_I32] = {"I32", 32},        [AIRLLM_DTYPE_U64] = {"U64", 64},
    [AIRLLM_DTYPE_I64] = {"I64", 64},        [AIRLLM_DTYPE_F16] = {"F16", 16},
    [AIRLLM_DTYPE_BF16] = {"BF16", 16},      [AIRLLM_DTYPE_F32] = {"F32", 32},
    [AIRLLM_DTYPE_F64] = {"F64", 64},        [AIRLLM_DTYPE_F8_E4M3] = {"F8_E4M3", 8},
    [AIRLLM_DTYPE_F8_E5M2] = {"F8_E5M2", 8}, [AIRLLM_DTYPE_F8_E8M0] = {"F8_E8M0", 8},
    [AIRLLM_DTYPE_C64] = {"C64", 64},        [AIRLLM_DTYPE_F4] = {"F4", 4},
    [AIRLLM_DTYPE_F6_E2M3] = {"F6_E2M3", 6}, [AIRLLM_DTYPE_F6_E3M2] = {"F6_E3M2", 6},
};

const char *airllm_dtype_name(airllm_dtype dt)
{
    if ((unsigned)dt >= AIRLLM_DTYPE_COUNT)
        return NULL;
    return dtype_info[dt].name;
}

int airllm_dtype_from_name(const char *name, airllm_dtype *out)
{
    for (unsigned i = 0; i < AIRLLM_DTYPE_COUNT; i++) {
        if (strcmp(name, dtype_info[i].name) == 0) {
            *out = (airllm_dtype)i;
            return 0;
        }
    }
    return -1;
}

unsigned airllm_dtype_bits(airllm_dtype dt)
{
    if ((unsigned)dt >= AIRLLM_DTYPE_COUNT)
        return 0;
    return dtype_info[dt].bits;
}

int airllm_shape_nbytes(airllm_dtype dt, const uint64_t *shape, unsigned ndim,
                        uint64_t *nelems, uint64_t *nbytes)
{
    unsigned bits = airllm_dtype_bits(dt);
    if (bits == 0 || ndim > AIRLLM_MAX_DIMS)
        return -1;
    uint64_t n = 1;
    for (unsigned i = 0; i < ndim; i++) {
        if (shape[i] != 0 && n > UINT64_MAX / shape[i])
            return -1;
        n *= shape[i];
    }
    /* bits * n must fit and be a whole number of bytes. */
    if (n > UINT64_MAX / bits)
        return -1;
    uint64_t total_bits = n * bits;
    if (total_bits % 8 != 0)
        return -1;
    if (nelems)
        *nelems = n;
    if (nbytes)
        *nbytes = total_bits / 8;
    return 0;
}
