/*
 * krn_types.h - types shared by the CUDA launchers: the bf16 storage type as C
 * sees it, and the per-step metadata the KV-write and attention kernels read.
 *
 * All pointers inside these structs are device pointers owned by the caller
 * (the CUDA backend); the structs are passed to kernels by value.
 */
#ifndef KRN_TYPES_H
#define KRN_TYPES_H

#include <stdint.h>

/* bf16 as stored in memory (the upper half of an fp32); kernels reinterpret it
 * as __nv_bfloat16. */
typedef uint16_t krn_bf16;

/* Per-step metadata, uploaded once per batch and read by every layer.
 * seq_info holds KRN_SEQ_FIELDS int32 per sequence, seg_info KRN_SEG_FIELDS
 * per segment; page offsets index into pages. */
enum {
    KRN_SEQ_TAIL_PAGES = 0, /* offset of the sequence's tail page ids in pages */
    KRN_SEQ_FIRST_SEG,      /* index of its first segment in seg_info */
    KRN_SEQ_N_SEGS,         /* its read-only segments */
    KRN_SEQ_FIELDS
};
enum {
    KRN_SEG_PAGES = 0, /* offset of the segment's page ids in pages */
    KRN_SEG_LEN,       /* tokens */
    KRN_SEG_POS,       /* absolute position of its first token */
    KRN_SEG_ROT_BASE,  /* position its first key was rotated at */
    KRN_SEG_FIELDS
};

typedef struct krn_step {
    const int32_t *tokens;    /* n_tokens token ids */
    const int32_t *tok_seq;   /* n_tokens: sequence index */
    const int32_t *tok_pos;   /* n_tokens: absolute position */
    const int32_t *tok_idx;   /* n_tokens: slot in the sequence's tail */
    const int32_t *logit_tok; /* n_logits: tokens whose logits are wanted */
    const int32_t *seq_info;  /* n_seqs * KRN_SEQ_FIELDS */
    const int32_t *seg_info;  /* segments * KRN_SEG_FIELDS */
    const int32_t *pages;     /* page ids of every segment and tail */
    int32_t n_tokens, n_seqs, n_logits;
} krn_step;

/* One layer's paged KV: K and V as [page][kv_head][slot][head_dim] bf16. */
typedef struct krn_kv_layer {
    krn_bf16 *k, *v;
    int n_kv_head, head_dim, page_size;
} krn_kv_layer;

#endif
