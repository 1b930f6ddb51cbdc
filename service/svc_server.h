/*
 * svc_server.h - the RPC server: nng sockets driven from one libuv loop.
 *
 * nng completes receives on its own threads; their callbacks only queue the
 * message and wake the loop with uv_async_send. The engine's worker thread
 * likewise only appends events to stream buffers and wakes the loop.
 * Everything else (protobuf decoding, validation, engine calls, encoding
 * replies, timers) runs on the loop thread, so handlers need no locks. Each
 * in-flight call owns one nng context, which is how many calls share one
 * connection; a StreamNext long poll keeps its context, unanswered, until an
 * event arrives or its wait ends.
 *
 * Lifetime: create on the loop thread, svc_server_start, run the loop. To stop,
 * svc_server_shutdown (graceful) or svc_server_close (at once); the loop then
 * runs until the server's handles are closed. Destroy the engine after the
 * loop returns (no generation is running by then), then svc_server_destroy.
 */
#ifndef SVC_SERVER_H
#define SVC_SERVER_H

#include <stdbool.h>
#include <uv.h>

#include "common/status.h"
#include "core/engine.h"
#include "svc_config.h"

typedef struct svc_server svc_server;

/* Allocates a server on loop with the limits in cfg (which must outlive it)
 * serving engine (NULL: only Health works; the other methods answer
 * UNAVAILABLE). The server does not own the engine. Nothing listens until
 * svc_server_start. */
bi_status svc_server_create(uv_loop_t *loop, const svc_config *cfg, eng_engine *engine,
                            svc_server **out);

/* Opens the socket, listens on every address in the config and arms the call
 * contexts. On failure writes a message for the user into err; the caller
 * then calls svc_server_close, runs the loop and destroys the server. */
bi_status svc_server_start(svc_server *s, char *err, size_t err_size);

/* Graceful shutdown: Generate answers UNAVAILABLE and Health NOT_SERVING at
 * once; running generations get cfg->grace_s seconds to finish while their
 * streams can still be drained; then the rest are cancelled, parked polls
 * answered and the server closes itself, after which on_closed(user) runs on
 * the loop thread (may be NULL). Calling it again (a second signal) skips
 * what is left of the grace period. */
void svc_server_shutdown(svc_server *s, void (*on_closed)(void *user), void *user);

/* Stops serving now: closes the socket (in-flight calls are dropped), waits
 * for nng's callbacks to finish and closes the loop handles. Idempotent. */
void svc_server_close(svc_server *s);

/* Frees the server; call after svc_server_close once the loop has run its
 * close callbacks, and after the engine is destroyed. NULL is fine. */
void svc_server_destroy(svc_server *s);

#endif
