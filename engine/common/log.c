/* log.c - process-wide log sink, level filter and the stderr line format. */
#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <strings.h>
#include <time.h>

#define LOG_MSG_MAX 1024

static pthread_mutex_t sink_lock = PTHREAD_MUTEX_INITIALIZER;
static bi_log_sink_fn sink_fn;
static void *sink_user;
static atomic_int cur_level = BI_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error", "off"};

void bi_log_set_sink(bi_log_sink_fn fn, void *user)
{
    pthread_mutex_lock(&sink_lock);
    sink_fn = fn;
    sink_user = user;
    pthread_mutex_unlock(&sink_lock);
}

void bi_log_set_level(bi_log_level level)
{
    if (level < BI_LOG_DEBUG || level > BI_LOG_OFF)
        return;
    atomic_store(&cur_level, (int)level);
}

bi_log_level bi_log_get_level(void)
{
    return (bi_log_level)atomic_load(&cur_level);
}

bool bi_log_enabled(bi_log_level level)
{
    return level < BI_LOG_OFF && (int)level >= atomic_load(&cur_level);
}

const char *bi_log_level_name(bi_log_level level)
{
    if (level < BI_LOG_DEBUG || level > BI_LOG_OFF)
        return "?";
    return level_names[level];
}

bi_status bi_log_level_parse(const char *name, bi_log_level *out)
{
    if (!name || !out)
        return BI_INVALID_ARGUMENT;
    for (int l = BI_LOG_DEBUG; l <= BI_LOG_OFF; l++) {
        if (strcasecmp(name, level_names[l]) == 0) {
            *out = (bi_log_level)l;
            return BI_OK;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = BI_LOG_WARN;
        return BI_OK;
    }
    return BI_INVALID_ARGUMENT;
}

void bi_log_write(bi_log_level level, const char *module, const char *req_id, const char *fmt, ...)
{
    if (!bi_log_enabled(level) || !fmt)
        return;
    char msg[LOG_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    bi_log_record rec = {
        .level = level,
        .module = module ? module : "braid",
        .req_id = req_id,
        .message = msg,
        .time_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
    };
    pthread_mutex_lock(&sink_lock);
    if (sink_fn)
        sink_fn(&rec, sink_user);
    pthread_mutex_unlock(&sink_lock);
}

int bi_log_format(const bi_log_record *rec, char *buf, size_t size)
{
    time_t secs = (time_t)(rec->time_ns / 1000000000);
    int ms = (int)((rec->time_ns / 1000000) % 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char when[32];
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    static const char *const tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR", "OFF  "};
    const char *tag =
        (rec->level >= BI_LOG_DEBUG && rec->level <= BI_LOG_OFF) ? tags[rec->level] : "?    ";
    if (rec->req_id)
        return snprintf(buf, size, "%s.%03dZ %s %s [req %s] %s", when, ms, tag, rec->module,
                        rec->req_id, rec->message);
    return snprintf(buf, size, "%s.%03dZ %s %s %s", when, ms, tag, rec->module, rec->message);
}

void bi_log_stderr_sink(const bi_log_record *rec, void *user)
{
    FILE *f = user ? (FILE *)user : stderr;
    char line[LOG_MSG_MAX + 128];
    bi_log_format(rec, line, sizeof line);
    fprintf(f, "%s\n", line);
    fflush(f);
}
