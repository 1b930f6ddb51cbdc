/* svc_stream.c - the stream table and its per-stream event buffers. */
#include "svc_stream.h"

#include <string.h>
#include <time.h>

#include "common/alloc.h"

/* A bijective 64-bit mix (splitmix64's finaliser): sequential counters become
 * ids that another client cannot guess from its own. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

bi_status svc_streams_init(svc_streams *t, size_t expected, svc_notify_fn notify, void *user)
{
    memset(t, 0, sizeof *t);
    t->n_buckets = 64;
    while (t->n_buckets < expected && t->n_buckets < (1u << 20))
        t->n_buckets *= 2;
    if (!(t->buckets = bi_calloc(t->n_buckets, sizeof *t->buckets)))
        return BI_NOMEM;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    t->key = mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^ (uintptr_t)t);
    t->notify = notify;
    t->notify_user = user;
    pthread_mutex_init(&t->lock, NULL);
    return BI_OK;
}

static void event_clear(svc_event *e)
{
    bi_free(e->text);
    bi_free(e->lp);
    bi_free(e->message);
}

static void stream_free(svc_stream *s)
{
    for (size_t i = 0; i < s->n_ev; i++)
        event_clear(&s->ev[i]);
    bi_free(s->ev);
    bi_free(s->rid);
    bi_free(s);
}

void svc_streams_fini(svc_streams *t)
{
    if (!t->buckets)
        return;
    for (size_t b = 0; b < t->n_buckets; b++)
        for (svc_stream *s = t->buckets[b], *next; s; s = next) {
            next = s->hnext;
            stream_free(s);
        }
    bi_free(t->buckets);
    t->buckets = NULL;
    pthread_mutex_destroy(&t->lock);
}

void svc_streams_mute(svc_streams *t)
{
    pthread_mutex_lock(&t->lock);
    t->notify = NULL;
    pthread_mutex_unlock(&t->lock);
}

static size_t bucket_of(const svc_streams *t, uint64_t id)
{
    return (size_t)(mix64(id) & (t->n_buckets - 1));
}

bi_status svc_streams_open(svc_streams *t, const char *rid, svc_stream **out)
{
    svc_stream *s = bi_calloc(1, sizeof *s);
    if (!s || !(s->rid = bi_strdup(rid ? rid : ""))) {
        bi_free(s);
        return BI_NOMEM;
    }
    do
        s->id = mix64(++t->counter ^ t->key);
    while (s->id == 0 || svc_streams_find(t, s->id));
    s->table = t;
    size_t b = bucket_of(t, s->id);
    s->hnext = t->buckets[b];
    t->buckets[b] = s;
    t->n++;
    *out = s;
    return BI_OK;
}

svc_stream *svc_streams_find(svc_streams *t, uint64_t id)
{
    for (svc_stream *s = t->buckets[bucket_of(t, id)]; s; s = s->hnext)
        if (s->id == id)
            return s;
    return NULL;
}

void svc_streams_close(svc_streams *t, svc_stream *s)
{
    svc_stream **pp = &t->buckets[bucket_of(t, s->id)];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = s->hnext;
    t->n--;
    pthread_mutex_lock(&t->lock);
    if (s->dirty) { /* unlink from the dirty list */
        svc_stream **dp = &t->dirty_head;
        while (*dp && *dp != s)
            dp = &(*dp)->dirty_next;
        if (*dp)
            *dp = s->dirty_next;
    }
    pthread_mutex_unlock(&t->lock);
    stream_free(s);
}

void svc_streams_each(svc_streams *t, void (*fn)(void *user, svc_stream *s), void *user)
{
    for (size_t b = 0; b < t->n_buckets; b++)
        for (svc_stream *s = t->buckets[b], *next; s; s = next) {
            next = s->hnext;
            fn(user, s);
        }
}

/* Fills e from ev; false when out of memory (e then owns nothing). */
static bool event_copy(svc_event *e, const eng_event *ev)
{
    memset(e, 0, sizeof *e);
    e->final = ev->final;
    e->token = ev->token;
    if (ev->text_len) {
        if (!(e->text = bi_strndup(ev->text, ev->text_len)))
            return false;
        e->text_len = ev->text_len;
    }
    if (!ev->final && ev->logprobs) {
        if (!(e->lp = bi_malloc(sizeof *e->lp))) {
            event_clear(e);
            return false;
        }
        *e->lp = *ev->logprobs;
    }
    if (ev->final) {
        e->finish = ev->finish;
        e->status = ev->status;
        if (ev->usage)
            e->usage = *ev->usage;
        if (ev->message && ev->message[0] && !(e->message = bi_strdup(ev->message))) {
            event_clear(e);
            return false;
        }
    }
    return true;
}

void svc_stream_on_event(void *user, const eng_event *ev)
{
    svc_stream *s = user;
    svc_streams *t = s->table;
    svc_event e;
    bool ok = event_copy(&e, ev);
    pthread_mutex_lock(&t->lock);
    if (ok && bi_array_reserve((void **)&s->ev, &s->cap_ev, s->n_ev + 1, sizeof *s->ev) != BI_OK) {
        event_clear(&e);
        ok = false;
    }
    if (ok) {
        e.seq = ++s->last_seq;
        s->ev[s->n_ev++] = e;
    } else if (ev->final) {
        /* The final event must get through: keep it without its strings. */
        s->lost = true;
        if (bi_array_reserve((void **)&s->ev, &s->cap_ev, s->n_ev + 1, sizeof *s->ev) == BI_OK) {
            svc_event *f = &s->ev[s->n_ev++];
            memset(f, 0, sizeof *f);
            f->seq = ++s->last_seq;
            f->final = true;
            f->finish = ENG_FINISH_ERROR;
            f->status = BI_NOMEM;
        }
    } else {
        s->lost = true;
    }
    if (ev->final)
        s->finished = true;
    if (!s->dirty) {
        s->dirty = true;
        s->dirty_next = t->dirty_head;
        t->dirty_head = s;
    }
    if (t->notify)
        t->notify(t->notify_user);
    pthread_mutex_unlock(&t->lock);
}

svc_stream *svc_streams_pop_dirty(svc_streams *t)
{
    pthread_mutex_lock(&t->lock);
    svc_stream *s = t->dirty_head;
    if (s) {
        t->dirty_head = s->dirty_next;
        s->dirty = false;
    }
    pthread_mutex_unlock(&t->lock);
    return s;
}

bool svc_stream_ack(svc_stream *s, uint64_t ack)
{
    svc_streams *t = s->table;
    bool final_acked = false;
    pthread_mutex_lock(&t->lock);
    size_t k = 0;
    while (k < s->n_ev && s->ev[k].seq <= ack) {
        final_acked |= s->ev[k].final;
        event_clear(&s->ev[k]);
        k++;
    }
    if (k) {
        memmove(s->ev, s->ev + k, (s->n_ev - k) * sizeof *s->ev);
        s->n_ev -= k;
    }
    /* Everything acknowledged earlier: the final event was dropped before. */
    if (s->finished && s->n_ev == 0 && ack >= s->last_seq)
        final_acked = true;
    pthread_mutex_unlock(&t->lock);
    return final_acked;
}

void svc_streams_lock(svc_streams *t)
{
    pthread_mutex_lock(&t->lock);
}

void svc_streams_unlock(svc_streams *t)
{
    pthread_mutex_unlock(&t->lock);
}
