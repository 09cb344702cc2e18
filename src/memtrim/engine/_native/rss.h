/* The facts of the RSS breakdown as plain numbers (rss.c); bytes unless said. */
#ifndef MEMTRIM_RSS_H
#define MEMTRIM_RSS_H

#include "compat.h"
#include <stdint.h>
#include <stdio.h>

typedef struct {
    int have_maps, have_malloc, have_pymalloc, heap_installed, native_installed;
    /* the kernel's mappings: resident bytes by kind; malloc's main heap */
    int64_t rss, libraries, files, stacks, anonymous, heap, heap_size;
    /* glibc's mallinfo2 */
    int64_t malloc_arena, malloc_mmapped, malloc_in_use, malloc_free, malloc_releasable;
    /* pymalloc's statistics: all its arenas (a count), live small blocks, pools in use */
    int64_t pymalloc_arenas, pymalloc_allocated, pymalloc_pools;
    /* the hooks' counters (0 without them) */
    int64_t level, native, python_malloc, untouched, native_mapped, native_resident;
    int64_t own, own_resident; /* memtrim's own tables in malloc's heap (the shadow map) */
    /* the libraries with the most native bytes live: index (native.c), bytes */
#define MT_RSS_LIBS 8
    int lib_index[MT_RSS_LIBS];
    int64_t lib_bytes[MT_RSS_LIBS];
    /* the arenas the hooks saw allocated: count, resident, live bytes, pools
     * in use; those pinned (live bytes under a quarter of resident): count,
     * free resident bytes, most live blocks in one */
    int64_t arenas_known, arenas_resident, arenas_live, arenas_pools;
    int64_t pinned_arenas, pinned_free, pinned_most_blocks;
} mt_rss_facts_t;

/* GIL held.  No Python object made; callable from an allocation hook. */
int mt_rss_read(mt_rss_facts_t *facts);
PyObject *mt_rss_dict(const mt_rss_facts_t *facts);

/* The breakdown at the heap's peak (memtrim run): see rss.c. */
void mt_rss_watch_start(double step, int64_t min_step);
const mt_rss_facts_t *mt_rss_watch_stop(void);
void mt_rss_on_peak(void); /* the call tree calls it at each new peak */

/* arenas.c */
void mt_arenas_summary(mt_rss_facts_t *facts);
void mt_pymalloc_print(FILE *out);

#endif
