/*
 * svc_priv.h - the server's internals shared by svc_server.c (transport, call
 * lifecycle, shutdown), svc_streaming.c (Generate, StreamNext, Cancel, idle
 * streams) and svc_methods.c (the unary methods). Loop thread only, except
 * where a field says otherwise.
 */
#ifndef SVC_PRIV_H
#define SVC_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>
#include <uv.h>

#include "braid.pb-c.h"
#include "svc_server.h"
#include "svc_stream.h"

enum call_state { CALL_IDLE, CALL_RECV, CALL_BUSY, CALL_PARKED, CALL_SEND };

/* One in-flight call slot: an nng context and its aio, reused call after call. */
typedef struct svc_call {
    svc_server *srv;
    nng_ctx ctx;
    nng_aio *aio;
    enum call_state state; /* set before nng is handed the aio; read by its callback */
    nng_msg *req;          /* received request, owned until dispatched */
    struct svc_call *next; /* ready-queue link (under srv->lock) */
    uv_timer_t timer;      /* a parked poll's wait */
    uint64_t call_id;
    svc_stream *stream; /* the stream a parked poll waits on */
    uint32_t max_events;
} svc_call;

/* Allocations that live until a reply is packed. */
typedef struct svc_arena {
    void **ptrs;
    size_t n, cap;
} svc_arena;

/* The result of a handler: a status and, on OK, a reply message to pack. */
typedef struct svc_result {
    bi_status status;
    char message[512];
    const ProtobufCMessage *reply;
    bool parked; /* the handler answered or parked the call itself */
    svc_arena arena;
} svc_result;

enum svc_phase { SVC_SERVING, SVC_DRAINING, SVC_CANCELLING, SVC_CLOSING, SVC_CLOSED };

struct svc_server {
    uv_loop_t *loop;
    const svc_config *cfg;
    eng_engine *eng;
    uv_async_t wake;
    uv_timer_t sweep; /* idle streams */
    uv_timer_t phase; /* grace period, then the linger before closing */
    bool handles_open;
    nng_socket sock;
    bool sock_open;
    nng_tls_config *tls;
    svc_call *calls;
    int n_calls;
    pthread_mutex_t lock; /* guards the ready queue and closing (nng threads) */
    svc_call *ready_head, *ready_tail;
    bool closing;
    uint64_t start_ms;
    svc_streams streams;
    enum svc_phase phase_now;
    void (*on_closed)(void *user);
    void *on_closed_user;
    int calls_in_flight;
    uint64_t seed_counter;
};

typedef void (*svc_handler)(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env,
                            svc_result *res);

/* Sets res to status with a formatted message. */
void svc_fail(svc_result *res, bi_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Zeroed memory freed after the reply is packed; NULL when out of memory. */
void *svc_arena_alloc(svc_result *res, size_t n);
/* s if it is valid UTF-8, else a sanitised copy in the arena (never NULL). */
char *svc_wire_str(svc_result *res, const char *s, size_t len);

/* Packs and sends res as the reply to c (releases res's arena). */
void svc_call_reply(svc_server *s, svc_call *c, svc_result *res);

/* The handler of a method name, or NULL. */
svc_handler svc_method_find(const char *name);
/* Unpacks a request payload; on failure sets res to INVALID_ARGUMENT. */
void *svc_unpack(const ProtobufCMessageDescriptor *d, const ProtobufCBinaryData *payload,
                 svc_result *res);
/* A reply for a status that needs an engine: UNAVAILABLE when there is none. */
bool svc_need_engine(svc_server *s, svc_result *res);

/* svc_streaming.c */
void svc_generate(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res);
void svc_stream_next(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res);
void svc_cancel(svc_server *s, svc_call *c, const Braid__V1__RpcRequest *env, svc_result *res);
/* Answers parked polls of streams that received events. */
void svc_streams_deliver(svc_server *s);
/* The idle sweep (a uv_timer callback). */
void svc_streams_sweep(uv_timer_t *t);
/* Answers a parked poll with what its stream holds. */
void svc_poll_answer(svc_server *s, svc_call *c);
/* Cancels every unfinished generation in the engine. */
void svc_streams_cancel_all(svc_server *s);
/* Whether every stream is finished and, when delivered_too, its final event
 * sent to a client. */
bool svc_streams_settled(svc_server *s, bool delivered_too);
/* Re-checks shutdown progress after something changed. */
void svc_shutdown_progress(svc_server *s);

#endif
