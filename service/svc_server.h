/*
 * svc_server.h - the RPC server: nng sockets driven from one libuv loop.
 *
 * nng completes receives on its own threads; their callbacks only queue the
 * message and wake the loop with uv_async_send. Everything else (protobuf
 * decoding, validation, dispatch, encoding replies) runs on the loop thread, so
 * handlers need no locks. Each in-flight call owns one nng context, which is how
 * many calls share one connection.
 *
 * Lifetime: create on the loop thread, svc_server_start, and on shutdown call
 * svc_server_close (loop thread), run the loop until it has no more handles,
 * then svc_server_destroy.
 */
#ifndef SVC_SERVER_H
#define SVC_SERVER_H

#include <uv.h>

#include "common/status.h"
#include "svc_config.h"

typedef struct svc_server svc_server;

/* Allocates a server on loop with the limits in cfg (which must outlive it).
 * Nothing listens until svc_server_start. */
bi_status svc_server_create(uv_loop_t *loop, const svc_config *cfg, svc_server **out);

/* Opens the socket, listens on every address in the config and arms the call
 * contexts. On failure writes a message for the user into err. */
bi_status svc_server_start(svc_server *s, char *err, size_t err_size);

/* Stops serving: closes the socket (in-flight calls are dropped), waits for
 * nng's callbacks to finish and closes the loop handles. Idempotent. */
void svc_server_close(svc_server *s);

/* Frees the server; call after svc_server_close once the loop has run its
 * close callbacks. NULL is fine. */
void svc_server_destroy(svc_server *s);

#endif
