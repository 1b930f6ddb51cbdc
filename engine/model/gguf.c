/*
 * gguf.c - the GGUF reader: one pass over the header that checks every count,
 * length and offset against the bytes that are really there, builds a key
 * table and a tensor table, and hands out pointers into the mapping.
 *
 * Layout (little-endian): "GGUF", u32 version (2 or 3), u64 n_tensors,
 * u64 n_kv, n_kv x (string key, u32 type, value), n_tensors x (string name,
 * u32 n_dims, u64 ne[n_dims], u32 type, u64 offset), padding to
 * general.alignment (default 32), tensor data.
 */
#define BI_LOG_MODULE "model"
#include "model/gguf.h"

#include <string.h>

#include "common/alloc.h"
#include "model/mutil.h"

#define GGUF_MAX_DIMS      4
#define GGUF_MAX_NAME      1024 /* ggml allows 64; we are generous but bounded */
#define GGUF_DEFAULT_ALIGN 32

typedef struct gguf_kv {
    char *key; /* NUL-terminated copy */
    eng_gguf_type type;
    const uint8_t *val; /* scalars: the value bytes */
    const char *str;    /* STRING: the bytes (not NUL-terminated) */
    size_t str_len;
    eng_gguf_arr arr; /* ARRAY */
} gguf_kv;

struct eng_gguf {
    eng_map map;
    uint32_t version;
    size_t n_kv, n_tensors;
    gguf_kv *kv;
    eng_gguf_tensor *tensors;
    eng_name_index kv_index, tensor_index;
    size_t data_offset; /* start of the tensor data area */
};

/* A bounds-checked cursor over the header. */
typedef struct cursor {
    const uint8_t *p;
    size_t pos, size;
    char *err;
    size_t err_size;
} cursor;

static bi_status truncated(cursor *c, const char *what)
{
    return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                    "gguf: truncated file: %s at offset %zu runs past the end (%zu bytes)", what,
                    c->pos, c->size);
}

static bi_status take(cursor *c, size_t n, const uint8_t **out, const char *what)
{
    if (c->size - c->pos < n)
        return truncated(c, what);
    *out = c->p + c->pos;
    c->pos += n;
    return BI_OK;
}

static bi_status rd_u32(cursor *c, uint32_t *v, const char *what)
{
    const uint8_t *p = NULL;
    bi_status s = take(c, 4, &p, what);
    if (s == BI_OK)
        memcpy(v, p, 4);
    return s;
}

static bi_status rd_u64(cursor *c, uint64_t *v, const char *what)
{
    const uint8_t *p = NULL;
    bi_status s = take(c, 8, &p, what);
    if (s == BI_OK)
        memcpy(v, p, 8);
    return s;
}

static bi_status rd_str(cursor *c, const char **s, size_t *len, const char *what)
{
    uint64_t n;
    bi_status st = rd_u64(c, &n, what);
    if (st != BI_OK)
        return st;
    if (n > c->size - c->pos)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: %s at offset %zu claims %llu bytes, past the end of the file", what,
                        c->pos - 8, (unsigned long long)n);
    *s = (const char *)(c->p + c->pos);
    *len = (size_t)n;
    c->pos += (size_t)n;
    return BI_OK;
}

/* Reads a string that becomes a NUL-terminated name (key or tensor name):
 * non-empty, bounded, valid UTF-8 without NUL bytes. */
static bi_status rd_name(cursor *c, char **out, const char *what)
{
    const char *s = NULL;
    size_t n = 0;
    bi_status st = rd_str(c, &s, &n, what);
    if (st != BI_OK)
        return st;
    if (n == 0 || n > GGUF_MAX_NAME)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: %s at offset %zu has length %zu",
                        what, c->pos - n, n);
    if (!eng_utf8_valid(s, n))
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: %s at offset %zu is not valid UTF-8 (or holds a NUL byte)", what,
                        c->pos - n);
    *out = bi_strndup(s, n);
    return *out ? BI_OK : BI_NOMEM;
}

