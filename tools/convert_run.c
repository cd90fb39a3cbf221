/* convert_run: one conversion from options to a complete OUT_DIR, the
 * steps in order (checks, plan, resume, free space, OUT_DIR, streaming,
 * deletions, copies, manifest). The other convert_*.c files hold the steps. */
#include "convert.h"
#include "rt.h"

static bool same_dir(const char *a, const char *b)
{
    struct stat x, y;
    return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* Ctrl-C (or a plain kill): every step is durable, so stopping anywhere
 * is safe (tests/faults.sh kills at each one); say how to go on, then die
 * of the signal as before, so that shells and scripts see it. Only
 * async-signal-safe calls here. */
static char interrupt_msg[256];

static void on_interrupt(int sig)
{
    ssize_t w = write(STDERR_FILENO, interrupt_msg, strlen(interrupt_msg));
    (void)w;
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_interrupt_message(void)
{
    snprintf(interrupt_msg, sizeof interrupt_msg,
             "\n%s: interrupted: run the same command again to resume\n", cli_prog);
    /* A signal the parent set to be ignored (nohup, a shell's background
     * job) stays ignored. */
    int sigs[] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++)
        if (signal(sigs[i], on_interrupt) == SIG_IGN)
            signal(sigs[i], SIG_IGN);
}

static int fail(const split_opts *o, airllm_err *err)
{
    cli_error("%s", err->msg);
    if (o->json)
        cli_json_error(AIRLLM_EXIT_FAIL, err->msg);
    return AIRLLM_EXIT_FAIL;
}

/* The manifest is complete but the state directory survived: the run was
 * stopped while finishing. Redo the finishing steps. */
static int finish_completed(split_ctx *s, airllm_err *err)
{
    airllm_manifest m;
    if (airllm_manifest_load(s->o.out_dir, &m, err))
        return -1;
    int rc = 0;
    if (s->o.delete_original) {
        /* The index is among the sources; the shards are gone already. */
        rc = delete_leftovers(s->o.hf_dir, m.sources, m.n_sources, err) ||
             delete_leftovers(s->o.hf_dir, m.files, m.n_files, err);
    }
    airllm_manifest_free(&m);
    return rc ? -1 : remove_state_dir(s, err);
}

/* A rerun of a finished command is a no-op: the manifest was written with
 * the same options, and each source it lists is either gone (deleted by
 * --delete-original) or still there with the same size. Digests are
 * airllm-verify's job. */
static bool same_completed_run(split_ctx *s)
{
    airllm_manifest m;
    airllm_err err;
    if (airllm_manifest_load(s->o.out_dir, &m, &err))
        return false;
    char *opts = options_json(&s->o);
    bool same = m.complete && opts && strcmp(opts, m.options_json) == 0;
    for (size_t i = 0; same && i < m.n_sources; i++) {
        char path[4096];
        struct stat st;
        if (airllm_path_join(path, sizeof path, s->o.hf_dir, m.sources[i].file, NULL) ||
            (stat(path, &st) == 0 && (uint64_t)st.st_size != m.sources[i].size))
            same = false;
    }
    /* ...and every checkpoint file in HF_DIR is one the manifest lists. */
    DIR *d = same ? opendir(s->o.hf_dir) : NULL;
    struct dirent *e;
    while (d && same && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (!(l > 12 && strcmp(e->d_name + l - 12, ".safetensors") == 0) &&
            strcmp(e->d_name, AIRLLM_INDEX_NAME) != 0)
            continue;
        bool listed = false;
        for (size_t i = 0; i < m.n_sources && !listed; i++)
            listed = strcmp(m.sources[i].file, e->d_name) == 0;
        same = listed;
    }
    if (d)
        closedir(d);
    free(opts);
    airllm_manifest_free(&m);
    return same;
}

static int split_main(split_ctx *sp)
{
    /* A file size limit (RLIMIT_FSIZE) must surface as a write error that we
     * report and clean up after, not as a signal that kills us. */
    signal(SIGXFSZ, SIG_IGN);
    cli_install_fault_hook();
    airllm_err err = {{0}};
    double t0 = airllm_now();
    split_opts *o = &sp->o;
    if (!o->dry_run)
        install_interrupt_message();
    snprintf(sp->state_dir, sizeof sp->state_dir, "%s/%s", o->out_dir, STATE_DIR);

    if (same_dir(o->hf_dir, o->out_dir)) {
        airllm_errf(&err, "%s: OUT_DIR must not be the checkpoint directory", o->out_dir);
        return fail(o, &err);
    }
    char in_manifest[4096];
    snprintf(in_manifest, sizeof in_manifest, "%s/%s", o->hf_dir, AIRLLM_MANIFEST_NAME);
    if (!o->quant && access(in_manifest, F_OK) == 0) {
        /* Splitting needs the checkpoint; a converted directory is already
         * split. Said before OUT_DIR is touched. */
        airllm_errf(&err, "%s: already a converted directory (it has manifest.json), not a "
                          "Hugging Face checkpoint: airllm-run runs it as it is, and "
                          "airllm-quant quantizes it",
                    o->hf_dir);
        return fail(o, &err);
    }
    if (check_out_place(o, &err) || (!o->dry_run && lock_out_dir(sp, false, &err)))
        return fail(o, &err);
    bool have_state = state_dir_used(sp->state_dir);
    char mpath[4096];
    snprintf(mpath, sizeof mpath, "%s/%s", o->out_dir, AIRLLM_MANIFEST_NAME);
    if (access(mpath, F_OK) == 0 && !o->force) {
        if (have_state && !o->dry_run) {
            if (finish_completed(sp, &err))
                return fail(o, &err);
            cli_info("%s: the conversion was already complete; finished its last steps",
                     o->out_dir);
            if (o->json && convert_json_summary(sp, true, airllm_now() - t0, &err))
                return fail(o, &err);
            return AIRLLM_EXIT_OK;
        }
        if (!o->dry_run && same_completed_run(sp)) {
            cli_info("%s: already complete; nothing to do", o->out_dir);
            if (o->json && convert_json_summary(sp, true, airllm_now() - t0, &err))
                return fail(o, &err);
            return AIRLLM_EXIT_OK;
        }
        airllm_errf(&err, "%s: already holds a complete conversion (manifest.json) of another "
                          "input or with other options; use --force to replace it",
                    o->out_dir);
        return fail(o, &err);
    }

    if (o->quant && access(in_manifest, F_OK) == 0) {
        if (airllm_ckpt_open_converted(o->hf_dir, &sp->ck, &err))
            return fail(o, &err);
    } else if (airllm_ckpt_open(o->hf_dir, have_state ? sp->state_dir : NULL, &sp->ck, &err)) {
        return fail(o, &err);
    }
    const airllm_ckpt *c = &sp->ck;
    {
        /* Converting a model for hours to learn then that airllm-run
         * refuses it is the friction README's "Which architectures?"
         * table answers; said here too, before anything is written. */
        rt_config rc;
        airllm_err cerr = {{0}};
        int rrc = rt_config_load(o->hf_dir, &rc, &cerr);
        if (rrc == RT_CONFIG_UNSUPPORTED)
            cli_info("note: airllm-run does not run this model (%s); converting it anyway",
                     cerr.msg);
        else if (rrc)
            cli_info("note: airllm-run would refuse its config.json (%s); converting it anyway",
                     cerr.msg);
    }
    if ((o->quant && plan_quant(sp, &err)) || check_sources(sp, &err))
        return fail(o, &err);

    char fp[AIRLLM_SHA256_HEX];
    fingerprint(sp, fp);
    bool resume = false, stale_state = false;
    if (have_state) {
        /* A state directory without a plan is from a run stopped before it
         * wrote anything else: safe to start over. */
        char ppath[4096];
        stale_state = airllm_path_join(ppath, sizeof ppath, sp->state_dir, PLAN_NAME, NULL) == 0 &&
                      access(ppath, F_OK) != 0;
    }
    if (have_state) {
        char ppath[4096];
        char *saved = NULL;
        if (airllm_path_join(ppath, sizeof ppath, sp->state_dir, PLAN_NAME, NULL) == 0 &&
            airllm_read_small_file(ppath, 4096, &saved, NULL, NULL) == 0)
            resume = strncmp(saved, fp, 64) == 0;
        free(saved);
    }
    if (!resume && have_state) {
        /* Replacing the directory would lose tensors whose only copy it
         * holds: --force must not, and no message may suggest it. */
        char first[AIRLLM_JOURNAL_NAME_MAX + 1];
        size_t nd = journal_deleted(sp->state_dir, first);
        if (nd) {
            char more[64] = "";
            if (nd > 1)
                snprintf(more, sizeof more, " and %zu more", nd - 1);
            airllm_errf(&err, "%s: an interrupted --delete-original run deleted %s%s from its "
                              "checkpoint: their tensors now exist only in this directory, so "
                              "it cannot be replaced, not even with --force. Finish that run "
                              "first: rerun it with the same HF_DIR and options (the "
                              "shards left as they were)",
                        o->out_dir, first, more);
            return fail(o, &err);
        }
    }
    if (!resume && !stale_state && dir_nonempty(o->out_dir) && !o->force) {
        airllm_errf(&err, "%s: not empty and not an interrupted conversion of this input "
                          "with these options; use --force to replace its contents",
                    o->out_dir);
        return fail(o, &err);
    }

    sp->unit_done = calloc(c->n_units, sizeof *sp->unit_done);
    sp->unit_reverified = calloc(c->n_units, sizeof *sp->unit_reverified);
    sp->writers = calloc(c->n_units, sizeof *sp->writers);
    sp->src_done = calloc(c->n_sources, sizeof *sp->src_done);
    sp->src_deleted = calloc(c->n_sources, sizeof *sp->src_deleted);
    sp->unit_ck = calloc(c->n_units + 1, sizeof *sp->unit_ck);
    sp->src_stat = calloc(c->n_sources, sizeof *sp->src_stat);
    sp->src_stat_ok = calloc(c->n_sources, sizeof *sp->src_stat_ok);
    for (size_t u = 0; sp->unit_ck && u < c->n_units; u++)
        sp->unit_ck[u].source = SIZE_MAX;
    sp->stored_len = calloc(c->n_tensors + 1, sizeof *sp->stored_len);
    sp->encoding = calloc(c->n_tensors + 1, sizeof *sp->encoding);
    sp->buf_size = (size_t)READ_CHUNK * (o->zstd ? o->jobs : 2);
    sp->buf = malloc(sp->buf_size);
    bool bufs_ok = sp->buf != NULL;
    for (int b = 0; b < PIPE_DEPTH; b++)
        bufs_ok &= (sp->pipe_bufs[b] = malloc(sp->buf_size)) != NULL;
    if (!sp->unit_done || !sp->unit_reverified || !sp->writers || !sp->src_done || !sp->src_deleted ||
        !sp->stored_len || !sp->encoding || !bufs_ok ||
        !sp->unit_ck || !sp->src_stat || !sp->src_stat_ok) {
        airllm_errf(&err, "out of memory");
        return fail(o, &err);
    }
    /* The encoders: each read chunk (buf_size bytes) is one feed. */
    airllm_enc_opts eo = {.kind = o->zstd  ? AIRLLM_ENC_KIND_ZSTD
                                  : o->quant ? AIRLLM_ENC_KIND_QUANT
                                             : AIRLLM_ENC_KIND_RAW,
                          .jobs = o->jobs, .level = o->level, .chunk = READ_CHUNK};
    airllm_enc_opts ro = {.kind = AIRLLM_ENC_KIND_RAW, .jobs = 1};
    if (!(sp->enc = airllm_enc_new(&eo, sp->buf_size, &err)) ||
        !(sp->enc_raw = airllm_enc_new(&ro, sp->buf_size, &err)))
        return fail(o, &err);
    if (build_source_units(sp, &err) || (resume && journal_load(sp, &err)))
        return fail(o, &err);

    if (o->dry_run) {
        char probe[4096];
        disk_plan dp;
        airllm_existing_ancestor(o->out_dir, probe, sizeof probe);
        plan_disk(sp, probe, &dp);
        print_plan(sp, &dp, disk_available(probe));
        return AIRLLM_EXIT_OK;
    }
    /* A resumed run first proves that each source is still the bytes the
     * journal says its units were made from, before it keeps, writes or
     * deletes anything. */
    if (resume && verify_journaled_sources(sp, &err)) {
        if (!o->force || any_source_deleted(sp))
            return fail(o, &err);
        /* --force, and every source is still there: start over from the
         * sources as they are now, forgetting the journal. */
        cli_info("%s; starting over (--force)", err.msg);
        resume = false;
        memset(sp->unit_done, 0, c->n_units * sizeof *sp->unit_done);
        memset(sp->src_done, 0, c->n_sources * sizeof *sp->src_done);
        for (size_t u = 0; u < c->n_units; u++)
            sp->unit_ck[u].source = SIZE_MAX;
        sp->n_jck = 0;
        free(sp->journal_rewrite);
        sp->journal_rewrite = NULL;
        sp->journal_valid = 0;
    }

    /* Free space first, before anything is created. */
    {
        char probe[4096];
        disk_plan dp;
        airllm_existing_ancestor(o->out_dir, probe, sizeof probe);
        plan_disk(sp, probe, &dp);
        uint64_t need = dp.need, avail = disk_available(probe);
        if (need > avail) {
            char a[32], b[32];
            airllm_errf(&err, "%s: not enough free space: need %s, %s available", o->out_dir,
                        cli_human_size(need, a), cli_human_size(avail, b));
            return fail(o, &err);
        }
    }
    /* Prepare OUT_DIR. */
    if (airllm_mkdir_p(o->out_dir, &err))
        return fail(o, &err);
    if (sp->lock_fd < 0) {
        /* If OUT_DIR could not be created at the start and now could, what
         * was checked then no longer holds if another run wrote it since. */
        bool was_missing = sp->out_missing;
        if (lock_out_dir(sp, true, &err))
            return fail(o, &err);
        if (was_missing && dir_nonempty(o->out_dir)) {
            airllm_errf(&err, "%s: another run wrote OUT_DIR while this one started; run the "
                              "command again", o->out_dir);
            return fail(o, &err);
        }
    }
    if (!resume && dir_nonempty(o->out_dir)) {
        /* The manifest goes first: an interrupted --force must not leave an
         * old manifest standing over a half-cleared directory. Before it,
         * everything that would stop the clearing is refused. */
        char mp[4096];
        if (check_clearable(sp, o->out_dir, true, &err))
            return fail(o, &err);
        if (airllm_path_join(mp, sizeof mp, o->out_dir, AIRLLM_MANIFEST_NAME, &err) ||
            (unlink(mp) != 0 && errno != ENOENT) || airllm_fsync_path(o->out_dir, &err) ||
            clear_out_dir(o->out_dir, true, &err)) {
            if (!err.msg[0])
                airllm_errf(&err, "%s: cannot remove: %s", mp, strerror(errno));
            return fail(o, &err);
        }
    }
    if (resume) {
        /* Keep only the units whose files still match their journal entry. */
        for (size_t u = 0; u < c->n_units; u++) {
            if (!sp->unit_done[u].done)
                continue;
            airllm_err kerr;
            if (!unit_proven(sp, u)) {
                cli_info("redoing %s: the journal cannot prove its source bytes unchanged",
                         c->units[u].file);
                sp->unit_done[u].done = false;
            } else if (unit_check_kept(sp, u, &kerr) == 0) {
                sp->units_kept++;
                cli_verbose("keeping %s", c->units[u].file);
            } else {
                cli_info("redoing %s: %s", c->units[u].file, kerr.msg);
                sp->unit_done[u].done = false;
            }
        }
        remove_stale_temps(o->out_dir);
    }
    if (!resume) {
        if ((mkdir(sp->state_dir, 0755) != 0 && errno != EEXIST) ||
            airllm_fsync_path(o->out_dir, &err)) {
            if (!err.msg[0])
                airllm_errf(&err, "%s: cannot create: %s", sp->state_dir, strerror(errno));
            return fail(o, &err);
        }
        /* The plan goes first: from then on OUT_DIR is a resumable run. The
         * shard headers follow, before any shard can be deleted. */
        char plan[80];
        snprintf(plan, sizeof plan, "%s\n", fp);
        if (airllm_write_file_atomic(sp->state_dir, PLAN_NAME, plan, strlen(plan), &err))
            return fail(o, &err);
    }
    /* Every run saves the headers of the shards still present (a run stopped
     * mid-way may not have saved them all). */
    for (size_t i = 0; i < c->n_sources; i++)
        if (c->sources[i].present && airllm_ckpt_save_header(c, i, sp->state_dir, &err))
            return fail(o, &err);
    if (journal_open(sp, &err))
        return fail(o, &err);

    if (io_start(&sp->io, &err))
        return fail(o, &err);
    sp->io_sink = io_sink(&sp->io);
    uint64_t todo = 0;
    /* One pass over the tensors: a pass per source was quadratic when the
     * sources are the unit files of a converted directory. */
    bool *needed = calloc(c->n_sources ? c->n_sources : 1, sizeof *needed);
    if (!needed) {
        airllm_errf(&err, "out of memory");
        return fail(o, &err);
    }
    for (size_t i = 0; i < c->n_sources; i++)
        needed[i] = source_needed(sp, i);
    for (size_t t = 0; t < c->n_tensors; t++)
        if (needed[c->tensors[t].source])
            todo += airllm_ckpt_st(c, t)->end - airllm_ckpt_st(c, t)->begin;
    free(needed);
    sp->prog.begin(sp->prog.user, todo);
    for (size_t i = 0; i < c->n_sources; i++) {
        if (source_needed(sp, i) && stream_source(sp, i, &err)) {
            sp->prog.end(sp->prog.user);
            return fail(o, &err);
        }
    }
    sp->prog.end(sp->prog.user);
    if (try_delete_sources(sp, &err))
        return fail(o, &err);
    for (size_t u = 0; u < c->n_units; u++)
        if (c->units[u].n_tensors && !sp->unit_done[u].done) {
            airllm_errf(&err, "internal error: %s was not written", c->units[u].file);
            return fail(o, &err);
        }
    /* No manifest over sources that changed after they were read. */
    for (size_t i = 0; i < c->n_sources; i++)
        if (c->sources[i].present && !sp->src_deleted[i] && source_unchanged(sp, i, false, &err))
            return fail(o, &err);

    /* Copies, then the manifest, last. */
    airllm_mf_file *aux = sp->aux;
    size_t n_aux = 0;
    for (size_t i = 0; i < N_AUX; i++) {
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", c->dir, aux_files[i]);
        if (access(p, F_OK) != 0)
            continue;
        if (copy_aux(sp, aux_files[i], &aux[n_aux], &err))
            return fail(o, &err);
        sp->n_aux = ++n_aux;
    }
    /* The index is a source too: record its digest, so that it can be
     * deleted safely last. */
    airllm_mf_file idx = {AIRLLM_INDEX_NAME, 0, {0}};
    if (c->sharded) {
        char p[4096];
        if (airllm_path_join(p, sizeof p, c->dir, AIRLLM_INDEX_NAME, &err) ||
            airllm_sha256_file(p, idx.sha256, &idx.size, &err))
            return fail(o, &err);
    }
    uint64_t total_out = 0;
    if (write_manifest(sp, aux, n_aux, c->sharded ? &idx : NULL, &total_out, &err))
        return fail(o, &err);
    if (o->delete_original && ((c->sharded && delete_leftovers(c->dir, &idx, 1, &err)) ||
                               delete_leftovers(c->dir, aux, n_aux, &err)))
        return fail(o, &err);
    if (remove_state_dir(sp, &err))
        return fail(o, &err);

    double secs = airllm_now() - t0;
    uint64_t src_total = idx.size;
    for (size_t i = 0; i < c->n_sources; i++)
        src_total += sp->src_done[i].size;
    double ratio = src_total ? (double)total_out / (double)src_total : 0;
    if (o->json) {
        if (convert_json_summary(sp, false, secs, &err))
            return fail(o, &err);
    } else {
        char a[32], b[32];
        cli_info("%s: %zu units, %zu tensors, %s written (%.3f of the source's %s)%s in %.2f s",
                 o->out_dir, c->n_units, c->n_tensors, cli_human_size(total_out, a), ratio,
                 cli_human_size(src_total, b),
                 sp->units_kept ? " (resumed)" : "", secs);
        if (o->quant)
            quant_summary(sp, NULL);
    }
    if (o->report && !o->json) /* --json: the object's report array */
        quant_report(sp);
    return AIRLLM_EXIT_OK;
}

static void split_ctx_free(split_ctx *s)
{
    for (size_t i = 0; s->src_units && i < s->ck.n_sources; i++)
        free(s->src_units[i]);
    free(s->src_units);
    free(s->n_src_units);
    for (size_t i = 0; i < s->n_aux; i++)
        free(s->aux[i].file);
    if (s->writers)
        for (size_t u = 0; u < s->ck.n_units; u++)
            writer_free(s->writers[u]);
    io_stop(&s->io);
    free(s->buf);
    for (int b = 0; b < PIPE_DEPTH; b++)
        free(s->pipe_bufs[b]);
    airllm_enc_free(s->enc);
    airllm_enc_free(s->enc_raw);
    if (s->journal_fd >= 0)
        close(s->journal_fd);
    free(s->unit_done);
    free(s->unit_reverified);
    free(s->writers);
    free(s->src_done);
    free(s->src_deleted);
    free(s->unit_ck);
    free(s->jck);
    free(s->src_stat);
    free(s->src_stat_ok);
    free(s->journal_rewrite);
    free(s->stored_len);
    free(s->encoding);
    free(s->quantize);
    free(s->qstats);
    free(s->real_stat);
    free(s->real_name);
    airllm_ckpt_free(&s->ck);
}

/* Runs one conversion; returns the exit status (messages are printed). */
static void bar_begin(void *bar, uint64_t total) { cli_progress_init(bar, cli_prog, total); }
static void bar_add(void *bar, uint64_t bytes) { cli_progress_add(bar, bytes); }
static void bar_end(void *bar) { cli_progress_finish(bar); }

convert_progress convert_progress_bar(cli_progress *bar)
{
    return (convert_progress){bar_begin, bar_add, bar_end, bar};
}

static void quiet_begin(void *user, uint64_t total) { (void)user, (void)total; }
static void quiet_add(void *user, uint64_t bytes) { (void)user, (void)bytes; }
static void quiet_end(void *user) { (void)user; }

int convert_run(const split_opts *o, const convert_progress *progress)
{
    split_ctx s;
    memset(&s, 0, sizeof s);
    s.o = *o;
    s.prog = progress ? *progress
                      : (convert_progress){quiet_begin, quiet_add, quiet_end, NULL};
    s.journal_fd = -1;
    s.lock_fd = -1;
    int rc = split_main(&s);
    split_ctx_free(&s); /* stops the I/O thread first: the lock outlives every write */
    release_out_dir(&s);
    return rc;
}
