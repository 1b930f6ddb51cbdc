/*
 * mutil.c - file mappings, error formatting, UTF-8 validation and the name
 * index used by the GGUF and safetensors readers.
 */
#define BI_LOG_MODULE "model"
#include "model/mutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/hash.h"
#include "common/utf8.h"

bi_status eng_errf(char *err, size_t err_size, bi_status s, const char *fmt, ...)
{
    if (err && err_size > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
    }
    return s;
}

bi_status eng_map_open(const char *path, eng_map *m, char *err, size_t err_size)
{
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return eng_errf(err, err_size, BI_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return eng_errf(err, err_size, BI_IO, "%s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return eng_errf(err, err_size, BI_IO, "%s: not a regular file", path);
    }
    if (st.st_size > 0) {
        void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return eng_errf(err, err_size, BI_IO, "%s: mmap: %s", path, strerror(e));
        }
        m->data = p;
        m->size = (size_t)st.st_size;
        m->mapped = true;
    }
    close(fd);
    return BI_OK;
}

void eng_map_close(eng_map *m)
{
    if (m->mapped && m->data)
        munmap((void *)m->data, m->size);
    memset(m, 0, sizeof *m);
}

bool eng_utf8_valid(const char *str, size_t n)
{
    return !memchr(str, 0, n) && bi_utf8_valid(str, n);
}

static uint64_t name_hash(const char *s)
{
    return bi_fnv1a(s, strlen(s));
}

bi_status eng_name_index_init(eng_name_index *ix, size_t expected)
{
    memset(ix, 0, sizeof *ix);
    size_t cap = 16;
    while (cap < expected * 2) {
        if (cap > SIZE_MAX / 4)
            return BI_NOMEM;
        cap *= 2;
    }
    ix->keys = bi_calloc(cap, sizeof *ix->keys);
    ix->vals = bi_mallocarray(cap, sizeof *ix->vals);
    if (!ix->keys || !ix->vals) {
        eng_name_index_fini(ix);
        return BI_NOMEM;
    }
    ix->cap = cap;
    return BI_OK;
}

void eng_name_index_fini(eng_name_index *ix)
{
    bi_free(ix->keys);
    bi_free(ix->vals);
    memset(ix, 0, sizeof *ix);
}

/* The slot holding name, or the empty slot where it would go. The table is
 * never more than half full, so the probe ends. */
static size_t name_slot(const eng_name_index *ix, const char *name)
{
    size_t i = (size_t)name_hash(name) & (ix->cap - 1);
    while (ix->keys[i] && strcmp(ix->keys[i], name) != 0)
        i = (i + 1) & (ix->cap - 1);
    return i;
}

bi_status eng_name_index_put(eng_name_index *ix, const char *name, size_t val)
{
    if (ix->cap == 0 || (ix->count + 1) * 2 > ix->cap)
        return BI_RESOURCE_EXHAUSTED;
    size_t i = name_slot(ix, name);
    if (ix->keys[i])
        return BI_ALREADY_EXISTS;
    ix->count++;
    ix->keys[i] = name;
    ix->vals[i] = val;
    return BI_OK;
}

size_t eng_name_index_get(const eng_name_index *ix, const char *name)
{
    if (ix->cap == 0)
        return SIZE_MAX;
    size_t i = name_slot(ix, name);
    return ix->keys[i] ? ix->vals[i] : SIZE_MAX;
}
