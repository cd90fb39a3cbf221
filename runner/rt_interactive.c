/* airllm-run -i: multi-turn chat. The conversation (messages, as text) is
 * the state; the KV cache is a cache of its rendering. Each turn renders the
 * whole conversation with the family's template (rt_chat_encode), keeps the
 * cached positions it shares with the new prompt and prefills the rest: the
 * new user turn (and the template's closing of the previous answer). Keeping
 * the text rather than the generated ids is what the families' own chat()
 * functions do, so answer N equals a single-shot run of the conversation so
 * far (airllm-run --messages), token for token. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "rt_interactive.h"

/* Set by SIGINT, read and cleared by the generation loop (one thread). */
static volatile sig_atomic_t g_interrupt;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupt = 1;
}

typedef struct {
    rt_chat_msg *v; /* role is static; content and metadata are owned */
    size_t n, cap;
    size_t keep; /* the system message, kept by /reset */
} history;

static int hist_add(history *h, const char *role, const char *content, const char *meta)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 16;
        rt_chat_msg *v = realloc(h->v, cap * sizeof *v);
        if (!v)
            return -1;
        h->v = v;
        h->cap = cap;
    }
    rt_chat_msg *m = &h->v[h->n];
    m->role = role;
    m->content = strdup(content);
    m->metadata = meta ? strdup(meta) : NULL;
    if (!m->content || (meta && !m->metadata)) {
        free((char *)m->content);
        free((char *)m->metadata);
        return -1;
    }
    h->n++;
    return 0;
}

static void hist_trim(history *h, size_t n)
{
    while (h->n > n) {
        h->n--;
        free((char *)h->v[h->n].content);
        free((char *)h->v[h->n].metadata);
    }
}

/* Points the sequence at the new prompt, keeping the cached positions it
 * shares with it; at least the last prompt token is run, for its logits.
 * Returns how many positions will be prefilled. */
static size_t seq_retarget(rt_seq *s, const int32_t *ids, size_t n)
{
    size_t k = 0, lim = s->n_cached < n ? s->n_cached : n;
    while (k < lim && s->ids[k] == ids[k])
        k++;
    if (k == n)
        k = n - 1;
    memcpy(s->ids + k, ids + k, (n - k) * sizeof *ids);
    s->n_cached = k;
    s->n_ids = s->n_prompt = n;
    s->done = false;
    return n - k;
}

/* -i --json: one result line per answer (docs/json.md), with the turn in
 * the conversation and the positions prefilled for it. */
static void print_json(size_t index, size_t turn, size_t prefilled, const rt_seq *s,
                       const char *text, const char *why)
{
    cJSON *j = rt_json_result(index, s, text, why);
    cJSON_AddNumberToObject(j, "turn", (double)turn);
    cJSON_AddNumberToObject(j, "prefilled_tokens", (double)prefilled);
    cli_json_emit(j);
}

/* One answer: generates into s after its prompt, streaming the text unless
 * json. *why: eos, stop, length, interrupted or context (docs/json.md's
 * finish_reason). */
static int answer(rt_model *m, const airllm_tokenizer *tok, const rt_chat *chat,
                  rt_sampler *smp, const rt_interactive_opts *o, rt_seq *s,
                  airllm_tok_decoder *dec, float *logits, const char **why, airllm_err *err)
{
    rt_seq *one = s;
    airllm_tok_decoder_reset(dec);
    g_interrupt = 0;
    *why = "length";
    for (long g = 0; g < o->max_new; g++) {
        if (s->n_ids >= s->ctx) {
            *why = "context";
            break;
        }
        if (rt_forward(m, &one, 1, logits, err))
            return -1;
        rt_repeat_penalty(smp, logits, m->cfg.vocab, s->ids, s->n_ids);
        int32_t id = rt_sample(smp, logits, m->cfg.vocab);
        s->ids[s->n_ids++] = id;
        const char *stop = rt_finish_reason(&m->cfg, tok, chat, id);
        if (stop) {
            *why = stop;
            break;
        }
        const char *t;
        size_t len;
        if (!o->json && airllm_tok_decoder_feed(dec, id, &t, &len, err) == 0 && len) {
            fwrite(t, 1, len, stdout);
            fflush(stdout);
        }
        if (g_interrupt) {
            *why = "interrupted";
            break;
        }
    }
    if (!o->json) {
        const char *t;
        size_t len;
        if (airllm_tok_decoder_flush(dec, &t, &len, err) == 0 && len)
            fwrite(t, 1, len, stdout);
        putchar('\n');
        fflush(stdout);
    }
    return 0;
}

