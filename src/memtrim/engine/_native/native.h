/* Native allocations: the C allocator of every loaded library (native.c). */
#ifndef MEMTRIM_NATIVE_H
#define MEMTRIM_NATIVE_H

#include <stdint.h>

/* GIL held; reference-counted like the heap hooks, and only while they are
 * in.  0, or -1 with a Python exception set (unsupported platform). */
int mt_native_install(void);
void mt_native_uninstall(void);
int mt_native_installed(void);
void mt_native_after_fork(void); /* in a forked child */

/* What the patcher did: objects patched, slots patched, anonymous mappings
 * that could not be tracked (region table full), dlopen calls seen. */
void mt_native_stats(uint64_t out[4]);

#endif
