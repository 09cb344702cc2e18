/* Whole-program allocation profiling (memtrim run).
 *
 * Every allocation made with the GIL is attributed to a node of a call tree
 * (a trie of (code slot, instruction) frames under a per-thread root), and
 * its node id is kept with the block in the heap's shadow map, so the free
 * subtracts from the same node.  Two modes:
 *
 *  - default: a block is charged to its *leaf* frame (one frame: the line that
 *    allocated it), which is exact per line and costs one cached lookup; full
 *    stacks are sampled (on average one per `sample_bytes` allocated, Poisson
 *    over bytes) and their estimates feed the flame graph.
 *  - exact: a block is charged to its full stack.  The thread's previous stack
 *    is cached, so only the frames that changed are looked up.
 *
 * Nodes name code by *slot*, not by code object: a slot is the code's file,
 * qualified name, first line and line table, copied out when the code is
 * first seen (its id is then cached in the code's co_extra).  The tree holds
 * no reference to code objects, so the program's code dies when the program
 * drops it, and code compiled again from the same source shares its nodes.
 *
 * Per node we keep live, total and at-peak bytes and counts.  "At peak" uses
 * an epoch: each new process-wide peak bumps `epoch`; a node about to change
 * first saves its current values if it has not done so in this epoch.  The
 * values saved in the current epoch are then exactly those at the last peak,
 * at O(1) per allocation.
 *
 * The call tree is a heap listener (listeners.h): it registers itself, as the
 * attributing listener, when a recording starts, and unregisters when it
 * stops; heap.c knows nothing of it.  One recording at a time: the data
 * below is process-wide, so mt_tree_start refuses while one runs.
 *
 * Locking: everything here runs with the GIL held (the heap hooks call the
 * GIL callbacks only from their GIL path), except the counting of blocks
 * allocated without the GIL and of their frees (the no-GIL callbacks, called
 * under heap.c's nogil_lock), which take `queue_lock` (frees of attributed
 * blocks made without the GIL are queued and applied at the next call with
 * the GIL).
 */
#include "calltree.h"
#include "cframes.h"
#include "frames.h"
#include "hashtab.h"
#include "heap.h"
#include "listeners.h"
#include "rss.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define SAMPLED_BIT 0x80000000u
#define NOGIL_ID 0x3FFFFFFFu /* the id of blocks allocated without the GIL (below MT_NATIVE_BIT) */
#define PENDING_BASE 0x3FFF0000u /* ids of no-GIL blocks charged to a line: see below */
#define MAX_PENDING (NOGIL_ID - PENDING_BASE)
#define FOREIGN_BASE 0x3FFE0000u /* ids of blocks of threads that never ran Python */
#define MAX_FOREIGN 4096
#define LOWEST_NOGIL_ID FOREIGN_BASE
#define NO_SLOT UINT32_MAX
#define NATIVE_SLOT (UINT32_MAX - 1) /* a C frame: its lasti is a cframes.c index */
#define GAP_SLOT (UINT32_MAX - 2)    /* frames left out: the tree was full (see stack_node) */
#define MAX_DEPTH 512

/* n*: the part of the bytes that came from libraries' C allocators (the
 * native hooks); the rest are Python objects and buffers. */
typedef struct {
    int64_t live_b, live_c, total_b, total_c, peak_b, peak_c;
    int64_t nlive_b, ntotal_b, npeak_b;
    int64_t hwm_b; /* the highest live_b: a line's own high-water mark (transient data) */
    uint64_t epoch;
} stat_t;

/* A node is a frame under a parent node; thread roots have parent -1 and slot
 * NO_SLOT, and keep the thread's index in `lasti`.  The line is resolved when
 * the node is made, while its code object is certainly alive: nodes hold no
 * reference to code, so the program's code objects die when the program lets
 * them go. */
typedef struct {
    int32_t parent;
    int32_t lasti;
    uint32_t slot;
    int32_t line;
} node_t;

/* A code slot: what identifies code for attribution, copied out of the code
 * object (file, qualified name, first line, and a hash of the line table).
 * Code objects compiled from the same source (a string eval'ed in a loop, a
 * module imported twice) share a slot, and so share nodes: the tree grows
 * with the program's distinct code, not with the number of code objects. */
typedef struct {
    uint64_t hash;
    void *file; /* the str's characters (kind bytes each), malloc'ed */
    void *name;
    Py_ssize_t file_len, name_len;
    int file_kind, name_kind;
    int first_line;
    uint64_t table_hash;
    Py_ssize_t table_len;
    int hidden; /* memtrim's own frame inside the program's calls: not a leaf */
    int32_t *unit_line; /* long code: the line of each code unit (slot_lines), or NULL */
    int32_t nunits;     /* its length; -1: could not be built (out of memory) */
} slot_t;

static int mt_tree_on; /* a recording runs: the listener is registered */
static int rec_exact;
static int rec_cframes; /* --native: C frames below the Python ones in sampled stacks */
static uint64_t rec_seed; /* of the stack sampling; GIL */
static int64_t rec_sample_bytes;
static unsigned rec_generation;
static uint64_t epoch = 1;
static uint64_t tree_full_blocks; /* blocks charged to a thread root: the tree was full */

static node_t *nodes;
static stat_t *stats;   /* attribution of every block */
static stat_t *sampled; /* estimates from sampled full stacks (default mode) */
static uint32_t nnodes, nodes_cap;

static slot_t *slots;
static uint32_t nslots, slots_cap;
static Py_ssize_t extra_index = -1; /* code object -> (generation, slot) */

/* Blocks allocated without the GIL cannot be given to a node (the tree belongs
 * to the GIL); they are counted here, under queue_lock, and shown apart. */
static stat_t nogil_stat;

/* Files whose frames are memtrim's own, inside the program's calls (the
 * numpy-patching import loader): a block is charged to the frame below. */
#define MAX_HIDDEN 4
static PyObject *hidden_files[MAX_HIDDEN];
static int nhidden;

static unsigned long *thread_idents;
static uint32_t nthreads, threads_cap;

typedef struct {
    PyCodeObject *code;
    void *tag; /* the code's co_extra value: tells a new code object at a reused address */
    int lasti;
    uint32_t node;
} cache_t;

/* Exact mode: the thread's last stack, root first, as (frame, instruction
 * pointer) pairs with the node each prefix led to.  A caller cannot move while
 * its callee runs, so comparing these two pointers per frame finds the part of
 * the stack that did not change at a fraction of the cost of resolving every
 * frame's code and line.  (A pair can only match a different frame if a code
 * object died and another took its address and instruction offset between two
 * allocations of this thread: another thread's doing, at the same depth and
 * call site.  We accept that.) */
typedef struct {
    mt_frame_t *frame;
    const void *ip;
    uint32_t node;
} stack_entry_t;

/* Default mode: a direct-mapped cache of (code, instruction) -> leaf node, so
 * that a loop allocating at a few places finds its nodes without the tree's
 * hash table. */
#define LEAF_CACHE 256

/* Per-thread state, allocated on a thread's first attributed allocation.
 * One thread-local pointer: the static TLS space of a dlopen'ed module is
 * small, so the arrays live on the heap. */
typedef struct {
    unsigned generation;
    uint32_t root;
    int stack_depth;
    stack_entry_t stack[MAX_DEPTH]; /* the last stack, root first */
    mt_frame_t *frames[MAX_DEPTH];  /* scratch: the current stack, innermost first */
    const void *ips[MAX_DEPTH];
    cache_t leaves[LEAF_CACHE];
    int64_t countdown;
    uint64_t rng;
} rec_thread_t;

static MT_TLS rec_thread_t *t_rec;

/* The freeze, for the dump at SIGTERM (mt_tree_dump, below).  The dump is
 * made by term.c's deadline thread without the GIL, because the thread that
 * holds it is stuck in a long C call and may still allocate.  Once `frozen`
 * is set the GIL side leaves the tree alone for good (the process dies right
 * after the dump): the callbacks return at once, snapshot refuses, nothing is
 * freed.  `gil_busy` says the GIL holder is inside the tree; only the GIL
 * holder writes it, so plain (relaxed) stores do, and the hot path pays two
 * stores and a load.  A callback stores `gil_busy` and then reads `frozen`
 * with no CPU fence between them: the dumper sets `frozen`, then waits
 * FREEZE_SETTLE_NS before it trusts a 0 in `gil_busy`: far longer than a
 * store takes to leave a core's store buffer (a thread descheduled in
 * between has had its stores drained by the switch). */
static atomic_int frozen;
static atomic_int gil_busy;
#define FREEZE_SETTLE_NS 2000000L     /* 2 ms */
#define FREEZE_WAIT_NS 300000000LL    /* give up (no dump) after 0.3 s */

static inline void tree_leave(void)
{
    int n = atomic_load_explicit(&gil_busy, memory_order_relaxed);
    atomic_store_explicit(&gil_busy, n - 1, memory_order_release);
}

