/* libFuzzer target for the container header parser. The input is treated as
 * a whole file (file_size = size), so every length and offset in it is
 * hostile. Accepted headers are re-encoded and must give back the same
 * header bytes: the parser and the writer agree on the canonical layout.
 * Format 1.2: an accepted file's check block must re-encode to the same
 * bytes too, and the input is tried a second time with the fixed header's
 * XXH3 made right, so mutations of the fixed header reach the rules behind
 * that checksum instead of all stopping at it. */
#include "airllm_container.h"

#include "airllm_bytes.h"
#include "airllm_hash.h"

#include <stdlib.h>
#include <string.h>

static void one(const uint8_t *data, size_t size)
{
    airllm_ct_header h;
    airllm_err err;
    if (airllm_ct_parse(data, size, size, &h, &err) != 0)
        return;
    uint8_t *enc;
    size_t n;
    if (airllm_ct_encode(&h, &enc, &n, &err) != 0)
        abort(); /* parse accepted what encode refuses */
    if (n != h.data_start || n > size || memcmp(enc, data, n) != 0)
        abort(); /* header did not round-trip */
    free(enc);
    for (uint32_t i = 0; i < h.n_tensors; i++)
        if (airllm_ct_find(&h, h.tensors[i].name) != (long)i)
            abort(); /* names are unique */
    if (h.version_minor >= 2) {
        /* the whole file was given, so the block was applied */
        if (!h.has_checks)
            abort();
        if (airllm_ct_encode_checks(&h, &enc, &n, &err) != 0)
            abort();
        if (n != h.file_size - h.check_offset || memcmp(enc, data + h.check_offset, n) != 0)
            abort(); /* check block did not round-trip */
        free(enc);
        for (uint32_t i = 0; i < h.n_tensors; i++)
            airllm_ct_check_tensor(&h, i, data + h.tensors[i].offset, &err);
    }
    airllm_ct_free(&h);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(data, size);
    if (size < 64 || airllm_get_le16(data + 10) < 2)
        return 0;
    uint64_t co = airllm_get_le64(data + 48);
    if (co > size - 8)
        return 0;
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    airllm_put_le64(fixed + co, airllm_xxh3(fixed, 64));
    one(fixed, size);
    free(fixed);
    return 0;
}
