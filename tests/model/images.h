/*
 * images.h - builders for small GGUF and safetensors images in memory, shared
 * by the model tests: valid files to start from, and the raw pieces to write
 * hostile ones (lying sizes, bad offsets, bad names).
 */
#ifndef TEST_MODEL_IMAGES_H
#define TEST_MODEL_IMAGES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct img {
    uint8_t *p;
    size_t n, cap;
} img;

static inline void img_put(img *m, const void *d, size_t n)
{
    if (m->n + n > m->cap) {
        m->cap = (m->n + n) * 2 + 64;
        m->p = realloc(m->p, m->cap);
    }
    memcpy(m->p + m->n, d, n);
    m->n += n;
}

static inline void img_u32(img *m, uint32_t v)
{
    img_put(m, &v, 4);
}

static inline void img_u64(img *m, uint64_t v)
{
    img_put(m, &v, 8);
}

static inline void img_str(img *m, const char *s)
{
    img_u64(m, strlen(s));
    img_put(m, s, strlen(s));
}

static inline void img_pad(img *m, size_t align)
{
    static const uint8_t z[64];
    img_put(m, z, (align - m->n % align) % align);
}

/* GGUF header: magic, version, counts. */
static inline void gguf_head(img *m, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    img_put(m, "GGUF", 4);
    img_u32(m, version);
    img_u64(m, n_tensors);
    img_u64(m, n_kv);
}

static inline void gguf_kv_u32(img *m, const char *key, uint32_t v)
{
    img_str(m, key);
    img_u32(m, 4);
    img_u32(m, v);
}

static inline void gguf_kv_f32(img *m, const char *key, float v)
{
    img_str(m, key);
    img_u32(m, 6);
    img_put(m, &v, 4);
}

static inline void gguf_kv_str(img *m, const char *key, const char *v)
{
    img_str(m, key);
    img_u32(m, 8);
    img_str(m, v);
}

/* A tensor info with ne[] innermost first, as GGUF stores it. */
static inline void gguf_tinfo(img *m, const char *name, uint32_t n_dims, const uint64_t *ne,
                              uint32_t type, uint64_t offset)
{
    img_str(m, name);
    img_u32(m, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        img_u64(m, ne[i]);
    img_u32(m, type);
    img_u64(m, offset);
}

/* Writes the image to a fresh temporary file; returns its path (static). */
static inline const char *img_to_file(const img *m, const char *suffix)
{
    static char path[256];
    snprintf(path, sizeof path, "/tmp/braid_model_test_%d_XXXXXX%s", (int)getpid(), suffix);
    int fd = mkstemps(path, (int)strlen(suffix));
    if (fd < 0)
        return NULL;
    if (write(fd, m->p, m->n) != (ssize_t)m->n) {
        close(fd);
        return NULL;
    }
    close(fd);
    return path;
}

/* safetensors: header JSON (padded to 8) then data. */
static inline void st_image(img *m, const char *json, const void *data, size_t data_size)
{
    size_t n = strlen(json), pad = (8 - n % 8) % 8;
    img_u64(m, n + pad);
    img_put(m, json, n);
    img_put(m, "        ", pad);
    img_put(m, data, data_size);
}

#endif
