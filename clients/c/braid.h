/*
 * braid.h - libbraid, the C client of the Braidinfer service.
 *
 * One client holds one connection (an nng REQ socket, redialled automatically)
 * and may be used from several threads: every call opens its own nng context.
 * Calls block until the reply arrives or the client's timeout passes.
 *
 * Errors: every call returns a braid_status (gRPC numbering, as on the wire).
 * The server's message for the last failed call on this thread is available
 * from braid_last_error() until the next call on the same thread.
 */
#ifndef BRAID_H
#define BRAID_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum braid_status {
    BRAID_OK = 0,
    BRAID_CANCELLED = 1,
    BRAID_UNKNOWN = 2,
    BRAID_INVALID_ARGUMENT = 3,
    BRAID_DEADLINE_EXCEEDED = 4,
    BRAID_NOT_FOUND = 5,
    BRAID_ALREADY_EXISTS = 6,
    BRAID_PERMISSION_DENIED = 7,
    BRAID_RESOURCE_EXHAUSTED = 8,
    BRAID_FAILED_PRECONDITION = 9,
    BRAID_ABORTED = 10,
    BRAID_OUT_OF_RANGE = 11,
    BRAID_UNIMPLEMENTED = 12,
    BRAID_INTERNAL = 13,
    BRAID_UNAVAILABLE = 14,
    BRAID_DATA_LOSS = 15,
    BRAID_UNAUTHENTICATED = 16,
} braid_status;

typedef struct braid_client braid_client;

/* Static description of a status code. */
const char *braid_strerror(braid_status s);

/* The detail message of this thread's last failed call ("" if none); valid
 * until the next call on this thread. */
const char *braid_last_error(void);

/* Connects to a braidd at url (tcp://HOST:PORT or ipc:///PATH). The dial is
 * non-blocking: a server that is not up yet is redialled, and calls fail with
 * BRAID_UNAVAILABLE once timeout_ms passes. timeout_ms <= 0 means 30 s.
 * The caller frees *out with braid_client_destroy. */
braid_status braid_client_create(const char *url, int timeout_ms, braid_client **out);

/* Closes the connection and frees the client; NULL is fine. */
void braid_client_destroy(braid_client *c);

typedef struct braid_health {
    int serving;      /* 1 when the service is ready for requests */
    char version[32]; /* braidd version */
    char backend[16]; /* "cpu", "cuda" or "none" */
    char model[128];  /* loaded model name, "" if none */
    uint64_t uptime_ms;
} braid_health;

/* Asks the service whether it is up. */
braid_status braid_health_check(braid_client *c, braid_health *out);

#ifdef __cplusplus
}
#endif

#endif
