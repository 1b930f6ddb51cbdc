/*
 * safetensors.c - the safetensors reader: the JSON header through cJSON, every
 * number in it checked (integral, non-negative, products without overflow,
 * offsets inside the data area) before a pointer into the mapping is formed.
 */
#define BI_LOG_MODULE "model"
#include "model/safetensors.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "model/mutil.h"

#define ST_MAX_HEADER (100u << 20) /* the format's own limit */
#define ST_MAX_FILES  4096

struct eng_st {
    eng_map map;
    cJSON *json; /* owns the tensor and dtype name strings */
    size_t header_size;
    size_t n_tensors;
    eng_st_tensor *tensors;
    eng_name_index index;
};

typedef struct st_dtype {
    const char *name;
    eng_dtype dtype;
    uint8_t size;
} st_dtype;

static const st_dtype ST_DTYPES[] = {
    {"F32", ENG_DTYPE_F32, 4},         {"F16", ENG_DTYPE_F16, 2},
    {"BF16", ENG_DTYPE_BF16, 2},       {"F64", ENG_DTYPE_INVALID, 8},
    {"I64", ENG_DTYPE_INVALID, 8},     {"U64", ENG_DTYPE_INVALID, 8},
    {"I32", ENG_DTYPE_INVALID, 4},     {"U32", ENG_DTYPE_INVALID, 4},
    {"I16", ENG_DTYPE_INVALID, 2},     {"U16", ENG_DTYPE_INVALID, 2},
    {"I8", ENG_DTYPE_INVALID, 1},      {"U8", ENG_DTYPE_INVALID, 1},
    {"BOOL", ENG_DTYPE_INVALID, 1},    {"F8_E4M3", ENG_DTYPE_INVALID, 1},
    {"F8_E5M2", ENG_DTYPE_INVALID, 1},
};

static const st_dtype *find_dtype(const char *name)
{
    for (size_t i = 0; i < sizeof ST_DTYPES / sizeof ST_DTYPES[0]; i++)
        if (strcmp(ST_DTYPES[i].name, name) == 0)
            return &ST_DTYPES[i];
    return NULL;
}

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_u64(const cJSON *n, uint64_t *out)
{
    if (!cJSON_IsNumber(n))
        return false;
    double d = n->valuedouble;
    if (!(d >= 0 && d <= 9007199254740992.0) || (double)(uint64_t)d != d)
        return false;
    *out = (uint64_t)d;
    return true;
}

static bi_status parse_tensor(const cJSON *item, const uint8_t *data, size_t data_size,
                              eng_st_tensor *t, char *err, size_t err_size)
{
    const char *name = item->string;
    if (!eng_utf8_valid(name, strlen(name)) || name[0] == '\0')
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: a tensor name is empty or not valid UTF-8");
    t->name = name;
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsObject(item) || !cJSON_IsString(dt) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: tensor '%s' lacks dtype, shape or data_offsets [begin, end]",
                        name);
    const st_dtype *sd = find_dtype(dt->valuestring);
    if (!sd)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: tensor '%s' has unknown dtype '%.32s'", name,
                        dt->valuestring);
    t->dtype = sd->dtype;
    t->dtype_name = sd->name;
    int nd = cJSON_GetArraySize(shape);
    if (nd > 4)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: tensor '%s' has %d dimensions (at most 4)", name, nd);
    t->n_dims = nd;
    uint64_t n = 1;
    int i = 0;
    for (const cJSON *d = shape->child; d; d = d->next, i++) {
        uint64_t v;
        if (!json_u64(d, &v))
            return eng_errf(err, err_size, BI_BAD_FORMAT,
                            "safetensors: tensor '%s': dimension %d is not a non-negative integer",
                            name, i);
        if (v != 0 && n > (uint64_t)INT64_MAX / v)
            return eng_errf(err, err_size, BI_BAD_FORMAT,
                            "safetensors: tensor '%s': shape overflows", name);
        n *= v;
        t->shape[i] = (int64_t)v;
    }
    uint64_t begin, end;
    if (!json_u64(offs->child, &begin) || !json_u64(offs->child->next, &end) || begin > end ||
        end > data_size)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: tensor '%s': data_offsets are not inside the data area "
                        "(%zu bytes)",
                        name, data_size);
    if (n > UINT64_MAX / sd->size || n * sd->size != end - begin)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: tensor '%s': %llu bytes at data_offsets, but shape and dtype "
                        "%s need %llu",
                        name, (unsigned long long)(end - begin), sd->name,
                        (unsigned long long)(n <= UINT64_MAX / sd->size ? n * sd->size : 0));
    t->nbytes = (size_t)(end - begin);
    t->data = data + begin;
    return BI_OK;
}

