/* Chat templates (runner/rt_chat.c) against the families' own code: for each
 * case of tests/data/chat/chat.json (made by scripts/make_chat_fixtures.py
 * from qwen_generation_utils.make_context, ChatGLM's build_chat_input /
 * build_prompt, Baichuan's build_chat_input, InternLM's build_inputs and
 * transformers' apply_chat_template), the prompt ids rt_chat_encode builds
 * from the fixture directory's tokenizer and config files must be the same.
 * Also: the template each directory picks, its stop ids, the refusals, and
 * ChatGLM3's answer processing. */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "airllm_io.h"
#include "airllm_tokenizer.h"
#include "rt_chat.h"
#include "test_util.h"

static const char *data_dir;

static int open_dir(const char *name, airllm_tokenizer **tok, rt_chat *c, const char *force)
{
    char dir[4096];
    airllm_err err = {{0}};
    snprintf(dir, sizeof dir, "%s/%s", data_dir, name);
    if (airllm_tok_load(dir, tok, &err)) {
        CHECK(0, "%s: tokenizer: %s", name, err.msg);
        return -1;
    }
    if (rt_chat_open(c, dir, force, *tok, &err)) {
        CHECK(0, "%s: template: %s", name, err.msg);
        airllm_tok_free(*tok);
        return -1;
    }
    return 0;
}