static size_t scalar_size(eng_gguf_type t)
{
    switch (t) {
    case ENG_GGUF_UINT8:
    case ENG_GGUF_INT8:
    case ENG_GGUF_BOOL:
        return 1;
    case ENG_GGUF_UINT16:
    case ENG_GGUF_INT16:
        return 2;
    case ENG_GGUF_UINT32:
    case ENG_GGUF_INT32:
    case ENG_GGUF_FLOAT32:
        return 4;
    case ENG_GGUF_UINT64:
    case ENG_GGUF_INT64:
    case ENG_GGUF_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

static bi_status rd_array(cursor *c, gguf_kv *kv)
{
    uint32_t et;
    uint64_t count;
    bi_status s;
    if ((s = rd_u32(c, &et, "array type")) != BI_OK || (s = rd_u64(c, &count, "array count")))
        return s;
    kv->arr.type = (eng_gguf_type)et;
    kv->arr.count = count;
    kv->arr.data = c->p + c->pos;
    if (et == ENG_GGUF_STRING) {
        /* every string takes at least its 8-byte length: bounds the index */
        if (count > (c->size - c->pos) / 8)
            return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                            "gguf: key '%s': string array of %llu elements does not fit the file",
                            kv->key, (unsigned long long)count);
        uint64_t *offs = bi_mallocarray(count ? count : 1, sizeof *offs);
        if (!offs)
            return BI_NOMEM;
        kv->arr.str_offsets = offs;
        for (uint64_t i = 0; i < count; i++) {
            const char *str;
            size_t len;
            offs[i] = (uint64_t)(c->p + c->pos - kv->arr.data);
            if ((s = rd_str(c, &str, &len, "string array element")) != BI_OK)
                return s;
        }
        return BI_OK;
    }
    size_t es = scalar_size((eng_gguf_type)et);
    if (es == 0)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: key '%s': array element type %u is not allowed (nested arrays and "
                        "unknown types are rejected)",
                        kv->key, et);
    if (count > (c->size - c->pos) / es)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: key '%s': array of %llu elements runs past the end of the file",
                        kv->key, (unsigned long long)count);
    c->pos += (size_t)count * es;
    return BI_OK;
}

static bi_status rd_kv(cursor *c, gguf_kv *kv)
{
    bi_status s;
    uint32_t t;
    if ((s = rd_name(c, &kv->key, "metadata key")) != BI_OK)
        return s;
    if ((s = rd_u32(c, &t, "metadata type")) != BI_OK)
        return s;
    kv->type = (eng_gguf_type)t;
    if (t == ENG_GGUF_STRING)
        return rd_str(c, &kv->str, &kv->str_len, "string value");
    if (t == ENG_GGUF_ARRAY)
        return rd_array(c, kv);
    size_t n = scalar_size(kv->type);
    if (n == 0)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: key '%s' has unknown type %u",
                        kv->key, t);
    return take(c, n, &kv->val, "metadata value");
}

static bi_status rd_tensor_info(cursor *c, eng_gguf_tensor *t, uint64_t *offset)
{
    bi_status s;
    char *name = NULL;
    uint32_t n_dims, type;
    if ((s = rd_name(c, &name, "tensor name")) != BI_OK)
        return s;
    t->name = name;
    if ((s = rd_u32(c, &n_dims, "tensor n_dims")) != BI_OK)
        return s;
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: tensor '%s' has %u dimensions (1..%d allowed)", name, n_dims,
                        GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    uint64_t ne[GGUF_MAX_DIMS], total = 1;
    for (uint32_t i = 0; i < n_dims; i++) {
        if ((s = rd_u64(c, &ne[i], "tensor dimension")) != BI_OK)
            return s;
        if (ne[i] > INT64_MAX || (ne[i] != 0 && total > INT64_MAX / ne[i]))
            return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                            "gguf: tensor '%s': dimensions overflow", name);
        total *= ne[i];
        t->shape[n_dims - 1 - i] = (int64_t)ne[i]; /* outermost first */
    }
    if ((s = rd_u32(c, &type, "tensor type")) != BI_OK || (s = rd_u64(c, offset, "tensor offset")))
        return s;
    t->dtype = (eng_dtype)type;
    if (!eng_dtype_known(t->dtype))
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: tensor '%s' has unknown type %u",
                        name, type);
    if (ne[0] % eng_dtype_known_block_size(t->dtype) != 0)
        return eng_errf(
            c->err, c->err_size, BI_BAD_FORMAT,
            "gguf: tensor '%s': row of %llu elements is not a whole number of %s blocks", name,
            (unsigned long long)ne[0], eng_dtype_name(t->dtype));
    if (eng_dtype_nbytes(t->dtype, total, &t->nbytes) != BI_OK)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: tensor '%s' is too large", name);
    return BI_OK;
}