/* GIL held: 1 if the tree may be used (then tree_leave after), 0 if frozen. */
static inline int tree_enter(void)
{
    int n = atomic_load_explicit(&gil_busy, memory_order_relaxed);
    atomic_store_explicit(&gil_busy, n + 1, memory_order_relaxed);
    atomic_signal_fence(memory_order_seq_cst); /* the compiler keeps the order */
    if (MT_UNLIKELY(atomic_load_explicit(&frozen, memory_order_relaxed))) {
        tree_leave();
        return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------ stats */

static inline void stat_touch(stat_t *s)
{
    if (s->epoch != epoch) {
        s->peak_b = s->live_b;
        s->peak_c = s->live_c;
        s->npeak_b = s->nlive_b;
        s->epoch = epoch;
    }
}

static inline void stat_add(stat_t *s, int64_t bytes, int native)
{
    stat_touch(s);
    s->live_b += bytes;
    s->live_c += 1;
    s->total_b += bytes;
    s->total_c += 1;
    if (s->live_b > s->hwm_b) {
        s->hwm_b = s->live_b;
    }
    if (native) {
        s->nlive_b += bytes;
        s->ntotal_b += bytes;
    }
}

static inline void stat_sub(stat_t *s, int64_t bytes, int native)
{
    stat_touch(s);
    s->live_b -= bytes;
    s->live_c -= 1;
    if (native) {
        s->nlive_b -= bytes;
    }
}

/* Add `b` into `a`, both as of the current epoch: values at the peak are
 * each one's own saved ones when it changed since the peak. */
static void stat_fold(stat_t *a, const stat_t *b)
{
    int64_t a_pb = a->epoch == epoch ? a->peak_b : a->live_b;
    int64_t a_pc = a->epoch == epoch ? a->peak_c : a->live_c;
    int64_t a_pn = a->epoch == epoch ? a->npeak_b : a->nlive_b;
    int64_t b_pb = b->epoch == epoch ? b->peak_b : b->live_b;
    int64_t b_pc = b->epoch == epoch ? b->peak_c : b->live_c;
    int64_t b_pn = b->epoch == epoch ? b->npeak_b : b->nlive_b;
    a->live_b += b->live_b;
    a->live_c += b->live_c;
    a->total_b += b->total_b;
    a->total_c += b->total_c;
    a->nlive_b += b->nlive_b;
    a->ntotal_b += b->ntotal_b;
    a->peak_b = a_pb + b_pb;
    a->peak_c = a_pc + b_pc;
    a->npeak_b = a_pn + b_pn;
    /* the two marks may not have been reached together: at least the larger */
    int64_t hwm = a->hwm_b > b->hwm_b ? a->hwm_b : b->hwm_b;
    a->hwm_b = hwm > a->live_b ? hwm : a->live_b;
    a->epoch = epoch;
}

/* The peak trigger: when the heap's peak first reaches `trigger_at`, call
 * `trigger_cb` once, from the main thread at its next bytecode boundary
 * (Py_AddPendingCall: an allocation hook cannot run Python, and a pending call
 * runs where the program could have run any code).  The advisor uses it to
 * walk the live objects near the peak; it arms the next step itself. */
static int64_t trigger_at;
static PyObject *trigger_cb;
static int trigger_queued;

static int fire_trigger(void *unused)
{
    (void)unused;
    trigger_queued = 0;
    PyObject *cb = trigger_cb;
    if (cb == NULL) {
        return 0; /* disarmed meanwhile */
    }
    Py_INCREF(cb);
    PyObject *got = PyObject_CallNoArgs(cb);
    Py_DECREF(cb);
    if (got == NULL) {
        /* the callback's own failure is its business (it reports it); a
         * KeyboardInterrupt or SystemExit raised inside it goes on into the
         * program, as it would have at that bytecode without memtrim */
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            return -1;
        }
        PyErr_Clear();
    }
    Py_XDECREF(got);
    return 0;
}

static void rec_new_peak(void)
{
    epoch++;
    mt_rss_on_peak(); /* the RSS breakdown near the peak, if watched (rss.c) */
    if (MT_UNLIKELY(trigger_at > 0) && mt_heap_peak() >= trigger_at && !trigger_queued) {
        if (Py_AddPendingCall(fire_trigger, NULL) == 0) {
            trigger_at = 0;
            trigger_queued = 1;
        }
    }
}

int mt_tree_on_peak(int64_t at, PyObject *cb)
{
    if (cb == Py_None || at <= 0) {
        trigger_at = 0;
        Py_CLEAR(trigger_cb);
        return 0;
    }
    if (!PyCallable_Check(cb)) {
        PyErr_SetString(PyExc_TypeError, "the peak trigger needs a callable");
        return -1;
    }
    Py_XSETREF(trigger_cb, Py_NewRef(cb));
    trigger_at = at;
    return 0;
}

/* ------------------------------------------------------------------ slots */

static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9E3779B97F4A7C15ull + (h << 6) + (h >> 2);
    return h;
}

/* The characters of a str, copied with plain malloc: the profiler's own
 * memory is not the program's (libc malloc is not hooked). */
static void *copy_chars(PyObject *s, Py_ssize_t *len, int *kind)
{
    if (!PyUnicode_Check(s)) {
        *len = 0;
        *kind = PyUnicode_1BYTE_KIND;
        return NULL;
    }
    *len = PyUnicode_GET_LENGTH(s);
    *kind = PyUnicode_KIND(s);
    size_t bytes = (size_t)*len * (size_t)*kind;
    void *out = malloc(bytes ? bytes : 1);
    if (out != NULL) {
        memcpy(out, PyUnicode_DATA(s), bytes);
    }
    return out;
}

static int same_chars(PyObject *s, const void *chars, Py_ssize_t len, int kind)
{
    if (!PyUnicode_Check(s)) {
        return len == 0;
    }
    return PyUnicode_GET_LENGTH(s) == len && (int)PyUnicode_KIND(s) == kind &&
           memcmp(PyUnicode_DATA(s), chars, (size_t)len * (size_t)kind) == 0;
}

/* Hashes that are cached on the objects, so reading them allocates nothing;
 * -1 (an unhashable object) still gives a usable key. */
static uint64_t str_hash(PyObject *s)
{
    if (!PyUnicode_Check(s)) {
        return 0;
    }
    Py_hash_t h = PyObject_Hash(s);
    if (h == -1) {
        PyErr_Clear();
    }
    return (uint64_t)h;
}

static uint64_t bytes_hash(PyObject *b, Py_ssize_t *len)
{
    if (b == NULL || !PyBytes_Check(b)) {
        *len = 0;
        return 0;
    }
    *len = PyBytes_GET_SIZE(b);
    Py_hash_t h = PyObject_Hash(b);
    if (h == -1) {
        PyErr_Clear();
    }
    return (uint64_t)h;
}

static int is_hidden(PyObject *filename)
{
    for (int i = 0; i < nhidden; i++) {
        if (filename == hidden_files[i] ||
            (PyUnicode_Check(filename) && PyUnicode_Compare(filename, hidden_files[i]) == 0)) {
            return 1;
        }
    }
    return 0;
}

/* Slot content -> slot id + 1: an MT_HASHTAB (hashtab.h) of ids, hashed and
 * compared through the slots array (the slot's `hash` is its content hash), so
 * an entry is 4 bytes.  GIL only.  Empty: 0.  Slots are never removed; the
 * table holds exactly `nslots` entries. */
typedef struct {
    PyCodeObject *code;
    uint64_t hash;
    uint64_t table_hash;
    Py_ssize_t table_len;
} slot_key_t;

static inline int slot_tab_used(const uint32_t *e)
{
    return *e != 0;
}

static inline size_t slot_tab_hash(slot_key_t k)
{
    return (size_t)k.hash;
}

static inline size_t slot_tab_home(const uint32_t *e)
{
    return (size_t)slots[*e - 1].hash;
}

static inline int slot_tab_same(const uint32_t *e, slot_key_t k)
{
    slot_t *s = &slots[*e - 1];
    return s->hash == k.hash && s->first_line == k.code->co_firstlineno &&
           s->table_hash == k.table_hash && s->table_len == k.table_len &&
           same_chars(k.code->co_filename, s->file, s->file_len, s->file_kind) &&
           same_chars(k.code->co_qualname, s->name, s->name_len, s->name_kind);
}

MT_HASHTAB(slot_tab, uint32_t, slot_key_t, 1024, calloc, free)

static slot_tab_t slot_tab;

/* The slot of code with this content, made on first use; NO_SLOT if out of
 * memory. */
static uint32_t slot_by_content(PyCodeObject *code)
{
    PyObject *file = code->co_filename, *name = code->co_qualname;
    Py_ssize_t table_len;
    uint64_t table_hash = bytes_hash(code->co_linetable, &table_len);
    uint64_t h = mix(mix(mix(str_hash(file), str_hash(name)), (uint64_t)code->co_firstlineno),
                     table_hash);
    if (slot_tab_room(&slot_tab) < 0) {
        return NO_SLOT;
    }
    size_t i = slot_tab_find(&slot_tab, (slot_key_t){code, h, table_hash, table_len});
    if (slot_tab_used(&slot_tab.tab[i])) {
        return slot_tab.tab[i] - 1;
    }
    if (nslots == slots_cap) {
        uint32_t cap = slots_cap ? slots_cap * 2 : 256;
        slot_t *grown = realloc(slots, sizeof(slot_t) * cap);
        if (grown == NULL) {
            return NO_SLOT;
        }
        slots = grown;
        slots_cap = cap;
    }
    slot_t *s = &slots[nslots];
    memset(s, 0, sizeof(*s));
    s->hash = h;
    s->first_line = code->co_firstlineno;
    s->table_hash = table_hash;
    s->table_len = table_len;
    s->file = copy_chars(file, &s->file_len, &s->file_kind);
    s->name = copy_chars(name, &s->name_len, &s->name_kind);
    if (s->file == NULL || s->name == NULL) {
        free(s->file);
        free(s->name);
        return NO_SLOT;
    }
    s->hidden = is_hidden(file);
    slot_tab_put_at(&slot_tab, i, ++nslots);
    return nslots - 1;
}

/* co_extra's layout (codeobject.c's _PyCodeObjectExtra, the same from 3.6 to
 * 3.13), read inline: the allocation hooks look it up for every block. */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} mt_code_extra_t;

static inline void *code_tag(PyCodeObject *code)
{
    mt_code_extra_t *e = (mt_code_extra_t *)code->co_extra;
    return (e != NULL && extra_index >= 0 && extra_index < e->ce_size) ? e->ce_extras[extra_index]
                                                                        : NULL;
}

