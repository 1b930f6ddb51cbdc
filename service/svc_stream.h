/*
 * svc_stream.h - the streams of running and finished generations.
 *
 * A stream is the server side of one Generate: the engine's generation id and
 * the buffer of events not yet acknowledged by the client, each with a
 * sequence number (1, 2, 3, ... per stream). StreamNext(ack_seq) drops the
 * events up to ack_seq and returns the rest, so a lost reply loses nothing: the
 * client asks again with the same ack_seq, from any connection.
 *
 * Threads: the engine's worker thread appends events through svc_stream_on_event
 * (the eng_event_fn given to eng_generate) and never touches anything but the
 * buffer, under the table's lock; it then calls the table's notify function
 * (which wakes the loop with uv_async_send). Everything else - opening,
 * finding, acknowledging, closing streams and the loop-side fields - belongs to
 * the loop thread. The buffer may only be read between svc_streams_lock and
 * svc_streams_unlock.
 *
 * Ownership: the table owns its streams; svc_streams_close frees one (only
 * after its final event arrived, or once the engine is gone), svc_streams_fini
 * frees them all.
 */
#ifndef SVC_STREAM_H
#define SVC_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "core/engine.h"

/* One buffered event, a copy of an eng_event that owns its strings. */
typedef struct svc_event {
    uint64_t seq;
    bool final;
    int32_t token;
    char *text; /* token delta, or the final event's held-back text (may be NULL) */
    size_t text_len;
    eng_logprobs *lp; /* NULL unless logprobs were asked for */
    eng_finish finish;
    bi_status status;
    char *message; /* final: detail for errors */
    eng_usage usage;
} svc_event;

typedef struct svc_streams svc_streams;

typedef struct svc_stream {
    uint64_t id;
    uint64_t gen_id;
    char *rid;       /* client request id ("" when none) */
    uint64_t digest; /* FNV-1a of the Generate request's bytes (svc_generate's retry check) */
    svc_streams *table;

    /* guarded by the table lock (written by the worker) */
    svc_event *ev; /* unacknowledged events, seq ascending */
    size_t n_ev, cap_ev;
    uint64_t last_seq; /* seq of the latest event */
    bool finished;     /* the final event has arrived */
    bool lost;         /* an event could not be stored (out of memory) */
    bool dirty;        /* on the dirty list */
    struct svc_stream *dirty_next;

    /* loop thread only */
    uint64_t delivered_seq; /* highest seq sent to a client */
    uint64_t last_poll_ms;  /* loop time of the last poll (or its answer) */
    bool abandoned;         /* cancelled for idleness: dropped once finished */
    void *waiter;           /* the parked StreamNext call, owned by the server */
    struct svc_stream *hnext;
} svc_stream;

typedef void (*svc_notify_fn)(void *user);

struct svc_streams {
    pthread_mutex_t lock;
    svc_stream **buckets;
    size_t n_buckets; /* a power of two */
    size_t n;
    svc_stream *dirty_head;
    uint64_t counter, key;
    svc_notify_fn notify; /* NULL once the loop no longer listens */
    void *notify_user;
};

/* Sets up an empty table sized for about expected streams; notify(user) is
 * called on the worker thread, under the lock, after an event arrives. */
bi_status svc_streams_init(svc_streams *t, size_t expected, svc_notify_fn notify, void *user);
/* Frees every stream. The engine must no longer deliver events to them. */
void svc_streams_fini(svc_streams *t);
/* Stops notifications (before the loop's async handle closes). */
void svc_streams_mute(svc_streams *t);

/* Opens a stream with a fresh, hard-to-guess non-zero id; rid is copied. */
bi_status svc_streams_open(svc_streams *t, const char *rid, svc_stream **out);
/* The stream with this id, or NULL. */
svc_stream *svc_streams_find(svc_streams *t, uint64_t id);
/* Removes and frees s. */
void svc_streams_close(svc_streams *t, svc_stream *s);
/* Calls fn on every stream; fn may close the stream it is given. */
void svc_streams_each(svc_streams *t, void (*fn)(void *user, svc_stream *s), void *user);

/* The eng_event_fn for eng_generate with user = the stream: copies ev into the
 * buffer with the next seq, marks the stream dirty and notifies. */
void svc_stream_on_event(void *user, const eng_event *ev);

/* One stream that received events since it was last popped, or NULL. */
svc_stream *svc_streams_pop_dirty(svc_streams *t);

/* Drops the events with seq <= ack. Returns true when the final event is
 * among the dropped ones: the client has everything, the stream may go. */
bool svc_stream_ack(svc_stream *s, uint64_t ack);

/* Guards reads of a stream's buffer from the loop thread. */
void svc_streams_lock(svc_streams *t);
void svc_streams_unlock(svc_streams *t);

#endif