static bi_status rd_header(eng_gguf *g, cursor *c, uint64_t *n_tensors_out)
{
    const uint8_t *magic = NULL;
    uint64_t n_tensors = 0, n_kv = 0;
    bi_status s;
    if (take(c, 4, &magic, "magic") != BI_OK || memcmp(magic, "GGUF", 4) != 0)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: not a GGUF file (bad magic)");
    if ((s = rd_u32(c, &g->version, "version")) != BI_OK)
        return s;
    if (g->version != 2 && g->version != 3)
        return eng_errf(c->err, c->err_size, BI_UNSUPPORTED,
                        "gguf: version %u is not supported (2 and 3 are)", g->version);
    if ((s = rd_u64(c, &n_tensors, "tensor count")) != BI_OK ||
        (s = rd_u64(c, &n_kv, "metadata count")) != BI_OK)
        return s;
    /* a key takes >= 13 bytes and a tensor info >= 25: bounds the tables */
    if (n_kv > (c->size - c->pos) / 13 || n_tensors > (c->size - c->pos) / 25)
        return eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                        "gguf: header claims %llu keys and %llu tensors, more than the file holds",
                        (unsigned long long)n_kv, (unsigned long long)n_tensors);
    g->kv = bi_calloc(n_kv ? n_kv : 1, sizeof *g->kv);
    g->tensors = bi_calloc(n_tensors ? n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return BI_NOMEM;
    if (eng_name_index_init(&g->kv_index, n_kv) != BI_OK ||
        eng_name_index_init(&g->tensor_index, n_tensors) != BI_OK)
        return BI_NOMEM;
    for (size_t i = 0; i < n_kv; i++) {
        g->n_kv = i + 1; /* so that close frees what was read */
        if ((s = rd_kv(c, &g->kv[i])) != BI_OK)
            return s;
        if (eng_name_index_put(&g->kv_index, g->kv[i].key, i) != BI_OK)
            return eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: duplicate key '%s'",
                            g->kv[i].key);
    }
    *n_tensors_out = n_tensors;
    return BI_OK;
}

static bi_status rd_tensors(eng_gguf *g, cursor *c, uint64_t n_tensors)
{
    bi_status s;
    uint64_t *offsets = bi_mallocarray(n_tensors ? n_tensors : 1, sizeof *offsets);
    if (!offsets)
        return BI_NOMEM;
    for (size_t i = 0; i < n_tensors; i++) {
        g->n_tensors = i + 1;
        if ((s = rd_tensor_info(c, &g->tensors[i], &offsets[i])) != BI_OK)
            goto out;
        if (eng_name_index_put(&g->tensor_index, g->tensors[i].name, i) != BI_OK) {
            s = eng_errf(c->err, c->err_size, BI_BAD_FORMAT, "gguf: duplicate tensor '%s'",
                         g->tensors[i].name);
            goto out;
        }
    }
    uint32_t align = GGUF_DEFAULT_ALIGN;
    s = eng_gguf_get_u32(g, "general.alignment", &align);
    if (s != BI_OK && s != BI_NOT_FOUND)
        goto out;
    if (align == 0 || (align & (align - 1)) != 0 || align > (1u << 20)) {
        s = eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                     "gguf: general.alignment %u is not a power of two", align);
        goto out;
    }
    g->data_offset = c->pos + (align - c->pos % align) % align;
    for (size_t i = 0; i < n_tensors; i++) {
        eng_gguf_tensor *t = &g->tensors[i];
        if (offsets[i] % align != 0 || g->data_offset > c->size ||
            offsets[i] > c->size - g->data_offset ||
            t->nbytes > c->size - g->data_offset - offsets[i]) {
            s = eng_errf(c->err, c->err_size, BI_BAD_FORMAT,
                         "gguf: tensor '%s' (offset %llu, %zu bytes) lies outside the data area "
                         "or is misaligned (file %zu bytes)",
                         t->name, (unsigned long long)offsets[i], t->nbytes, c->size);
            goto out;
        }
        t->data = c->p + g->data_offset + offsets[i];
    }
    s = BI_OK;
