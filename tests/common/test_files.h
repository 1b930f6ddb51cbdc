/*
 * test_files.h - reading fixture files in tests (header-only, test code only).
 *
 * test_slurp returns a malloc'ed copy of a whole file with a NUL after its last
 * byte (so text can be used as a string), or NULL; the caller frees it.
 * test_load_json (when the including file has included <cjson/cJSON.h>) parses
 * a JSON file; the caller frees it with cJSON_Delete.
 */
#ifndef BRAID_TEST_FILES_H
#define BRAID_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>

static inline char *test_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (!buf)
        return NULL;
    buf[n] = '\0';
    if (len)
        *len = (size_t)n;
    return buf;
}

#ifdef cJSON__h
static inline cJSON *test_load_json(const char *path)
{
    char *s = test_slurp(path, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}
#endif

#endif
