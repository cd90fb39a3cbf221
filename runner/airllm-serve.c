/* airllm-serve: an OpenAI-compatible HTTP server over one model directory.
 * Concurrent requests share each streamed layer read: they join the
 * running batch at the next step (runner/rt_batch.c); HTTP is
 * libmicrohttpd's, one thread per connection (runner/serve_http.c).
 * SIGTERM or SIGINT stops accepting, lets every request under way finish,
 * then exits. */
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "airllm_io.h"
#include "cli.h"
#include "rt_opts.h"
#include "serve.h"

typedef struct {
    rt_opts ro;
    const char *dir, *host, *api_key, *model_name, *template_name;
    uint64_t port, max_batch, max_queue, max_body, kv_budget, timeout;
    bool json;
} serve_opts;

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: airllm-serve [options] MODEL_DIR\n"
            "Serve a directory written by airllm-split or airllm-quant over HTTP with the\n"
            "OpenAI API (POST /v1/chat/completions, /v1/completions; GET /v1/models,\n"
            "/health, /metrics). Concurrent requests run as one batch: each streamed\n"
            "layer read serves all of them.\n\n"
            "Server:\n"
            "      --host ADDR          address to listen on (default 127.0.0.1)\n"
            "      --port N             TCP port (default 8080; 0: any free port, printed)\n"
            "      --max-batch N        sequences run together (default 16)\n"
            "      --queue N            requests waiting for a place; more get 503 (default 64)\n"
            "      --kv-budget SIZE     bytes of KV caches of running sequences (default 0:\n"
            "                           no limit); a request that does not fit waits\n"
            "      --max-body SIZE      largest request body (default 1M); more gets 413\n"
            "      --timeout S          seconds an idle client is kept, and a request body\n"
            "                           may take (then 408; default 30)\n"
            "      --api-key KEY        require 'Authorization: Bearer KEY' on /v1/\n"
            "      --model-name NAME    the model's id in replies (default: MODEL_DIR's name)\n"
            "      --template NAME      force a chat template (as airllm-run --template)\n"
            "      --json               one JSON line per request on stdout, with timings\n"
            "Request defaults (a request's own fields win):\n"
            "  -n, --max-new-tokens N   max_tokens when a request has none (default 64)\n"
            "%s"
            "%s"
            "  -q, --quiet / -v, --verbose, -h, --help, -V, --version\n\n"
            "Exit status: 0 after a clean shutdown, 1 failure, 2 usage error.\n",
            rt_opts_usage_gen, rt_opts_usage_mem);
}

enum { O_HOST = 2000, O_PORT, O_BATCH, O_QUEUE, O_KV, O_BODY, O_TIMEOUT, O_KEY, O_NAME,
       O_TEMPLATE, O_JSON };

