/* Exact heap accounting.
 *
 * We wrap the three CPython allocator domains (RAW, MEM, OBJ) and numpy's
 * data-buffer handler.  Every block allocated while the hooks are in has its
 * *requested* size recorded, so a free can subtract exactly what was added.
 *
 * Where sizes live: a shadow map, not a hash table.  Every block CPython and
 * glibc hand out is 16-byte aligned, so each 16-byte granule of the address
 * space owns at most one block start.  A three-level radix tree (like
 * pymalloc's own) maps a granule to a uint16 holding size+1 (0 = not ours).
 * Consecutive small allocations hit the same 8 KiB leaf, so the lookup stays
 * in cache, and it costs 2 bytes per 16 bytes of small-object heap instead of
 * a 16-32 byte hash entry per block.  Sizes too big for 16 bits, and blocks
 * that are not 16-byte aligned, go to a small hash table under a mutex.
 *
 * Locking: the MEM and OBJ domains are only ever called with the GIL held
 * (CPython's contract), so their path uses plain globals.  RAW and numpy may be
 * called without the GIL; we check mt_have_gil() (compat.h) and, without the GIL,
 * take `nogil_lock` and use an atomic counter.  Leaves are installed with a
 * compare-and-swap so both paths can create them.
 *
 * Reentrancy: pymalloc forwards big requests to PyMem_RawMalloc, which would
 * count the block twice.  `mt_guard` is set while we call an original
 * allocator; a hook entered with it set passes straight through.
 */
#include "heap.h"
#include "hashtab.h"
#include "listeners.h"
#include "native.h"
#include "procfs.h"
#include "tracer.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

MT_TLS int64_t mt_thread_cur;
MT_TLS int64_t mt_thread_hwm;
MT_TLS void *mt_thread_last_ptr;
MT_TLS int64_t mt_thread_last_size;
MT_TLS int64_t mt_thread_last_hwm;
MT_TLS void *mt_thread_prev_ptr;
MT_TLS int64_t mt_thread_prev_size;
MT_TLS int64_t mt_thread_prev_hwm;
MT_TLS int mt_guard; /* heap.h */
MT_TLS int mt_own;   /* heap.h */

/* For listeners: allocations they cause themselves (a code object's first
 * co_extra) pass through uncounted, like pymalloc's own calls. */
void mt_heap_guard_enter(void)
{
    mt_guard++;
}

void mt_heap_guard_exit(void)
{
    mt_guard--;
}

/* memtrim's own work inside a recording (the advisor's heap walks): unlike
 * mt_guard, frees still go through the accounting, because what this thread
 * frees may be a counted block (an object from a free list, a dict table the
 * walk made grow); only new blocks pass uncounted.  Nested: a counter. */
void mt_heap_own_enter(void)
{
    mt_own++;
}

void mt_heap_own_exit(void)
{
    mt_own--;
}

/* ------------------------------------------------------------------ shadow map */

#define GRAN_SHIFT 4
#define LEAF_BITS 12
#define L2_BITS 16
#define L1_BITS 16
#define ADDR_BITS (GRAN_SHIFT + LEAF_BITS + L2_BITS + L1_BITS) /* 48 */
#define SLOT_BIG 0xFFFFu
#define MAX_INLINE (SLOT_BIG - 2u) /* sizes 0..MAX_INLINE are stored as size+1 */

typedef struct {
    uint16_t v[1u << LEAF_BITS];
    uint32_t *ids; /* the attributing listener's id of each block (listeners.h) */
    uint8_t *libs; /* the library of each native block (native.c's index) */
    uint8_t dirty; /* holds a listener's id: on the dirty list (see mark_dirty) */
} leaf_t;
typedef struct {
    leaf_t *leaf[1u << L2_BITS];
} l2_t;

static l2_t *l1[1u << L1_BITS]; /* BSS: pages become resident only when touched */
static int64_t shadow_bytes;    /* memory the shadow map itself uses */