static inline void *make_tag(uint32_t slot)
{
    return (void *)(((uintptr_t)rec_generation << 32) | (uintptr_t)(slot + 1));
}

/* The slot of a code object: cached in the code's co_extra, tagged with the
 * recording's generation so a later recording does not trust an old value. */
static inline uint32_t slot_of(PyCodeObject *code)
{
    uintptr_t v = (uintptr_t)code_tag(code);
    if (MT_LIKELY(v != 0 && (unsigned)(v >> 32) == rec_generation)) {
        return (uint32_t)(v & 0xFFFFFFFFu) - 1;
    }
    uint32_t slot = slot_by_content(code);
    if (slot != NO_SLOT && extra_index >= 0 && mt_heap_on_top()) {
        /* The first extra a code object gets is an allocation: memtrim's, not
         * the program's, so the hooks must not count it.  Under another hook
         * (tracemalloc) that allocation could deadlock (mt_heap_on_top): the
         * slot is then found by content each time. */
        mt_heap_guard_enter();
        if (MT_CODE_SET_EXTRA((PyObject *)code, extra_index, make_tag(slot)) < 0) {
            PyErr_Clear();
        }
        mt_heap_guard_exit();
    }
    return slot;
}

/* ------------------------------------------------------------------ nodes */

static inline size_t node_hash(int32_t parent, uint32_t slot, int32_t lasti)
{
    uint64_t h = (uint64_t)(uint32_t)parent * 0x9E3779B97F4A7C15ull;
    h ^= (uint64_t)slot * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)(uint32_t)lasti * 0x165667B19E3779F9ull;
    return (size_t)(h ^ (h >> 29));
}

/* (parent, slot, lasti) -> node id: an MT_HASHTAB (hashtab.h) of ids, hashed
 * and compared through the nodes array, so an entry is 4 bytes (the tree may
 * hold a million nodes).  GIL only.  Empty: 0 (node 0, "not attributed", is
 * never a child).  Nodes are never removed. */
typedef struct {
    int32_t parent;
    uint32_t slot;
    int32_t lasti;
} node_key_t;

static inline int node_index_used(const uint32_t *e)
{
    return *e != 0;
}

static inline size_t node_index_hash(node_key_t k)
{
    return node_hash(k.parent, k.slot, k.lasti);
}

static inline size_t node_index_home(const uint32_t *e)
{
    node_t *n = &nodes[*e];
    return node_hash(n->parent, n->slot, n->lasti);
}

static inline int node_index_same(const uint32_t *e, node_key_t k)
{
    node_t *n = &nodes[*e];
    return n->slot == k.slot && n->lasti == k.lasti && n->parent == k.parent;
}

MT_HASHTAB(node_index, uint32_t, node_key_t, 4096, calloc, free)

static node_index_t node_index;

static uint32_t new_node(int32_t parent, uint32_t slot, int32_t lasti, int32_t line)
{
    if (nnodes == nodes_cap) {
        uint32_t cap = nodes_cap ? nodes_cap * 2 : 1024;
        node_t *n = realloc(nodes, sizeof(node_t) * cap);
        if (n == NULL) {
            return 0;
        }
        nodes = n;
        stat_t *s = realloc(stats, sizeof(stat_t) * cap);
        if (s == NULL) {
            return 0;
        }
        stats = s;
        if (!rec_exact) {
            stat_t *z = realloc(sampled, sizeof(stat_t) * cap);
            if (z == NULL) {
                return 0;
            }
            sampled = z;
        }
        nodes_cap = cap;
    }
    uint32_t id = nnodes++;
    nodes[id] = (node_t){parent, lasti, slot, line};
    memset(&stats[id], 0, sizeof(stat_t));
    if (sampled != NULL) {
        memset(&sampled[id], 0, sizeof(stat_t));
    }
    return id;
}

/* Bounds on the call tree.  Recursive code can make the number of distinct
 * stacks grow exponentially (a recursive generator over a binary tree has a
 * stack per path); past SOFT_NODES a new stack keeps its known outer frames and
 * its leaf only, with a "gap" node (GAP_SLOT) between them, so per-line figures
 * stay exact and the reports can say which bytes have stacks with frames left
 * out (never an outer frame shown calling a line it did not call); past
 * HARD_NODES (a million distinct lines: 128 MB of tables) a block is charged
 * to the deepest frame already known, and counted in tree_full_blocks. */
#define SOFT_NODES 200000u
#define HARD_NODES 1048576u

/* The child of `parent` for frame (code, lasti) of `slot`, created on first
 * use unless the tree holds `limit` nodes already (then returns 0). */
static uint32_t find_child(uint32_t parent, uint32_t slot, PyCodeObject *code, int32_t lasti,
                           uint32_t limit);

/* The gap node under `parent` (frames left out below it), made on first use
 * unless the tree is at HARD_NODES: then `parent` itself. */
static uint32_t gap_child(uint32_t parent)
{
    if (node_index_room(&node_index) < 0) {
        return parent;
    }
    node_key_t key = {(int32_t)parent, GAP_SLOT, 0};
    size_t at = node_index_find(&node_index, key);
    if (node_index_used(&node_index.tab[at])) {
        return node_index.tab[at];
    }
    if (nnodes >= HARD_NODES) {
        return parent;
    }
    uint32_t id = new_node((int32_t)parent, GAP_SLOT, 0, 0);
    if (id == 0) {
        return parent;
    }
    node_index_put_at(&node_index, at, id);
    return id;
}

static uint32_t child(uint32_t parent, uint32_t slot, PyCodeObject *code, int32_t lasti)
{
    uint32_t id = slot == NO_SLOT ? 0 : find_child(parent, slot, code, lasti, HARD_NODES);
    if (id == 0) {
        tree_full_blocks++;
        return parent;
    }
    return id;
}

/* (slot, instruction) -> line: PyCode_Addr2Line walks the whole line table,
 * and in exact mode one instruction appears under many parents.  An
 * MT_HASHTAB (hashtab.h); GIL only; entries are never removed. */
typedef struct {
    uint64_t key; /* (slot + 1) << 32 | instruction; 0 = empty */
    int32_t line;
} line_entry_t;

static inline int line_tab_used(const line_entry_t *e)
{
    return e->key != 0;
}

static inline size_t line_tab_hash(uint64_t key)
{
    return (size_t)(key * 0x9E3779B97F4A7C15ull >> 20);
}

static inline size_t line_tab_home(const line_entry_t *e)
{
    return line_tab_hash(e->key);
}

static inline int line_tab_same(const line_entry_t *e, uint64_t key)
{
    return e->key == key;
}

MT_HASHTAB(line_tab, line_entry_t, uint64_t, 4096, calloc, free)

static line_tab_t line_tab;

/* Code longer than this (code units) gets a table of its lines per slot. */
#define LONG_CODE_UNITS 512

/* Long code: the line of every code unit, in one pass over the line table.
 *
 * Why: PyCode_Addr2Line scans the line table from its start, so in a module
 * of N statements each new instruction costs O(N) and the run O(N^2) (a
 * generated 40k-statement module: 22 s instead of 0.4 s).  The line table is
 * a run of address ranges in address order: walking it once with one
 * PyCodeAddressRange cursor (_PyCode_CheckLineNumber, exported from 3.10 to
 * 3.13, moves it forward) gives every unit its line in O(N) in all.  The
 * cursor starts as CPython's _PyLineTable_InitAddressRange sets it (not
 * exported).  Slots share content, line table included, so the table is the
 * slot's.  GIL only.  Returns NULL where the line is to be worked out by
 * PyCode_Addr2Line (short code, out of memory, a CPython without the cursor). */
static const int32_t *slot_lines(uint32_t slot, PyCodeObject *code)
{
#if PY_VERSION_HEX < 0x030E0000
    Py_ssize_t n = Py_SIZE(code);
    slot_t *s = &slots[slot];
    if (s->unit_line != NULL || s->nunits < 0) {
        return s->nunits == n ? s->unit_line : NULL;
    }
    if (n <= LONG_CODE_UNITS || n > INT32_MAX / (Py_ssize_t)sizeof(_Py_CODEUNIT)) {
        return NULL;
    }
    int32_t *lines = malloc(sizeof(int32_t) * (size_t)n);
    if (lines == NULL) {
        s->nunits = -1;
        return NULL;
    }
    PyCodeAddressRange range;
    range.opaque.lo_next = (const uint8_t *)PyBytes_AS_STRING(code->co_linetable);
    range.opaque.limit = range.opaque.lo_next + PyBytes_GET_SIZE(code->co_linetable);
    range.ar_start = -1;
    range.ar_end = 0;
    range.opaque.computed_line = code->co_firstlineno;
    range.ar_line = -1;
    for (Py_ssize_t u = 0; u < n; u++) {
        int line = _PyCode_CheckLineNumber((int)(u * (Py_ssize_t)sizeof(_Py_CODEUNIT)), &range);
        lines[u] = line < 0 ? code->co_firstlineno : line;
    }
    s->unit_line = lines;
    s->nunits = (int32_t)n;
    return lines;
#else
    (void)slot;
    (void)code;
    return NULL;
#endif
}

