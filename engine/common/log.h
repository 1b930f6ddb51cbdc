/*
 * log.h - the project's small logger.
 *
 * Library code never prints: it hands records to one process-wide sink. The
 * default sink discards everything; a program's main() installs
 * bi_log_stderr_sink (or its own) with bi_log_set_sink. Records below the
 * current level are dropped before they are formatted. Each record carries the
 * module that wrote it and, when there is one, the request id it concerns, so
 * one request can be followed through the service and the engine.
 *
 * Thread safety: every function may be called from any thread. Sink calls are
 * serialised, so a sink sees one record at a time.
 */
#ifndef BI_LOG_H
#define BI_LOG_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "status.h"

typedef enum bi_log_level {
    BI_LOG_DEBUG = 0,
    BI_LOG_INFO = 1,
    BI_LOG_WARN = 2,
    BI_LOG_ERROR = 3,
    BI_LOG_OFF = 4,
} bi_log_level;

/* One log record. Every pointer is valid only during the sink call. */
typedef struct bi_log_record {
    bi_log_level level;
    const char *module;  /* e.g. "svc", "engine"; never NULL */
    const char *req_id;  /* request id, or NULL when the record concerns no request */
    const char *message; /* formatted text without a trailing newline; truncated at 1 KiB */
    int64_t time_ns;     /* wall-clock time, ns since the Unix epoch */
} bi_log_record;

typedef void (*bi_log_sink_fn)(const bi_log_record *rec, void *user);

/* Installs fn as the sink (NULL restores the discarding default). user is
 * passed to every call; the caller keeps it alive while installed. */
void bi_log_set_sink(bi_log_sink_fn fn, void *user);

/* Sets the minimum level that reaches the sink (default BI_LOG_INFO). */
void bi_log_set_level(bi_log_level level);
bi_log_level bi_log_get_level(void);
bool bi_log_enabled(bi_log_level level);

/* "debug", "info", "warn", "error", "off". */
const char *bi_log_level_name(bi_log_level level);

/* Parses a level name as above (case-insensitive; "warning" accepted).
 * Returns BI_INVALID_ARGUMENT and leaves *out unchanged for anything else. */
bi_status bi_log_level_parse(const char *name, bi_log_level *out);

/* Formats and delivers one record. module may be NULL ("braid"); req_id may be
 * NULL. Prefer the BI_LOG* macros below. */
void bi_log_write(bi_log_level level, const char *module, const char *req_id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* A ready-made sink writing one line per record to user (a FILE *), or to
 * stderr when user is NULL:
 *   2026-11-22T11:32:04.123Z INFO  svc [req 42] listening on tcp://127.0.0.1:7543 */
void bi_log_stderr_sink(const bi_log_record *rec, void *user);

/* Writes rec in the line format above into buf (always NUL-terminated, possibly
 * truncated); returns the length it would have had, like snprintf. */
int bi_log_format(const bi_log_record *rec, char *buf, size_t size);

/* A file using the macros below defines BI_LOG_MODULE (its module's short
 * name) before its first include, since other headers may include this one. */
#ifndef BI_LOG_MODULE
#define BI_LOG_MODULE "braid"
#endif

#define BI_LOG(level, req, ...)                                                                    \
    do {                                                                                           \
        if (bi_log_enabled(level))                                                                 \
            bi_log_write((level), BI_LOG_MODULE, (req), __VA_ARGS__);                              \
    } while (0)
#define BI_LOGD(req, ...) BI_LOG(BI_LOG_DEBUG, req, __VA_ARGS__)
#define BI_LOGI(req, ...) BI_LOG(BI_LOG_INFO, req, __VA_ARGS__)
#define BI_LOGW(req, ...) BI_LOG(BI_LOG_WARN, req, __VA_ARGS__)
#define BI_LOGE(req, ...) BI_LOG(BI_LOG_ERROR, req, __VA_ARGS__)

#endif
