/* libFuzzer target for the zstd tensor decoder. The first 4 bytes choose
 * small parameters (byte-group width, chunk size, raw_len <= 1 MiB); the
 * rest is the stored stream. Decoding must fail cleanly or produce exactly
 * raw_len bytes, never crash or read out of bounds. */
#include "airllm_codec.h"

#include <stdlib.h>
#include <string.h>

#define MAX_RAW (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    static const unsigned widths[3] = {0, 2, 4};
    unsigned width = widths[data[0] % 3];
    /* chunk: 4 KiB .. 64 KiB, a multiple of 4096 as the container requires */
    uint32_t chunk = 4096u * (1u + (data[1] & 15u));
    /* raw_len: 0 .. 1 MiB, a multiple of the element size */
    uint32_t raw_len = ((uint32_t)data[2] | (uint32_t)data[3] << 8) * 16u;
    if (raw_len > MAX_RAW)
        raw_len = MAX_RAW;
    if (width)
        raw_len -= raw_len % width;
    const uint8_t *src = data + 4;
    size_t src_len = size - 4;

    uint8_t *dst = malloc(raw_len ? raw_len : 1);
    uint8_t *scratch = malloc(chunk);
    airllm_err err;
    if (!dst || !scratch)
        abort();
    (void)airllm_zstd_tensor_decode(dst, raw_len, src, src_len, width, chunk, scratch,
                                    &err);

    /* The single-frame entry point as well, with a buffer of chunk bytes. */
    size_t produced, consumed;
    if (airllm_zstd_frame_decode(dst, raw_len < chunk ? raw_len : chunk, &produced, src,
                                 src_len, &consumed, width, scratch, &err) == 0) {
        if (consumed > src_len || produced > chunk)
            abort();
    }
    free(dst);
    free(scratch);
    return 0;
}