out:
    bi_free(offsets);
    return s;
}

static bi_status parse(eng_gguf *g, char *err, size_t err_size)
{
    cursor c = {g->map.data, 0, g->map.size, err, err_size};
    uint64_t n_tensors = 0;
    bi_status s = rd_header(g, &c, &n_tensors);
    if (s == BI_OK)
        s = rd_tensors(g, &c, n_tensors);
    if (s == BI_NOMEM)
        eng_errf(err, err_size, s, "gguf: out of memory while reading the header");
    return s;
}

static bi_status open_map(eng_map map, eng_gguf **out, char *err, size_t err_size)
{
    *out = NULL;
    eng_gguf *g = bi_calloc(1, sizeof *g);
    if (!g) {
        eng_map_close(&map);
        return eng_errf(err, err_size, BI_NOMEM, "gguf: out of memory");
    }
    g->map = map;
    bi_status s = parse(g, err, err_size);
    if (s != BI_OK) {
        eng_gguf_close(g);
        return s;
    }
    *out = g;
    return BI_OK;
}

bi_status eng_gguf_open(const char *path, eng_gguf **out, char *err, size_t err_size)
{
    eng_map map;
    *out = NULL;
    bi_status s = eng_map_open(path, &map, err, err_size);
    if (s != BI_OK)
        return s;
    return open_map(map, out, err, err_size);
}

bi_status eng_gguf_open_memory(const void *data, size_t size, eng_gguf **out, char *err,
                               size_t err_size)
{
    eng_map map = {size ? data : NULL, size, false};
    return open_map(map, out, err, err_size);
}

void eng_gguf_close(eng_gguf *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->n_kv; i++) {
        bi_free(g->kv[i].key);
        bi_free((void *)g->kv[i].arr.str_offsets);
    }
    for (size_t i = 0; i < g->n_tensors; i++)
        bi_free((void *)g->tensors[i].name);
    bi_free(g->kv);
    bi_free(g->tensors);
    eng_name_index_fini(&g->kv_index);
    eng_name_index_fini(&g->tensor_index);
    eng_map_close(&g->map);
    bi_free(g);
}

static const gguf_kv *find_kv(const eng_gguf *g, const char *key)
{
    size_t i = eng_name_index_get(&g->kv_index, key);
    return i == SIZE_MAX ? NULL : &g->kv[i];
}

/* Reads an integer of any width as int64 (UINT64 above INT64_MAX fails). */
static bool scalar_int(eng_gguf_type t, const uint8_t *p, int64_t *out)
{
    switch (t) {
    case ENG_GGUF_UINT8:
        *out = p[0];
        return true;
    case ENG_GGUF_INT8:
        *out = (int8_t)p[0];
        return true;
    case ENG_GGUF_UINT16: {
        uint16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return true;
    }
    case ENG_GGUF_INT16: {
        int16_t v;
        memcpy(&v, p, 2);
        *out = v;
        return true;
    }
    case ENG_GGUF_UINT32: {
        uint32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    case ENG_GGUF_INT32: {
        int32_t v;
        memcpy(&v, p, 4);
        *out = v;
        return true;
    }
    case ENG_GGUF_INT64: {
        int64_t v;
        memcpy(&v, p, 8);
        *out = v;
        return true;
    }
    case ENG_GGUF_UINT64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX)
            return false;
        *out = (int64_t)v;
        return true;
    }
    default:
        return false;
    }
}

bi_status eng_gguf_get_i64(const eng_gguf *g, const char *key, int64_t *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return BI_NOT_FOUND;
    if (!kv->val || !scalar_int(kv->type, kv->val, out))
        return BI_BAD_FORMAT;
    return BI_OK;
}

