/* Listeners: who hears about the heap hooks' allocations and frees.
 *
 * heap.c does the exact accounting (sizes, levels, peaks) and knows nothing
 * of what is done with the events: it publishes them to a small fixed table
 * of listeners.  The call tree of `memtrim run` (calltree.c) is one; it registers itself
 * when a recording starts and unregisters when it stops.
 *
 * The per-block id.  The shadow map keeps one 32-bit id per block.  It
 * belongs to at most one listener at a time, the *attributing* one (the flag
 * `attributes`): the value its on_alloc returns is stored with the block and
 * handed back to its on_free; other listeners' on_alloc results are ignored
 * and they get id 0.  The attributing listener only hears the frees of blocks
 * it gave a non-zero id (so a free of a block from before it started costs
 * nothing).  When it unregisters, the ids are wiped, so the next attributing
 * listener never sees an id it did not hand out.
 *
 * Threads and locks.  Register and unregister with the GIL held.  The GIL
 * callbacks (on_alloc, on_free, on_new_peak) run with the GIL held, from the
 * hooks' GIL path, so they may use Python (carefully: an allocation they make
 * through CPython's allocators re-enters the hooks; use libc malloc, or
 * mt_heap_guard_enter/exit around it).  The no-GIL callbacks run without the
 * GIL, from any thread, under heap.c's nogil_lock: they must not touch Python
 * and must not allocate through CPython's allocators (that would deadlock on
 * nogil_lock).  Registering and unregistering take nogil_lock too, so once
 * mt_listener_remove returns no thread is inside or will enter one of that
 * listener's callbacks.  A callback must not register or unregister.
 *
 * Fork: the table is plain data and the child inherits it as it was; heap.c
 * re-initialises its locks in the child (mt_heap_after_fork).
 *
 * Cost: with no listener the hooks test one int (mt_listeners_n), as they
 * tested the call tree's flag before. */
#ifndef MEMTRIM_LISTENERS_H
#define MEMTRIM_LISTENERS_H

#include <stddef.h>
#include <stdint.h>

#define MT_MAX_LISTENERS 4

/* Ids an attributing listener hands out stay below 0x40000000 (heap.h's
 * MT_NATIVE_BIT, the heap's own flag in the same slot); 0x80000000 is free
 * for the listener's own use. */

typedef struct mt_listener {
    const char *name; /* for error messages */
    int attributes;   /* owns the per-block id slot (at most one registered) */
    /* GIL held: an allocation of `size` bytes at `ptr`; returns its id.
     * native: the block came from a library's C allocator (native.c), not
     * from CPython's allocators or numpy's. */
    uint32_t (*on_alloc)(void *ptr, size_t size, int native);
    /* GIL held: a block went away (id: see above). */
    void (*on_free)(void *ptr, uint32_t id, size_t size, int native);
    /* No GIL, under nogil_lock: the same two, for blocks of threads without it. */
    uint32_t (*on_alloc_nogil)(size_t size, int native);
    void (*on_free_nogil)(void *ptr, uint32_t id, size_t size, int native);
    /* GIL held: the process-wide level reached a new peak. */
    void (*on_new_peak)(void);
} mt_listener_t;

/* How many listeners are registered: the hooks' fast test. */
extern int mt_listeners_n;

/* GIL held.  0, or -1 with a Python exception set (table full, or a second
 * attributing listener).  Registering the same listener twice is an error. */
int mt_listener_add(const mt_listener_t *listener);
/* GIL held.  Unknown listeners are ignored. */
void mt_listener_remove(const mt_listener_t *listener);

#endif