static int parse_args(int argc, char **argv, serve_opts *o)
{
    static const struct option own[] = {
        {"host", required_argument, 0, O_HOST},      {"port", required_argument, 0, O_PORT},
        {"max-batch", required_argument, 0, O_BATCH}, {"queue", required_argument, 0, O_QUEUE},
        {"kv-budget", required_argument, 0, O_KV},   {"max-body", required_argument, 0, O_BODY},
        {"timeout", required_argument, 0, O_TIMEOUT}, {"api-key", required_argument, 0, O_KEY},
        {"model-name", required_argument, 0, O_NAME},
        {"template", required_argument, 0, O_TEMPLATE}, {"json", no_argument, 0, O_JSON},
        {"quiet", no_argument, 0, 'q'},              {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},               {"version", no_argument, 0, 'V'},
    };
    enum { N_OWN = sizeof own / sizeof own[0] };
    struct option longopts[N_OWN + RT_OPTS_N + 1];
    rt_opts_table(own, N_OWN, longopts);
    memset(o, 0, sizeof *o);
    rt_opts_init(&o->ro);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_batch = 16;
    o->max_queue = 64;
    o->max_body = 1 << 20;
    o->timeout = 30;
    int ch, rc;
    opterr = 0; /* cli_getopt_error says it once */
    while ((ch = getopt_long(argc, argv, ":n:t:j:qvhV", longopts, NULL)) != -1) {
        if ((rc = rt_opts_parse(&o->ro, ch, optarg)) != 1) {
            if (rc)
                return rc;
            continue;
        }
        switch (ch) {
        case O_HOST: o->host = optarg; break;
        case O_PORT:
            if (cli_parse_uint(optarg, 0, 65535, &o->port))
                return cli_usage_error("bad --port '%s' (0-65535)", optarg);
            break;
        case O_BATCH:
            if (cli_parse_uint(optarg, 1, 1024, &o->max_batch))
                return cli_usage_error("bad --max-batch '%s' (1-1024)", optarg);
            break;
        case O_QUEUE:
            if (cli_parse_uint(optarg, 0, 1 << 20, &o->max_queue))
                return cli_usage_error("bad --queue '%s'", optarg);
            break;
        case O_KV:
            if (cli_parse_size(optarg, &o->kv_budget))
                return cli_usage_error("bad --kv-budget '%s' (e.g. 512M, 4G)", optarg);
            break;
        case O_BODY:
            if (cli_parse_size(optarg, &o->max_body) || o->max_body < 64 ||
                o->max_body > (1ull << 30))
                return cli_usage_error("bad --max-body '%s' (64 bytes to 1G)", optarg);
            break;
        case O_TIMEOUT:
            if (cli_parse_uint(optarg, 1, 86400, &o->timeout))
                return cli_usage_error("bad --timeout '%s' (1-86400)", optarg);
            break;
        case O_KEY:
            if (!*optarg)
                return cli_usage_error("empty --api-key");
            o->api_key = optarg;
            break;
        case O_NAME: o->model_name = optarg; break;
        case O_TEMPLATE: o->template_name = optarg; break;
        case O_JSON: o->json = true; break;
        case 'q': cli_verbosity = 0; break;
        case 'v': cli_verbosity = 2; break;
        case 'h': usage(stdout); exit(AIRLLM_EXIT_OK);
        case 'V': printf("airllm-serve %s\n", AIRLLM_VERSION); exit(AIRLLM_EXIT_OK);
        default: return cli_getopt_error(ch, argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage_error("expected MODEL_DIR");
    o->dir = argv[optind];
    return rt_opts_check(&o->ro);
}

static bool stop_id(void *ctx, int32_t id)
{
    const serve_state *S = ctx;
    const rt_config *c = &S->m->cfg;
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return true;
    return (S->tok && airllm_tok_eos(S->tok) == id) || (S->chat && rt_chat_is_stop(S->chat, id));
}

static int fail(const airllm_err *err)
{
    cli_error("%s", err->msg);
    return AIRLLM_EXIT_FAIL;
}

int main(int argc, char **argv)
{
    cli_prog = "airllm-serve";
    serve_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc)
        return rc;
    /* Signals go to sigwait below, never to the other threads: block them
     * before any thread starts. A client gone mid-write is an error return,
     * not SIGPIPE. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    airllm_err err = {{0}};
    int lock_fd;
    if (airllm_lock_reader(o.dir, &lock_fd, &err))
        return fail(&err);
    rt_model m;
    if (rt_opts_model_open(&o.ro, &m, o.dir, &err)) {
        rt_model_close(&m);
        return fail(&err);
    }
    serve_state S;
    memset(&S, 0, sizeof S);
    S.m = &m;
    S.defaults = (serve_defaults){o.ro.max_new > 0 ? o.ro.max_new : 1, o.ro.temperature,
                                  o.ro.top_p, o.ro.top_k, o.ro.seed};
    S.api_key = o.api_key;
    S.max_body = (size_t)o.max_body;
    S.body_deadline_s = (double)o.timeout;
    S.json_log = o.json;
    const char *base = strrchr(o.dir, '/');
    while (base && base[1] == 0 && base > o.dir) { /* "dir/" */
        const char *p = base - 1;
        while (p > o.dir && *p != '/')
            p--;
        base = p;
    }
    static char name[128];
    snprintf(name, sizeof name, "%s", base && *base == '/' ? base + 1 : o.dir);
    name[strcspn(name, "/")] = 0;
    S.model_name = o.model_name ? o.model_name : name;
    if (airllm_tok_load(o.dir, &S.tok, &err) == 0) {
        if (m.cfg.bos_id >= 0 && airllm_tok_bos(S.tok) < 0)
            airllm_tok_set_bos(S.tok, m.cfg.bos_id, NULL);
    } else {
        cli_info("note: %s: prompts must be token ids", err.msg);
        S.tok = NULL;
    }
    static rt_chat chat;
    if (S.tok && rt_chat_open(&chat, o.dir, o.template_name, S.tok, &err) == 0)
        S.chat = &chat;
    else if (S.tok && o.template_name)
        return fail(&err);
    else if (S.tok)
        cli_info("note: %s: /v1/chat/completions is refused", err.msg);
    pthread_mutex_init(&S.tok_lock, NULL);
    pthread_mutex_init(&S.lock, NULL);
    pthread_mutex_init(&S.log_lock, NULL);
    pthread_cond_init(&S.idle, NULL);
    if (rt_batch_new(&m, (size_t)o.max_batch, (size_t)o.max_queue, o.kv_budget, stop_id, &S,
                     &S.batch, &err))
        return fail(&err);
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_ITC;
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, o.host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o.port);
    } else if (inet_pton(AF_INET6, o.host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o.port);
        flags |= MHD_USE_IPv6;
    } else {
        cli_usage_error("bad --host '%s' (an IPv4 or IPv6 address)", o.host);
        return AIRLLM_EXIT_USAGE;
    }
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)o.port, NULL, NULL, serve_handle, &S, MHD_OPTION_SOCK_ADDR, &ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)(o.max_batch + o.max_queue + 64),
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)o.timeout, MHD_OPTION_NOTIFY_COMPLETED,
        serve_completed, &S, MHD_OPTION_END);
    if (!d) {
        airllm_errf(&err, "cannot listen on %s port %llu", o.host, (unsigned long long)o.port);
        rt_batch_free(S.batch);
        return fail(&err);
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    unsigned port = di ? di->port : (unsigned)o.port;
    /* The line a script waits for (stderr, so --json stdout stays JSON). */
    fprintf(stderr, "airllm-serve: listening on http://%s%s%s:%u (model %s, max batch %llu)\n",
            strchr(o.host, ':') ? "[" : "", o.host, strchr(o.host, ':') ? "]" : "", port,
            S.model_name, (unsigned long long)o.max_batch);
    int sig = 0;
    sigwait(&sigs, &sig);
    cli_info("%s: finishing the requests under way", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    /* No new connections; queued and running requests finish (new ones on
     * open connections get 503); then every connection's reply is sent. */
    MHD_socket ls = MHD_quiesce_daemon(d);
    if (ls != MHD_INVALID_SOCKET)
        close(ls);
    rt_batch_drain(S.batch);
    pthread_mutex_lock(&S.lock);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)o.timeout;
    while (S.active > 0 && pthread_cond_timedwait(&S.idle, &S.lock, &until) == 0)
        ;
    uint64_t served = S.served, failed = S.failed;
    pthread_mutex_unlock(&S.lock);
    MHD_stop_daemon(d);
    rt_batch_stats st;
    rt_batch_get_stats(S.batch, &st);
    rt_batch_free(S.batch);
    cli_info("served %llu requests (%llu failed), %llu steps, %llu tokens generated",
             (unsigned long long)served, (unsigned long long)failed,
             (unsigned long long)st.steps, (unsigned long long)st.tokens);
    if (S.chat)
        rt_chat_free(S.chat);
    airllm_tok_free(S.tok);
    rt_model_close(&m);
    close(lock_fd);
    return AIRLLM_EXIT_OK;
}
