/* main.c - braidd: parse the configuration, load the model, serve until SIGINT or SIGTERM. */
#define BI_LOG_MODULE "braidd" /* before any include: see common/log.h */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "common/log.h"
#include "core/engine.h"
#include "svc_config.h"
#include "svc_server.h"

#ifndef BRAID_VERSION
#define BRAID_VERSION "0.0.0"
#endif

typedef struct daemon_state {
    svc_server *srv;
    uv_signal_t sigint, sigterm;
    int signals;
} daemon_state;

static void on_closed(void *user)
{
    daemon_state *d = user;
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    const char *name = signum == SIGINT ? "SIGINT" : "SIGTERM";
    if (d->signals++ == 0)
        BI_LOGI(NULL, "received %s; shutting down", name);
    else
        BI_LOGI(NULL, "received %s again; cancelling what still runs", name);
    svc_server_shutdown(d->srv, on_closed, d);
}

/* Logs model loading progress about every 10 %. */
static void on_progress(void *user, const char *stage, uint64_t done, uint64_t total)
{
    int *last = user;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (pct / 10 != *last / 10 || done == total) {
        *last = pct;
        BI_LOGI(NULL, "loading the model: %s %d%%", stage, pct);
    }
}

static bi_status engine_start(const svc_config *cfg, eng_engine **out)
{
    if (!cfg->model_path && !cfg->dummy_preset) {
        BI_LOGW(NULL, "no --model or --dummy given: serving Health only");
        *out = NULL;
        return BI_OK;
    }
    int last = -10;
    eng_config ec = {
        .model_path = cfg->model_path,
        .dummy_preset = cfg->dummy_preset,
        .n_threads = cfg->threads,
        .kv_tokens = cfg->kv_tokens,
        .page_size = cfg->page_size,
        .max_batch_tokens = cfg->max_batch_tokens,
        .max_ctx = cfg->max_ctx,
        .chat_format = cfg->chat_format,
        .backend = cfg->backend ? cfg->backend : "auto",
        .dtype = cfg->dtype,
        .kv_memory_fraction = cfg->kv_memory_fraction >= 0
                                  ? (float)cfg->kv_memory_fraction
                                  : eng_kv_memory_fraction_default(
                                        cfg->backend ? cfg->backend : "auto", cfg->kv_tokens),
        .progress = on_progress,
        .progress_user = &last,
    };
    char err[512] = "";
    BI_LOGI(NULL, "loading %s%s", cfg->model_path ? "" : "dummy preset ",
            cfg->model_path ? cfg->model_path : cfg->dummy_preset);
    bi_status st = eng_engine_create(&ec, out, err, sizeof err);
    if (st != BI_OK) {
        fprintf(stderr, "braidd: cannot load the model: %s (%s)\n", err, bi_strerror(st));
        return st;
    }
    const eng_model_config *m = eng_engine_model(*out);
    BI_LOGI(NULL, "model %s (%s, %d layers, vocab %d), context %d tokens", m->name,
            eng_arch_name(m->arch), m->n_layer, m->vocab_size, eng_engine_max_ctx(*out));
    return BI_OK;
}

int main(int argc, char **argv)
{
    svc_config cfg;
    char err[512] = "";
    if (svc_config_parse(&cfg, argc, argv, err, sizeof err) != BI_OK) {
        fprintf(stderr, "braidd: %s\n", err);
        return 2;
    }
    if (cfg.help) {
        svc_config_usage(argv[0], stdout);
        return 0;
    }
    if (cfg.version) {
        printf("braidd %s\n", BRAID_VERSION);
        return 0;
    }
    bi_log_set_sink(bi_log_stderr_sink, NULL);
    bi_log_set_level(cfg.log_level);
    signal(SIGPIPE, SIG_IGN);

    eng_engine *eng = NULL;
    if (engine_start(&cfg, &eng) != BI_OK)
        return 1;
    uv_loop_t *loop = uv_default_loop();
    daemon_state d;
    memset(&d, 0, sizeof d);
    bi_status st = svc_server_create(loop, &cfg, eng, &d.srv);
    if (st != BI_OK) {
        fprintf(stderr, "braidd: cannot create the server: %s\n", bi_strerror(st));
        eng_engine_destroy(eng);
        return 1;
    }
    if ((st = svc_server_start(d.srv, err, sizeof err)) != BI_OK) {
        fprintf(stderr, "braidd: %s\n", err);
        svc_server_close(d.srv);
        uv_run(loop, UV_RUN_DEFAULT);
        eng_engine_destroy(eng);
        svc_server_destroy(d.srv);
        uv_loop_close(loop);
        return 1;
    }
    uv_signal_init(loop, &d.sigint);
    uv_signal_init(loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    BI_LOGI(NULL, "braidd %s ready", BRAID_VERSION);

    uv_run(loop, UV_RUN_DEFAULT);
    eng_engine_destroy(eng); /* no generation runs any more: no event can arrive */
    svc_server_destroy(d.srv);
    uv_loop_close(loop);
    BI_LOGI(NULL, "stopped");
    return 0;
}