static bi_status parse(eng_st *st, char *err, size_t err_size)
{
    const uint8_t *p = st->map.data;
    uint64_t n;
    if (st->map.size < 8)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: file of %zu bytes is too short for a header", st->map.size);
    memcpy(&n, p, 8);
    if (n > st->map.size - 8 || n > ST_MAX_HEADER || n < 2)
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "safetensors: header length %llu does not fit the file (%zu bytes)",
                        (unsigned long long)n, st->map.size);
    st->header_size = 8 + (size_t)n;
    const char *end = NULL;
    st->json = cJSON_ParseWithLengthOpts((const char *)p + 8, (size_t)n, &end, false);
    if (!st->json || !cJSON_IsObject(st->json))
        return eng_errf(err, err_size, BI_BAD_FORMAT, "safetensors: header is not a JSON object");
    for (const char *q = end; q < (const char *)p + 8 + n; q++)
        if (*q != ' ' && *q != '\n' && *q != '\r' && *q != '\t' && *q != '\0')
            return eng_errf(err, err_size, BI_BAD_FORMAT,
                            "safetensors: trailing bytes after the header's JSON object");
    size_t count = 0;
    for (const cJSON *it = st->json->child; it; it = it->next)
        count++;
    st->tensors = bi_calloc(count ? count : 1, sizeof *st->tensors);
    if (!st->tensors || eng_name_index_init(&st->index, count) != BI_OK)
        return eng_errf(err, err_size, BI_NOMEM, "safetensors: out of memory");
    size_t data_size = st->map.size - st->header_size;
    const uint8_t *data = p + st->header_size;
    for (const cJSON *it = st->json->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") == 0)
            continue;
        eng_st_tensor *t = &st->tensors[st->n_tensors];
        bi_status s = parse_tensor(it, data, data_size, t, err, err_size);
        if (s != BI_OK)
            return s;
        if (eng_name_index_put(&st->index, t->name, st->n_tensors) != BI_OK)
            return eng_errf(err, err_size, BI_BAD_FORMAT, "safetensors: duplicate tensor '%s'",
                            t->name);
        st->n_tensors++;
    }
    return BI_OK;
}

static bi_status open_map(eng_map map, eng_st **out, char *err, size_t err_size)
{
    *out = NULL;
    eng_st *st = bi_calloc(1, sizeof *st);
    if (!st) {
        eng_map_close(&map);
        return eng_errf(err, err_size, BI_NOMEM, "safetensors: out of memory");
    }
    st->map = map;
    bi_status s = parse(st, err, err_size);
    if (s != BI_OK) {
        eng_st_close(st);
        return s;
    }
    *out = st;
    return BI_OK;
}

bi_status eng_st_open(const char *path, eng_st **out, char *err, size_t err_size)
{
    eng_map map;
    *out = NULL;
    bi_status s = eng_map_open(path, &map, err, err_size);
    if (s != BI_OK)
        return s;
    s = open_map(map, out, err, err_size);
    if (s != BI_OK && err && err_size > 0) {
        /* name the file: a sharded model has several */
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%s", err);
        snprintf(err, err_size, "%s: %s", path, tmp);
    }
    return s;
}

