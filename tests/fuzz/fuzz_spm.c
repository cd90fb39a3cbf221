/* libFuzzer target: the SentencePiece tokenizer.model reader must never
 * crash, leak or read out of bounds, whatever the bytes; a model that loads
 * must encode a fixed text and decode any ids without doing so either.
 *
 * Input: the whole tokenizer.model. Its last bytes, read as ids, are also
 * decoded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_spm.h"

static const char text[] = "Hello  world!\n<s> it's 12345 caf\xc3\xa9 \xe4\xb8\xad\xf0\x9f\x98\x80\t"
                           "<0x41> \xe2\x96\x81x   ";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    airllm_spm *m;
    airllm_err err;
    if (airllm_spm_load_buffer(data, size, NULL, &m, &err))
        return 0;
    int32_t *ids;
    size_t n;
    char *out;
    size_t len;
    if (airllm_spm_encode(m, text, sizeof text - 1, &ids, &n, &err) == 0) {
        if (airllm_spm_decode(m, ids, n, &out, &len, &err) == 0)
            free(out);
        free(ids);
    }
    /* ids from the input's tail: any id, valid or not, must decode */
    size_t nid = size / 4 < 64 ? size / 4 : 64;
    int32_t raw[64];
    for (size_t i = 0; i < nid; i++) {
        uint32_t v;
        memcpy(&v, data + size - 4 * (i + 1), 4);
        raw[i] = (int32_t)(v % (airllm_spm_size(m) + 8)) - 4;
    }
    if (airllm_spm_decode(m, raw, nid, &out, &len, &err) == 0)
        free(out);
    airllm_spm_free(m);
    return 0;
}