/* The line of an instruction; PyCode_Addr2Line allocates nothing. */
static int32_t line_of(uint32_t slot, PyCodeObject *code, int32_t lasti)
{
    const int32_t *lines = slot_lines(slot, code);
    if (lines != NULL) {
        return lasti >= 0 && lasti < slots[slot].nunits ? lines[lasti] : code->co_firstlineno;
    }
    uint64_t key = ((uint64_t)(slot + 1) << 32) | (uint32_t)lasti;
    int room = line_tab_room(&line_tab) == 0; /* out of memory: not cached */
    size_t i = 0;
    if (room) {
        i = line_tab_find(&line_tab, key);
        if (line_tab_used(&line_tab.tab[i])) {
            return line_tab.tab[i].line;
        }
    }
    int line = PyCode_Addr2Line(code, lasti < 0 ? -1 : lasti * (int)sizeof(_Py_CODEUNIT));
    if (line < 0) {
        line = code->co_firstlineno;
    }
    if (room) { /* nothing above touched the table: slot i is still free */
        line_tab_put_at(&line_tab, i, (line_entry_t){key, line});
    }
    return line;
}

static uint32_t find_child(uint32_t parent, uint32_t slot, PyCodeObject *code, int32_t lasti,
                           uint32_t limit)
{
    if (node_index_room(&node_index) < 0) {
        return 0;
    }
    size_t i = node_index_find(&node_index, (node_key_t){(int32_t)parent, slot, lasti});
    if (node_index_used(&node_index.tab[i])) {
        return node_index.tab[i];
    }
    if (nnodes >= limit) {
        return 0;
    }
    /* new_node may move `nodes`, not the index: slot i is still free */
    uint32_t id = new_node((int32_t)parent, slot, lasti, line_of(slot, code, lasti));
    if (id == 0) {
        return 0;
    }
    node_index_put_at(&node_index, i, id);
    return id;
}

/* ---------------------------------------------------------------- threads */

