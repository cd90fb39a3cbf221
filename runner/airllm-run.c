/* airllm-run: runs a directory written by airllm-split or airllm-quant on the
 * CPU, streaming the layers that do not fit the memory budget from disk with
 * a prefetch thread (runner/rt_store.c), and generates text.
 *
 * Batch: with --prompts FILE every prompt runs together; each layer read
 * serves all of them, and each sequence's output is what it would be alone
 * (attention only ever looks at its own sequence's cache). */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "airllm_bytes.h"
#include "airllm_io.h"
#include "airllm_tokenizer.h"
#include "cli.h"
#include "rt.h"
#include "rt_chat.h"
#include "rt_cuda.h"
#include "rt_interactive.h"
#include "rt_json.h"
#include "rt_opts.h"
#include "rt_prompts.h"

typedef struct {
    const char *dir, *prompt, *prompt_file, *ids, *prompts_file, *messages, *dump_logits;
    const char *system, *template_name;
    bool interactive;
    uint64_t ctx; /* -i: KV positions, 0: the default */
    bool json, chat, profile;
    rt_opts ro; /* model, memory, device, sampling: shared with airllm-serve */
} run_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-run [options] MODEL_DIR\n"
            "Generate text with a directory written by airllm-split or airllm-quant, streaming\n"
            "from disk the layers that do not fit the memory budget.\n\n"
            "Input (one of):\n"
            "  -p, --prompt TEXT        the prompt\n"
            "  -f, --file FILE          the prompt is the whole file ('-': stdin; one final\n"
            "                           newline dropped)\n"
            "      --ids 1,2,3          token ids (no BOS is added)\n"
            "      --prompts FILE       one prompt per line, run together as a batch (a line\n"
            "                           ids:1,2,3 gives token ids; '-': stdin)\n"
            "      --messages FILE      a conversation, JSON [{\"role\": ..., \"content\": ...}]\n"
            "                           ending with the user's message ('-': stdin); implies\n"
            "                           --chat\n"
            "  -i, --interactive        chat on the terminal: one user message per line,\n"
            "                           /reset starts over, /exit or Ctrl-D ends, Ctrl-C stops\n"
            "                           an answer; the KV cache is kept between turns\n"
            "Chat:\n"
            "      --chat               wrap prompts in the model's chat template\n"
            "      --system TEXT        the system prompt (default: the template's own)\n"
            "      --template NAME      force a template: chatml, llama3, llama2, qwen,\n"
            "                           chatglm3, chatglm2, baichuan, internlm, internlm2\n"
            "      --ctx N              -i: positions of the conversation's KV cache\n"
            "                           (default: max_position_embeddings, at most 4096)\n"
            "Generation:\n"
            "  -n, --max-new-tokens N   tokens to generate (default 64; -i: 1024 per answer);\n"
            "                           stops at EOS or the template's stop tokens\n"
            "%s"
            "%s"
            "Output:\n"
            "      --json               JSON Lines: a result line per sequence as it finishes\n"
            "                           (generated_ids, text, finish_reason), then a summary\n"
            "      --dump-logits FILE   logits at the last prompt position, float32 LE\n"
            "                           (batch: one row per prompt)\n"
            "      --profile            per-layer read/decode/compute/wait times on stderr\n"
            "  -v, --verbose            the model, the memory plan and the prompt's tokens\n"
            "                           on stderr\n"
            "  -q, --quiet / -h, --help / -V, --version\n\n"
            "Exit status: 0 success, 1 failure, 2 usage error.\n",
            rt_opts_usage_gen, rt_opts_usage_mem);
}

