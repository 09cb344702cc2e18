/* Native allocations: the C allocator of every loaded library (native.c). */
#ifndef MEMTRIM_NATIVE_H
#define MEMTRIM_NATIVE_H

#include <stdint.h>

/* GIL held; reference-counted like the heap hooks, and only while they are
 * in.  0, or -1 with a Python exception set (unsupported platform). */
int mt_native_install(void);
/* One holder less.  The hooks stay in until mt_native_off: native blocks
 * allocated under them must be freed under them, or their bytes would stay
 * counted. */
void mt_native_uninstall(void);
void mt_native_off(void);    /* GIL held: the heap hooks are coming off */
int mt_native_installed(void); /* in the GOTs now */
/* The file of a library index (mt_heap_native_by_lib), or NULL. */
const char *mt_native_lib_name(unsigned index);
/* The anonymous mappings of the hooked libraries: bytes mapped, resident. */
void mt_native_maps(uint64_t *mapped, uint64_t *resident);

/* arenas.c: pymalloc's arenas (installed with the heap hooks) */
void mt_arenas_install(void);
void mt_arenas_uninstall(void);
PyObject *mt_arenas_walk(void);
PyObject *mt_pymalloc_stats(void);
int mt_native_wanted(void);    /* holders that asked for them */

/* fork: take this file's locks before, release them after (parent), reset
 * them (child); see module.c for the order with heap.c's and the tree's */
void mt_native_fork_prepare(void);
void mt_native_fork_parent(void);
void mt_native_after_fork(void);

/* What the patcher did: objects patched, slots patched, anonymous mappings
 * that could not be tracked (region table full), dlopen calls seen, slots
 * left alone (a pointer of the program's own, or an object's own allocator). */
void mt_native_stats(uint64_t out[5]);

#endif