static rec_thread_t *enter_thread(void)
{
    rec_thread_t *t = t_rec;
    if (t == NULL) {
        t = t_rec = calloc(1, sizeof(rec_thread_t));
        if (t == NULL) {
            return NULL;
        }
    }
    if (nthreads == threads_cap) {
        uint32_t cap = threads_cap ? threads_cap * 2 : 16;
        unsigned long *grown = realloc(thread_idents, sizeof(unsigned long) * cap);
        if (grown == NULL) {
            return NULL;
        }
        thread_idents = grown;
        threads_cap = cap;
    }
    uint32_t index = nthreads++;
    thread_idents[index] = PyThread_get_thread_ident();
    t->root = new_node(-1, NO_SLOT, (int32_t)index, 0);
    t->generation = rec_generation;
    t->stack_depth = 0;
    memset(t->leaves, 0, sizeof(t->leaves));
    t->countdown = 0;
    /* The sampling stream of a thread depends only on the recording's seed and
     * the thread's order of arrival: a recording can be replayed with the same
     * samples (splitmix64 of the two, never 0, which xorshift cannot leave). */
    uint64_t z = rec_seed + 0x9E3779B97F4A7C15ull * (index + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    t->rng = z ? z : 1;
    return t;
}

/* ----------------------------------------------------------------- stacks */

static uint32_t stack_node(rec_thread_t *t, PyThreadState *ts)
{
    mt_frame_t **frames = t->frames;
    const void **ips = t->ips;
    const void *inner = NULL;
    int n = 0;
    /* Direct recursion is folded: of consecutive frames running the same code
     * only the innermost is kept.  A recursive builder over a tree otherwise
     * makes a distinct stack per node of the tree (and a call tree as big as
     * the data), and a deep recursion would push its callers out of the
     * MAX_DEPTH frames kept. */
    for (mt_frame_t *f = mt_current_frame(ts); f != NULL && n < MAX_DEPTH; f = f->previous) {
        const void *code = mt_frame_executable(f);
        if (!mt_frame_is_shim(f) && code != inner) {
            inner = code;
            frames[n] = f;
            ips[n] = mt_frame_ip(f);
            n++;
        }
    }
    /* frames are innermost first; the cache is root first */
    stack_entry_t *stack = t->stack;
    int k = 0;
    while (k < n && k < t->stack_depth && stack[k].frame == frames[n - 1 - k] &&
           stack[k].ip == ips[n - 1 - k]) {
        k++;
    }
    uint32_t node = k ? stack[k - 1].node : t->root;
    for (int i = k; i < n; i++) {
        mt_frame_t *f = frames[n - 1 - i];
        PyCodeObject *code = mt_frame_code(f);
        if (code != NULL) { /* frames still being set up pass through */
            uint32_t slot = slot_of(code);
            int lasti = mt_frame_lasti(f);
            uint32_t next = slot == NO_SLOT ? 0 : find_child(node, slot, code, lasti, SOFT_NODES);
            if (next == 0) {
                /* the tree is full: keep the leaf under the deepest known
                 * frame, with a gap node between (the frames left out), and
                 * do not cache this truncated stack */
                t->stack_depth = i;
                PyCodeObject *leaf = NULL;
                int j = 0;
                for (; j < n && (leaf = mt_frame_code(frames[j])) == NULL; j++) {
                }
                if (leaf == NULL) {
                    return node;
                }
                return child(gap_child(node), slot_of(leaf), leaf, mt_frame_lasti(frames[j]));
            }
            node = next;
        }
        stack[i] = (stack_entry_t){f, ips[n - 1 - i], node};
    }
    t->stack_depth = n;
    return node;
}

static inline size_t leaf_hash(PyCodeObject *code, int lasti)
{
    uintptr_t h = ((uintptr_t)code >> 4) ^ ((uintptr_t)(unsigned)lasti * 0x9E3779B1u);
    return (size_t)(h ^ (h >> 8)) & (LEAF_CACHE - 1);
}

/* Default mode: the innermost frame that is the program's (memtrim's hidden
 * frames pass the block on to their caller). */
static uint32_t leaf_node(rec_thread_t *t, PyThreadState *ts)
{
    for (mt_frame_t *f = mt_current_frame(ts); f != NULL; f = f->previous) {
        PyCodeObject *code = mt_frame_code(f);
        if (code == NULL) {
            continue;
        }
        int lasti = mt_frame_lasti(f);
        cache_t *e = &t->leaves[leaf_hash(code, lasti)];
        void *tag = code_tag(code);
        if (MT_LIKELY(e->code == code && e->lasti == lasti && e->tag == tag && tag != NULL)) {
            return e->node;
        }
        uint32_t slot = slot_of(code);
        if (slot != NO_SLOT && slots[slot].hidden) {
            continue;
        }
        uint32_t node = child(t->root, slot, code, lasti);
        *e = (cache_t){code, code_tag(code), lasti, node};
        return node;
    }
    return t->root;
}

/* --------------------------------------------------------------- sampling */

/* Sampled blocks, to find their stack again on free: address -> (node,
 * weight).  An MT_HASHTAB (hashtab.h), removal by backward shift as blocks
 * are freed.  GIL only: frees made without the GIL reach it through the
 * queue, drained with the GIL.  Empty: key 0. */
typedef struct {
    uintptr_t key;
    uint32_t node;
    int64_t weight;
} sample_entry_t;

static inline int samples_used(const sample_entry_t *e)
{
    return e->key != 0;
}

static inline size_t samples_hash(uintptr_t a)
{
    return (size_t)((a >> 4) * 0x9E3779B97F4A7C15ull >> 7);
}

static inline size_t samples_home(const sample_entry_t *e)
{
    return samples_hash(e->key);
}

static inline int samples_same(const sample_entry_t *e, uintptr_t key)
{
    return e->key == key;
}

MT_HASHTAB(samples, sample_entry_t, uintptr_t, 1024, calloc, free)

static samples_t samples;

static int samples_put(uintptr_t key, uint32_t node, int64_t weight)
{
    if (samples_room(&samples) < 0) {
        return -1;
    }
    samples_put_at(&samples, samples_find(&samples, key), (sample_entry_t){key, node, weight});
    return 0;
}

static int samples_take(uintptr_t key, sample_entry_t *out)
{
    if (samples.cap == 0) {
        return 0;
    }
    size_t i = samples_find(&samples, key);
    if (!samples_used(&samples.tab[i])) {
        return 0;
    }
    *out = samples.tab[i];
    samples_remove_at(&samples, i);
    return 1;
}

static inline double next_uniform(rec_thread_t *t)
{
    t->rng ^= t->rng << 13; /* xorshift64 */
    t->rng ^= t->rng >> 7;
    t->rng ^= t->rng << 17;
    return ((double)(t->rng >> 11) + 0.5) / 9007199254740992.0;
}

/* Bytes until the next sampled byte: exponential with mean sample_bytes. */
static inline int64_t next_countdown(rec_thread_t *t)
{
    return (int64_t)(-log(next_uniform(t)) * (double)rec_sample_bytes) + 1;
}

/* The C frames of this native allocation, as nodes under its Python node. */
static uint32_t cframes_below(uint32_t node)
{
    uintptr_t frames[MT_CFRAMES_MAX];
    int n = mt_cframes_capture(frames, MT_CFRAMES_MAX);
    for (int i = 0; i < n; i++) {
        uint32_t index = mt_cframes_index(frames[i]);
        if (index == UINT32_MAX || node_index_room(&node_index) < 0) {
            break;
        }
        node_key_t key = {(int32_t)node, NATIVE_SLOT, (int32_t)index};
        size_t at = node_index_find(&node_index, key);
        uint32_t child = node_index_used(&node_index.tab[at]) ? node_index.tab[at] : 0;
        if (child == 0) {
            if (nnodes >= SOFT_NODES || (child = new_node((int32_t)node, NATIVE_SLOT,
                                                          (int32_t)index, 0)) == 0) {
                break;
            }
            node_index_put_at(&node_index, at, child);
        }
        node = child;
    }
    return node;
}

static void sample(rec_thread_t *t, PyThreadState *ts, void *ptr, size_t size, int native)
{
    /* a block of `size` bytes is sampled with probability 1 - exp(-size/R);
     * weighting it by the inverse keeps the estimate unbiased */
    double p = 1.0 - exp(-(double)size / (double)rec_sample_bytes);
    int64_t weight = size ? (int64_t)((double)size / p + 0.5) : 0;
    uint32_t node = stack_node(t, ts);
    if (native && rec_cframes) {
        node = cframes_below(node);
    }
    stat_add(&sampled[node], weight, native);
    samples_put((uintptr_t)ptr, node, weight);
}

/* ------------------------------------------- lines of threads without the GIL
 *
 * A thread that released the GIL around a C call (ctypes, sqlite, zlib, a
 * Pillow or lxml routine) still has its Python frames: they cannot change
 * until it takes the GIL back, so it may read its own innermost one.  Its
 * blocks are charged to that line, but the tree belongs to the GIL, so they
 * go to a "pending leaf" under queue_lock, one per (thread, code slot,
 * instruction), and become part of the leaf node of the same key when the
 * tree is read (mt_tree_snapshot).  The slot comes from the code's co_extra
 * cache: code this recording never saw with the GIL stays "allocated without
 * the GIL".  (Reading co_extra without the GIL races only with another
 * thread giving the same code object its first extra at that moment; the
 * generation check then rejects what it read.) */
typedef struct {
    uint32_t root, slot;
    int32_t lasti, line;
    stat_t st;
} pending_t;

static pending_t *pending; /* queue_lock */
static uint32_t npending, pending_cap;

static int32_t code_line(PyCodeObject *code, int32_t lasti)
{
    int line = PyCode_Addr2Line(code, lasti < 0 ? -1 : lasti * (int)sizeof(_Py_CODEUNIT));
    return line < 0 ? code->co_firstlineno : line;
}

/* queue_lock held.  `code` is alive (the calling thread runs it): the line is
 * only worked out for a new entry, since it costs a scan of the line table. */
static int32_t pending_find(uint32_t root, uint32_t slot, int32_t lasti, PyCodeObject *code)
{
    for (uint32_t k = npending; k-- > 0;) { /* few: the lines that call C with the GIL released */
        pending_t *p = &pending[k];
        if (p->root == root && p->slot == slot && p->lasti == lasti) {
            return (int32_t)k;
        }
    }
    if (npending == MAX_PENDING) {
        return -1;
    }
    if (npending == pending_cap) {
        uint32_t cap = pending_cap ? pending_cap * 2 : 64;
        pending_t *grown = realloc(pending, sizeof(pending_t) * cap);
        if (grown == NULL) {
            return -1;
        }
        pending = grown;
        pending_cap = cap;
    }
    pending[npending] = (pending_t){root, slot, lasti, code_line(code, lasti), {0}};
    return (int32_t)npending++;
}

/* Threads that never ran Python (a BLAS or OpenMP worker, a library's own
 * thread): their blocks have no line; they are counted per thread, under its
 * name (pthread_getname_np: no allocation), under queue_lock.  A thread id
 * reused by a later thread shares its entry. */
typedef struct {
    pthread_t tid;
    char name[16];
    stat_t st;
    uint32_t origin_slot; /* the Python line that started the thread, or NO_SLOT */
    int32_t origin_line;
} foreign_t;

/* The Python line that called pthread_create for this thread (native.c's
 * pthread_create hook hands it over), if a recording knew it. */
static MT_TLS struct {
    unsigned generation;
    uint32_t slot;
    int32_t line;
} t_origin;

static foreign_t *foreign; /* queue_lock */
static uint32_t nforeign, foreign_cap;

static int32_t foreign_find(void)
{
    pthread_t self = pthread_self();
    for (uint32_t k = 0; k < nforeign; k++) {
        if (pthread_equal(foreign[k].tid, self)) {
            return (int32_t)k;
        }
    }
    if (nforeign == MAX_FOREIGN) {
        return -1;
    }
    if (nforeign == foreign_cap) {
        uint32_t cap = foreign_cap ? foreign_cap * 2 : 16;
        foreign_t *grown = realloc(foreign, sizeof(foreign_t) * cap);
        if (grown == NULL) {
            return -1;
        }
        foreign = grown;
        foreign_cap = cap;
    }
    foreign_t *f = &foreign[nforeign];
    memset(f, 0, sizeof(*f));
    f->tid = self;
    f->origin_slot = NO_SLOT;
    if (t_origin.generation == rec_generation && t_origin.slot != NO_SLOT) {
        f->origin_slot = t_origin.slot;
        f->origin_line = t_origin.line;
    }
    if (pthread_getname_np(self, f->name, sizeof(f->name)) != 0) {
        f->name[0] = '\0';
    }
    return (int32_t)nforeign++;
}

/* No GIL: this thread's innermost Python code, as (code, slot, lasti). */
static int own_line(rec_thread_t *t, PyCodeObject **where, uint32_t *slot, int32_t *lasti)
{
    if (t == NULL || t->generation != rec_generation) {
        return 0;
    }
    PyThreadState *ts = PyGILState_GetThisThreadState();
    if (ts == NULL) {
        return 0;
    }
    for (mt_frame_t *f = mt_current_frame(ts); f != NULL; f = f->previous) {
        PyCodeObject *code = mt_frame_code(f);
        if (code == NULL) {
            continue;
        }
        uintptr_t v = (uintptr_t)code_tag(code);
        if (v == 0 || (unsigned)(v >> 32) != rec_generation) {
            return 0;
        }
        *where = code;
        *slot = (uint32_t)(v & 0xFFFFFFFFu) - 1;
        *lasti = mt_frame_lasti(f);
        return 1;
    }
    return 0;
}

/* Any thread, GIL or not (native.c's pthread_create hook): the calling
 * thread's current Python line, to be the origin of the thread it starts. */
int mt_tree_origin_here(mt_origin_t *out)
{
    PyCodeObject *code = NULL;
    uint32_t slot;
    int32_t lasti;
    if (!mt_tree_on || !own_line(t_rec, &code, &slot, &lasti)) {
        return 0;
    }
    int line = PyCode_Addr2Line(code, lasti < 0 ? -1 : lasti * (int)sizeof(_Py_CODEUNIT));
    out->generation = rec_generation;
    out->slot = slot;
    out->line = line < 0 ? code->co_firstlineno : line;
    return 1;
}

/* In the new thread, before its start routine runs. */
void mt_tree_origin_set(const mt_origin_t *origin)
{
    t_origin.generation = origin->generation;
    t_origin.slot = origin->slot;
    t_origin.line = origin->line;
}

/* GIL held (snapshot): the node of a pending leaf, made if needed. */
static uint32_t pending_node(const pending_t *p)
{
    if (node_index_room(&node_index) < 0) {
        return 0;
    }
    size_t i = node_index_find(&node_index, (node_key_t){(int32_t)p->root, p->slot, p->lasti});
    if (node_index_used(&node_index.tab[i])) {
        return node_index.tab[i];
    }
    uint32_t id = new_node((int32_t)p->root, p->slot, p->lasti, p->line);
    if (id != 0) {
        node_index_put_at(&node_index, i, id);
    }
    return id;
}

/* ------------------------------------------------------ the hooks' calls */

typedef struct {
    void *ptr;
    uint32_t id;
    int native;
    size_t size;
} queued_t;

/* queue_lock protects the queue of frees made without the GIL and nogil_stat. */
static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static queued_t *queue;
static size_t queue_len, queue_cap;
static volatile int queue_pending;

static void drain_queue(void);

/* The listener's callbacks (listeners.h). */
static uint32_t rec_alloc(void *ptr, size_t size, int native)
{
    if (MT_UNLIKELY(queue_pending)) {
        drain_queue();
    }
    rec_thread_t *t = t_rec;
    if (MT_UNLIKELY(t == NULL || t->generation != rec_generation)) {
        if ((t = enter_thread()) == NULL) {
            return 0;
        }
    }
    PyThreadState *ts = PyThreadState_Get();
    uint32_t node = rec_exact ? stack_node(t, ts) : leaf_node(t, ts);
    stat_add(&stats[node], (int64_t)size, native);
    if (rec_sample_bytes > 0) {
        if (t->countdown <= 0) {
            t->countdown = next_countdown(t);
        }
        t->countdown -= (int64_t)size;
        if (t->countdown <= 0) {
            sample(t, ts, ptr, size, native);
            return node | SAMPLED_BIT;
        }
    }
    return node;
}

static uint32_t rec_alloc_nogil(size_t size, int native)
{
    PyCodeObject *code = NULL;
    uint32_t slot = 0;
    int32_t lasti = 0;
    int known = own_line(t_rec, &code, &slot, &lasti);
    int pythonless = !known && PyGILState_GetThisThreadState() == NULL;
    uint32_t id = NOGIL_ID;
    pthread_mutex_lock(&queue_lock);
    int32_t k = known ? pending_find(t_rec->root, slot, lasti, code) : -1;
    int32_t f = pythonless ? foreign_find() : -1;
    if (k >= 0) {
        stat_add(&pending[k].st, (int64_t)size, native);
        id = PENDING_BASE + (uint32_t)k;
    }
    else if (f >= 0) {
        stat_add(&foreign[f].st, (int64_t)size, native);
        id = FOREIGN_BASE + (uint32_t)f;
    }
    else {
        stat_add(&nogil_stat, (int64_t)size, native);
    }
    pthread_mutex_unlock(&queue_lock);
    return id;
}

/* A block of the no-GIL stat or of a pending leaf went away (any thread). */
static void nogil_sub(uint32_t id, size_t size, int native)
{
    pthread_mutex_lock(&queue_lock);
    if (id == NOGIL_ID) {
        stat_sub(&nogil_stat, (int64_t)size, native);
    }
    else if (id >= PENDING_BASE && id - PENDING_BASE < npending) {
        stat_sub(&pending[id - PENDING_BASE].st, (int64_t)size, native);
    }
    else if (id >= FOREIGN_BASE && id - FOREIGN_BASE < nforeign) {
        stat_sub(&foreign[id - FOREIGN_BASE].st, (int64_t)size, native);
    }
    pthread_mutex_unlock(&queue_lock);
}

static void rec_free(void *ptr, uint32_t id, size_t size, int native)
{
    if (MT_UNLIKELY(queue_pending)) {
        drain_queue();
    }
    if (MT_UNLIKELY(id >= LOWEST_NOGIL_ID && id <= NOGIL_ID)) {
        nogil_sub(id, size, native);
        return;
    }
    uint32_t node = id & ~SAMPLED_BIT;
    if (node == 0 || node >= nnodes) {
        return;
    }
    stat_sub(&stats[node], (int64_t)size, native);
    if (id & SAMPLED_BIT) {
        sample_entry_t e;
        if (samples_take((uintptr_t)ptr, &e) && e.node < nnodes) {
            stat_sub(&sampled[e.node], e.weight, native);
        }
    }
}

static void rec_free_nogil(void *ptr, uint32_t id, size_t size, int native)
{
    if (id >= LOWEST_NOGIL_ID && id <= NOGIL_ID) {
        nogil_sub(id, size, native);
        return;
    }
    pthread_mutex_lock(&queue_lock);
    if (queue_len == queue_cap) {
        size_t cap = queue_cap ? queue_cap * 2 : 256;
        queued_t *grown = realloc(queue, sizeof(queued_t) * cap);
        if (grown == NULL) {
            pthread_mutex_unlock(&queue_lock);
            return; /* lost: the node keeps these bytes as live */
        }
        queue = grown;
        queue_cap = cap;
    }
    queue[queue_len++] = (queued_t){ptr, id, native, size};
    queue_pending = 1;
    pthread_mutex_unlock(&queue_lock);
}

/* ------------------------------------------- objects from CPython's free lists
 *
 * 3.13+.  CPython keeps freed tuples (and floats, lists, dicts, ...) on free
 * lists and hands them out again without an allocation: the hooks never see
 * the reuse, so the block stayed charged to the line that first allocated it,
 * not to the line that made the live object (a line that kept nothing showed
 * as a leak; the line that keeps them showed less).  CPython's reference
 * tracer (PyRefTracer_SetTracer, 3.13) is called for every new object: a
 * tuple whose block is not the thread's latest allocation came from the free
 * list, and its block is charged to the current line from then on: its bytes
 * leave the old line's live figures and join the new line's, without counting
 * as allocated again.  Only when no other tool has set a tracer (there is one
 * per runtime). */
#if PY_VERSION_HEX >= 0x030D0000
static int ref_tracer_set;

static uint32_t move_block(void *ptr, uint32_t id, int64_t size)
{
    if (id >= LOWEST_NOGIL_ID && id <= NOGIL_ID) {
        nogil_sub(id, (size_t)size, 0);
    }
    else {
        uint32_t old = id & ~SAMPLED_BIT;
        if (old != 0 && old < nnodes) {
            stat_sub(&stats[old], size, 0);
        }
        if (id & SAMPLED_BIT) { /* its sampled stack is the old line's: dropped */
            sample_entry_t e;
            if (samples_take((uintptr_t)ptr, &e) && e.node < nnodes) {
                stat_sub(&sampled[e.node], e.weight, 0);
            }
        }
    }
    rec_thread_t *t = t_rec;
    if (t == NULL || t->generation != rec_generation) {
        if ((t = enter_thread()) == NULL) {
            return 0;
        }
    }
    PyThreadState *ts = PyThreadState_Get();
    uint32_t node = rec_exact ? stack_node(t, ts) : leaf_node(t, ts);
    stat_t *s = &stats[node];
    stat_touch(s);
    s->live_b += size;
    s->live_c += 1;
    if (s->live_b > s->hwm_b) {
        s->hwm_b = s->live_b;
    }
    return node;
}

static int on_ref(PyObject *op, PyRefTracerEvent event, void *data)
{
    (void)data;
    if (event != PyRefTracer_CREATE || !mt_tree_on || mt_own || mt_guard) {
        return 0;
    }
    /* Tuples only: theirs is the one free list big enough to matter (up to
     * 2,000 per size, for 20 sizes: megabytes); the float, list and dict
     * lists hold at most 100 or 80 objects (a few KB), and floats are reused
     * at nearly every float operation: moving them cost 15-20 % of the run. */
    if (Py_TYPE(op) != &PyTuple_Type) {
        return 0;
    }
    /* a tuple's block begins with its GC header: two words (PyGC_Head, not
     * public in 3.13) */
    char *block = (char *)op - 2 * sizeof(uintptr_t);
    if ((void *)block == mt_thread_last_ptr) {
        return 0; /* just allocated: charged to this line already */
    }
    if (!tree_enter()) {
        return 0;
    }
    if (queue_pending) {
        drain_queue();
    }
    mt_heap_reattribute(block, move_block);
    tree_leave();
    return 0;
}

static void ref_tracer_start(void)
{
    void *data = NULL;
    if (PyRefTracer_GetTracer(&data) == NULL) {
        ref_tracer_set = PyRefTracer_SetTracer(on_ref, NULL) == 0;
    }
}

/* Is memtrim's reference tracer the one set?  (For the tests: tracemalloc
 * sets one on 3.13 and never removes it.) */
int mt_tree_reftracer_ours(void)
{
    void *data = NULL;
    return PyRefTracer_GetTracer(&data) == on_ref;
}

static void ref_tracer_stop(void)
{
    void *data = NULL;
    if (ref_tracer_set && PyRefTracer_GetTracer(&data) == on_ref) {
        PyRefTracer_SetTracer(NULL, NULL);
    }
    ref_tracer_set = 0;
}
#else
static void ref_tracer_start(void) {}
static void ref_tracer_stop(void) {}
int mt_tree_reftracer_ours(void)
{
    return 0;
}
#endif


static void drain_queue(void)
{
    pthread_mutex_lock(&queue_lock);
    size_t n = queue_len;
    queue_len = 0;
    queue_pending = 0;
    for (size_t i = 0; i < n; i++) {
        queued_t q = queue[i];
        uint32_t node = q.id & ~SAMPLED_BIT;
        if (node != 0 && node < nnodes) {
            stat_sub(&stats[node], (int64_t)q.size, q.native);
        }
        if (q.id & SAMPLED_BIT) {
            sample_entry_t e;
            if (samples_take((uintptr_t)q.ptr, &e) && e.node < nnodes) {
                stat_sub(&sampled[e.node], e.weight, q.native);
            }
        }
    }
    pthread_mutex_unlock(&queue_lock);
}

/* ------------------------------------------------------------- lifecycle */

/* The GIL callbacks, through the freeze (a frozen tree charges nothing: a
 * block gets id 0, and its free is not heard). */
static uint32_t gil_alloc(void *ptr, size_t size, int native)
{
    if (!tree_enter()) {
        return 0;
    }
    uint32_t id = rec_alloc(ptr, size, native);
    tree_leave();
    return id;
}

static void gil_free(void *ptr, uint32_t id, size_t size, int native)
{
    if (tree_enter()) {
        rec_free(ptr, id, size, native);
        tree_leave();
    }
}

static void gil_new_peak(void)
{
    if (tree_enter()) {
        rec_new_peak();
        tree_leave();
    }
}

/* Attributing: the node id of each block is kept in the heap's id slot. */
static const mt_listener_t rec_listener = {
    .name = "the call tree",
    .attributes = 1,
    .on_alloc = gil_alloc,
    .on_free = gil_free,
    .on_alloc_nogil = rec_alloc_nogil,
    .on_free_nogil = rec_free_nogil,
    .on_new_peak = gil_new_peak,
};

static void clear_all(void)
{
    if (!tree_enter()) {
        return; /* frozen: the dump reads it, and the process is ending */
    }
    for (uint32_t i = 0; i < nslots; i++) {
        free(slots[i].file);
        free(slots[i].name);
        free(slots[i].unit_line);
    }
    free(slots);
    slot_tab_clear(&slot_tab);
    line_tab_clear(&line_tab);
    free(nodes);
    free(stats);
    free(sampled);
    node_index_clear(&node_index);
    samples_clear(&samples);
    free(thread_idents);

    slots = NULL;
    nslots = slots_cap = 0;
    nodes = NULL;
    stats = sampled = NULL;
    thread_idents = NULL;
    nnodes = nodes_cap = 0;
    nthreads = threads_cap = 0;
    tree_full_blocks = 0;
    trigger_at = 0;
    Py_CLEAR(trigger_cb);
    for (int i = 0; i < nhidden; i++) {
        Py_CLEAR(hidden_files[i]);
    }
    nhidden = 0;
    pthread_mutex_lock(&queue_lock);
    free(queue);
    queue = NULL;
    queue_len = queue_cap = 0;
    free(pending);
    pending = NULL;
    npending = pending_cap = 0;
    free(foreign);
    foreign = NULL;
    nforeign = foreign_cap = 0;
    mt_cframes_clear();
    queue_pending = 0;
    memset(&nogil_stat, 0, sizeof(nogil_stat));
    pthread_mutex_unlock(&queue_lock);
    tree_leave();
}

int mt_tree_running(void)
{
    return mt_tree_on;
}

int mt_tree_start(int exact, int64_t sample_bytes, PyObject *hidden, uint64_t seed,
                  int cframes)
{
    if (atomic_load(&frozen)) {
        PyErr_SetString(PyExc_RuntimeError, "the recording was frozen for the SIGTERM dump");
        return -1;
    }
    if (mt_tree_on) {
        /* the tree, the slots and the heap's id slot are process-wide: a
         * second recording would erase the first */
        PyErr_SetString(PyExc_RuntimeError,
                        "a recording is already running in this process; stop it first");
        return -1;
    }
    clear_all();
    if (extra_index < 0) {
        extra_index = MT_REQUEST_CODE_EXTRA(NULL);
    }
    rec_exact = exact;
    rec_cframes = cframes && !exact && sample_bytes > 0 && mt_cframes_init() == 0;
    rec_sample_bytes = exact ? 0 : sample_bytes;
    rec_seed = seed;
    rec_generation++;
    epoch = 1;
    if (hidden != NULL) {
        Py_ssize_t n = PySequence_Fast_GET_SIZE(hidden);
        for (Py_ssize_t i = 0; i < n && nhidden < MAX_HIDDEN; i++) {
            PyObject *item = PySequence_Fast_GET_ITEM(hidden, i);
            if (PyUnicode_Check(item)) {
                hidden_files[nhidden++] = Py_NewRef(item);
            }
        }
    }
    if (new_node(-1, NO_SLOT, -1, 0) != 0) { /* node 0: "not attributed" */
        clear_all();
        PyErr_NoMemory();
        return -1;
    }
    if (mt_listener_add(&rec_listener) < 0) {
        clear_all();
        return -1;
    }
    mt_tree_on = 1;
    ref_tracer_start();
    return 0;
}

void mt_tree_stop(void)
{
    if (!mt_tree_on) {
        return;
    }
    /* Unregistering takes nogil_lock: after it no thread is in a callback,
     * so the queue of no-GIL frees is final and can be applied. */
    ref_tracer_stop();
    mt_listener_remove(&rec_listener);
    mt_tree_on = 0;
    if (queue_pending && tree_enter()) {
        drain_queue();
        tree_leave();
    }
}

void mt_tree_fork_prepare(void)
{
    pthread_mutex_lock(&queue_lock);
}

void mt_tree_fork_parent(void)
{
    pthread_mutex_unlock(&queue_lock);
}

void mt_tree_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    queue_lock = fresh;
}

