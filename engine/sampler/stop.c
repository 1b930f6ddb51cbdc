/*
 * stop.c - stop strings over streamed text (see sampler.h).
 *
 * Semantics, independent of how the text is split into pieces: the first stop
 * occurrence to *complete* wins (a stream cannot wait for a longer match that
 * might complete later); among stops completing at the same byte, the one that
 * starts earliest (the longest) wins. Matching is on bytes, so multi-byte UTF-8
 * stops need nothing special; since a held-back tail is a prefix of a valid
 * UTF-8 stop, it starts on a character boundary and emitted text never ends
 * inside a character that the input did not split itself.
 *
 * Stops are few and short, so each new end position is checked against each
 * stop directly; no automaton is needed.
 */
#define BI_LOG_MODULE "sampler"

#include "sampler/sampler.h"

#include <string.h>

#include "common/alloc.h"

struct eng_stop_matcher {
    char **stops; /* non-empty stops, longest first (so ties prefer early starts) */
    size_t *lens;
    size_t n;
    size_t max_len;
    char *buf; /* held-back tail followed by the new text */
    size_t held;
    size_t cap;
    bool stopped;
};

void eng_stop_matcher_destroy(eng_stop_matcher *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        bi_free(m->stops[i]);
    bi_free(m->stops);
    bi_free(m->lens);
    bi_free(m->buf);
    bi_free(m);
}

/* Inserts stop s (length len) keeping m->stops sorted by decreasing length. */
static bi_status add_stop(eng_stop_matcher *m, const char *s, size_t len)
{
    char *copy = bi_strndup(s, len);
    if (!copy)
        return BI_NOMEM;
    size_t j = m->n++;
    while (j > 0 && m->lens[j - 1] < len) {
        m->stops[j] = m->stops[j - 1];
        m->lens[j] = m->lens[j - 1];
        j--;
    }
    m->stops[j] = copy;
    m->lens[j] = len;
    if (len > m->max_len)
        m->max_len = len;
    return BI_OK;
}

bi_status eng_stop_matcher_create(const char *const *stops, size_t n, eng_stop_matcher **out)
{
    if (!out || (!stops && n > 0))
        return BI_INVALID_ARGUMENT;
    *out = NULL;
    for (size_t i = 0; i < n; i++)
        if (!stops[i])
            return BI_INVALID_ARGUMENT;
    eng_stop_matcher *m = bi_calloc(1, sizeof(*m));
    if (!m)
        return BI_NOMEM;
    m->stops = bi_calloc(n, sizeof(*m->stops));
    m->lens = bi_calloc(n, sizeof(*m->lens));
    if (!m->stops || !m->lens) {
        eng_stop_matcher_destroy(m);
        return BI_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(stops[i]);
        if (len == 0)
            continue;
        bi_status st = add_stop(m, stops[i], len);
        if (st != BI_OK) {
            eng_stop_matcher_destroy(m);
            return st;
        }
    }
    *out = m;
    return BI_OK;
}

/* Start of the first stop that completes in buf[0, len) at an end position
 * after from, or SIZE_MAX when none does. */
static size_t find_stop(const eng_stop_matcher *m, const char *buf, size_t len, size_t from)
{
    for (size_t end = from + 1; end <= len; end++)
        for (size_t i = 0; i < m->n; i++) {
            size_t l = m->lens[i];
            if (l <= end && memcmp(buf + end - l, m->stops[i], l) == 0)
                return end - l;
        }
    return SIZE_MAX;
}

/* Length of the longest suffix of buf[0, len) that is a proper prefix of some
 * stop: the text that a later piece could still turn into a stop. */
static size_t holdback(const eng_stop_matcher *m, const char *buf, size_t len)
{
    size_t h = m->max_len > 0 ? m->max_len - 1 : 0;
    if (h > len)
        h = len;
    for (; h > 0; h--)
        for (size_t i = 0; i < m->n; i++)
            if (m->lens[i] > h && memcmp(buf + len - h, m->stops[i], h) == 0)
                return h;
    return 0;
}

bi_status eng_stop_matcher_feed(eng_stop_matcher *m, const char *text, size_t len, char *out,
                                size_t out_cap, size_t *out_len, bool *stopped)
{
    if (!m || (!text && len > 0) || (!out && out_cap > 0) || !out_len || !stopped)
        return BI_INVALID_ARGUMENT;
    *out_len = 0;
    *stopped = m->stopped;
    if (m->stopped)
        return BI_OK;
    size_t total;
    if (!bi_size_add(m->held, len, &total))
        return BI_OUT_OF_RANGE;
    void *arr = m->buf;
    bi_status st = bi_array_reserve(&arr, &m->cap, total, 1);
    m->buf = arr;
    if (st != BI_OK)
        return st;
    if (len > 0)
        memcpy(m->buf + m->held, text, len);

    /* No stop can end inside the held tail: it was checked when it arrived. */
    size_t start = find_stop(m, m->buf, total, m->held);
    size_t emit = start != SIZE_MAX ? start : total - holdback(m, m->buf, total);
    if (emit > out_cap)
        return BI_OUT_OF_RANGE; /* state unchanged: the held tail is still m->buf[0, held) */
    if (emit > 0)
        memcpy(out, m->buf, emit);
    *out_len = emit;
    if (start != SIZE_MAX) {
        m->stopped = true;
        m->held = 0;
        *stopped = true;
        return BI_OK;
    }
    m->held = total - emit;
    if (m->held > 0)
        memmove(m->buf, m->buf + emit, m->held);
    return BI_OK;
}

bi_status eng_stop_matcher_flush(eng_stop_matcher *m, char *out, size_t out_cap, size_t *out_len)
{
    if (!m || (!out && out_cap > 0) || !out_len)
        return BI_INVALID_ARGUMENT;
    *out_len = 0;
    if (m->held > out_cap)
        return BI_OUT_OF_RANGE;
    if (m->held > 0)
        memcpy(out, m->buf, m->held);
    *out_len = m->held;
    m->held = 0;
    return BI_OK;
}
