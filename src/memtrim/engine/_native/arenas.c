/* pymalloc's arenas, for the RSS breakdown: where they are, how much of each
 * is resident, and how many live blocks pin each one.
 *
 * Where: CPython lets us wrap its arena allocator (PyObject_SetArenaAllocator):
 * every arena allocated while the heap hooks are in passes through here and
 * its address is kept (arenas from before are not known; the totals of all
 * arenas come from pymalloc's own statistics, mt_pymalloc_stats).
 *
 * What is in an arena: pymalloc carves it into 16 KiB pools, each starting
 * with a pool_header whose first field counts the pool's live blocks and
 * whose `szidx` gives their size class.  The layout is the same from 3.11 to
 * 3.13 (Objects/obmalloc.c, Include/internal/pycore_obmalloc.h); a header
 * that does not look like one (a pool never carved, or freed) counts as
 * empty.  Reading pools never carved maps the kernel's zero page, which adds
 * nothing to RSS.  Resident bytes come from mincore().
 *
 * Locking: the GIL (pymalloc calls the arena allocator with it, and the walk
 * runs with it). */
#include "compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "heap.h"
#include "procfs.h"
#include "rss.h"

/* exported by CPython 3.11-3.13, declared in its internal headers */
int _PyObject_DebugMallocStats(FILE *out);

#define POOL_SIZE (16 * 1024)
#define ALIGNMENT 16
#define SMALL_CLASSES (512 / ALIGNMENT)

typedef struct {
    union {
        void *padding;
        unsigned int count; /* live blocks in the pool */
    } ref;
    void *freeblock;
    void *nextpool;
    void *prevpool;
    unsigned int arenaindex;
    unsigned int szidx; /* block size = (szidx + 1) * ALIGNMENT */
    unsigned int nextoffset;
    unsigned int maxnextoffset;
} pool_header_t;

typedef struct {
    uintptr_t base;
    size_t size;
} arena_t;

static arena_t *arenas; /* unsorted; few thousand at most */
static size_t narenas, arenas_cap;
static PyObjectArenaAllocator orig;
static int hooked;

static void *arena_alloc(void *ctx, size_t size)
{
    void *p = orig.alloc(orig.ctx, size);
    if (p != NULL) {
        if (narenas == arenas_cap) {
            size_t cap = arenas_cap ? arenas_cap * 2 : 64;
            arena_t *grown = realloc(arenas, cap * sizeof(arena_t));
            if (grown == NULL) {
                return p; /* not known: its bytes show as other anonymous memory */
            }
            arenas = grown;
            arenas_cap = cap;
        }
        arenas[narenas++] = (arena_t){(uintptr_t)p, size};
    }
    return p;
}

static void arena_free(void *ctx, void *ptr, size_t size)
{
    for (size_t i = 0; i < narenas; i++) {
        if (arenas[i].base == (uintptr_t)ptr) {
            arenas[i] = arenas[--narenas];
            break;
        }
    }
    orig.free(orig.ctx, ptr, size);
}

void mt_arenas_install(void)
{
    if (hooked) {
        return;
    }
    PyObject_GetArenaAllocator(&orig);
    PyObjectArenaAllocator ours = {NULL, arena_alloc, arena_free};
    PyObject_SetArenaAllocator(&ours);
    hooked = 1;
}

void mt_arenas_uninstall(void)
{
    if (!hooked) {
        return;
    }
    PyObjectArenaAllocator now;
    PyObject_GetArenaAllocator(&now);
    if (now.alloc == arena_alloc) { /* someone else's wrapper on top: leave theirs */
        PyObject_SetArenaAllocator(&orig);
    }
    hooked = 0;
    free(arenas);
    arenas = NULL;
    narenas = arenas_cap = 0;
}

typedef struct {
    long long blocks, bytes, pools, resident;
} arena_use_t;

/* One arena's live blocks, from its pools' headers, and resident bytes. */
static arena_use_t arena_use(const arena_t *a)
{
    arena_use_t u = {0, 0, 0, 0};
    uintptr_t base = a->base, end = base + a->size;
    uintptr_t pool = (base + POOL_SIZE - 1) & ~(uintptr_t)(POOL_SIZE - 1);
    for (; pool + POOL_SIZE <= end; pool += POOL_SIZE) {
        const pool_header_t *h = (const pool_header_t *)pool;
        unsigned int count = h->ref.count, szidx = h->szidx;
        size_t block = ((size_t)szidx + 1) * ALIGNMENT;
        if (count == 0 || szidx >= SMALL_CLASSES ||
            count * block > POOL_SIZE - sizeof(pool_header_t)) {
            continue; /* empty, never carved, or not a pool header */
        }
        u.blocks += count;
        u.bytes += (long long)(count * block);
        u.pools++;
    }
    u.resident = (long long)mt_resident(base, a->size);
    return u;
}

/* Totals of the arenas known, and of those pinned: live bytes under a
 * quarter of the arena's resident bytes, yet not empty. */
void mt_arenas_summary(mt_rss_facts_t *f)
{
    for (size_t i = 0; i < narenas; i++) {
        arena_use_t u = arena_use(&arenas[i]);
        f->arenas_known++;
        f->arenas_resident += u.resident;
        f->arenas_live += u.bytes;
        f->arenas_pools += u.pools;
        if (u.blocks > 0 && u.bytes * 4 < u.resident) {
            f->pinned_arenas++;
            f->pinned_free += u.resident - u.bytes;
            if (u.blocks > f->pinned_most_blocks) {
                f->pinned_most_blocks = u.blocks;
            }
        }
    }
}

/* [(base, size, resident, live blocks, live bytes, pools in use), ...] for
 * the arenas known.  GIL held. */
PyObject *mt_arenas_walk(void)
{
    mt_heap_guard_enter(); /* the list is memtrim's */
    PyObject *out = PyList_New(0);
    for (size_t i = 0; out != NULL && i < narenas; i++) {
        arena_use_t u = arena_use(&arenas[i]);
        PyObject *item = Py_BuildValue("(KnLLLL)", (unsigned long long)arenas[i].base,
                                       (Py_ssize_t)arenas[i].size, u.resident, u.blocks,
                                       u.bytes, u.pools);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
        }
        Py_XDECREF(item);
    }
    mt_heap_guard_exit();
    return out;
}

/* pymalloc's own statistics of all its arenas (sys._debugmallocstats' text).
 * It prints nothing unless pymalloc is the OBJ allocator installed: it is put
 * back for the call (GIL held: no other thread allocates meanwhile, and this
 * one only through stdio, which is malloc's). */
void mt_pymalloc_print(FILE *out)
{
    PyMemAllocatorEx hooked, plain;
    int swap = mt_heap_obj_orig(&plain);
    if (swap) {
        PyMem_GetAllocator(PYMEM_DOMAIN_OBJ, &hooked);
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &plain);
    }
    _PyObject_DebugMallocStats(out);
    if (swap) {
        PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &hooked);
    }
}

/* The same text, written to memory, not to stderr: the program's stderr
 * stays its own. */
PyObject *mt_pymalloc_stats(void)
{
    char *text = NULL;
    size_t size = 0;
    mt_heap_guard_enter();
    FILE *out = open_memstream(&text, &size);
    if (out == NULL) {
        mt_heap_guard_exit();
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    mt_pymalloc_print(out);
    fclose(out);
    PyObject *result = PyUnicode_DecodeUTF8(text ? text : "", (Py_ssize_t)size, "replace");
    free(text);
    mt_heap_guard_exit();
    return result;
}