bi_status eng_st_open_memory(const void *data, size_t size, eng_st **out, char *err,
                             size_t err_size)
{
    eng_map map = {size ? data : NULL, size, false};
    return open_map(map, out, err, err_size);
}

void eng_st_close(eng_st *st)
{
    if (!st)
        return;
    cJSON_Delete(st->json);
    bi_free(st->tensors);
    eng_name_index_fini(&st->index);
    eng_map_close(&st->map);
    bi_free(st);
}

size_t eng_st_n_tensors(const eng_st *st)
{
    return st->n_tensors;
}

const eng_st_tensor *eng_st_tensor_at(const eng_st *st, size_t i)
{
    return i < st->n_tensors ? &st->tensors[i] : NULL;
}

const eng_st_tensor *eng_st_tensor_find(const eng_st *st, const char *name)
{
    size_t i = eng_name_index_get(&st->index, name);
    return i == SIZE_MAX ? NULL : &st->tensors[i];
}

void eng_st_bytes(const eng_st *st, const uint8_t **data, size_t *size, size_t *header_size)
{
    *data = st->map.data;
    *size = st->map.size;
    *header_size = st->header_size;
}

/* ---- sharded sets ---- */

struct eng_st_set {
    size_t n_files;
    char **names; /* shard file names, sorted */
    eng_st **files;
    eng_name_index index; /* tensor name -> file */
};

void eng_st_set_close(eng_st_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n_files; i++) {
        if (set->files)
            eng_st_close(set->files[i]);
        bi_free(set->names[i]);
    }
    bi_free(set->files);
    bi_free(set->names);
    eng_name_index_fini(&set->index);
    bi_free(set);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the distinct shard names of weight_map, sorted. */
static bi_status shard_names(eng_st_set *set, const cJSON *wm, char *err, size_t err_size)
{
    size_t cap = 0;
    for (const cJSON *it = wm->child; it; it = it->next) {
        const char *f = cJSON_IsString(it) ? it->valuestring : NULL;
        if (!f || !f[0] || f[0] == '.' || strchr(f, '/') || strchr(f, '\\') || strlen(f) > 255)
            return eng_errf(err, err_size, BI_BAD_FORMAT,
                            "safetensors index: weight_map entry '%.200s' does not name a plain "
                            "file in the model directory",
                            it->string);
        bool seen = false;
        for (size_t i = 0; i < set->n_files && !seen; i++)
            seen = strcmp(set->names[i], f) == 0;
        if (seen)
            continue;
        if (set->n_files == ST_MAX_FILES)
            return eng_errf(err, err_size, BI_BAD_FORMAT, "safetensors index: too many shards");
        if (bi_array_reserve((void **)&set->names, &cap, set->n_files + 1, sizeof(char *)) !=
                BI_OK ||
            !(set->names[set->n_files] = bi_strdup(f)))
            return eng_errf(err, err_size, BI_NOMEM, "safetensors index: out of memory");
        set->n_files++;
    }
    if (set->n_files == 0)
        return eng_errf(err, err_size, BI_BAD_FORMAT, "safetensors index: empty weight_map");
    qsort(set->names, set->n_files, sizeof *set->names, cmp_str);
    return BI_OK;
}

