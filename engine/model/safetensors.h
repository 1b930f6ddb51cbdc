/*
 * safetensors.h - a bounds-checked reader for safetensors files (memory-mapped)
 * and for Hugging Face's sharded sets (model.safetensors.index.json).
 *
 * A file is an 8-byte little-endian header length N, N bytes of JSON
 * ({"name": {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__":
 * {...}}) and the data area. Every tensor's offsets are checked to lie in the
 * data area and to span exactly product(shape) * element size bytes.
 * F32/F16/BF16 tensors get their eng_dtype; other known dtypes (I64, F64, U8,
 * F8_*, ...) are listed with ENG_DTYPE_INVALID so that a loader can name them;
 * unknown dtype strings are BI_BAD_FORMAT.
 *
 * Ownership: a handle is freed by eng_st_close / eng_st_set_close; every
 * pointer it hands out (names, data) stays valid until then.
 */
#ifndef ENG_SAFETENSORS_H
#define ENG_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "common/status.h"
#include "dtype.h"

typedef struct eng_st eng_st;

typedef struct eng_st_tensor {
    const char *name;       /* NUL-terminated, owned by the handle */
    eng_dtype dtype;        /* ENG_DTYPE_INVALID for dtypes we do not convert */
    const char *dtype_name; /* as in the file: "F32", "BF16", "I64", ... */
    int n_dims;             /* 0..4 (0 = scalar) */
    int64_t shape[4];       /* outermost first, as in the file */
    const void *data;       /* in the mapping; no alignment guaranteed */
    size_t nbytes;
} eng_st_tensor;

/* Opens and parses the file at path; on failure *out is NULL and err holds a
 * message (BI_IO unreadable, BI_BAD_FORMAT malformed). */
bi_status eng_st_open(const char *path, eng_st **out, char *err, size_t err_size);
/* Parses an in-memory image (for the fuzzer); data must outlive the handle. */
bi_status eng_st_open_memory(const void *data, size_t size, eng_st **out, char *err,
                             size_t err_size);
/* Frees the handle and unmaps the file; NULL is fine. */
void eng_st_close(eng_st *st);

size_t eng_st_n_tensors(const eng_st *st);
/* Tensors in the order of the header; NULL when i is out of range. */
const eng_st_tensor *eng_st_tensor_at(const eng_st *st, size_t i);
/* NULL when no tensor has that name. */
const eng_st_tensor *eng_st_tensor_find(const eng_st *st, const char *name);
/* The file image and the size of its header (8 + N bytes), for fingerprints. */
void eng_st_bytes(const eng_st *st, const uint8_t **data, size_t *size, size_t *header_size);

/* A model's tensors across one or more files. */
typedef struct eng_st_set eng_st_set;

/* Opens dir/model.safetensors.index.json and every shard its weight_map names
 * (checking that each mapped tensor is in its shard and that no tensor is in
 * two shards), or else dir/model.safetensors. Shard names must be plain file
 * names (no '/', not starting with '.'). */
bi_status eng_st_set_open(const char *dir, eng_st_set **out, char *err, size_t err_size);
void eng_st_set_close(eng_st_set *set);
const eng_st_tensor *eng_st_set_find(const eng_st_set *set, const char *name);
/* The files of the set, in a stable order (sorted by file name). */
size_t eng_st_set_n_files(const eng_st_set *set);
const eng_st *eng_st_set_file(const eng_st_set *set, size_t i);

#endif