static PyObject *stat_tuple(stat_t *s)
{
    int at_peak = s->epoch == epoch; /* changed since the peak: saved values */
    return Py_BuildValue("(LLLLLLLLLL)", (long long)s->live_b, (long long)s->live_c,
                         (long long)s->total_b, (long long)s->total_c,
                         (long long)(at_peak ? s->peak_b : s->live_b),
                         (long long)(at_peak ? s->peak_c : s->live_c), (long long)s->nlive_b,
                         (long long)s->ntotal_b,
                         (long long)(at_peak ? s->npeak_b : s->nlive_b), (long long)s->hwm_b);
}

static PyObject *slot_tuple(slot_t *s)
{
    PyObject *file = PyUnicode_FromKindAndData(s->file_kind, s->file, s->file_len);
    PyObject *name = PyUnicode_FromKindAndData(s->name_kind, s->name, s->name_len);
    PyObject *out = (file && name) ? Py_BuildValue("(OOi)", file, name, s->first_line) : NULL;
    Py_XDECREF(file);
    Py_XDECREF(name);
    return out;
}

/* Plain data, after mt_tree_stop():
 *   "nodes": [(parent, slot, line)]   slot -1 for a thread root (then `line`
 *            is the thread's index) and for node 0, "not attributed"; -2 for
 *            a C frame (`line`: its cframes index); -3 for a gap: frames
 *            left out because the tree was full;
 *   "slots": [(filename, qualname, first line)];
 *   "stats", "sampled" (or None): a tuple per node;
 *   "nogil": the stats of blocks allocated without the GIL;
 *   "threads": [ident]; "exact", "sample_bytes", "tree_full_blocks". */