static bi_status open_files(eng_st_set *set, const char *dir, char *err, size_t err_size)
{
    set->files = bi_calloc(set->n_files, sizeof *set->files);
    if (!set->files)
        return eng_errf(err, err_size, BI_NOMEM, "safetensors: out of memory");
    size_t total = 0;
    for (size_t i = 0; i < set->n_files; i++) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, set->names[i]) >= sizeof path)
            return eng_errf(err, err_size, BI_INVALID_ARGUMENT, "safetensors: path too long");
        bi_status s = eng_st_open(path, &set->files[i], err, err_size);
        if (s != BI_OK)
            return s;
        total += eng_st_n_tensors(set->files[i]);
    }
    if (eng_name_index_init(&set->index, total) != BI_OK)
        return eng_errf(err, err_size, BI_NOMEM, "safetensors: out of memory");
    for (size_t i = 0; i < set->n_files; i++)
        for (size_t k = 0; k < eng_st_n_tensors(set->files[i]); k++)
            if (eng_name_index_put(&set->index, set->files[i]->tensors[k].name, i) != BI_OK)
                return eng_errf(err, err_size, BI_BAD_FORMAT,
                                "safetensors: tensor '%s' appears in two shards (again in %s)",
                                set->files[i]->tensors[k].name, set->names[i]);
    return BI_OK;
}

bi_status eng_read_json(const char *path, size_t max, cJSON **out, char *err, size_t err_size)
{
    *out = NULL;
    eng_map m;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return BI_NOT_FOUND;
    fclose(probe);
    bi_status s = eng_map_open(path, &m, err, err_size);
    if (s != BI_OK)
        return s;
    if (m.size > max) {
        eng_map_close(&m);
        return eng_errf(err, err_size, BI_BAD_FORMAT, "%s: larger than %zu bytes", path, max);
    }
    *out = cJSON_ParseWithLength((const char *)m.data, m.size);
    eng_map_close(&m);
    if (!*out || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return eng_errf(err, err_size, BI_BAD_FORMAT, "%s: not a JSON object", path);
    }
    return BI_OK;
}

static bi_status set_open_index(eng_st_set *set, const char *dir, const cJSON *idx, char *err,
                                size_t err_size)
{
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
    if (!cJSON_IsObject(wm))
        return eng_errf(err, err_size, BI_BAD_FORMAT,
                        "model.safetensors.index.json: no weight_map object");
    bi_status s = shard_names(set, wm, err, err_size);
    if (s == BI_OK)
        s = open_files(set, dir, err, err_size);
    if (s != BI_OK)
        return s;
    for (const cJSON *it = wm->child; it; it = it->next) {
        size_t f = eng_name_index_get(&set->index, it->string);
        if (f == SIZE_MAX || strcmp(set->names[f], it->valuestring) != 0)
            return eng_errf(err, err_size, BI_BAD_FORMAT,
                            "safetensors index: tensor '%.200s' is not in %s", it->string,
                            it->valuestring);
    }
    return BI_OK;
}

bi_status eng_st_set_open(const char *dir, eng_st_set **out, char *err, size_t err_size)
{
    *out = NULL;
    eng_st_set *set = bi_calloc(1, sizeof *set);
    if (!set)
        return eng_errf(err, err_size, BI_NOMEM, "safetensors: out of memory");
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    cJSON *idx = NULL;
    bi_status s = eng_read_json(path, 64u << 20, &idx, err, err_size);
    if (s == BI_OK) {
        s = set_open_index(set, dir, idx, err, err_size);
        cJSON_Delete(idx);
    } else if (s == BI_NOT_FOUND) {
        set->names = bi_calloc(1, sizeof *set->names);
        s = set->names && (set->names[0] = bi_strdup("model.safetensors")) ? BI_OK : BI_NOMEM;
        set->n_files = s == BI_OK ? 1 : 0;
        if (s == BI_OK)
            s = open_files(set, dir, err, err_size);
    }
    if (s != BI_OK) {
        eng_st_set_close(set);
        return s;
    }
    *out = set;
    return BI_OK;
}

const eng_st_tensor *eng_st_set_find(const eng_st_set *set, const char *name)
{
    size_t f = eng_name_index_get(&set->index, name);
    return f == SIZE_MAX ? NULL : eng_st_tensor_find(set->files[f], name);
}

size_t eng_st_set_n_files(const eng_st_set *set)
{
    return set->n_files;
}

const eng_st *eng_st_set_file(const eng_st_set *set, size_t i)
{
    return i < set->n_files ? set->files[i] : NULL;
}