static void check_cases(void)
{
    char path[4096];
    char *text;
    size_t len;
    airllm_err err = {{0}};
    snprintf(path, sizeof path, "%s/chat.json", data_dir);
    if (airllm_read_small_file(path, 16u << 20, &text, &len, &err)) {
        CHECK(0, "%s", err.msg);
        return;
    }
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    const cJSON *cases = cJSON_GetObjectItem(root, "cases"), *cs;
    CHECK(cJSON_GetArraySize(cases) >= 30, "chat.json has its cases");
    int n_cases = 0;
    cJSON_ArrayForEach(cs, cases)
    {
        const char *dir = cJSON_GetObjectItem(cs, "dir")->valuestring;
        const cJSON *msgs = cJSON_GetObjectItem(cs, "messages"), *m;
        const cJSON *want = cJSON_GetObjectItem(cs, "ids");
        airllm_tokenizer *tok;
        rt_chat c;
        if (open_dir(dir, &tok, &c, NULL))
            continue;
        size_t nm = (size_t)cJSON_GetArraySize(msgs), k = 0;
        rt_chat_msg *v = calloc(nm, sizeof *v);
        cJSON_ArrayForEach(m, msgs)
        {
            v[k].role = cJSON_GetObjectItem(m, "role")->valuestring;
            v[k].content = cJSON_GetObjectItem(m, "content")->valuestring;
            k++;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int rc = rt_chat_encode(&c, tok, v, nm, &ids, &n, &err);
        bool same = rc == 0 && n == (size_t)cJSON_GetArraySize(want);
        for (size_t i = 0; same && i < n; i++)
            same = ids[i] == cJSON_GetArrayItem(want, (int)i)->valueint;
        CHECK(same, "%s, %zu messages: %s (%zu ids, want %d)", dir, nm,
              rc ? err.msg : "ids differ from the family's code", n, cJSON_GetArraySize(want));
        if (!same && rc == 0) {
            for (size_t i = 0; i < n; i++)
                printf("%d,", ids[i]);
            printf("\n");
        }
        n_cases++;
        free(ids);
        free(v);
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    printf("%d template cases compared\n", n_cases);
    cJSON_Delete(root);
}

static void check_pick(void)
{
    static const struct {
        const char *dir;
        rt_chat_kind kind;
        const char *stops[4];
    } want[] = {
        {"qwen", RT_CHAT_QWEN, {"<|im_end|>", "<|im_start|>", "<|endoftext|>"}},
        {"chatglm3", RT_CHAT_CHATGLM3, {"</s>", "<|user|>", "<|observation|>"}},
        {"chatglm2", RT_CHAT_CHATGLM2, {"</s>"}},
        {"baichuan", RT_CHAT_BAICHUAN, {"</s>"}},
        {"internlm", RT_CHAT_INTERNLM, {"</s>", "<eoa>"}},
        {"internlm2", RT_CHAT_INTERNLM2, {"</s>", "<|im_end|>"}},
        {"chatml", RT_CHAT_CHATML, {"<|im_end|>"}},
        {"llama2", RT_CHAT_LLAMA2, {"</s>"}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        airllm_tokenizer *tok;
        rt_chat c;
        if (open_dir(want[i].dir, &tok, &c, NULL))
            continue;
        CHECK(c.kind == want[i].kind, "%s picks %s, not %s", want[i].dir,
              rt_chat_name(want[i].kind), rt_chat_name(c.kind));
        int n = 0;
        for (int s = 0; s < 4 && want[i].stops[s]; s++, n++) {
            int32_t id = airllm_tok_id_of(tok, want[i].stops[s], strlen(want[i].stops[s]));
            CHECK(id >= 0 && rt_chat_is_stop(&c, id), "%s: %s stops an answer", want[i].dir,
                  want[i].stops[s]);
        }
        CHECK(c.n_stop == n, "%s: %d stop ids, want %d", want[i].dir, c.n_stop, n);
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    /* the default system prompts */
    airllm_tokenizer *tok;
    rt_chat c;
    if (open_dir("chatml", &tok, &c, NULL) == 0) {
        CHECK(c.default_system &&
                  strcmp(c.default_system,
                         "You are a helpful AI assistant named SmolLM, trained by Hugging Face") ==
                      0,
              "SmolLM2's built-in system prompt is read from its chat_template");
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    if (open_dir("qwen", &tok, &c, NULL) == 0) {
        CHECK(c.default_system && strcmp(c.default_system, "You are a helpful assistant.") == 0,
              "Qwen's default system prompt");
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    /* --template forces one; an unknown name and a missing token are errors */
    if (open_dir("qwen", &tok, &c, "chatml") == 0) {
        CHECK(c.kind == RT_CHAT_CHATML, "--template chatml on a Qwen directory");
        rt_chat_free(&c);
        airllm_err err = {{0}};
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/qwen", data_dir);
        CHECK(rt_chat_open(&c, dir, "vicuna", tok, &err) != 0 && strstr(err.msg, "vicuna"),
              "an unknown template is named: %s", err.msg);
        CHECK(rt_chat_open(&c, dir, "llama3", tok, &err) != 0 && strstr(err.msg, "<|eot_id|>"),
              "a template's missing token is named: %s", err.msg);
        CHECK(rt_chat_open(&c, dir, "baichuan", tok, &err) != 0 &&
                  strstr(err.msg, "generation_config.json"),
              "Baichuan without user_token_id: %s", err.msg);
        airllm_tok_free(tok);
    }
}

static void check_refusals(void)
{
    airllm_tokenizer *tok;
    rt_chat c;
    airllm_err err = {{0}};
    int32_t *ids = NULL;
    size_t n;
    if (open_dir("internlm", &tok, &c, NULL) == 0) {
        rt_chat_msg m[2] = {{"system", "x", NULL}, {"user", "hi", NULL}};
        CHECK(rt_chat_encode(&c, tok, m, 2, &ids, &n, &err) != 0 && strstr(err.msg, "system"),
              "InternLM v1 has no system prompt: %s", err.msg);
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    if (open_dir("chatml", &tok, &c, NULL) == 0) {
        rt_chat_msg a[2] = {{"user", "hi", NULL}, {"assistant", "hello", NULL}};
        CHECK(rt_chat_encode(&c, tok, a, 2, &ids, &n, &err) != 0 && strstr(err.msg, "last"),
              "a conversation ending with the assistant is refused: %s", err.msg);
        rt_chat_msg b[2] = {{"user", "hi", NULL}, {"user", "again", NULL}};
        CHECK(rt_chat_encode(&c, tok, b, 2, &ids, &n, &err) != 0 && strstr(err.msg, "message 2"),
              "two user messages in a row are refused: %s", err.msg);
        CHECK(rt_chat_encode(&c, tok, b, 0, &ids, &n, &err) != 0, "no message is refused");
        /* a plain prompt: the tokenizer's BOS rule (none here) */
        CHECK(rt_chat_encode_plain(&c, tok, "hi", 2, &ids, &n, &err) == 0 && n > 0 &&
                  ids[0] != c.im_start,
              "plain prompt without template");
        free(ids);
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
    if (open_dir("chatglm3", &tok, &c, NULL) == 0) {
        CHECK(rt_chat_encode_plain(&c, tok, "hi", 2, &ids, &n, &err) == 0 && n > 2 &&
                  ids[0] == c.gmask && ids[1] == c.sop,
              "a plain ChatGLM prompt starts with [gMASK] sop");
        free(ids);
        /* process_response: the metadata line split off, the content stripped */
        char a1[] = "\n  Hello there. \n";
        const char *content, *meta;
        rt_chat_answer(&c, a1, &content, &meta);
        CHECK(strcmp(meta, "") == 0 && strcmp(content, "Hello there.") == 0,
              "ChatGLM3 answer: '%s' / '%s'", meta, content);
        char a2[] = "tool_name\n{\"x\": 1}";
        rt_chat_answer(&c, a2, &content, &meta);
        CHECK(strcmp(meta, "tool_name") == 0 && strcmp(content, "{\"x\": 1}") == 0,
              "ChatGLM3 tool answer keeps its metadata");
        rt_chat_free(&c);
        airllm_tok_free(tok);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_chat tests/data/chat\n");
        return 2;
    }
    data_dir = argv[1];
    check_cases();
    check_pick();
    check_refusals();
    return test_summary();
}
