#include "cli.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>


#include "airllm_io.h"

const char *cli_prog = "airllm";
int cli_verbosity = 1;

/* Length of the control character at s (C0, DEL, or C1 as UTF-8), else 0. */
static size_t control_len(const unsigned char *s)
{
    if (*s < 0x20 || *s == 0x7f)
        return 1;
    if (s[0] == 0xc2 && s[1] >= 0x80 && s[1] <= 0x9f)
        return 2;
    return 0;
}

char *cli_escape(const char *s)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t k = control_len(p);
        n += k ? 4 * k : 1;
        p += k ? k : 1;
    }
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t k = control_len(p);
        if (!k) {
            *o++ = (char)*p++;
            continue;
        }
        for (size_t i = 0; i < k; i++, p++)
            o += sprintf(o, "\\x%02x", *p);
    }
    *o = '\0';
    return out;
}

void cli_fputs_escaped(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t k = control_len(p);
        if (!k) {
            fputc(*p++, f);
            continue;
        }
        for (size_t i = 0; i < k; i++, p++)
            fprintf(f, "\\x%02x", *p);
    }
}

/* Messages quote names from the input files (tensors, paths, JSON
 * strings): an ESC, CR or LF in one must not reach the terminal, where it
 * could forge or hide lines. Every message goes through here, escaped. */
static void vmsg(const char *kind, const char *fmt, va_list ap)
{
    char small[1024], *text = small;
    va_list aq;
    va_copy(aq, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    if (n >= (int)sizeof small && (text = malloc((size_t)n + 1)) != NULL)
        vsnprintf(text, (size_t)n + 1, fmt, aq);
    va_end(aq);
    if (!text)
        text = small; /* out of memory: the truncated message */
    flockfile(stderr); /* one line, whichever threads report (verify's --jobs) */
    fprintf(stderr, "%s: %s", cli_prog, kind);
    cli_fputs_escaped(stderr, n < 0 ? "(unprintable message)" : text);
    fputc('\n', stderr);
    funlockfile(stderr);
    if (text != small)
        free(text);
}

void cli_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("error: ", fmt, ap);
    va_end(ap);
}

void cli_info(const char *fmt, ...)
{
    if (cli_verbosity < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

void cli_verbose(const char *fmt, ...)
{
    if (cli_verbosity < 2)
        return;
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

int cli_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vmsg("error: ", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", cli_prog);
    if (cli_json) {
        char msg[1024];
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        cli_json_error(AIRLLM_EXIT_USAGE, msg);
    }
    return AIRLLM_EXIT_USAGE;
}

void cli_print_version(void)
{
#ifndef AIRLLM_COMMIT
#define AIRLLM_COMMIT ""
#endif
    if (*AIRLLM_COMMIT)
        printf("%s %s (commit %s)\n", cli_prog, AIRLLM_VERSION, AIRLLM_COMMIT);
    else
        printf("%s %s\n", cli_prog, AIRLLM_VERSION);
}

int cli_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    if (!s || !*s)
        return -1;
    uint64_t v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    if (v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

int cli_parse_size(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1; /* no sign, no "inf", no "nan", no leading space */
    const char *p = s;
    uint64_t whole = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (whole > (UINT64_MAX - d) / 10)
            return -1;
        whole = whole * 10 + d;
    }
    /* The fraction in billionths: more digits than that cannot matter for
     * a multiplier of at most 2^30. */
    uint64_t frac = 0, scale = 1;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -1;
        for (; *p >= '0' && *p <= '9'; p++)
            if (scale < 1000000000u) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                scale *= 10;
            }
    }
    uint64_t mul = 1;
    if (*p == 'k' || *p == 'K')
        mul = 1ull << 10, p++;
    else if (*p == 'm' || *p == 'M')
        mul = 1ull << 20, p++;
    else if (*p == 'g' || *p == 'G')
        mul = 1ull << 30, p++;
    if (*p == 'i' || *p == 'B')
        p++;
    if (*p == 'B')
        p++;
    if (*p)
        return -1;
    if (whole > UINT64_MAX / mul)
        return -1;
    uint64_t v = whole * mul;
    uint64_t f = frac * mul / scale; /* frac < scale <= 1e9, mul <= 2^30: no overflow */
    if (v > UINT64_MAX - f)
        return -1;
    *out = v + f;
    return 0;
}

const char *cli_human_size(uint64_t bytes, char *buf)
{
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    if (u == 0)
        snprintf(buf, 32, "%llu B", (unsigned long long)bytes);
    else
        snprintf(buf, 32, "%.1f %s", v, units[u]);
    return buf;
}

void cli_progress_init(cli_progress *p, const char *label, uint64_t total)
{
    memset(p, 0, sizeof *p);
    p->enabled = cli_verbosity >= 1 && isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->start = p->last = airllm_now();
}

static void progress_draw(cli_progress *p, double now)
{
    char a[32], b[32], r[32];
    double el = now - p->start;
    double rate = el > 0 ? (double)p->done / el : 0;
    double pct = p->total ? 100.0 * (double)p->done / (double)p->total : 100.0;
    double eta = rate > 0 && p->total > p->done ? (double)(p->total - p->done) / rate : 0;
    fprintf(stderr, "\r%s: %5.1f%% %s / %s  %s/s  ETA %02d:%02d   ", p->label, pct,
            cli_human_size(p->done, a), cli_human_size(p->total, b),
            cli_human_size((uint64_t)rate, r), (int)(eta / 60), (int)eta % 60);
}

void cli_progress_add(cli_progress *p, uint64_t bytes)
{
    p->done += bytes;
    if (!p->enabled)
        return;
    double now = airllm_now();
    if (now - p->last < 0.2)
        return;
    p->last = now;
    progress_draw(p, now);
}

void cli_progress_finish(cli_progress *p)
{
    if (!p->enabled)
        return;
    progress_draw(p, airllm_now());
    fputc('\n', stderr);
}

static long fault_step_target = -1;
static long fault_step_count;
static int fault_signal = SIGKILL;
static const char *fault_command;

/* AIRLLM_FAULT_HOOK: a shell command run (and waited for) at every durable
 * step, with the step's number and name as $1 and $2, so that a test can
 * act at a precise point of a run, e.g. change a source it already read. */
static void run_fault_command(long step, const char *what)
{
    char num[32];
    snprintf(num, sizeof num, "%ld", step);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", fault_command, "airllm-fault-hook", num, what,
              (char *)NULL);
        _exit(127);
    }
    int status;
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
}

static void fault_hook(const char *what)
{
    ++fault_step_count;
    if (fault_command)
        run_fault_command(fault_step_count, what);
    if (fault_step_count == fault_step_target)
        raise(fault_signal);
}

void cli_install_fault_hook(void)
{
    const char *s = getenv("AIRLLM_FAULT_STEP");
    uint64_t n;
    if (s && cli_parse_uint(s, 1, 1000000000, &n) == 0)
        fault_step_target = (long)n;
    /* STOP: the process pauses there, holding whatever it holds (its
     * lock on OUT_DIR), until SIGCONT: a window tests can rely on. */
    const char *sig = getenv("AIRLLM_FAULT_SIGNAL");
    if (sig && strcmp(sig, "STOP") == 0)
        fault_signal = SIGSTOP;
    fault_command = getenv("AIRLLM_FAULT_HOOK");
    if (fault_command && !*fault_command)
        fault_command = NULL;
    if (fault_step_target > 0 || fault_command)
        airllm_set_step_hook(fault_hook);
}