static void *install_ptr(void **where, size_t size)
{
    void *fresh = calloc(1, size);
    if (fresh == NULL) {
        return NULL;
    }
    void *expected = NULL;
    if (__atomic_compare_exchange_n(where, &expected, fresh, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        __atomic_add_fetch(&shadow_bytes, (int64_t)size, __ATOMIC_RELAXED);
        return fresh;
    }
    free(fresh); /* another thread installed it first */
    return expected;
}

static inline __attribute__((always_inline)) leaf_t *shadow_leaf(uintptr_t a, int create, size_t *index)
{
    if (MT_UNLIKELY((a >> ADDR_BITS) != 0 || (a & 15u) != 0)) {
        return NULL;
    }
    size_t i1 = a >> (ADDR_BITS - L1_BITS);
    size_t i2 = (a >> (GRAN_SHIFT + LEAF_BITS)) & ((1u << L2_BITS) - 1);
    *index = (a >> GRAN_SHIFT) & ((1u << LEAF_BITS) - 1);
    l2_t *mid = __atomic_load_n(&l1[i1], __ATOMIC_ACQUIRE);
    if (MT_UNLIKELY(mid == NULL)) {
        if (!create || !(mid = install_ptr((void **)&l1[i1], sizeof(l2_t)))) {
            return NULL;
        }
    }
    leaf_t *leaf = __atomic_load_n(&mid->leaf[i2], __ATOMIC_ACQUIRE);
    if (MT_UNLIKELY(leaf == NULL)) {
        if (!create || !(leaf = install_ptr((void **)&mid->leaf[i2], sizeof(leaf_t)))) {
            return NULL;
        }
    }
    return leaf;
}

/* The leaves that hold an attributing listener's ids.  When the listener
 * goes its ids are wiped (shadow_clear_ids), and wiping only these leaves
 * keeps that proportional to what the listener saw: the pytest plugin starts
 * and stops a recording per test, and a walk of the whole map (every leaf of
 * a heap of hundreds of MB) cost ~2 ms per test.  A leaf joins the list the
 * first time one of its blocks gets an id; set_id is reached from both the
 * GIL path and the no-GIL path (under nogil_lock), so the flag is set with an
 * atomic exchange and the list itself has its own small lock (taken once per
 * leaf per recording).  If the list cannot grow, `dirty_all` falls back to
 * the walk of the whole map. */
static leaf_t **dirty_leaves;
static size_t ndirty, dirty_cap;
static int dirty_all;
static pthread_mutex_t dirty_lock = PTHREAD_MUTEX_INITIALIZER;

static __attribute__((noinline)) void mark_dirty(leaf_t *leaf)
{
    if (__atomic_exchange_n(&leaf->dirty, 1, __ATOMIC_ACQ_REL)) {
        return; /* another thread listed it */
    }
    pthread_mutex_lock(&dirty_lock);
    if (ndirty == dirty_cap) {
        size_t cap = dirty_cap ? dirty_cap * 2 : 256;
        leaf_t **grown = realloc(dirty_leaves, cap * sizeof(*grown));
        if (grown == NULL) {
            dirty_all = 1;
            pthread_mutex_unlock(&dirty_lock);
            return;
        }
        dirty_leaves = grown;
        dirty_cap = cap;
    }
    dirty_leaves[ndirty++] = leaf;
    pthread_mutex_unlock(&dirty_lock);
}

static inline void set_id(leaf_t *leaf, size_t index, uint32_t id)
{
    uint32_t *ids = __atomic_load_n(&leaf->ids, __ATOMIC_ACQUIRE);
    if (ids == NULL) {
        if (id == 0) {
            return;
        }
        ids = install_ptr((void **)&leaf->ids, sizeof(uint32_t) << LEAF_BITS);
        if (ids == NULL) {
            return;
        }
    }
    ids[index] = id;
    if (MT_UNLIKELY(!__atomic_load_n(&leaf->dirty, __ATOMIC_RELAXED)) &&
        (id & ~MT_NATIVE_BIT) != 0) {
        mark_dirty(leaf);
    }
}

static void wipe_leaf_ids(leaf_t *leaf)
{
    uint32_t *ids = leaf->ids;
    if (ids != NULL) {
        for (size_t k = 0; k < (1u << LEAF_BITS); k++) {
            ids[k] &= MT_NATIVE_BIT;
        }
    }
    leaf->dirty = 0;
}

/* The attributing listener's ids go when it unregisters; the next one starts
 * clean.  The native bit stays: it is the heap's own, not the listener's.
 * nogil_lock and the GIL held: no hook is setting an id meanwhile. */
static void shadow_clear_ids(void)
{
    pthread_mutex_lock(&dirty_lock);
    int all = dirty_all;
    for (size_t i = 0; !all && i < ndirty; i++) {
        wipe_leaf_ids(dirty_leaves[i]);
    }
    ndirty = 0;
    dirty_all = 0;
    pthread_mutex_unlock(&dirty_lock);
    if (!all) {
        return;
    }
    for (size_t i = 0; i < (1u << L1_BITS); i++) {
        l2_t *mid = l1[i];
        for (size_t j = 0; mid != NULL && j < (1u << L2_BITS); j++) {
            leaf_t *leaf = mid->leaf[j];
            if (leaf != NULL) {
                wipe_leaf_ids(leaf);
            }
        }
    }
}

static void shadow_clear(void)
{
    for (size_t i = 0; i < (1u << L1_BITS); i++) {
        l2_t *mid = l1[i];
        if (mid == NULL) {
            continue;
        }
        for (size_t j = 0; j < (1u << L2_BITS); j++) {
            if (mid->leaf[j] != NULL) {
                free(mid->leaf[j]->ids);
                free(mid->leaf[j]->libs);
                free(mid->leaf[j]);
            }
        }
        free(mid);
        l1[i] = NULL;
    }
    shadow_bytes = 0;
    ndirty = 0; /* its leaves are gone */
    dirty_all = 0;
}

/* ------------------------------------------- big table: sizes over 16 bits */

/* Address -> (size, listener id) of the blocks the shadow map cannot hold: an
 * MT_HASHTAB (hashtab.h), removal by backward shift since blocks come and go.
 * Locking: always accessed under big_lock, from both the GIL and the no-GIL
 * paths; big blocks are rare, so the lock is cheap overall.  Empty: key 0
 * (no block lives at address 0).  Its bytes count in shadow_bytes. */
typedef struct {
    uintptr_t key;
    size_t size;
    uint32_t id;
    uint8_t lib; /* a native block's library (native.c's index) */
} big_entry_t;

static inline int big_used(const big_entry_t *e)
{
    return e->key != 0;
}

static inline size_t big_hash(uintptr_t key)
{
    return (size_t)((key >> 4) * 0x9E3779B97F4A7C15ull);
}

static inline size_t big_home(const big_entry_t *e)
{
    return big_hash(e->key);
}

static inline int big_same(const big_entry_t *e, uintptr_t key)
{
    return e->key == key;
}

MT_HASHTAB(big, big_entry_t, uintptr_t, 1024, calloc, free)

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static big_t big;
static int64_t big_orphans; /* entries without a SLOT_BIG marker (unaligned or OOM) */

static int big_put_locked(uintptr_t key, size_t size, uint32_t id)
{
    size_t before = big.cap;
    if (big_room(&big) < 0) {
        return -1;
    }
    if (big.cap != before) { /* grew: atomic, as install_ptr may add at once */
        __atomic_add_fetch(&shadow_bytes, (int64_t)((big.cap - before) * sizeof(big_entry_t)),
                           __ATOMIC_RELAXED);
    }
    big_put_at(&big, big_find(&big, key), (big_entry_t){key, size, id});
    return 0;
}

static int64_t big_take_locked(uintptr_t key, uint32_t *id)
{
    if (big.cap == 0) {
        return -1;
    }
    size_t i = big_find(&big, key);
    if (!big_used(&big.tab[i])) {
        return -1;
    }
    int64_t size = (int64_t)big.tab[i].size;
    *id = big.tab[i].id;
    big_remove_at(&big, i);
    return size;
}

static void big_clear_locked(void)
{
    big_clear(&big);
    big_orphans = 0;
}

/* --------------------------------------------------------- size bookkeeping */

static void record_big(uintptr_t a, uint16_t *slot, size_t size, uint32_t id);

static inline __attribute__((always_inline)) void record_size(void *p, size_t size, uint32_t id)
{
    uintptr_t a = (uintptr_t)p;
    size_t index;
    leaf_t *leaf = shadow_leaf(a, 1, &index);
    if (MT_LIKELY(leaf != NULL && size <= MAX_INLINE)) {
        leaf->v[index] = (uint16_t)(size + 1);
        if (MT_UNLIKELY(id != 0 || leaf->ids != NULL)) {
            set_id(leaf, index, id);
        }
        return;
    }
    record_big(a, leaf ? &leaf->v[index] : NULL, size, id);
}

/* Sizes over 16 bits, unaligned or unmappable blocks: the locked table. */
static __attribute__((noinline)) void record_big(uintptr_t a, uint16_t *slot, size_t size,
                                                 uint32_t id)
{
    pthread_mutex_lock(&big_lock);
    if (big_put_locked(a, size, id) == 0) {
        if (slot) {
            *slot = SLOT_BIG;
        }
        else {
            big_orphans++;
        }
    }
    pthread_mutex_unlock(&big_lock);
}

/* Forget a block; returns its recorded size (and listener id), or -1 if it
 * was not ours. */
static inline __attribute__((always_inline)) int64_t take_size(void *p, uint32_t *id)
{
    uintptr_t a = (uintptr_t)p;
    size_t index;
    leaf_t *leaf = shadow_leaf(a, 0, &index);
    int marked = 0;
    *id = 0;
    if (MT_LIKELY(leaf != NULL)) {
        uint16_t v = leaf->v[index];
        if (MT_LIKELY(v != 0 && v != SLOT_BIG)) {
            leaf->v[index] = 0;
            if (MT_UNLIKELY(leaf->ids != NULL)) {
                *id = leaf->ids[index];
            }
            return (int64_t)v - 1;
        }
        if (v == SLOT_BIG) {
            leaf->v[index] = 0;
            marked = 1;
        }
    }
    if (!marked && __atomic_load_n(&big_orphans, __ATOMIC_RELAXED) == 0) {
        return -1; /* the common "allocated before the hooks went in" case */
    }
    pthread_mutex_lock(&big_lock);
    int64_t size = big_take_locked(a, id);
    if (size >= 0 && !marked) {
        big_orphans--;
    }
    pthread_mutex_unlock(&big_lock);
    return size;
}

/* ------------------------------------------------------------------ counters */

static int g_installed;   /* hooks in; written with the GIL and nogil_lock held */
static int g_refcount;    /* GIL */
static int64_t g_cur;     /* net bytes via the GIL path; GIL */
static int64_t g_nogil;   /* net bytes via the no-GIL path; atomic */
static int64_t g_native;  /* net bytes from the native hooks (both paths); atomic */
/* Net bytes of Python's blocks that live in malloc's heap, not in pymalloc's
 * arenas: the RAW domain's, numpy's, and MEM/OBJ blocks over pymalloc's
 * 512-byte limit (for the RSS breakdown); atomic. */
static int64_t g_py_malloc;
#define PYMALLOC_LIMIT 512
/* Native blocks by library: live bytes per library index (native.c names
 * them); each block keeps its index beside its size, to subtract on free. */
static int64_t g_lib[MT_MAX_LIBS]; /* atomic */
static int64_t g_peak;    /* GIL */
static uint64_t g_allocs, g_frees;
static pthread_mutex_t nogil_lock = PTHREAD_MUTEX_INITIALIZER;

#define MAX_WATCH 64
static struct {
    int used;
    int64_t max;
} watches[MAX_WATCH];
static int64_t g_watch_floor = INT64_MAX; /* lowest max among watches in use */

static inline int64_t level_now(void)
{
    return g_cur + __atomic_load_n(&g_nogil, __ATOMIC_RELAXED);
}

/* The budget of memtrim.limit(): a Python allocation (the MEM and OBJ
 * domains, numpy's buffers) that would take the level past g_limit_at is
 * refused (NULL: the interpreter raises MemoryError at it).  One refusal per
 * arming: the MemoryError must be able to propagate (tracebacks allocate), so
 * the limit is off until Python arms it again.  Native (C library)
 * allocations count toward the level but are never refused: a NULL from
 * malloc may crash a library that never expected one.  GIL held. */
static int64_t g_limit_at = INT64_MAX;
static uint64_t g_limit_refused;
static int64_t g_limit_level, g_limit_size;

void mt_heap_set_limit(int64_t at)
{
    g_limit_at = at > 0 ? at : INT64_MAX;
}

void mt_heap_limit_state(uint64_t *refused, int64_t *level, int64_t *size)
{
    *refused = g_limit_refused;
    *level = g_limit_level;
    *size = g_limit_size;
}

static inline int limit_refuses(int64_t growth)
{
    if (MT_LIKELY(g_limit_at == INT64_MAX) || growth <= 0) {
        return 0;
    }
    int64_t level = level_now();
    if (level + growth <= g_limit_at) {
        return 0;
    }
    g_limit_refused++;
    g_limit_level = level;
    g_limit_size = growth;
    g_limit_at = INT64_MAX;
    return 1;
}

int64_t mt_heap_level(void)
{
    return level_now();
}

static void watch_raise(int64_t level)
{
    int64_t floor = INT64_MAX;
    for (int i = 0; i < MAX_WATCH; i++) {
        if (watches[i].used) {
            if (watches[i].max < level) {
                watches[i].max = level;
            }
            if (watches[i].max < floor) {
                floor = watches[i].max;
            }
        }
    }
    g_watch_floor = floor;
}

/* ---------------------------------------------------------------- listeners */

/* The table (listeners.h).  Written with the GIL *and* nogil_lock held, so
 * the GIL path (which holds the GIL) and the no-GIL path (which holds
 * nogil_lock) each read it consistently without anything more.  Entries are
 * kept packed: [0, mt_listeners_n) are in use.  `attributor` is the one that
 * owns the per-block id slot, or NULL. */
int mt_listeners_n;
static const mt_listener_t *listeners[MT_MAX_LISTENERS];
static const mt_listener_t *attributor;
/* Listeners other than the attributor that want every free: without one, a
 * free of a block with no id (most frees of a recording: blocks from before
 * it) calls nothing, as before listeners existed. */
static int plain_free_n;

static void clear_ids_locked(void);

int mt_listener_add(const mt_listener_t *l)
{
    for (int i = 0; i < mt_listeners_n; i++) {
        if (listeners[i] == l) {
            PyErr_Format(PyExc_RuntimeError, "%s is already listening to the heap", l->name);
            return -1;
        }
    }
    if (l->attributes && attributor != NULL) {
        PyErr_Format(PyExc_RuntimeError,
                     "%s cannot attribute allocations: %s already does", l->name,
                     attributor->name);
        return -1;
    }
    if (mt_listeners_n == MT_MAX_LISTENERS) {
        PyErr_SetString(PyExc_RuntimeError, "too many heap listeners");
        return -1;
    }
    pthread_mutex_lock(&nogil_lock);
    listeners[mt_listeners_n] = l;
    if (l->attributes) {
        attributor = l;
    }
    else if (l->on_free != NULL || l->on_free_nogil != NULL) {
        plain_free_n++;
    }
    /* last: a hook that sees the count sees the entry (the GIL path reads
     * both under the GIL we hold, the no-GIL path under nogil_lock) */
    mt_listeners_n++;
    pthread_mutex_unlock(&nogil_lock);
    return 0;
}

void mt_listener_remove(const mt_listener_t *l)
{
    pthread_mutex_lock(&nogil_lock);
    for (int i = 0; i < mt_listeners_n; i++) {
        if (listeners[i] == l) {
            for (int j = i + 1; j < mt_listeners_n; j++) {
                listeners[j - 1] = listeners[j];
            }
            listeners[--mt_listeners_n] = NULL;
            if (attributor != l && (l->on_free != NULL || l->on_free_nogil != NULL)) {
                plain_free_n--;
            }
            if (attributor == l) {
                /* the id slot is free again: wipe its ids, so that the next
                 * attributing listener is never handed one it did not make */
                attributor = NULL;
                clear_ids_locked();
            }
            break;
        }
    }
    pthread_mutex_unlock(&nogil_lock);
}

/* GIL held: tell every listener; returns the attributor's id for the block.
 * The common case, the call tree alone, is one indirect call. */
static inline uint32_t notify_alloc(void *p, size_t size, int native)
{
    if (MT_LIKELY(mt_listeners_n == 1)) {
        const mt_listener_t *l = listeners[0];
        uint32_t got = l->on_alloc != NULL ? l->on_alloc(p, size, native) : 0;
        return l == attributor ? got : 0;
    }
    uint32_t id = 0;
    for (int i = 0; i < mt_listeners_n; i++) {
        const mt_listener_t *l = listeners[i];
        if (l->on_alloc != NULL) {
            uint32_t got = l->on_alloc(p, size, native);
            if (l == attributor) {
                id = got;
            }
        }
    }
    return id;
}

/* Out of line: inlined, its loop made every free (listeners or not) save and
 * restore six registers. */
static MT_NOINLINE void notify_free(void *p, uint32_t id, size_t size, int native)
{
    for (int i = 0; i < mt_listeners_n; i++) {
        const mt_listener_t *l = listeners[i];
        if (l == attributor) {
            if (id != 0 && l->on_free != NULL) {
                l->on_free(p, id, size, native);
            }
        }
        else if (l->on_free != NULL) {
            l->on_free(p, 0, size, native);
        }
    }
}

static MT_NOINLINE void notify_new_peak(void)
{
    if (MT_LIKELY(mt_listeners_n == 1)) { /* the call tree alone: no loop */
        if (listeners[0]->on_new_peak != NULL) {
            listeners[0]->on_new_peak();
        }
        return;
    }
    for (int i = 0; i < mt_listeners_n; i++) {
        if (listeners[i]->on_new_peak != NULL) {
            listeners[i]->on_new_peak();
        }
    }
}

/* No GIL, nogil_lock held. */
static uint32_t notify_alloc_nogil(size_t size, int native)
{
    uint32_t id = 0;
    for (int i = 0; i < mt_listeners_n; i++) {
        const mt_listener_t *l = listeners[i];
        if (l->on_alloc_nogil != NULL) {
            uint32_t got = l->on_alloc_nogil(size, native);
            if (l == attributor) {
                id = got;
            }
        }
    }
    return id;
}

static void notify_free_nogil(void *p, uint32_t id, size_t size, int native)
{
    for (int i = 0; i < mt_listeners_n; i++) {
        const mt_listener_t *l = listeners[i];
        if (l == attributor) {
            if (id != 0 && l->on_free_nogil != NULL) {
                l->on_free_nogil(p, id, size, native);
            }
        }
        else if (l->on_free_nogil != NULL) {
            l->on_free_nogil(p, 0, size, native);
        }
    }
}

static inline void thread_add(int64_t delta)
{
    mt_thread_cur += delta;
    if (mt_thread_cur > mt_thread_hwm) {
        mt_thread_hwm = mt_thread_cur;
    }
}

/* GIL held.  kind: 0, or MT_NATIVE_BIT for a block of the native hooks (a
 * constant in every caller, so the Python domains' path pays nothing). */
static inline __attribute__((always_inline)) void on_alloc_gil(void *p, size_t size,
                                                               uint32_t kind)
{
    mt_vl_check(1); /* the lines that ran before this block: their figures first */
    /* attribute first, so that a peak this allocation makes includes it.
     * With no listener this is one load of a well-predicted int. */
    uint32_t id = MT_UNLIKELY(mt_listeners_n) ? notify_alloc(p, size, kind != 0) : 0;
    record_size(p, size, id | kind);
    if (kind) {
        __atomic_add_fetch(&g_native, (int64_t)size, __ATOMIC_RELAXED);
    }
    g_cur += (int64_t)size;
    g_allocs++;
    mt_thread_prev_ptr = mt_thread_last_ptr;
    mt_thread_prev_size = mt_thread_last_size;
    mt_thread_prev_hwm = mt_thread_last_hwm;
    mt_thread_last_hwm = mt_thread_hwm;
    thread_add((int64_t)size);
    mt_thread_last_ptr = p;
    mt_thread_last_size = (int64_t)size;
    int64_t level = level_now();
    if (level > g_peak) {
        g_peak = level;
        if (MT_UNLIKELY(mt_listeners_n)) {
            notify_new_peak();
        }
    }
    if (MT_UNLIKELY(level > g_watch_floor)) {
        watch_raise(level);
    }
    /* The --limit watchdog is not a listener: it needs no event, only a
     * chance to run its callback in an allocating thread once it has tripped
     * (rare), and a volatile flag costs one load with nothing registered; as a
     * listener it would have to be registered from its own thread, without
     * the GIL, and would make every allocation of a --limit run walk the
     * table. */
    if (MT_UNLIKELY(mt_limit_tripped)) {
        mt_watchdog_poke();
    }
}

/* GIL held: a block of `size` bytes (stored id `id`, native bit included)
 * went away. */
static inline void forget_gil(void *p, int64_t size, uint32_t id)
{
    int native = 0;
    if (MT_UNLIKELY(mt_own) && (id & ~MT_NATIVE_BIT) == 0) {
        /* memtrim's own work freed a block no recording counted: one from
         * before the recording began, which the run's base holds (a dict of
         * memtrim's that grew, an object a free list handed it).  The level
         * stays: the program's figures (level - base) must never move for
         * memtrim's work, and a level below the base would be a negative
         * figure (seen on 3.12: the disk keeper's thread, "at exit: -11 B").
         * The block is forgotten; its bytes stay in the level. */
        return;
    }
    if (MT_UNLIKELY(id & MT_NATIVE_BIT)) {
        native = 1;
        id &= ~MT_NATIVE_BIT;
        __atomic_sub_fetch(&g_native, size, __ATOMIC_RELAXED);
    }
    mt_vl_check(1);
    g_cur -= size;
    g_frees++;
    mt_thread_cur -= size;
    /* An id exists only while an attributing listener does, and plain_free_n
     * only counts registered listeners: with none, this is the id test it was
     * before listeners (plus one load), not a test of the table. */
    if (MT_UNLIKELY(id != 0 || plain_free_n)) {
        if (MT_LIKELY(plain_free_n == 0)) {
            /* the common case, the attributor alone hears frees (id != 0
             * brought us here, so it exists): one call */
            if (attributor->on_free != NULL) {
                attributor->on_free(p, id, (size_t)size, native);
            }
        }
        else {
            notify_free(p, id, (size_t)size, native);
        }
    }
}

static inline void on_free_gil(void *p)
{
    uint32_t id;
    int64_t size = take_size(p, &id);
    if (size >= 0) {
        forget_gil(p, size, id);
        if (MT_UNLIKELY(size > PYMALLOC_LIMIT)) {
            __atomic_sub_fetch(&g_py_malloc, size, __ATOMIC_RELAXED);
        }
    }
}

/* The GIL, or nogil_lock, held (no leaf comes or goes). */
static void set_lib(void *p, unsigned lib)
{
    uintptr_t a = (uintptr_t)p;
    size_t index;
    leaf_t *leaf = shadow_leaf(a, 0, &index);
    if (leaf != NULL && leaf->v[index] != 0 && leaf->v[index] != SLOT_BIG) {
        uint8_t *libs = __atomic_load_n(&leaf->libs, __ATOMIC_ACQUIRE);
        if (libs == NULL && lib != 0) {
            libs = install_ptr((void **)&leaf->libs, 1u << LEAF_BITS);
        }
        if (libs != NULL) {
            libs[index] = (uint8_t)lib; /* 0 too: no stale index from an earlier block */
        }
        return;
    }
    pthread_mutex_lock(&big_lock);
    if (big.cap != 0) {
        size_t i = big_find(&big, a);
        if (big_used(&big.tab[i])) {
            big.tab[i].lib = (uint8_t)lib;
        }
    }
    pthread_mutex_unlock(&big_lock);
}

/* Same locking.  The library index of the block at p (0: none known). */
static unsigned peek_lib(void *p)
{
    uintptr_t a = (uintptr_t)p;
    size_t index;
    leaf_t *leaf = shadow_leaf(a, 0, &index);
    if (leaf != NULL && leaf->v[index] != 0 && leaf->v[index] != SLOT_BIG) {
        return leaf->libs != NULL ? leaf->libs[index] : 0;
    }
    unsigned lib = 0;
    pthread_mutex_lock(&big_lock);
    if (big.cap != 0) {
        size_t i = big_find(&big, a);
        if (big_used(&big.tab[i])) {
            lib = big.tab[i].lib;
        }
    }
    pthread_mutex_unlock(&big_lock);
    return lib;
}

/* GIL held: hand the live block at p to `move(p, id, size)`, which returns
 * its new id (the attribution moves; the heap's figures do not change).
 * Only blocks that hold an attributing listener's id, in the leaves (small
 * blocks: what CPython's free lists keep).  Returns 1 if it was moved. */
int mt_heap_reattribute(void *p, uint32_t (*move)(void *p, uint32_t id, int64_t size))
{
    size_t index;
    leaf_t *leaf = shadow_leaf((uintptr_t)p, 0, &index);
    if (leaf == NULL || leaf->ids == NULL) {
        return 0;
    }
    uint16_t v = leaf->v[index];
    uint32_t id = leaf->ids[index];
    if (v == 0 || v == SLOT_BIG || id == 0 || (id & MT_NATIVE_BIT)) {
        return 0;
    }
    set_id(leaf, index, move(p, id, (int64_t)v - 1));
    return 1;
}

/* GIL held (no leaf comes or goes): the stored id of the live block at p.
 * For the advisor, which names the line that allocated a live object. */
int mt_heap_peek_id(void *p, uint32_t *id)
{
    uintptr_t a = (uintptr_t)p;
    size_t index;
    *id = 0;
    if (!g_installed) {
        return 0;
    }
    leaf_t *leaf = shadow_leaf(a, 0, &index);
    if (leaf != NULL && leaf->v[index] != 0 && leaf->v[index] != SLOT_BIG) {
        *id = leaf->ids != NULL ? leaf->ids[index] : 0;
        return 1;
    }
    int found = 0;
    mt_guard++; /* a signal handler's malloc must not wait for big_lock here */
    pthread_mutex_lock(&big_lock);
    if (big.cap != 0) {
        size_t i = big_find(&big, a);
        if (big_used(&big.tab[i])) {
            *id = big.tab[i].id;
            found = 1;
        }
    }
    pthread_mutex_unlock(&big_lock);
    mt_guard--;
    return found;
}

/* Without the GIL: serialize with uninstall through nogil_lock.  Peaks are not
 * raised here (g_peak and the watches belong to the GIL); the next allocation
 * made with the GIL sees the level including these bytes.  Listeners hear of
 * them through their no-GIL callbacks, under nogil_lock (listeners.h). */
#define NO_LIB (-1) /* a block of Python's allocators: no library to keep */

static void on_alloc_nogil(void *p, size_t size, uint32_t kind, int lib)
{
    pthread_mutex_lock(&nogil_lock);
    if (g_installed) {
        uint32_t id = mt_listeners_n ? notify_alloc_nogil(size, kind != 0) : 0;
        record_size(p, size, id | kind);
        __atomic_add_fetch(&g_nogil, (int64_t)size, __ATOMIC_RELAXED);
        if (kind) {
            __atomic_add_fetch(&g_native, (int64_t)size, __ATOMIC_RELAXED);
        }
        if (lib != NO_LIB) { /* under the same lock: the leaf cannot go meanwhile */
            set_lib(p, (unsigned)lib);
            __atomic_add_fetch(&g_lib[lib], (int64_t)size, __ATOMIC_RELAXED);
        }
        mt_vl_check(0);
        thread_add((int64_t)size);
    }
    pthread_mutex_unlock(&nogil_lock);
}

/* lib: where to put the block's library index (NULL: not wanted). */
static int64_t take_nogil(void *p, uint32_t *id, unsigned *lib)
{
    int64_t size = -1;
    *id = 0;
    pthread_mutex_lock(&nogil_lock);
    if (g_installed) {
        if (lib != NULL) {
            *lib = peek_lib(p); /* before take_size forgets the block */
        }
        size = take_size(p, id);
        if (size >= 0) {
            int native = (*id & MT_NATIVE_BIT) != 0;
            uint32_t bare = *id & ~MT_NATIVE_BIT;
            __atomic_sub_fetch(&g_nogil, size, __ATOMIC_RELAXED);
            if (native) {
                __atomic_sub_fetch(&g_native, size, __ATOMIC_RELAXED);
            }
            mt_vl_check(0);
            mt_thread_cur -= size;
            if (mt_listeners_n && (bare != 0 || plain_free_n)) {
                notify_free_nogil(p, bare, (size_t)size, native);
            }
        }
    }
    pthread_mutex_unlock(&nogil_lock);
    return size;
}

/* ------------------------------------------------------------- the hooks */

typedef struct {
    PyMemAllocatorEx orig;
    PyMemAllocatorDomain domain;
} domain_t;

static domain_t dom_raw = {.domain = PYMEM_DOMAIN_RAW};
static domain_t dom_mem = {.domain = PYMEM_DOMAIN_MEM};
static domain_t dom_obj = {.domain = PYMEM_DOMAIN_OBJ};

/* MEM and OBJ: always called with the GIL.  mt_guard stays set through the
 * accounting too: a C signal handler that allocates while this thread is in
 * the middle of it passes straight through instead of re-entering it (the
 * big table's lock is not recursive). */
static void *gil_malloc(void *ctx, size_t size)
{
    domain_t *d = ctx;
    int outer = mt_guard == 0 && !mt_own;
    if (MT_UNLIKELY(outer && limit_refuses((int64_t)size))) {
        return NULL;
    }
    mt_guard++;
    void *p = d->orig.malloc(d->orig.ctx, size);
    if (MT_LIKELY(p != NULL && outer)) {
        on_alloc_gil(p, size, 0);
        if (MT_UNLIKELY(size > PYMALLOC_LIMIT)) {
            __atomic_add_fetch(&g_py_malloc, (int64_t)size, __ATOMIC_RELAXED);
        }
    }
    mt_guard--;
    return p;
}

static void *gil_calloc(void *ctx, size_t nelem, size_t elsize)
{
    domain_t *d = ctx;
    int outer = mt_guard == 0 && !mt_own;
    if (MT_UNLIKELY(outer && limit_refuses((int64_t)(nelem * elsize)))) {
        return NULL;
    }
    mt_guard++;
    void *p = d->orig.calloc(d->orig.ctx, nelem, elsize);
    if (p != NULL && outer) {
        on_alloc_gil(p, nelem * elsize, 0);
        if (nelem * elsize > PYMALLOC_LIMIT) {
            __atomic_add_fetch(&g_py_malloc, (int64_t)(nelem * elsize), __ATOMIC_RELAXED);
        }
    }
    mt_guard--;
    return p;
}

static void *gil_realloc(void *ctx, void *ptr, size_t size)
{
    domain_t *d = ctx;
    if (mt_guard) {
        return d->orig.realloc(d->orig.ctx, ptr, size);
    }
    /* Take the old size first: once the original realloc frees `ptr`, its
     * address may be handed out (and recorded) again. */
    mt_guard++;
    uint32_t old_id = 0;
    int64_t old = ptr ? take_size(ptr, &old_id) : -1;
    if (MT_UNLIKELY(!mt_own && limit_refuses((int64_t)size - (old > 0 ? old : 0)))) {
        if (old >= 0) {
            record_size(ptr, (size_t)old, old_id); /* untouched: still recorded */
        }
        mt_guard--;
        return NULL;
    }
    void *p = d->orig.realloc(d->orig.ctx, ptr, size);
    if (p == NULL) {
        if (old >= 0) {
            record_size(ptr, (size_t)old, old_id); /* failed: the old block is intact */
        }
        mt_guard--;
        return NULL;
    }
    if (old >= 0) {
        forget_gil(ptr, old, old_id);
        if (old > PYMALLOC_LIMIT) {
            __atomic_sub_fetch(&g_py_malloc, old, __ATOMIC_RELAXED);
        }
    }
    if (!mt_own) {
        on_alloc_gil(p, size, 0);
        if (size > PYMALLOC_LIMIT) {
            __atomic_add_fetch(&g_py_malloc, (int64_t)size, __ATOMIC_RELAXED);
        }
    }
    mt_guard--;
    return p;
}

static void gil_free(void *ctx, void *ptr)
{
    domain_t *d = ctx;
    if (ptr != NULL && !mt_guard) {
        mt_guard++;
        on_free_gil(ptr);
        mt_guard--;
    }
    d->orig.free(d->orig.ctx, ptr);
}

/* RAW: may be called without the GIL, and from inside pymalloc (mt_guard). */
static void account_alloc(void *p, size_t size)
{
    if (MT_UNLIKELY(mt_own)) {
        return;
    }
    __atomic_add_fetch(&g_py_malloc, (int64_t)size, __ATOMIC_RELAXED);
    if (mt_have_gil()) {
        on_alloc_gil(p, size, 0);
    }
    else {
        on_alloc_nogil(p, size, 0, NO_LIB);
    }
}

/* Forget a block being freed or reallocated; returns its size and id. */
static int64_t account_take(void *p, uint32_t *id)
{
    int64_t size;
    if (mt_have_gil()) {
        size = take_size(p, id);
        if (size >= 0) {
            forget_gil(p, size, *id);
        }
    }
    else {
        size = take_nogil(p, id, NULL);
    }
    if (size >= 0 && !(*id & MT_NATIVE_BIT)) {
        __atomic_sub_fetch(&g_py_malloc, size, __ATOMIC_RELAXED);
    }
    return size;
}

/* A realloc failed after account_take: put the block back as it was. */
static void account_restore(void *p, int64_t size, uint32_t id)
{
    /* listeners already heard of the free; it is allocated again */
    uint32_t kind = id & MT_NATIVE_BIT;
    if (!kind) {
        __atomic_add_fetch(&g_py_malloc, size, __ATOMIC_RELAXED);
    }
    if (mt_have_gil()) {
        if (kind) {
            on_alloc_gil(p, (size_t)size, MT_NATIVE_BIT);
        }
        else {
            on_alloc_gil(p, (size_t)size, 0);
        }
    }
    else {
        on_alloc_nogil(p, (size_t)size, kind, NO_LIB);
    }
}

static void *raw_malloc(void *ctx, size_t size)
{
    domain_t *d = ctx;
    if (mt_guard) {
        return d->orig.malloc(d->orig.ctx, size);
    }
    mt_guard++;
    void *p = d->orig.malloc(d->orig.ctx, size);
    if (p != NULL) {
        account_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void *raw_calloc(void *ctx, size_t nelem, size_t elsize)
{
    domain_t *d = ctx;
    if (mt_guard) {
        return d->orig.calloc(d->orig.ctx, nelem, elsize);
    }
    mt_guard++;
    void *p = d->orig.calloc(d->orig.ctx, nelem, elsize);
    if (p != NULL) {
        account_alloc(p, nelem * elsize);
    }
    mt_guard--;
    return p;
}

static void *raw_realloc(void *ctx, void *ptr, size_t size)
{
    domain_t *d = ctx;
    if (mt_guard) {
        return d->orig.realloc(d->orig.ctx, ptr, size);
    }
    mt_guard++;
    uint32_t id = 0;
    int64_t old = ptr ? account_take(ptr, &id) : -1;
    void *p = d->orig.realloc(d->orig.ctx, ptr, size);
    if (p == NULL && old >= 0) {
        account_restore(ptr, old, id); /* failed: the old block is intact */
    }
    else if (p != NULL) {
        account_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void raw_free(void *ctx, void *ptr)
{
    domain_t *d = ctx;
    if (mt_guard) {
        d->orig.free(d->orig.ctx, ptr);
        return;
    }
    mt_guard++; /* the native hooks need not look this block up again */
    if (ptr != NULL) {
        uint32_t id;
        account_take(ptr, &id);
    }
    d->orig.free(d->orig.ctx, ptr);
    mt_guard--;
}

static void hook_domain(domain_t *d, int gil)
{
    PyMemAllocatorEx hooked = {
        .ctx = d,
        .malloc = gil ? gil_malloc : raw_malloc,
        .calloc = gil ? gil_calloc : raw_calloc,
        .realloc = gil ? gil_realloc : raw_realloc,
        .free = gil ? gil_free : raw_free,
    };
    PyMem_GetAllocator(d->domain, &d->orig);
    PyMem_SetAllocator(d->domain, &hooked);
}

/* The OBJ domain's allocator from before the hooks (pymalloc, normally):
 * pymalloc's statistics only count when it is the one installed. */
int mt_heap_obj_orig(PyMemAllocatorEx *out)
{
    if (!g_installed) {
        return 0;
    }
    *out = dom_obj.orig;
    return 1;
}

int mt_heap_installed(void)
{
    return g_installed;
}

/* Is memtrim's hook the MEM domain's allocator, with nobody above it?  When
 * another hook wraps ours (tracemalloc started after memtrim), our hook may be
 * called from inside it, under its lock (tracemalloc's tables are allocated
 * through the allocator below it, ours): a call to PyMem_* from there would
 * enter tracemalloc again and wait for that lock forever. */
int mt_heap_on_top(void)
{
    PyMemAllocatorEx now;
    PyMem_GetAllocator(PYMEM_DOMAIN_MEM, &now);
    return now.malloc == gil_malloc;
}

int mt_heap_install(void)
{
    if (g_refcount++ > 0) {
        return 0;
    }
    g_cur = g_peak = 0;
    g_nogil = 0;
    g_native = 0;
    g_py_malloc = 0;
    memset(g_lib, 0, sizeof(g_lib));
    g_allocs = g_frees = 0;
    mt_thread_cur = mt_thread_hwm = 0;
    pthread_mutex_lock(&nogil_lock);
    g_installed = 1;
    pthread_mutex_unlock(&nogil_lock);
    hook_domain(&dom_raw, 0);
    hook_domain(&dom_mem, 1);
    hook_domain(&dom_obj, 1);
    mt_arenas_install();
    return 0;
}

int mt_heap_uninstall(void)
{
    if (g_refcount == 0) {
        return -1;
    }
    if (--g_refcount > 0) {
        return 0;
    }
    mt_native_off(); /* first: native frees must still be heard */
    mt_arenas_uninstall();
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &dom_obj.orig);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &dom_mem.orig);
    PyMem_SetAllocator(PYMEM_DOMAIN_RAW, &dom_raw.orig);
    mt_numpy_unpatch();
    /* A no-GIL raw call may still be inside a hook: it takes nogil_lock and
     * then sees g_installed == 0, so the shadow can go once we hold it. */
    pthread_mutex_lock(&nogil_lock);
    g_installed = 0;
    pthread_mutex_lock(&big_lock);
    shadow_clear();
    big_clear_locked();
    pthread_mutex_unlock(&big_lock);
    pthread_mutex_unlock(&nogil_lock);
    for (int i = 0; i < MAX_WATCH; i++) {
        watches[i].used = 0;
    }
    g_watch_floor = INT64_MAX;
    return 0;
}

int64_t mt_heap_peak(void)
{
    return g_peak;
}

void mt_heap_reset_peak(void)
{
    g_peak = mt_heap_level();
}

/* nogil_lock held (the GIL too): no hook is changing an id meanwhile. */
static void clear_ids_locked(void)
{
    pthread_mutex_lock(&big_lock);
    shadow_clear_ids();
    for (size_t i = 0; i < big.cap; i++) {
        big.tab[i].id &= MT_NATIVE_BIT;
    }
    pthread_mutex_unlock(&big_lock);
}

/* Around fork: held by the forking thread, so no other thread is inside the
 * shadow map or the big table when the child's copy is made. */
void mt_heap_fork_prepare(void)
{
    pthread_mutex_lock(&nogil_lock);
    pthread_mutex_lock(&big_lock);
}

void mt_heap_fork_parent(void)
{
    pthread_mutex_unlock(&big_lock);
    pthread_mutex_unlock(&nogil_lock);
}

/* A forked child has one thread: the locks the forking thread took (or any
 * other held) are started afresh. */
void mt_heap_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    nogil_lock = fresh;
    big_lock = fresh;
    dirty_lock = fresh;
}

void mt_heap_counts(uint64_t *allocs, uint64_t *frees)
{
    *allocs = g_allocs;
    *frees = g_frees;
}

int64_t mt_heap_overhead(void)
{
    return __atomic_load_n(&shadow_bytes, __ATOMIC_RELAXED);
}

/* The resident part of the shadow map (its tables are calloc'ed and mostly
 * never written: a mid-level table is 512 KiB for 4 GiB of address space).
 * GIL held; takes nogil_lock, so no leaf comes or goes meanwhile (the big
 * table's own bytes are counted as resident). */
int64_t mt_heap_overhead_resident(void)
{
    int64_t total = 0;
    mt_guard++;
    pthread_mutex_lock(&nogil_lock);
    for (size_t i = 0; i < (1u << L1_BITS); i++) {
        l2_t *mid = l1[i];
        if (mid == NULL) {
            continue;
        }
        total += (int64_t)mt_resident((uintptr_t)mid, sizeof(l2_t));
        for (size_t j = 0; j < (1u << L2_BITS); j++) {
            leaf_t *leaf = mid->leaf[j];
            if (leaf != NULL) {
                total += (int64_t)mt_resident((uintptr_t)leaf->v, sizeof(leaf->v));
                if (leaf->ids != NULL) {
                    total += (int64_t)mt_resident((uintptr_t)leaf->ids,
                                                  sizeof(uint32_t) << LEAF_BITS);
                }
            }
        }
    }
    total += (int64_t)(big.cap * sizeof(big_entry_t));
    pthread_mutex_unlock(&nogil_lock);
    mt_guard--;
    return total;
}

/* ------------------------------------------------------------- native hooks */


/* native.c's hooks call these with mt_guard held, from any thread. */
void mt_heap_native_alloc(void *p, size_t size, unsigned lib)
{
    if (MT_UNLIKELY(mt_own)) {
        return;
    }
    lib = lib < MT_MAX_LIBS ? lib : 0;
    if (mt_have_gil()) {
        if (MT_LIKELY(g_installed)) { /* install and uninstall hold the GIL */
            on_alloc_gil(p, size, MT_NATIVE_BIT);
            set_lib(p, lib);
            __atomic_add_fetch(&g_lib[lib], (int64_t)size, __ATOMIC_RELAXED);
        }
        return;
    }
    on_alloc_nogil(p, size, MT_NATIVE_BIT, (int)lib);
}

int64_t mt_heap_native_take(void *p)
{
    uint32_t id;
    unsigned lib;
    int64_t size;
    if (mt_have_gil()) {
        if (MT_UNLIKELY(!g_installed)) {
            return -1;
        }
        lib = peek_lib(p);
        size = take_size(p, &id);
        if (size >= 0) {
            forget_gil(p, size, id);
        }
    }
    else {
        lib = 0;
        size = take_nogil(p, &id, &lib);
    }
    if (size >= 0 && (id & MT_NATIVE_BIT)) {
        __atomic_sub_fetch(&g_lib[lib], size, __ATOMIC_RELAXED);
    }
    return size;
}

int mt_heap_native_by_lib(int64_t out[MT_MAX_LIBS])
{
    for (int i = 0; i < MT_MAX_LIBS; i++) {
        out[i] = __atomic_load_n(&g_lib[i], __ATOMIC_RELAXED);
    }
    return MT_MAX_LIBS;
}

/* Bytes of the big blocks (those in the big table: over 64 KiB) on pages
 * never touched: allocated, counted, but not resident (calloc'd or reserved
 * arrays, lists' spare capacity).  Only pages wholly inside a block count.
 * GIL held; takes big_lock. */
int64_t mt_heap_untouched(void)
{
    long got = sysconf(_SC_PAGESIZE);
    uintptr_t page = got > 0 ? (uintptr_t)got : 4096;
    int64_t total = 0;
    mt_guard++;
    pthread_mutex_lock(&big_lock);
    for (size_t i = 0; i < big.cap; i++) {
        if (!big_used(&big.tab[i])) {
            continue;
        }
        uintptr_t a = (big.tab[i].key + page - 1) & ~(page - 1);
        uintptr_t b = (big.tab[i].key + big.tab[i].size) & ~(page - 1);
        if (b > a) {
            total += (int64_t)((b - a) - mt_resident(a, b - a));
        }
    }
    pthread_mutex_unlock(&big_lock);
    mt_guard--;
    return total;
}

int64_t mt_heap_python_malloc_level(void)
{
    return __atomic_load_n(&g_py_malloc, __ATOMIC_RELAXED);
}

int64_t mt_heap_native_level(void)
{
    return __atomic_load_n(&g_native, __ATOMIC_RELAXED);
}

/* ------------------------------------------------------------------ watches */

int mt_watch_begin(void)
{
    int64_t level = mt_heap_level();
    for (int i = 0; i < MAX_WATCH; i++) {
        if (!watches[i].used) {
            watches[i].used = 1;
            watches[i].max = level;
            if (level < g_watch_floor) {
                g_watch_floor = level;
            }
            return i;
        }
    }
    return -1;
}

int64_t mt_watch_peak(int id)
{
    int64_t level = mt_heap_level(); /* no-GIL bytes are only folded in here */
    if (level > watches[id].max) {
        watches[id].max = level;
    }
    return watches[id].max;
}

void mt_watch_end(int id)
{
    watches[id].used = 0;
    watch_raise(INT64_MIN); /* recompute the floor */
}

/* -------------------------------------------------------------------- numpy */

/* numpy >= 1.22 (NEP 49) routes array data through a PyDataMem_Handler.  We
 * wrap the functions of its *default* handler in place: a handler set through
 * PyDataMem_SetHandler only applies to one context (thread), while the
 * default one serves every thread.  Layout copied from numpy's public
 * ndarraytypes.h, and checked by version and name before we touch it. */
typedef struct {
    void *ctx;
    void *(*malloc)(void *ctx, size_t size);
    void *(*calloc)(void *ctx, size_t nelem, size_t elsize);
    void *(*realloc)(void *ctx, void *ptr, size_t new_size);
    void (*free)(void *ctx, void *ptr, size_t size);
} np_allocator_t;

typedef struct {
    char name[127];
    uint8_t version;
    np_allocator_t allocator;
} np_handler_t;

static np_handler_t *np_handler;
static np_allocator_t np_orig;

static void *np_malloc(void *ctx, size_t size)
{
    int outer = mt_guard == 0;
    if (MT_UNLIKELY(outer && !mt_own && limit_refuses((int64_t)size))) {
        return NULL;
    }
    mt_guard++; /* numpy may get its memory from PyMem_RawMalloc: count it once */
    void *p = np_orig.malloc(ctx, size);
    if (p != NULL && outer) {
        account_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void *np_calloc(void *ctx, size_t nelem, size_t elsize)
{
    int outer = mt_guard == 0;
    if (MT_UNLIKELY(outer && !mt_own && limit_refuses((int64_t)(nelem * elsize)))) {
        return NULL;
    }
    mt_guard++;
    void *p = np_orig.calloc(ctx, nelem, elsize);
    if (p != NULL && outer) {
        account_alloc(p, nelem * elsize);
    }
    mt_guard--;
    return p;
}

static void *np_realloc(void *ctx, void *ptr, size_t size)
{
    int outer = mt_guard == 0;
    uint32_t id = 0;
    mt_guard++;
    int64_t old = (ptr && outer) ? account_take(ptr, &id) : -1;
    void *p = np_orig.realloc(ctx, ptr, size);
    if (p == NULL && old >= 0) {
        account_restore(ptr, old, id);
    }
    else if (p != NULL && outer) {
        account_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void np_free(void *ctx, void *ptr, size_t size)
{
    int outer = mt_guard == 0;
    mt_guard++;
    if (ptr != NULL && outer) {
        uint32_t id;
        account_take(ptr, &id);
    }
    np_orig.free(ctx, ptr, size);
    mt_guard--;
}

int mt_numpy_patch(PyObject *capsule)
{
    if (np_handler != NULL) {
        return 0;
    }
    np_handler_t *h = PyCapsule_GetPointer(capsule, "mem_handler");
    if (h == NULL) {
        return -1;
    }
    if (h->version != 1 || strncmp(h->name, "default_allocator", sizeof(h->name)) != 0) {
        PyErr_SetString(PyExc_RuntimeError, "unexpected numpy memory handler");
        return -1;
    }
    np_orig = h->allocator;
    np_handler = h;
    h->allocator.malloc = np_malloc;
    h->allocator.calloc = np_calloc;
    h->allocator.realloc = np_realloc;
    h->allocator.free = np_free;
    return 0;
}

void mt_numpy_unpatch(void)
{
    if (np_handler != NULL) {
        np_handler->allocator = np_orig;
        np_handler = NULL;
    }
}
