/* main.c - braidd: parse the configuration, serve until SIGINT or SIGTERM. */
#define BI_LOG_MODULE "braidd" /* before any include: see common/log.h */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "common/log.h"
#include "svc_config.h"
#include "svc_server.h"

#ifndef BRAID_VERSION
#define BRAID_VERSION "0.0.0"
#endif

typedef struct daemon_state {
    svc_server *srv;
    uv_signal_t sigint, sigterm;
} daemon_state;

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    BI_LOGI(NULL, "received %s; shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    svc_server_close(d->srv);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
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

    uv_loop_t *loop = uv_default_loop();
    daemon_state d;
    memset(&d, 0, sizeof d);
    bi_status st = svc_server_create(loop, &cfg, &d.srv);
    if (st != BI_OK) {
        fprintf(stderr, "braidd: cannot create the server: %s\n", bi_strerror(st));
        return 1;
    }
    if ((st = svc_server_start(d.srv, err, sizeof err)) != BI_OK) {
        fprintf(stderr, "braidd: %s\n", err);
        svc_server_close(d.srv);
        uv_run(loop, UV_RUN_DEFAULT);
        svc_server_destroy(d.srv);
        return 1;
    }
    uv_signal_init(loop, &d.sigint);
    uv_signal_init(loop, &d.sigterm);
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    BI_LOGI(NULL, "braidd %s ready", BRAID_VERSION);

    uv_run(loop, UV_RUN_DEFAULT);
    svc_server_destroy(d.srv);
    uv_loop_close(loop);
    BI_LOGI(NULL, "stopped");
    return 0;
}
