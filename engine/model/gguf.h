/*
 * gguf.h - a bounds-checked reader for GGUF v3 files (memory-mapped).
 *
 * Everything the file claims (counts, string lengths, array sizes, tensor
 * shapes and offsets) is checked against the file size before use, so a
 * truncated or hostile file gives BI_BAD_FORMAT with a message, never an
 * out-of-bounds read. Strings in GGUF are not NUL-terminated: they are
 * returned as (pointer, length) into the mapping.
 *
 * Ownership: eng_gguf_open returns a handle freed by eng_gguf_close; every
 * pointer it hands out points into the mapping and stays valid until then.
 */
#ifndef ENG_GGUF_H
#define ENG_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "dtype.h"

typedef struct eng_gguf eng_gguf;

/* GGUF metadata value types, numbered as in the file format. */
typedef enum eng_gguf_type {
    ENG_GGUF_UINT8 = 0,
    ENG_GGUF_INT8 = 1,
    ENG_GGUF_UINT16 = 2,
    ENG_GGUF_INT16 = 3,
    ENG_GGUF_UINT32 = 4,
    ENG_GGUF_INT32 = 5,
    ENG_GGUF_FLOAT32 = 6,
    ENG_GGUF_BOOL = 7,
    ENG_GGUF_STRING = 8,
    ENG_GGUF_ARRAY = 9,
    ENG_GGUF_UINT64 = 10,
    ENG_GGUF_INT64 = 11,
    ENG_GGUF_FLOAT64 = 12,
} eng_gguf_type;

/* A metadata array: elements of one type, read through the accessors below. */
typedef struct eng_gguf_arr {
    eng_gguf_type type; /* element type (never ARRAY: nested arrays are rejected) */
    uint64_t count;
    const uint8_t *data;         /* start of the elements in the mapping */
    const uint64_t *str_offsets; /* for STRING arrays: byte offset of each element from data (index
                                    built on open) */
} eng_gguf_arr;

/* A tensor as the file describes it; shape is in row-major order, outermost
 * first (GGUF stores ne[] innermost first: this reverses it). */
typedef struct eng_gguf_tensor {
    const char *name; /* NUL-terminated copy owned by the handle */
    eng_dtype dtype;
    int n_dims;
    int64_t shape[4];
    const void *data; /* in the mapping */
    size_t nbytes;
} eng_gguf_tensor;

/* Opens and parses the file at path. On failure *out is NULL and err (when
 * non-NULL) holds a message: BI_IO for an unreadable file, BI_BAD_FORMAT for a
 * malformed one, BI_UNSUPPORTED for another GGUF version (v2 and v3 are read).
 * Keys and tensor names must be valid UTF-8; tensors of types we cannot
 * dequantize (Q5_K, ...) are accepted here and refused by the model loader. */
bi_status eng_gguf_open(const char *path, eng_gguf **out, char *err, size_t err_size);
/* Parses an in-memory GGUF image (used by the fuzzer); the buffer must outlive the handle. */
bi_status eng_gguf_open_memory(const void *data, size_t size, eng_gguf **out, char *err,
                               size_t err_size);
/* Frees the handle and unmaps the file; NULL is fine. */
void eng_gguf_close(eng_gguf *g);

/* Typed metadata access. Each returns BI_NOT_FOUND when the key is absent and
 * BI_BAD_FORMAT when it has another type. get_u32/get_i64 accept any integer
 * type whose value fits; get_f32 accepts FLOAT32/FLOAT64. */
bi_status eng_gguf_get_u32(const eng_gguf *g, const char *key, uint32_t *out);
bi_status eng_gguf_get_i64(const eng_gguf *g, const char *key, int64_t *out);
bi_status eng_gguf_get_f32(const eng_gguf *g, const char *key, float *out);
bi_status eng_gguf_get_bool(const eng_gguf *g, const char *key, bool *out);
bi_status eng_gguf_get_str(const eng_gguf *g, const char *key, const char **s, size_t *len);
bi_status eng_gguf_get_arr(const eng_gguf *g, const char *key, eng_gguf_arr *out);

/* Array element accessors; i must be < arr->count (checked: BI_OUT_OF_RANGE),
 * and the element type must match (BI_BAD_FORMAT). */
bi_status eng_gguf_arr_str(const eng_gguf_arr *a, uint64_t i, const char **s, size_t *len);
bi_status eng_gguf_arr_f32(const eng_gguf_arr *a, uint64_t i, float *out);
bi_status eng_gguf_arr_i32(const eng_gguf_arr *a, uint64_t i, int32_t *out);

/* Metadata enumeration (for dumps and fuzzing): i < eng_gguf_n_kv; the key is
 * a NUL-terminated copy owned by the handle, NULL when i is out of range. */
size_t eng_gguf_n_kv(const eng_gguf *g);
const char *eng_gguf_kv_key(const eng_gguf *g, size_t i, eng_gguf_type *type);
uint32_t eng_gguf_version(const eng_gguf *g);
/* The whole file image and where its tensor data area starts (everything
 * before data_offset is header); used to fingerprint the file. */
void eng_gguf_bytes(const eng_gguf *g, const uint8_t **data, size_t *size, size_t *data_offset);

size_t eng_gguf_n_tensors(const eng_gguf *g);
const eng_gguf_tensor *eng_gguf_tensor_at(const eng_gguf *g, size_t i);
const eng_gguf_tensor *eng_gguf_tensor_find(const eng_gguf *g, const char *name);

#endif