static PyObject *snapshot(void)
{
    /* pending leaves become nodes first (this may add nodes) */
    pthread_mutex_lock(&queue_lock);
    uint32_t npend = npending;
    pending_t *pend = npend ? malloc(sizeof(pending_t) * npend) : NULL;
    if (pend != NULL) {
        memcpy(pend, pending, sizeof(pending_t) * npend);
    }
    else {
        npend = 0;
    }
    pthread_mutex_unlock(&queue_lock);
    uint32_t *pend_node = npend ? calloc(npend, sizeof(uint32_t)) : NULL;
    for (uint32_t k = 0; k < npend && pend_node != NULL; k++) {
        pend_node[k] = pending_node(&pend[k]);
    }
    PyObject *node_list = PyList_New(nnodes);
    PyObject *slot_list = PyList_New(nslots);
    PyObject *stat_list = PyList_New(nnodes);
    PyObject *sample_list = rec_sample_bytes > 0 ? PyList_New(nnodes) : Py_NewRef(Py_None);
    PyObject *threads = PyList_New(nthreads);
    PyObject *nogil = NULL, *native_threads = NULL;
    if (!node_list || !slot_list || !stat_list || !sample_list || !threads) {
        goto error;
    }
    for (uint32_t i = 0; i < nnodes; i++) {
        node_t *n = &nodes[i];
        int slot = n->slot == NO_SLOT       ? -1
                   : n->slot == NATIVE_SLOT ? -2
                   : n->slot == GAP_SLOT    ? -3
                                            : (int)n->slot;
        PyObject *item = Py_BuildValue("(iii)", n->parent, slot, slot < 0 ? n->lasti : n->line);
        /* (a C frame: slot -2, its cframes index in place of the line) */
        stat_t sum = stats[i];
        for (uint32_t k = 0; k < npend && pend_node != NULL; k++) {
            if (pend_node[k] == i) {
                stat_fold(&sum, &pend[k].st);
            }
        }
        PyObject *st = stat_tuple(&sum);
        if (item == NULL || st == NULL) {
            Py_XDECREF(item);
            Py_XDECREF(st);
            goto error;
        }
        PyList_SET_ITEM(node_list, i, item);
        PyList_SET_ITEM(stat_list, i, st);
        if (sample_list != Py_None) {
            PyObject *sp = stat_tuple(&sampled[i]);
            if (sp == NULL) {
                goto error;
            }
            PyList_SET_ITEM(sample_list, i, sp);
        }
    }
    for (uint32_t i = 0; i < nslots; i++) {
        PyObject *item = slot_tuple(&slots[i]);
        if (item == NULL) {
            goto error;
        }
        PyList_SET_ITEM(slot_list, i, item);
    }
    for (uint32_t i = 0; i < nthreads; i++) {
        PyObject *ident = PyLong_FromUnsignedLong(thread_idents[i]);
        if (ident == NULL) {
            goto error;
        }
        PyList_SET_ITEM(threads, i, ident);
    }
    pthread_mutex_lock(&queue_lock);
    stat_t nogil_copy = nogil_stat;
    pthread_mutex_unlock(&queue_lock);
    for (uint32_t k = 0; k < npend; k++) {
        if (pend_node == NULL || pend_node[k] == 0) { /* no node: shown as before */
            stat_fold(&nogil_copy, &pend[k].st);
        }
    }
    free(pend);
    free(pend_node);
    pend = NULL;
    pend_node = NULL;
    if ((nogil = stat_tuple(&nogil_copy)) == NULL) {
        goto error;
    }
    /* threads that never ran Python: [(name, stats)] */
    if ((native_threads = PyList_New(0)) == NULL) {
        goto error;
    }
    pthread_mutex_lock(&queue_lock);
    uint32_t nf = nforeign;
    foreign_t *copy = nf ? malloc(sizeof(foreign_t) * nf) : NULL;
    if (copy != NULL) {
        memcpy(copy, foreign, sizeof(foreign_t) * nf);
    }
    pthread_mutex_unlock(&queue_lock);
    for (uint32_t k = 0; copy != NULL && k < nf; k++) {
        PyObject *st = stat_tuple(&copy[k].st);
        int origin = copy[k].origin_slot == NO_SLOT ? -1 : (int)copy[k].origin_slot;
        PyObject *item = st ? Py_BuildValue("(sNii)", copy[k].name, st, origin,
                                            copy[k].origin_line)
                            : NULL;
        if (item == NULL || PyList_Append(native_threads, item) < 0) {
            Py_XDECREF(item);
            free(copy);
            goto error;
        }
        Py_DECREF(item);
    }
    free(copy);
    PyObject *cframes = mt_cframes_symbols();
    if (cframes == NULL) {
        goto error;
    }
    return Py_BuildValue("{sNsNsNsNsNsNsNsNsisLsK}", "nodes", node_list, "slots", slot_list,
                         "stats", stat_list, "sampled", sample_list, "nogil", nogil,
                         "native_threads", native_threads, "cframes", cframes, "threads",
                         threads, "exact", rec_exact, "sample_bytes",
                         (long long)rec_sample_bytes, "tree_full_blocks",
                         (unsigned long long)tree_full_blocks);
error:
    free(pend);
    free(pend_node);
    Py_XDECREF(node_list);
    Py_XDECREF(slot_list);
    Py_XDECREF(stat_list);
    Py_XDECREF(sample_list);
    Py_XDECREF(threads);
    Py_XDECREF(nogil);
    Py_XDECREF(native_threads);
    return NULL;
}

/* ------------------------------------------------- the line of a live object */

/* Where the block holding `o` starts: before the object come the GC header
 * (GC objects) and, for instances with a managed dict (3.12+: or managed
 * weakref list), two more words. */
static void *block_of(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
    size_t pre = PyObject_IS_GC(o) ? 2 * sizeof(void *) : 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_flags & (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)) {
#else
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
#endif
        pre += 2 * sizeof(void *);
    }
    return (char *)o - pre;
}

/* The node a block was charged to (-1: not known). */
static long node_of_block(void *block)
{
    uint32_t id = 0;
    if (nodes != NULL && mt_heap_peek_id(block, &id)) {
        uint32_t bare = id & ~(SAMPLED_BIT | MT_NATIVE_BIT);
        if (bare != 0 && bare < LOWEST_NOGIL_ID && bare < nnodes) {
            return (long)bare;
        }
    }
    return -1;
}

