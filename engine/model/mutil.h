/*
 * mutil.h - internal helpers shared by the model-file readers (GGUF,
 * safetensors, the model loader): read-only file mappings, error messages,
 * UTF-8 checks and a string-keyed hash index. Not part of the public API.
 */
#ifndef ENG_MUTIL_H
#define ENG_MUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"

/* A read-only view of a file's bytes (mmap) or of a caller's buffer. */
typedef struct eng_map {
    const uint8_t *data; /* NULL when size is 0 */
    size_t size;
    bool mapped; /* true when eng_map_close must munmap */
} eng_map;

/* Maps the regular file at path read-only. BI_IO (with errno text in err)
 * when it cannot be opened, stat'ed or mapped, or is not a regular file. */
bi_status eng_map_open(const char *path, eng_map *m, char *err, size_t err_size);
/* Unmaps a mapping made by eng_map_open; a no-op for borrowed buffers. */
void eng_map_close(eng_map *m);

/* Writes a formatted message into err (when err is non-NULL and err_size > 0)
 * and returns s, so that error paths read `return eng_errf(err, n, BI_X, ...)`. */
bi_status eng_errf(char *err, size_t err_size, bi_status s, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* True when s[0..n) is well-formed UTF-8 without NUL bytes. */
bool eng_utf8_valid(const char *s, size_t n);

/* An open-addressing hash index from NUL-terminated names (not owned; they
 * must outlive the index) to values. */
typedef struct eng_name_index {
    const char **keys;
    size_t *vals;
    size_t cap;   /* power of two, at least twice the expected count */
    size_t count; /* names stored; put refuses to pass half of cap */
} eng_name_index;

bi_status eng_name_index_init(eng_name_index *ix, size_t expected);
void eng_name_index_fini(eng_name_index *ix);
/* Adds name -> val; BI_ALREADY_EXISTS when name is already present,
 * BI_RESOURCE_EXHAUSTED when more than the expected count are put. */
bi_status eng_name_index_put(eng_name_index *ix, const char *name, size_t val);
/* The value stored for name, or SIZE_MAX. */
size_t eng_name_index_get(const eng_name_index *ix, const char *name);

struct cJSON;
/* Reads and parses the JSON object in the file at path (at most max bytes).
 * BI_NOT_FOUND when the file does not exist, BI_BAD_FORMAT when it is not a
 * JSON object; the caller frees *out with cJSON_Delete. */
bi_status eng_read_json(const char *path, size_t max, struct cJSON **out, char *err,
                        size_t err_size);

#endif
