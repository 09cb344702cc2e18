/* The engine's C API for other native modules (the sampler), exported by
 * memtrim.engine._engine as the capsule "memtrim.engine._engine._C_API".
 * Append fields only, and bump `version` when doing so. */
#ifndef MEMTRIM_CAPI_H
#define MEMTRIM_CAPI_H

#include <stdint.h>

#define MT_CAPI_CAPSULE "memtrim.engine._engine._C_API"

typedef struct {
    int version;
    int64_t (*heap_level)(void);
    int (*heap_installed)(void);
    /* version 2: the calling thread's allocations pass uncounted from now on
     * (memtrim's own threads: what libc allocates for them is not the
     * program's) */
    void (*guard_enter)(void);
} mt_c_api_t;

#endif
