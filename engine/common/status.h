/*
 * status.h - the project's one status enum.
 *
 * Every fallible function in Braidinfer returns a bi_status and delivers its
 * results through pointer parameters. The values below BI_STATUS_EXTENDED follow
 * gRPC's code numbering so that the service can put them on the wire unchanged;
 * the extended values carry detail that is useful inside the process (which
 * kind of resource ran out, which file was bad) and map to one wire code each
 * through bi_status_rpc_code().
 */
#ifndef BI_STATUS_H
#define BI_STATUS_H

typedef enum bi_status {
    BI_OK = 0,
    BI_CANCELLED = 1,
    BI_UNKNOWN = 2,
    BI_INVALID_ARGUMENT = 3,
    BI_DEADLINE_EXCEEDED = 4,
    BI_NOT_FOUND = 5,
    BI_ALREADY_EXISTS = 6,
    BI_PERMISSION_DENIED = 7,
    BI_RESOURCE_EXHAUSTED = 8,
    BI_FAILED_PRECONDITION = 9,
    BI_ABORTED = 10,
    BI_OUT_OF_RANGE = 11,
    BI_UNIMPLEMENTED = 12,
    BI_INTERNAL = 13,
    BI_UNAVAILABLE = 14,
    BI_DATA_LOSS = 15,
    BI_UNAUTHENTICATED = 16,

    BI_STATUS_EXTENDED = 100,
    BI_NOMEM = 100,       /* host allocation failed */
    BI_IO = 101,          /* a system call on a file or socket failed */
    BI_BAD_FORMAT = 102,  /* a file (model, tokenizer, config) is malformed */
    BI_UNSUPPORTED = 103, /* valid input we do not handle (architecture, dtype) */
    BI_KV_FULL = 104,     /* the KV page pool has no room, even after eviction */
    BI_DEVICE = 105,      /* a CUDA / cuBLAS call failed */
    BI_NO_DEVICE = 106,   /* a GPU was required and none is usable */
    BI_STATUS_END_
} bi_status;

/* A static, human-readable description of s; never NULL, never freed. Unknown
 * values give "unknown status". */
const char *bi_strerror(bi_status s);

/* The upper-case symbolic name of s ("INVALID_ARGUMENT", "KV_FULL"); static. */
const char *bi_status_name(bi_status s);

/* The gRPC-style wire code (0..16) for s: identity for the gRPC range, the
 * closest wire code for extended values, BI_UNKNOWN for anything else. */
bi_status bi_status_rpc_code(bi_status s);

#endif