/* GIL held: for each object, the node its block was charged to (-1: not
 * known: allocated before the recording, without the GIL, or not a block of
 * its own, like a small int).  The nodes stay valid until the tree is
 * cleared. */
PyObject *mt_tree_block_nodes(PyObject *objs)
{
    PyObject *seq = PySequence_Fast(objs, "objects must be a sequence");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *out = PyList_New(n);
    for (Py_ssize_t i = 0; out != NULL && i < n; i++) {
        PyObject *o = PySequence_Fast_GET_ITEM(seq, i);
        long node = node_of_block(block_of(o));
        /* A list or dict object itself often comes from the interpreter's
         * free list (its block was allocated before the recording, or for
         * another object): the storage it grew is its own, from its line. */
        if (node < 0 && PyList_CheckExact(o) && ((PyListObject *)o)->ob_item != NULL) {
            node = node_of_block(((PyListObject *)o)->ob_item);
        }
        else if (node < 0 && PyDict_CheckExact(o)) {
            node = node_of_block(((PyDictObject *)o)->ma_keys);
        }
        PyObject *v = PyLong_FromLong(node);
        if (v == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, v);
    }
    Py_DECREF(seq);
    return out;
}

/* (filename, qualname, first line, line, parent node) of a node, or None for a
 * thread root or a C frame. */
PyObject *mt_tree_node_site(long node)
{
    if (node < 0 || (uint64_t)node >= nnodes) {
        Py_RETURN_NONE;
    }
    node_t *n = &nodes[node];
    if (n->slot >= nslots) {
        Py_RETURN_NONE;
    }
    slot_t *sl = &slots[n->slot];
    PyObject *file = PyUnicode_FromKindAndData(sl->file_kind, sl->file, sl->file_len);
    PyObject *name = PyUnicode_FromKindAndData(sl->name_kind, sl->name, sl->name_len);
    PyObject *out = (file && name)
                        ? Py_BuildValue("(OOiii)", file, name, sl->first_line, n->line, n->parent)
                        : NULL;
    Py_XDECREF(file);
    Py_XDECREF(name);
    return out;
}

/* The tree's arrays move while it is read or freed: this thread's own
 * allocations (a C signal handler's among them) must not reach rec_alloc
 * meanwhile, so they pass uncounted (they are memtrim's, or a handler's). */
PyObject *mt_tree_snapshot(void)
{
    if (!tree_enter()) {
        PyErr_SetString(PyExc_RuntimeError, "the recording was frozen for the SIGTERM dump");
        return NULL;
    }
    mt_heap_guard_enter();
    PyObject *out = snapshot();
    mt_heap_guard_exit();
    tree_leave();
    return out;
}

void mt_tree_clear(void)
{
    mt_heap_guard_enter();
    mt_tree_stop();
    clear_all();
    mt_heap_guard_exit();
}

/* ------------------------------------------------------- the dump at SIGTERM
 *
 * term.c's deadline thread, without the GIL, when a SIGTERM came and the
 * thread holding the GIL is stuck in a C call (so no Python code can write
 * the capture): freeze the tree, then write what snapshot() would return as
 * plain binary records (run/termdump.py reads them; keep the two in step).
 * Read-only: the pending leaves and the queued frees are written as they are
 * and folded in by the reader, since folding them here would grow the tables
 * under readers that may still run (the advisor's node_site).  Only
 * async-signal-safe-ish calls: write(2), the queue's mutex, no malloc (the
 * stuck thread may hold malloc's lock), no dladdr (the loader's): C frames
 * go out as bare addresses. */

static unsigned char dump_buf[65536];
static size_t dump_len;
static int dump_fd, dump_failed;

static void dump_flush(void)
{
    size_t done = 0;
    while (done < dump_len && !dump_failed) {
        ssize_t n = write(dump_fd, dump_buf + done, dump_len - done);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            dump_failed = 1;
            break;
        }
        done += (size_t)n;
    }
    dump_len = 0;
}

static void dump_put(const void *data, size_t len)
{
    const unsigned char *p = data;
    while (len > 0) {
        if (dump_len == sizeof(dump_buf)) {
            dump_flush();
        }
        size_t room = sizeof(dump_buf) - dump_len;
        size_t n = len < room ? len : room;
        memcpy(dump_buf + dump_len, p, n);
        dump_len += n;
        p += n;
        len -= n;
    }
}

static void put_i32(int32_t v) { dump_put(&v, sizeof(v)); }
static void put_i64(int64_t v) { dump_put(&v, sizeof(v)); }

/* as stat_tuple: the values at the peak resolved by the epoch */
static void put_stat(const stat_t *s)
{
    int at_peak = s->epoch == epoch;
    int64_t v[10] = {s->live_b, s->live_c, s->total_b, s->total_c,
                     at_peak ? s->peak_b : s->live_b, at_peak ? s->peak_c : s->live_c,
                     s->nlive_b, s->ntotal_b, at_peak ? s->npeak_b : s->nlive_b, s->hwm_b};
    dump_put(v, sizeof(v));
}

static void put_chars(const void *chars, Py_ssize_t len, int kind)
{
    put_i32(kind);
    put_i64((int64_t)len);
    dump_put(chars, (size_t)len * (size_t)kind);
}

static int freeze(void)
{
    atomic_store(&frozen, 1);
    struct timespec settle = {0, FREEZE_SETTLE_NS};
    nanosleep(&settle, NULL);
    struct timespec step = {0, 100000L}; /* 0.1 ms */
    for (long long waited = 0; waited < FREEZE_WAIT_NS; waited += step.tv_nsec) {
        if (atomic_load_explicit(&gil_busy, memory_order_acquire) == 0) {
            return 0;
        }
        nanosleep(&step, NULL);
    }
    return -1;
}

int mt_tree_dump(int fd)
{
    if (!mt_tree_on || freeze() != 0) {
        return -1;
    }
    dump_fd = fd;
    dump_len = 0;
    dump_failed = 0;
    static const char magic[8] = "MTDUMP1";
    dump_put(magic, sizeof(magic));
    put_i32((int32_t)sizeof(stat_t)); /* (a reader's check of the layout below) */
    put_i32(rec_exact);
    put_i64(rec_sample_bytes);
    put_i64((int64_t)tree_full_blocks);
    put_i64(mt_heap_level());
    put_i64(mt_heap_peak());
    uint32_t n = nnodes;
    put_i32((int32_t)n);
    for (uint32_t i = 0; i < n; i++) {
        const node_t *nd = &nodes[i];
        int32_t slot = nd->slot == NO_SLOT       ? -1
                       : nd->slot == NATIVE_SLOT ? -2
                       : nd->slot == GAP_SLOT    ? -3
                                                 : (int32_t)nd->slot;
        int32_t rec[3] = {nd->parent, slot, slot < 0 ? nd->lasti : nd->line};
        dump_put(rec, sizeof(rec));
    }
    for (uint32_t i = 0; i < n; i++) {
        put_stat(&stats[i]);
    }
    put_i32(sampled != NULL && rec_sample_bytes > 0);
    for (uint32_t i = 0; sampled != NULL && rec_sample_bytes > 0 && i < n; i++) {
        put_stat(&sampled[i]);
    }
    put_i32((int32_t)nslots);
    for (uint32_t i = 0; i < nslots; i++) {
        put_chars(slots[i].file, slots[i].file_len, slots[i].file_kind);
        put_chars(slots[i].name, slots[i].name_len, slots[i].name_kind);
        put_i32(slots[i].first_line);
    }
    put_i32((int32_t)nthreads);
    for (uint32_t i = 0; i < nthreads; i++) {
        put_i64((int64_t)thread_idents[i]);
    }
    put_i32((int32_t)mt_cframes_count());
    for (uint32_t i = 0; i < mt_cframes_count(); i++) {
        put_i64((int64_t)mt_cframes_pc(i));
    }
    /* what the no-GIL threads change, under their lock */
    pthread_mutex_lock(&queue_lock);
    put_stat(&nogil_stat);
    put_i32((int32_t)npending);
    for (uint32_t k = 0; k < npending; k++) {
        put_i32((int32_t)pending[k].root);
        put_i32((int32_t)pending[k].slot);
        put_i32(pending[k].line);
        put_stat(&pending[k].st);
    }
    put_i32((int32_t)nforeign);
    for (uint32_t k = 0; k < nforeign; k++) {
        char name[16];
        memcpy(name, foreign[k].name, sizeof(name));
        name[15] = '\0';
        dump_put(name, sizeof(name));
        put_stat(&foreign[k].st);
        put_i32(foreign[k].origin_slot == NO_SLOT ? -1 : (int32_t)foreign[k].origin_slot);
        put_i32(foreign[k].origin_line);
    }
    /* frees made without the GIL, not yet taken off their nodes */
    put_i32((int32_t)queue_len);
    for (size_t k = 0; k < queue_len; k++) {
        const queued_t *q = &queue[k];
        int64_t rec[5] = {q->id & ~SAMPLED_BIT, (int64_t)q->size, q->native, -1, 0};
        if ((q->id & SAMPLED_BIT) && samples.cap != 0) {
            size_t at = samples_find(&samples, (uintptr_t)q->ptr);
            if (samples_used(&samples.tab[at])) {
                rec[3] = samples.tab[at].node;
                rec[4] = samples.tab[at].weight;
            }
        }
        dump_put(rec, sizeof(rec));
    }
    pthread_mutex_unlock(&queue_lock);
    static const char end[8] = "MTEND";
    dump_put(end, sizeof(end));
    dump_flush();
    return dump_failed ? -1 : 0;
}
