/*
 * client_internal.h - what libbraid's own files share: the client struct, the
 * RPC call over one nng context, error recording, and the stream's buffer
 * feed (exposed so that tests can drive the iterator without a server).
 */
#ifndef BRAID_CLIENT_INTERNAL_H
#define BRAID_CLIENT_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>

#include <nng/nng.h>
#include <nng/supplemental/tls/tls.h>

#include "braid.h"
#include "braid.pb-c.h"

struct braid_client {
    nng_socket sock;
    nng_dialer dialer;
    nng_tls_config *tls; /* tls+tcp:// only; the dialer holds its own reference too */
    char tls_desc[320];  /* "CA FILE, server name NAME" for messages */
    bool tls_name_is_ip; /* mbedtls 2.x matches DNS names only: worth a hint */
    int timeout_ms;
    int poll_wait_ms;
    atomic_ullong next_call_id;
};

/* Records a message for braid_last_error (printf-style) and returns st. */
braid_status braid__error(braid_status st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Sends req as method and waits up to timeout_ms for the reply. On BRAID_OK
 * *payload_out holds the unpacked reply of type `type` (free with
 * protobuf_c_message_free_unpacked). *transport (may be NULL) is set when the
 * failure happened in transport (no reply came) rather than being the
 * server's status, so the caller may retry. */
braid_status braid__call(braid_client *c, const char *method, const ProtobufCMessage *req,
                         const ProtobufCMessageDescriptor *type, int timeout_ms,
                         ProtobufCMessage **payload_out, bool *transport);

/* Appends a packed StreamNextReply's events to the stream's buffer, dropping
 * those at or below the last seq already buffered (a reply that was resent).
 * Takes nothing; copies what it keeps. Returns BRAID_DATA_LOSS on a gap in
 * sequence numbers, BRAID_INTERNAL when the bytes do not parse. */
braid_status braid__stream_feed(braid_stream *s, const uint8_t *buf, size_t len);

/* A stream with no client, for tests of the buffer and iterator. */
braid_stream *braid__stream_new_detached(uint64_t id, uint64_t last_seq);

/* BRAID_OK when id is 64 lower-case hex digits; else INVALID_ARGUMENT with a message. */
braid_status braid__check_chunk_id(const char *id);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates or > U+10FFFF). */
bool braid__utf8_valid(const char *s, size_t len);

#endif
