/*
 * krn_types.h - types shared by the CUDA launchers: the 16-bit storage types
 * as C sees them, and the per-step metadata the KV-write and attention kernels
 * read.
 *
 * All pointers inside these structs are device pointers owned by the caller
 * (the CUDA backend); the structs are passed to kernels by value.
 */
#ifndef KRN_TYPES_H
#define KRN_TYPES_H

#include <stdint.h>

/* A 16-bit float as stored in memory: bf16 (the upper half of an fp32) or IEEE
 * fp16, as the krn_dtype passed with it says; kernels reinterpret it as
 * __nv_bfloat16 or __half and compute in fp32. */
typedef uint16_t krn_half;

/* The element type of the 16-bit buffers (weights, matmul inputs, KV) a
 * launcher reads or writes. */
typedef enum krn_dtype {
    KRN_BF16 = 0,
    KRN_F16 = 1,
} krn_dtype;

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
    KRN_SEG_SHARED,    /* 1: a shared job attends it for this (decode) sequence; the per-token
                          kernels skip it */
    KRN_SEG_FIELDS
};

/* Tensor-core attention jobs (krn_tc_attention), KRN_JOB_FIELDS int32 each.
 * A prefill tile (seg == -1): tokens tok .. tok + ntok - 1 of the batch, all
 * of sequence seq, attend to every level of it and the block writes their
 * output. A member-list job: the entries tok .. tok + ntok - 1 of the shared
 * list attend to keys [key_lo, key_hi) of one level and write partials:
 * segment seg (seg >= 0: one member's entry; every member holds the same
 * pages), or (seg == KRN_JOB_SEG_TAIL, one member) that member's own tail.
 * ntok is at most krn_attn_tc_tokens(). */
enum {
    KRN_JOB_SEQ = 0,
    KRN_JOB_TOK,
    KRN_JOB_NTOK,
    KRN_JOB_SEG,
    KRN_JOB_KEY_LO,
    KRN_JOB_KEY_HI,
    KRN_JOB_FIELDS
};
#define KRN_JOB_SEG_TAIL (-2)
/* A member of a shared job, KRN_SH_FIELDS int32 each. */
enum {
    KRN_SH_DEC = 0, /* its index in dec[] (rows of the partials) */
    KRN_SH_SEG,     /* its own entry of the segment in seg_info (for its position); -1 for a
                       tail job */
    KRN_SH_SLOT,    /* the partial slot it fills */
    KRN_SH_FIELDS
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
    /* attention work split (NULL / 0 when every token goes to the per-token
     * kernels): */
    const int32_t *jobs;      /* n_jobs * KRN_JOB_FIELDS tensor-core jobs */
    const int32_t *shared;    /* members of the shared jobs, KRN_SH_FIELDS each */
    const int32_t *dec;       /* n_dec: tokens the per-token kernels attend (NULL: all) */
    const int32_t *dec_extra; /* n_dec: partial slots shared jobs fill after n_split (NULL: 0) */
    int32_t n_tokens, n_seqs, n_logits, n_jobs, n_dec;
    int32_t n_dec_split; /* dec[0 .. n_dec_split): the split kernel's; the rest only merge
                            (their slots start at n_split) */
} krn_step;

/* One layer's paged KV: K and V as [page][kv_head][slot][head_dim] of dtype. */
typedef struct krn_kv_layer {
    krn_half *k, *v;
    int n_kv_head, head_dim, page_size;
    krn_dtype dtype;
} krn_kv_layer;

#endif
