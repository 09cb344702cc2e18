/* The address range a loaded object occupies: from its lowest PT_LOAD segment
 * to the end of its highest (native.c's library table, cframes.c). */
#ifndef MEMTRIM_ELFSPAN_H
#define MEMTRIM_ELFSPAN_H

#include <link.h>
#include <stdint.h>

/* 1 and [*lo, *hi) if the object has a loaded segment, else 0. */
static inline int mt_object_span(const struct dl_phdr_info *info, uintptr_t *lo, uintptr_t *hi)
{
    *lo = UINTPTR_MAX;
    *hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD) {
            uintptr_t start = info->dlpi_addr + ph->p_vaddr;
            *lo = start < *lo ? start : *lo;
            *hi = start + ph->p_memsz > *hi ? start + ph->p_memsz : *hi;
        }
    }
    return *hi > *lo;
}

#endif