static int parse_args(int argc, char **argv, run_opts *o)
{
    static const struct option own[] = {
        {"prompt", required_argument, 0, 'p'},    {"ids", required_argument, 0, 'I'},
        {"file", required_argument, 0, 'f'},      {"messages", required_argument, 0, 'm'},
        {"interactive", no_argument, 0, 'i' + 256}, {"system", required_argument, 0, 's'},
        {"template", required_argument, 0, 'X'},  {"ctx", required_argument, 0, 'c'},
        {"prompts", required_argument, 0, 'P'},   {"chat", no_argument, 0, 'C'},
        {"json", no_argument, 0, 'J'},            {"dump-logits", required_argument, 0, 'd'},
        {"profile", no_argument, 0, 'R'},         {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},         {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
    };
    enum { N_OWN = sizeof own / sizeof own[0] };
    struct option longopts[N_OWN + RT_OPTS_N + 1];
    rt_opts_table(own, N_OWN, longopts);
    memset(o, 0, sizeof *o);
    rt_opts_init(&o->ro);
    int ch, rc;
    opterr = 0; /* cli_getopt_error says it once */
    while ((ch = getopt_long(argc, argv, ":p:f:in:t:j:qvhV", longopts, NULL)) != -1) {
        if ((rc = rt_opts_parse(&o->ro, ch, optarg)) != 1) {
            if (rc)
                return rc;
            continue;
        }
        switch (ch) {
        case 'p': o->prompt = optarg; break;
        case 'f': o->prompt_file = optarg; break;
        case 'm': o->messages = optarg; o->chat = true; break;
        case 'i':
        case 'i' + 256: o->interactive = true; o->chat = true; break;
        case 's': o->system = optarg; break;
        case 'X': o->template_name = optarg; break;
        case 'c':
            if (cli_parse_uint(optarg, 2, 1u << 30, &o->ctx))
                return cli_usage_error("bad --ctx '%s'", optarg);
            break;
        case 'I': o->ids = optarg; break;
        case 'P': o->prompts_file = optarg; break;
        case 'C': o->chat = true; break;
        case 'J': o->json = true; break;
        case 'd': o->dump_logits = optarg; break;
        case 'R': o->profile = true; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': usage(stdout); exit(AIRLLM_EXIT_OK);
        case 'V': cli_print_version(); exit(AIRLLM_EXIT_OK);
        default: return cli_getopt_error(ch, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("expected MODEL_DIR");
    o->dir = argv[optind];
    if (!!o->prompt + !!o->prompt_file + !!o->ids + !!o->prompts_file + !!o->messages +
            o->interactive != 1)
        return cli_usage_error("give exactly one of --prompt, --file, --ids, --prompts, "
                               "--messages, --interactive");
    if (o->ids && o->chat)
        return cli_usage_error("--chat needs text, not --ids");
    if ((o->system || o->template_name) && !o->chat)
        return cli_usage_error("--system and --template need --chat, --messages or -i");
    if (o->system && o->messages)
        return cli_usage_error("--messages brings its own system message: drop --system");
    if (o->ctx && !o->interactive)
        return cli_usage_error("--ctx is for -i (other runs size the cache to the prompt)");
    if (o->interactive && (o->dump_logits || o->profile))
        return cli_usage_error("--dump-logits and --profile are not for -i");
    if (o->interactive && !o->ro.max_new_set)
        o->ro.max_new = 1024;
    return rt_opts_check(&o->ro);
}

/* ---- prompts ---- */

typedef struct {
    char *text;     /* NULL for --ids */
    int32_t *ids;
    size_t n;
    size_t line;    /* --prompts: its line in the file, from 1; else 0 */
} prompt;

/* --json: SIGINT ends the generation after the step in progress, and what
 * each sequence generated is still printed (finish_reason "interrupted"),
 * then the summary; the handler is reset on the first signal, so a second
 * Ctrl-C kills at once. Set by the handler, read by the generation loop. */
static volatile sig_atomic_t g_interrupted;

static void on_sigint(int sig)
{
    (void)sig;
    g_interrupted = 1;
}

/* A finished sequence's result line (--json). */
static void emit_result(const airllm_tokenizer *tok, size_t i, size_t line, const rt_seq *s,
                        const char *why)
{
    char *text = NULL;
    size_t len = 0;
    airllm_err e;
    if (tok && airllm_tok_decode(tok, s->ids + s->n_prompt, s->n_ids - s->n_prompt, 1, &text,
                                 &len, &e))
        text = NULL;
    cJSON *r = rt_json_result(i, s, text, why);
    if (line)
        cJSON_AddNumberToObject(r, "line", (double)line);
    cJSON *pi = cJSON_AddArrayToObject(r, "prompt_ids");
    for (size_t k = 0; k < s->n_prompt; k++)
        cJSON_AddItemToArray(pi, cJSON_CreateNumber(s->ids[k]));
    cli_json_emit(r);
    free(text);
}

/* ---- main ---- */

/* Whether dir has a tokenizer file airllm_tok_load reads. */
static bool has_tokenizer(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    if (access(p, F_OK) == 0)
        return true;
    snprintf(p, sizeof p, "%s/tokenizer.model", dir);
    if (access(p, F_OK) == 0)
        return true;
    DIR *d = opendir(dir);
    const struct dirent *e;
    bool found = false;
    while (d && !found && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        found = l > 9 && strcmp(e->d_name + l - 9, ".tiktoken") == 0;
    }
    if (d)
        closedir(d);
    return found;
}

static int fail(const run_opts *o, const airllm_err *err)
{
    cli_error("%s", err->msg);
    if (o && o->json)
        cli_json_error(AIRLLM_EXIT_FAIL, err->msg);
    return AIRLLM_EXIT_FAIL;
}

/* One text prompt's ids: a chat turn (with --system) under --chat, else
 * the text with the family's prefix (BOS, ChatGLM's [gMASK] sop). */
static int encode_text(const run_opts *o, const airllm_tokenizer *tok, const rt_chat *chat,
                       const char *text, int32_t **ids, size_t *n, airllm_err *err)
{
    if (!o->chat)
        return rt_chat_encode_plain(chat, tok, text, strlen(text), ids, n, err);
    rt_chat_msg m[2] = {{"system", o->system, NULL}, {"user", text, NULL}};
    return o->system ? rt_chat_encode(chat, tok, m, 2, ids, n, err)
                     : rt_chat_encode(chat, tok, m + 1, 1, ids, n, err);
}

static void free_prompts(prompt *ps, size_t n)
{
    for (size_t i = 0; ps && i < n; i++) {
        free(ps[i].text);
        free(ps[i].ids);
    }
    free(ps);
}

static int load_prompts(const run_opts *o, const airllm_tokenizer *tok, const rt_chat *chat,
                        prompt **out, size_t *n_out, airllm_err *err)
{
    char *file_text = NULL, **texts = NULL;
    size_t *lines = NULL; /* --prompts: each text's line number */
    size_t len = 0, nt = 0, n = 0;
    const char *src = o->prompts_file ? o->prompts_file : o->prompt_file;
    if (src) {
        if (rt_read_text(src, &file_text, &len, err))
            return -1;
        if (strcmp(src, "-") == 0)
            src = "(stdin)";
    }
    if (o->prompt_file && len && file_text[len - 1] == '\n')
        file_text[--len] = '\0'; /* a file's final newline ends a line, not the prompt */
    if (o->prompts_file) {
        texts = malloc(sizeof *texts * (len + 1));
        lines = malloc(sizeof *lines * (len + 1));
        size_t line = 0;
        for (char *p = file_text, *nl; texts && lines && p && *p; p = nl ? nl + 1 : NULL) {
            nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            line++;
            if (*p) {
                lines[nt] = line;
                texts[nt++] = p;
            } else {
                cli_info("note: %s: line %zu is empty: skipped", src, line);
            }
        }
        if (!lines) {
            free(texts);
            texts = NULL;
        }
        if (texts && nt == 0) {
            free(texts);
            free(lines);
            free(file_text);
            return airllm_errf(err, "%s: no prompts (one per line)", src);
        }
    } else if (!o->ids && !o->messages) {
        texts = malloc(sizeof *texts);
        if (texts)
            texts[nt++] = o->prompt_file ? file_text : (char *)o->prompt;
    }
    prompt *ps = calloc(nt ? nt : 1, sizeof *ps);
    int rc = ps && (texts || o->ids || o->messages) ? 0 : airllm_errf(err, "out of memory");
    if (!rc && o->ids) {
        rc = rt_parse_ids(o->ids, "--ids", &ps[0].ids, &ps[0].n, err);
        n = 1;
    } else if (!rc && o->messages) {
        cJSON *root;
        rt_chat_msg *msgs;
        size_t nm;
        rc = !tok ? airllm_errf(err, "%s: no tokenizer: --messages needs one", o->dir)
                  : rt_messages_load(o->messages, &root, &msgs, &nm, err);
        if (!rc) {
            rc = rt_chat_encode(chat, tok, msgs, nm, &ps[0].ids, &ps[0].n, err);
            if (rc)
                airllm_err_prefix(err, "%s", o->messages);
            cJSON_Delete(root);
            free(msgs);
        }
        n = 1;
    }
    for (size_t i = 0; !rc && i < nt; i++, n++) {
        if (lines)
            ps[i].line = lines[i];
        if (o->prompts_file && strncmp(texts[i], "ids:", 4) == 0) {
            /* A line of raw token ids, as --ids takes them. */
            rc = rt_parse_ids(texts[i] + 4, src, &ps[i].ids, &ps[i].n, err);
            continue;
        }
        if (!tok) {
            rc = airllm_errf(err, "%s: no tokenizer (tokenizer.json, tokenizer.model or "
                                  "*.tiktoken): text prompts need one (or give ids)",
                             o->dir);
            break;
        }
        if (!(ps[i].text = strdup(texts[i])))
            rc = airllm_errf(err, "out of memory");
        else
            rc = encode_text(o, tok, chat, texts[i], &ps[i].ids, &ps[i].n, err);
    }
    free(texts);
    free(lines);
    free(file_text);
    for (size_t i = 0; !rc && i < n; i++)
        if (ps[i].n == 0)
            rc = ps[i].line ? airllm_errf(err, "%s: line %zu: the prompt has no tokens", src,
                                          ps[i].line)
                            : airllm_errf(err, "prompt %zu is empty (no tokens)", i + 1);
    if (rc) {
        free_prompts(ps, nt > n ? nt : n);
        return -1;
    }
    *out = ps;
    *n_out = n;
    return 0;
}

static void print_profile(const rt_model *m, double total)
{
    const rt_store *s = &m->store;
    fprintf(stderr, "%-18s %10s %10s %10s %10s %5s\n", "unit", "read s", "decode s", "compute s",
            "wait s", "res");
    double rs = 0, ds = 0, cs = 0, ws = 0;
    for (size_t i = 0; i < s->n_units; i++) {
        const rt_unit *u = &s->units[i];
        fprintf(stderr, "%-18s %10.4f %10.4f %10.4f %10.4f %5s\n", u->file, s->unit_read_s[i],
                s->unit_decode_s[i], s->unit_compute_s[i], s->unit_wait_s[i],
                u->resident ? "yes" : "no");
        rs += s->unit_read_s[i];
        ds += s->unit_decode_s[i];
        cs += s->unit_compute_s[i];
        ws += s->unit_wait_s[i];
    }
    double io = rs + ds;
    fprintf(stderr, "%-18s %10.4f %10.4f %10.4f %10.4f\n", "total", rs, ds, cs, ws);
    fprintf(stderr,
            "wall %.3f s; %.1f MiB read; I/O (read + decode) %.3f s of which %.3f s waited "
            "for: overlap %.1f%%; resident %.1f MiB, %zu units streamed\n",
            total, (double)rt_store_bytes_read(s) / 1048576.0, io, ws,
            io > 0 ? 100.0 * (1.0 - (ws < io ? ws : io) / io) : 100.0,
            (double)s->resident_bytes / 1048576.0, s->n_stream);
    if (m->gpu) {
        rt_cuda_info g;
        rt_cuda_get_info(m->gpu, &g);
        fprintf(stderr,
                "gpu %s%s: %zu units held (%.1f MiB), %zu streamed through 2 x %.1f MiB; "
                "KV %.1f MiB, work %.1f MiB, peak %.1f MiB (device used %.1f MiB); %.1f MiB "
                "copied in %.3f s (%.2f GB/s)\n",
                g.device, g.unified ? " (unified memory)" : "", g.n_held,
                (double)g.held_bytes / 1048576.0, g.n_streamed,
                (double)g.stream_bytes / 1048576.0, (double)g.kv_bytes / 1048576.0,
                (double)g.work_bytes / 1048576.0, (double)g.peak_bytes / 1048576.0,
                (double)g.peak_used / 1048576.0, (double)g.h2d_bytes / 1048576.0, g.h2d_s,
                g.h2d_s > 0 ? (double)g.h2d_bytes / g.h2d_s / 1e9 : 0.0);
    }
}

int main(int argc, char **argv)
{
    cli_prog = "airllm-run";
    cli_install_fault_hook(); /* tests act at a load's steps (rt_store.c) */
    cli_json_prescan(argc, argv); /* usage errors print JSON too */
    run_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    airllm_err err = {{0}};
    double t_start = airllm_now();
    if (o.json && !o.interactive) { /* -i: Ctrl-C stops one answer (rt_interactive.c) */
        struct sigaction sa = {0};
        sa.sa_handler = on_sigint;
        sa.sa_flags = SA_RESTART | SA_RESETHAND;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
    }
    /* Not a directory that airllm-split or airllm-quant is still writing;
     * the shared lock is held until exit, so that none starts meanwhile. */
    int lock_fd;
    if (airllm_lock_reader(o.dir, &lock_fd, &err))
        return fail(&o, &err);
    /* The first thing a new user tries is the Hugging Face download
     * itself: say what to run, not "manifest.json: cannot open". */
    switch (cli_dir_classify(o.dir)) {
    case CLI_DIR_HF:
        airllm_errf(&err, "%s: this is a Hugging Face checkpoint, not a converted directory: "
                          "run airllm-split (or airllm-quant) first, e.g. airllm-split %s "
                          "OUT_DIR, then airllm-run OUT_DIR",
                    o.dir, o.dir);
        return fail(&o, &err);
    case CLI_DIR_INTERRUPTED:
        airllm_errf(&err, "%s: an interrupted conversion (no manifest.json yet): run the same "
                          "airllm-split or airllm-quant command again to resume it",
                    o.dir);
        return fail(&o, &err);
    default: break; /* the model's loader says what else is wrong */
    }
    rt_model m;
    if (rt_opts_model_open(&o.ro, &m, o.dir, &err)) {
        rt_model_close(&m);
        return fail(&o, &err);
    }
    cli_verbose("%s: %s, %d layers, hidden %d, vocab %d; %zu units: %.1f MiB resident, %zu "
                "streamed from disk; %d compute threads",
                o.dir, m.cfg.model_type, m.cfg.n_layers, m.cfg.hidden, m.cfg.vocab,
                m.store.n_units, (double)m.store.resident_bytes / 1048576.0, m.store.n_stream,
                m.threads);
    /* Loads that nothing checks are said once, never silently. */
    if (o.ro.verify_load == RT_VERIFY_OFF)
        cli_info("note: --verify-load=off: layer loads are not checked");
    else if (o.ro.verify_load == RT_VERIFY_FAST && m.store.n_unchecked)
        cli_info("note: %zu unit files are format 1.0/1.1, without checksums: their loads "
                 "are unchecked (--verify-load=full checks their SHA-256)",
                 m.store.n_unchecked);
    const rt_config *c = &m.cfg;
    /* The tokenizer the checkpoint ships (tokenizer.json, else
     * tokenizer.model, else *.tiktoken) and the family's chat template. */
    airllm_tokenizer *tok = NULL;
    bool text_in = o.prompt || o.prompt_file || o.messages || o.interactive;
    if (has_tokenizer(o.dir) && airllm_tok_load(o.dir, &tok, &err)) {
        if (text_in) {
            rt_model_close(&m);
            return fail(&o, &err);
        }
        /* Token ids in, token ids out: the tokenizer is not needed
         * (a text line in --prompts is refused when it is read). */
        cli_info("note: %s; printing token ids", err.msg);
        tok = NULL;
    }
    if (tok) {
        if (c->bos_id >= 0 && airllm_tok_bos(tok) < 0)
            airllm_tok_set_bos(tok, c->bos_id, NULL);
    } else if (text_in) {
        airllm_errf(&err, "%s: no tokenizer.json, tokenizer.model or *.tiktoken: text prompts "
                          "need one (or use --ids)",
                    o.dir);
        rt_model_close(&m);
        return fail(&o, &err);
    }
    rt_chat chat, *chatp = NULL;
    if (tok && rt_chat_open(&chat, o.dir, o.template_name, tok, &err) == 0)
        chatp = &chat;
    else if (tok && o.chat) {
        airllm_tok_free(tok);
        rt_model_close(&m);
        return fail(&o, &err);
    }
    rt_sampler smp = {o.ro.temperature, o.ro.top_k, o.ro.top_p, o.ro.seed, NULL,
                      o.ro.repeat_penalty, (size_t)o.ro.repeat_last_n, NULL};
    if (o.interactive) {
        rt_json_totals tot = {0};
        rt_interactive_opts io = {o.system, o.ro.max_new, o.ctx, o.json, &tot};
        if (!io.ctx)
            io.ctx = c->max_pos < 4096 ? (size_t)c->max_pos : 4096;
        tot.load_s = airllm_now() - t_start;
        rc = rt_sampler_init(&smp, c->vocab, &err) ||
             rt_interactive(&m, tok, chatp, &smp, &io, stdin, &err);
        if (!rc && o.json) {
            rt_store_stop(&m.store); /* its statistics are the prefetch thread's too */
            tot.total_s = airllm_now() - t_start;
            tot.tokens_per_second = tot.generate_s > 0 ? (double)tot.tokens_generated / tot.generate_s : 0;
            rt_json_summary("ok", &m, &tot);
        }
        rt_sampler_free(&smp);
        rt_chat_free(chatp);
        airllm_tok_free(tok);
        rt_model_close(&m);
        return rc ? fail(&o, &err) : AIRLLM_EXIT_OK;
    }
    prompt *ps = NULL;
    size_t np = 0;
    if (load_prompts(&o, tok, chatp, &ps, &np, &err)) {
        if (chatp)
            rt_chat_free(chatp);
        airllm_tok_free(tok);
        rt_model_close(&m);
        return fail(&o, &err);
    }
    for (size_t i = 0; i < np; i++)
        cli_verbose("prompt %zu: %zu tokens", i + 1, ps[i].n);
    double t_load = airllm_now();
    rt_seq *seqs = calloc(np, sizeof *seqs);
    rt_seq **active = calloc(np, sizeof *active);
    float *logits = malloc(sizeof(float) * np * (size_t)c->vocab);
    airllm_tok_decoder **dec = calloc(np, sizeof *dec);
    rc = seqs && active && logits && dec ? rt_sampler_init(&smp, c->vocab, &err)
                                         : airllm_errf(&err, "out of memory");
    for (size_t i = 0; !rc && i < np; i++)
        rc = rt_seq_init(&seqs[i], &m, ps[i].ids, ps[i].n, ps[i].n + (size_t)o.ro.max_new, &err);
    for (size_t i = 0; !rc && tok && i < np; i++)
        rc = airllm_tok_decoder_new(tok, 1, &dec[i], &err);
    /* Generation: a step runs every unfinished sequence's pending tokens. */
    bool stream_out = np == 1 && !o.json && tok;
    double t_first = 0;
    size_t steps = 0, generated = 0;
    bool interrupted = false;
    const char *fault = getenv("AIRLLM_FAULT_SIGINT_STEP");
    for (long step = 0; !rc; step++) {
        if (g_interrupted) {
            interrupted = true;
            for (size_t i = 0; i < np; i++)
                if (!seqs[i].done) {
                    seqs[i].done = true;
                    emit_result(tok, i, ps[i].line, &seqs[i], "interrupted");
                }
            break;
        }
        /* Tests (tests/json.sh): AIRLLM_FAULT_SIGINT_STEP=N is a Ctrl-C as
         * step N (from 0) starts, sent by the process itself so that the
         * point is exact: step N ends, then the loop stops (N + 1 tokens). */
        if (fault && o.json && step == atol(fault))
            raise(SIGINT);
        size_t na = 0;
        for (size_t i = 0; i < np; i++)
            if (!seqs[i].done)
                active[na++] = &seqs[i];
        if (!na)
            break;
        /* Logits rows follow the active order. */
        if ((rc = rt_forward(&m, active, na, logits, &err)))
            break;
        steps++;
        if (step == 0) {
            t_first = airllm_now();
            if (o.dump_logits) {
                FILE *f = fopen(o.dump_logits, "wb");
                bool ok = f != NULL;
                for (size_t i = 0; ok && i < na; i++)
                    for (int v = 0; ok && v < c->vocab; v++) {
                        uint8_t b[4];
                        airllm_put_lef32(b, logits[i * c->vocab + v]);
                        ok = fwrite(b, 1, 4, f) == 4;
                    }
                if (!f || fclose(f) != 0 || !ok) {
                    rc = airllm_errf(&err, "%s: cannot write the logits", o.dump_logits);
                    break;
                }
            }
        }
        for (size_t a = 0; a < na; a++) {
            rt_seq *s = active[a];
            size_t i = (size_t)(s - seqs);
            if (s->n_ids - s->n_prompt >= (size_t)o.ro.max_new) {
                s->done = true;
                if (o.json)
                    emit_result(tok, i, ps[i].line, s, "length");
                continue;
            }
            rt_repeat_penalty(&smp, logits + a * c->vocab, c->vocab, s->ids, s->n_ids);
            int32_t id = rt_sample(&smp, logits + a * c->vocab, c->vocab);
            s->ids[s->n_ids++] = id;
            generated++;
            if (stream_out) {
                const char *t;
                size_t len;
                if (airllm_tok_decoder_feed(dec[i], id, &t, &len, &err) == 0 && len) {
                    fwrite(t, 1, len, stdout);
                    fflush(stdout);
                }
            }
            const char *why = rt_finish_reason(c, tok, o.chat ? chatp : NULL, id);
            if (!why && s->n_ids - s->n_prompt >= (size_t)o.ro.max_new)
                why = "length";
            if (why) {
                s->done = true;
                if (o.json) /* each sequence's line as it finishes */
                    emit_result(tok, i, ps[i].line, s, why);
            }
        }
    }
    double t_end = airllm_now();
    /* No more loads: the prefetch thread stops here, so the statistics
     * below are read after its last update. */
    rt_store_stop(&m.store);
    if (!rc && stream_out) {
        const char *t;
        size_t len;
        if (airllm_tok_decoder_flush(dec[0], &t, &len, &err) == 0 && len)
            fwrite(t, 1, len, stdout);
        putchar('\n');
        fflush(stdout); /* before the summary on stderr */
    }
    double gen_s = t_first ? t_end - t_first : 0;
    size_t decode_tokens = generated > np ? generated - np : 0;
    if (!t_first) /* interrupted before the first step */
        t_first = t_end;
    if (!rc && o.json) {
        rt_json_totals tot = {np, steps, generated, gen_s > 0 ? (double)decode_tokens / gen_s : 0,
                              t_end - t_start, t_load - t_start, t_first - t_load, t_end - t_first};
        rt_json_summary(interrupted ? "interrupted" : "ok", &m, &tot);
    } else if (!rc && !stream_out) {
        for (size_t i = 0; i < np; i++) {
            char *text = NULL;
            size_t len = 0;
            if (tok && airllm_tok_decode(tok, seqs[i].ids + seqs[i].n_prompt,
                                         seqs[i].n_ids - seqs[i].n_prompt, 1, &text, &len,
                                         &err) == 0) {
                if (np > 1)
                    printf("[%zu] ", i + 1);
                fwrite(text, 1, len, stdout);
                putchar('\n');
            } else if (!tok) {
                for (size_t k = seqs[i].n_prompt; k < seqs[i].n_ids; k++)
                    printf("%s%d", k > seqs[i].n_prompt ? "," : "", seqs[i].ids[k]);
                putchar('\n');
            }
            free(text);
        }
    }
    if (!rc)
        cli_info("%zu tokens in %.3f s (%.2f tokens/s after the first step), prefill %.3f s, "
                 "%.1f MiB read",
                 generated, t_end - t_load, gen_s > 0 ? (double)decode_tokens / gen_s : 0.0,
                 t_first - t_load, (double)rt_store_bytes_read(&m.store) / 1048576.0);
    if (!rc && o.profile)
        print_profile(&m, t_end - t_start);
    for (size_t i = 0; i < np; i++) {
        if (seqs)
            rt_seq_free(&seqs[i]);
        if (dec)
            airllm_tok_decoder_free(dec[i]);
        free(ps[i].text);
        free(ps[i].ids);
    }
    free(ps);
    free(seqs);
    free(active);
    free(logits);
    rt_sampler_free(&smp);
    if (chatp)
        rt_chat_free(chatp);
    free(dec);
    airllm_tok_free(tok);
    rt_model_close(&m);
    if (!rc && interrupted) {
        /* die of the signal, as the shell expects of an interrupted command
         * (exit status 130); the handler was reset by SA_RESETHAND */
        signal(SIGINT, SIG_DFL);
        raise(SIGINT);
    }
    return rc ? fail(&o, &err) : AIRLLM_EXIT_OK;
}
