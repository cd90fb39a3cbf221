/* libFuzzer target: the tiktoken ranks file reader must never crash, leak or
 * read out of bounds, whatever the bytes; a file that loads, with Qwen's
 * specials added after its ranks, must encode a fixed text and decode any
 * ids without doing so either.
 *
 * Input: the whole ranks file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "airllm_tiktoken.h"

static const char text[] = "Hello  world!\n<|im_start|>user it's 12345 CAF\xc3\x89 \xe4\xb8\xad"
                           "\xf0\x9f\x98\x80\t\r\n  x<|endoftext|><|extra_204|>   ";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    airllm_tiktoken *t;
    airllm_err err;
    if (airllm_tiktoken_load_buffer((const char *)data, size, NULL, &t, &err))
        return 0;
    airllm_tiktoken_add_qwen_specials(t, (int32_t)airllm_tiktoken_n_ranks(t), &err);
    int32_t *ids;
    size_t n;
    char *out;
    size_t len;
    if (airllm_tiktoken_encode(t, text, sizeof text - 1, &ids, &n, &err) == 0) {
        if (airllm_tiktoken_decode(t, ids, n, &out, &len, &err) == 0)
            free(out);
        free(ids);
    }
    if (airllm_tiktoken_encode_ordinary(t, text, sizeof text - 1, &ids, &n, &err) == 0)
        free(ids);
    size_t nid = size / 4 < 64 ? size / 4 : 64;
    int32_t raw[64];
    for (size_t i = 0; i < nid; i++) {
        uint32_t v;
        memcpy(&v, data + size - 4 * (i + 1), 4);
        raw[i] = (int32_t)(v % (airllm_tiktoken_vocab_size(t) + 8)) - 4;
    }
    if (airllm_tiktoken_decode(t, raw, nid, &out, &len, &err) == 0)
        free(out);
    airllm_tiktoken_free(t);
    return 0;
}