bi_status eng_gguf_get_u32(const eng_gguf *g, const char *key, uint32_t *out)
{
    int64_t v;
    bi_status s = eng_gguf_get_i64(g, key, &v);
    if (s != BI_OK)
        return s;
    if (v < 0 || v > UINT32_MAX)
        return BI_BAD_FORMAT;
    *out = (uint32_t)v;
    return BI_OK;
}

bi_status eng_gguf_get_f32(const eng_gguf *g, const char *key, float *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return BI_NOT_FOUND;
    if (kv->type == ENG_GGUF_FLOAT32) {
        memcpy(out, kv->val, 4);
    } else if (kv->type == ENG_GGUF_FLOAT64) {
        double d;
        memcpy(&d, kv->val, 8);
        *out = (float)d;
    } else {
        return BI_BAD_FORMAT;
    }
    return BI_OK;
}

bi_status eng_gguf_get_bool(const eng_gguf *g, const char *key, bool *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return BI_NOT_FOUND;
    if (kv->type != ENG_GGUF_BOOL)
        return BI_BAD_FORMAT;
    *out = kv->val[0] != 0;
    return BI_OK;
}

bi_status eng_gguf_get_str(const eng_gguf *g, const char *key, const char **s, size_t *len)
{
    const gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return BI_NOT_FOUND;
    if (kv->type != ENG_GGUF_STRING)
        return BI_BAD_FORMAT;
    *s = kv->str;
    *len = kv->str_len;
    return BI_OK;
}

bi_status eng_gguf_get_arr(const eng_gguf *g, const char *key, eng_gguf_arr *out)
{
    const gguf_kv *kv = find_kv(g, key);
    if (!kv)
        return BI_NOT_FOUND;
    if (kv->type != ENG_GGUF_ARRAY)
        return BI_BAD_FORMAT;
    *out = kv->arr;
    return BI_OK;
}

bi_status eng_gguf_arr_str(const eng_gguf_arr *a, uint64_t i, const char **s, size_t *len)
{
    if (i >= a->count)
        return BI_OUT_OF_RANGE;
    if (a->type != ENG_GGUF_STRING)
        return BI_BAD_FORMAT;
    const uint8_t *p = a->data + a->str_offsets[i];
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8;
    *len = (size_t)n;
    return BI_OK;
}

bi_status eng_gguf_arr_f32(const eng_gguf_arr *a, uint64_t i, float *out)
{
    if (i >= a->count)
        return BI_OUT_OF_RANGE;
    if (a->type != ENG_GGUF_FLOAT32)
        return BI_BAD_FORMAT;
    memcpy(out, a->data + i * 4, 4);
    return BI_OK;
}

bi_status eng_gguf_arr_i32(const eng_gguf_arr *a, uint64_t i, int32_t *out)
{
    if (i >= a->count)
        return BI_OUT_OF_RANGE;
    if (a->type != ENG_GGUF_INT32)
        return BI_BAD_FORMAT;
    memcpy(out, a->data + i * 4, 4);
    return BI_OK;
}

size_t eng_gguf_n_tensors(const eng_gguf *g)
{
    return g->n_tensors;
}

const eng_gguf_tensor *eng_gguf_tensor_at(const eng_gguf *g, size_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

const eng_gguf_tensor *eng_gguf_tensor_find(const eng_gguf *g, const char *name)
{
    size_t i = eng_name_index_get(&g->tensor_index, name);
    return i == SIZE_MAX ? NULL : &g->tensors[i];
}

size_t eng_gguf_n_kv(const eng_gguf *g)
{
    return g->n_kv;
}

const char *eng_gguf_kv_key(const eng_gguf *g, size_t i, eng_gguf_type *type)
{
    if (i >= g->n_kv)
        return NULL;
    if (type)
        *type = g->kv[i].type;
    return g->kv[i].key;
}

uint32_t eng_gguf_version(const eng_gguf *g)
{
    return g->version;
}

void eng_gguf_bytes(const eng_gguf *g, const uint8_t **data, size_t *size, size_t *data_offset)
{
    *data = g->map.data;
    *size = g->map.size;
    *data_offset = g->data_offset;
}