int rt_interactive(rt_model *m, const airllm_tokenizer *tok, const rt_chat *chat,
                   rt_sampler *smp, const rt_interactive_opts *o, FILE *in, airllm_err *err)
{
    history h = {0};
    rt_seq s;
    bool have_seq = false;
    char *line = NULL;
    size_t line_cap = 0;
    float *logits = malloc(sizeof(float) * (size_t)m->cfg.vocab);
    airllm_tok_decoder *dec = NULL;
    int rc = logits ? 0 : airllm_errf(err, "out of memory");
    if (!rc)
        rc = airllm_tok_decoder_new(tok, 1, &dec, err);
    if (!rc && o->system && hist_add(&h, "system", o->system, NULL))
        rc = airllm_errf(err, "out of memory");
    h.keep = h.n;
    /* Ctrl-C ends the answer, not the program; no SA_RESTART, so that a
     * read at the prompt returns and the prompt is shown again. */
    struct sigaction sa = {0}, old_sa;
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_sa);
    bool tty = isatty(fileno(in));
    if (!rc && tty && !o->json)
        fprintf(stderr, "chat template %s; /reset starts over, /exit or Ctrl-D ends, Ctrl-C "
                        "stops an answer\n",
                rt_chat_name(chat->kind));
    for (size_t turn = 1; !rc;) {
        if (tty && !o->json) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        errno = 0;
        ssize_t got = getline(&line, &line_cap, in);
        if (got < 0) {
            if (errno == EINTR && !feof(in)) {
                clearerr(in);
                fputs("\n", stdout);
                continue;
            }
            break; /* EOF */
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            line[--got] = '\0';
        if (got == 0)
            continue;
        if (strcmp(line, "/exit") == 0 || strcmp(line, "/quit") == 0)
            break;
        if (strcmp(line, "/reset") == 0) {
            hist_trim(&h, h.keep);
            if (have_seq)
                s.n_cached = 0;
            turn = 1;
            cli_info("(a new conversation)");
            continue;
        }
        if (hist_add(&h, "user", line, NULL)) {
            rc = airllm_errf(err, "out of memory");
            break;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        if (rt_chat_encode(chat, tok, h.v, h.n, &ids, &n, err)) {
            /* a message the template refuses: say so, keep chatting */
            cli_error("%s", err->msg);
            hist_trim(&h, h.n - 1);
            continue;
        }
        if (n + 1 > o->ctx) {
            cli_error("the context is full: this conversation needs %zu positions and %zu are "
                      "available (--ctx); /reset starts a new one",
                      n + 1, o->ctx);
            free(ids);
            hist_trim(&h, h.n - 1);
            continue;
        }
        size_t prefilled = n;
        if (!have_seq) {
            rc = rt_seq_init(&s, m, ids, n, o->ctx, err);
            have_seq = rc == 0;
        } else {
            prefilled = seq_retarget(&s, ids, n);
        }
        free(ids);
        const char *why = "";
        double t0 = airllm_now();
        size_t before = s.n_ids;
        if (!rc)
            rc = answer(m, tok, chat, smp, o, &s, dec, logits, &why, err);
        if (rc)
            break;
        if (o->totals) {
            o->totals->sequences++;
            o->totals->steps += s.n_ids - before;
            o->totals->tokens_generated += s.n_ids - s.n_prompt;
            o->totals->generate_s += airllm_now() - t0;
        }
        /* the text leaves out the closing EOS or stop token */
        size_t end = s.n_ids - (strcmp(why, "eos") == 0 || strcmp(why, "stop") == 0);
        char *text = NULL;
        size_t len = 0;
        if (airllm_tok_decode(tok, s.ids + s.n_prompt, end - s.n_prompt, 1, &text, &len,
                              err)) {
            rc = -1;
            break;
        }
        if (o->json)
            print_json(o->totals ? o->totals->sequences - 1 : 0, turn, prefilled, &s, text, why);
        if (strcmp(why, "context") == 0)
            cli_error("the context is full (%zu positions, --ctx): the answer stops here; "
                      "/reset starts a new conversation",
                      s.ctx);
        else if (strcmp(why, "interrupted") == 0)
            cli_info("(stopped)");
        const char *content, *meta;
        rt_chat_answer(chat, text, &content, &meta);
        if (hist_add(&h, "assistant", content, meta))
            rc = airllm_errf(err, "out of memory");
        free(text);
        turn++;
    }
    sigaction(SIGINT, &old_sa, NULL);
    free(line);
    hist_trim(&h, 0);
    free(h.v);
    if (have_seq)
        rt_seq_free(&s);
    airllm_tok_decoder_free(dec);
    free(logits);
    return rc;
}
