/* status.c - names, descriptions and wire mapping of bi_status values. */
#include "status.h"

#include <stddef.h>

struct status_info {
    const char *name;
    const char *text;
    bi_status wire;
};

static const struct status_info grpc_info[] = {
    [BI_OK] = {"OK", "success", BI_OK},
    [BI_CANCELLED] = {"CANCELLED", "operation cancelled", BI_CANCELLED},
    [BI_UNKNOWN] = {"UNKNOWN", "unknown error", BI_UNKNOWN},
    [BI_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", "invalid argument", BI_INVALID_ARGUMENT},
    [BI_DEADLINE_EXCEEDED] = {"DEADLINE_EXCEEDED", "deadline exceeded", BI_DEADLINE_EXCEEDED},
    [BI_NOT_FOUND] = {"NOT_FOUND", "not found", BI_NOT_FOUND},
    [BI_ALREADY_EXISTS] = {"ALREADY_EXISTS", "already exists", BI_ALREADY_EXISTS},
    [BI_PERMISSION_DENIED] = {"PERMISSION_DENIED", "permission denied", BI_PERMISSION_DENIED},
    [BI_RESOURCE_EXHAUSTED] = {"RESOURCE_EXHAUSTED", "resource exhausted", BI_RESOURCE_EXHAUSTED},
    [BI_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", "failed precondition",
                                BI_FAILED_PRECONDITION},
    [BI_ABORTED] = {"ABORTED", "aborted", BI_ABORTED},
    [BI_OUT_OF_RANGE] = {"OUT_OF_RANGE", "out of range", BI_OUT_OF_RANGE},
    [BI_UNIMPLEMENTED] = {"UNIMPLEMENTED", "not implemented", BI_UNIMPLEMENTED},
    [BI_INTERNAL] = {"INTERNAL", "internal error", BI_INTERNAL},
    [BI_UNAVAILABLE] = {"UNAVAILABLE", "service unavailable", BI_UNAVAILABLE},
    [BI_DATA_LOSS] = {"DATA_LOSS", "data loss or corruption", BI_DATA_LOSS},
    [BI_UNAUTHENTICATED] = {"UNAUTHENTICATED", "unauthenticated", BI_UNAUTHENTICATED},
};

static const struct status_info ext_info[] = {
    [BI_NOMEM - BI_STATUS_EXTENDED] = {"NOMEM", "out of host memory", BI_RESOURCE_EXHAUSTED},
    [BI_IO - BI_STATUS_EXTENDED] = {"IO", "input/output error", BI_UNAVAILABLE},
    [BI_BAD_FORMAT -
        BI_STATUS_EXTENDED] = {"BAD_FORMAT", "malformed file or data", BI_INVALID_ARGUMENT},
    [BI_UNSUPPORTED -
        BI_STATUS_EXTENDED] = {"UNSUPPORTED", "unsupported feature", BI_UNIMPLEMENTED},
    [BI_KV_FULL - BI_STATUS_EXTENDED] = {"KV_FULL", "KV cache pool is full", BI_RESOURCE_EXHAUSTED},
    [BI_DEVICE - BI_STATUS_EXTENDED] = {"DEVICE", "GPU device error", BI_INTERNAL},
    [BI_NO_DEVICE - BI_STATUS_EXTENDED] = {"NO_DEVICE", "no usable GPU", BI_UNAVAILABLE},
};

static const struct status_info *status_lookup(bi_status s)
{
    size_t n_grpc = sizeof grpc_info / sizeof grpc_info[0];
    size_t n_ext = sizeof ext_info / sizeof ext_info[0];
    if ((size_t)s < n_grpc)
        return &grpc_info[s];
    if (s >= BI_STATUS_EXTENDED && (size_t)(s - BI_STATUS_EXTENDED) < n_ext)
        return &ext_info[s - BI_STATUS_EXTENDED];
    return NULL;
}

const char *bi_strerror(bi_status s)
{
    const struct status_info *i = status_lookup(s);
    return i ? i->text : "unknown status";
}

const char *bi_status_name(bi_status s)
{
    const struct status_info *i = status_lookup(s);
    return i ? i->name : "UNKNOWN_STATUS";
}

bi_status bi_status_rpc_code(bi_status s)
{
    const struct status_info *i = status_lookup(s);
    return i ? i->wire : BI_UNKNOWN;
}
