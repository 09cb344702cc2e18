/* Exact heap accounting: allocator hooks and a shadow map of block sizes.
 * What is done with the events (attribution to code) is up to listeners:
 * see listeners.h. */
#ifndef MEMTRIM_HEAP_H
#define MEMTRIM_HEAP_H

#include "compat.h"
#include <stdint.h>

/* Net bytes allocated by this thread (and freed by it) since the hooks went in,
 * and the highest value that counter reached since the tracer last reset it.
 * Thread-local, so no lock: only the owning thread reads or writes them. */
extern MT_TLS int64_t mt_thread_cur;
extern MT_TLS int64_t mt_thread_hwm;
/* This thread's latest block of the Python domains (GIL held) and its size:
 * the line tracer takes the int CPython boxes an event's argument in out of
 * the counter, at its real size (the allocating function varies by version). */
extern MT_TLS void *mt_thread_last_ptr;
extern MT_TLS int64_t mt_thread_last_size;
/* The thread's mark before its latest block; the block before that, its
 * size and the mark before it (the tracer takes CPython's boxed event
 * arguments, up to two, back out of the figures exactly). */
extern MT_TLS int64_t mt_thread_last_hwm;
extern MT_TLS void *mt_thread_prev_ptr;
extern MT_TLS int64_t mt_thread_prev_size;
extern MT_TLS int64_t mt_thread_prev_hwm;

/* Set while a hook calls an original allocator (or accounts a block): a hook
 * entered with it set passes straight through, so a block is counted once
 * (pymalloc's arenas, PyMem_RawMalloc's malloc, numpy's malloc are not
 * counted again by the native hooks) and a signal handler's malloc inside a
 * hook cannot re-enter the accounting. */
extern MT_TLS int mt_guard;

/* In a block's stored id: it came through the native hooks (native.c).  Kept
 * when an attributing listener's ids are wiped, so the native level stays
 * exact across recordings. */
#define MT_NATIVE_BIT 0x40000000u

void mt_heap_guard_enter(void); /* the calling thread's allocations pass uncounted */
void mt_heap_guard_exit(void);
/* memtrim's own work in the program's thread (the advisor's walks): this
 * thread's new blocks pass uncounted, its frees are still accounted. */
extern MT_TLS int mt_own;
void mt_heap_own_enter(void);
void mt_heap_own_exit(void);
/* GIL held: the stored id of the live block at p (1), or 0 if not ours. */
int mt_heap_peek_id(void *p, uint32_t *id);
int mt_heap_reattribute(void *p, uint32_t (*move)(void *p, uint32_t id, int64_t size));
int mt_heap_install(void);   /* GIL held; reference-counted */
int mt_heap_uninstall(void); /* GIL held */
int mt_heap_installed(void);
int mt_heap_on_top(void); /* no other hook above memtrim's: PyMem_* may be called */
int mt_heap_obj_orig(PyMemAllocatorEx *out); /* 1 and the original, if hooked */
int64_t mt_heap_level(void);        /* live bytes allocated since install, all threads */
int64_t mt_heap_peak(void);         /* highest level since install or last peak reset */
void mt_heap_reset_peak(void);
void mt_heap_fork_prepare(void);   /* before fork: take the locks */
void mt_heap_fork_parent(void);    /* after fork, in the parent: release them */
void mt_heap_after_fork(void);     /* in a forked child */
void mt_heap_counts(uint64_t *allocs, uint64_t *frees);
int64_t mt_heap_overhead(void);    /* bytes the shadow map itself uses */
int64_t mt_heap_overhead_resident(void); /* of which resident (walks it) */

/* The native hooks' accounting (mt_guard held by the caller; any thread, GIL
 * or not).  take: forget a block, returning its size, or -1 if not ours. */
#define MT_MAX_LIBS 256 /* libraries told apart (index 0: not known) */
void mt_heap_native_alloc(void *p, size_t size, unsigned lib);
int64_t mt_heap_native_take(void *p);
int mt_heap_native_by_lib(int64_t out[MT_MAX_LIBS]); /* live native bytes per library */
int64_t mt_heap_native_level(void); /* live bytes from the native hooks */
/* live bytes of Python's (and numpy's) blocks in malloc's heap, not pymalloc's */
int64_t mt_heap_python_malloc_level(void);
int64_t mt_heap_untouched(void); /* bytes of big blocks on pages never touched */

/* memtrim.limit(): refuse the Python allocation that would take the level
 * past `at` (0: no limit); one refusal per arming.  GIL held. */
void mt_heap_set_limit(int64_t at);
void mt_heap_limit_state(uint64_t *refused, int64_t *level, int64_t *size);

/* Peak watches: independent "highest level since begin" slots (GIL held). */
int mt_watch_begin(void);
int64_t mt_watch_peak(int id);
void mt_watch_end(int id);

/* numpy data buffers: wrap numpy's default PyDataMem handler in place. */
int mt_numpy_patch(PyObject *handler_capsule);
void mt_numpy_unpatch(void);

/* The --limit watchdog (watchdog.c) trips this; the hooks then poke it. */
extern volatile int mt_limit_tripped;
void mt_watchdog_poke(void);

#endif
