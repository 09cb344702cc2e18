/* Whole-program allocation profiling (memtrim run).
 *
 * Every allocation made with the GIL is attributed to a node of a call tree
 * (a trie of (code object, instruction) frames under a per-thread root), and
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
 * Per node we keep live, total and at-peak bytes and counts.  "At peak" uses
 * an epoch: each new process-wide peak bumps `epoch`; a node about to change
 * first saves its current values if it has not done so in this epoch.  The
 * values saved in the current epoch are then exactly those at the last peak,
 * at O(1) per allocation.
 *
 * Locking: everything here runs with the GIL held (the heap hooks call in
 * only from their GIL path); frees made without the GIL are queued under
 * `queue_lock` and applied at the next call with the GIL.
 */
#include "profiler.h"
#include "frames.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SAMPLED_BIT 0x80000000u
#define MAX_DEPTH 512

typedef struct {
    int64_t live_b, live_c, total_b, total_c, peak_b, peak_c;
    uint64_t epoch;
} stat_t;

typedef struct {
    int32_t parent; /* -1 for a thread root */
    int32_t lasti;  /* instruction index; for a thread root, the thread index */
    PyCodeObject *code;
} node_t;

int mt_rec_on;
static int rec_exact;
static int64_t rec_sample_bytes;
static unsigned rec_generation;
static uint64_t epoch = 1;

static node_t *nodes;
static stat_t *stats;   /* attribution of every block */
static stat_t *sampled; /* estimates from sampled full stacks (default mode) */
static uint32_t nnodes, nodes_cap;
static uint32_t *index_tab; /* (parent, code, lasti) -> node id; 0 = empty */
static size_t index_cap, index_len;

static unsigned long *thread_idents;
static uint32_t nthreads, threads_cap;

typedef struct {
    PyCodeObject *code;
    int lasti;
    uint32_t node;
} cache_t;

/* Per-thread state, allocated on a thread's first attributed allocation.
 * One thread-local pointer: the static TLS space of a dlopen'ed module is
 * small, so the arrays live on the heap. */
typedef struct {
    unsigned generation;
    uint32_t root;
    int stack_depth;
    cache_t stack[MAX_DEPTH]; /* exact mode: the last stack, root first */
    PyCodeObject *codes[MAX_DEPTH];
    int lastis[MAX_DEPTH];
    PyCodeObject *leaf_code; /* default mode: the last leaf */
    int leaf_lasti;
    uint32_t leaf_node;
    int64_t countdown;
    uint64_t rng;
} rec_thread_t;

static MT_TLS rec_thread_t *t_rec;

/* ------------------------------------------------------------------ stats */

static inline void stat_touch(stat_t *s)
{
    if (s->epoch != epoch) {
        s->peak_b = s->live_b;
        s->peak_c = s->live_c;
        s->epoch = epoch;
    }
}

static inline void stat_add(stat_t *s, int64_t bytes)
{
    stat_touch(s);
    s->live_b += bytes;
    s->live_c += 1;
    s->total_b += bytes;
    s->total_c += 1;
}

static inline void stat_sub(stat_t *s, int64_t bytes)
{
    stat_touch(s);
    s->live_b -= bytes;
    s->live_c -= 1;
}

void mt_rec_new_peak(void)
{
    epoch++;
}

/* ------------------------------------------------------------------ nodes */

static inline size_t node_hash(int32_t parent, PyCodeObject *code, int32_t lasti)
{
    uint64_t h = (uint64_t)(uint32_t)parent * 0x9E3779B97F4A7C15ull;
    h ^= ((uint64_t)(uintptr_t)code >> 4) * 0xC2B2AE3D27D4EB4Full;
    h ^= (uint64_t)(uint32_t)lasti * 0x165667B19E3779F9ull;
    return (size_t)(h ^ (h >> 29));
}

static int index_grow(void)
{
    size_t cap = index_cap ? index_cap * 2 : 4096;
    uint32_t *tab = calloc(cap, sizeof(uint32_t));
    if (tab == NULL) {
        return -1;
    }
    for (size_t i = 0; i < index_cap; i++) {
        uint32_t id = index_tab[i];
        if (id) {
            node_t *n = &nodes[id];
            size_t j = node_hash(n->parent, n->code, n->lasti) & (cap - 1);
            while (tab[j]) {
                j = (j + 1) & (cap - 1);
            }
            tab[j] = id;
        }
    }
    free(index_tab);
    index_tab = tab;
    index_cap = cap;
    return 0;
}

static uint32_t new_node(int32_t parent, PyCodeObject *code, int32_t lasti)
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
        stat_t *z = realloc(sampled, sizeof(stat_t) * cap);
        if (z == NULL) {
            return 0;
        }
        sampled = z;
        nodes_cap = cap;
    }
    uint32_t id = nnodes++;
    nodes[id] = (node_t){parent, lasti, code};
    Py_XINCREF(code); /* GIL held: keeps the code (and the id) valid until clear */
    memset(&stats[id], 0, sizeof(stat_t));
    memset(&sampled[id], 0, sizeof(stat_t));
    return id;
}

/* Bounds on the call tree.  Recursive code can make the number of distinct
 * stacks grow exponentially (a recursive generator over a binary tree has a
 * stack per path); past SOFT_NODES a new stack keeps its known outer frames and
 * its leaf only, so per-line figures stay exact; past HARD_NODES a block is
 * charged to the deepest frame already known. */
#define SOFT_NODES 50000u
#define HARD_NODES 100000u

/* The child of `parent` for frame (code, lasti), created on first use unless
 * the tree holds `limit` nodes already (then returns 0). */
static uint32_t find_child(uint32_t parent, PyCodeObject *code, int32_t lasti, uint32_t limit);

static uint32_t child(uint32_t parent, PyCodeObject *code, int32_t lasti)
{
    uint32_t id = find_child(parent, code, lasti, HARD_NODES);
    return id ? id : parent;
}

static uint32_t find_child(uint32_t parent, PyCodeObject *code, int32_t lasti, uint32_t limit)
{
    if ((index_len + 1) * 2 > index_cap && index_grow() < 0) {
        return parent;
    }
    size_t mask = index_cap - 1, i = node_hash((int32_t)parent, code, lasti) & mask;
    for (;; i = (i + 1) & mask) {
        uint32_t id = index_tab[i];
        if (id == 0) {
            break;
        }
        node_t *n = &nodes[id];
        if (n->code == code && n->lasti == lasti && n->parent == (int32_t)parent) {
            return id;
        }
    }
    if (nnodes >= limit) {
        return 0;
    }
    uint32_t id = new_node((int32_t)parent, code, lasti);
    if (id == 0) {
        return 0;
    }
    index_tab[i] = id;
    index_len++;
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
    t->root = new_node(-1, NULL, (int32_t)index);
    t->generation = rec_generation;
    t->stack_depth = 0;
    t->leaf_code = NULL;
    t->countdown = 0;
    if (t->rng == 0) {
        t->rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)thread_idents[index] ^ (uint64_t)(uintptr_t)t;
    }
    return t;
}

/* ----------------------------------------------------------------- stacks */

static uint32_t stack_node(rec_thread_t *t, PyThreadState *ts)
{
    PyCodeObject **codes = t->codes;
    int *lastis = t->lastis;
    int n = 0;
    for (mt_frame_t *f = mt_current_frame(ts); f != NULL && n < MAX_DEPTH; f = f->previous) {
        PyCodeObject *code = mt_frame_code(f);
        if (code != NULL) {
            codes[n] = code;
            lastis[n] = mt_frame_lasti(f);
            n++;
        }
    }
    /* frames are innermost first; the cache is root first */
    cache_t *stack = t->stack;
    int k = 0;
    while (k < n && k < t->stack_depth && stack[k].code == codes[n - 1 - k] &&
           stack[k].lasti == lastis[n - 1 - k]) {
        k++;
    }
    uint32_t node = k ? stack[k - 1].node : t->root;
    for (int i = k; i < n; i++) {
        uint32_t next = find_child(node, codes[n - 1 - i], lastis[n - 1 - i], SOFT_NODES);
        if (next == 0) {
            /* the tree is full: keep the leaf under the deepest known frame,
             * and do not cache this truncated stack */
            t->stack_depth = i;
            return child(node, codes[0], lastis[0]);
        }
        node = next;
        stack[i] = (cache_t){codes[n - 1 - i], lastis[n - 1 - i], node};
    }
    t->stack_depth = n;
    return node;
}

static uint32_t leaf_node(rec_thread_t *t, PyThreadState *ts)
{
    for (mt_frame_t *f = mt_current_frame(ts); f != NULL; f = f->previous) {
        PyCodeObject *code = mt_frame_code(f);
        if (code == NULL) {
            continue;
        }
        int lasti = mt_frame_lasti(f);
        if (code != t->leaf_code || lasti != t->leaf_lasti) {
            t->leaf_code = code;
            t->leaf_lasti = lasti;
            t->leaf_node = child(t->root, code, lasti);
        }
        return t->leaf_node;
    }
    return t->root;
}

/* --------------------------------------------------------------- sampling */

/* Sampled blocks, to find their stack again on free: address -> (node, weight). */
typedef struct {
    uintptr_t key;
    uint32_t node;
    int64_t weight;
} sample_entry_t;

static sample_entry_t *samples;
static size_t samples_cap, samples_len;

static inline size_t addr_hash(uintptr_t a)
{
    return (size_t)((a >> 4) * 0x9E3779B97F4A7C15ull >> 7);
}

static int samples_put(uintptr_t key, uint32_t node, int64_t weight)
{
    if ((samples_len + 1) * 2 > samples_cap) {
        size_t cap = samples_cap ? samples_cap * 2 : 1024;
        sample_entry_t *tab = calloc(cap, sizeof(sample_entry_t));
        if (tab == NULL) {
            return -1;
        }
        for (size_t i = 0; i < samples_cap; i++) {
            if (samples[i].key) {
                size_t j = addr_hash(samples[i].key) & (cap - 1);
                while (tab[j].key) {
                    j = (j + 1) & (cap - 1);
                }
                tab[j] = samples[i];
            }
        }
        free(samples);
        samples = tab;
        samples_cap = cap;
    }
    size_t i = addr_hash(key) & (samples_cap - 1);
    while (samples[i].key && samples[i].key != key) {
        i = (i + 1) & (samples_cap - 1);
    }
    if (!samples[i].key) {
        samples_len++;
    }
    samples[i] = (sample_entry_t){key, node, weight};
    return 0;
}

static int samples_take(uintptr_t key, sample_entry_t *out)
{
    if (samples_cap == 0) {
        return 0;
    }
    size_t mask = samples_cap - 1, i = addr_hash(key) & mask;
    while (samples[i].key && samples[i].key != key) {
        i = (i + 1) & mask;
    }
    if (!samples[i].key) {
        return 0;
    }
    *out = samples[i];
    size_t hole = i, j = i;
    for (;;) { /* backward-shift deletion */
        j = (j + 1) & mask;
        if (!samples[j].key) {
            break;
        }
        size_t home = addr_hash(samples[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            samples[hole] = samples[j];
            hole = j;
        }
    }
    samples[hole].key = 0;
    samples_len--;
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

static void sample(rec_thread_t *t, PyThreadState *ts, void *ptr, size_t size)
{
    /* a block of `size` bytes is sampled with probability 1 - exp(-size/R);
     * weighting it by the inverse keeps the estimate unbiased */
    double p = 1.0 - exp(-(double)size / (double)rec_sample_bytes);
    int64_t weight = size ? (int64_t)((double)size / p + 0.5) : 0;
    uint32_t node = stack_node(t, ts);
    stat_add(&sampled[node], weight);
    samples_put((uintptr_t)ptr, node, weight);
}

/* ------------------------------------------------------ the hooks' calls */

typedef struct {
    void *ptr;
    uint32_t id;
    size_t size;
} queued_t;

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static queued_t *queue;
static size_t queue_len, queue_cap;
static volatile int queue_pending;

static void drain_queue(void);

uint32_t mt_rec_alloc(void *ptr, size_t size)
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
    stat_add(&stats[node], (int64_t)size);
    if (rec_sample_bytes > 0) {
        if (t->countdown <= 0) {
            t->countdown = next_countdown(t);
        }
        t->countdown -= (int64_t)size;
        if (t->countdown <= 0) {
            sample(t, ts, ptr, size);
            return node | SAMPLED_BIT;
        }
    }
    return node;
}

void mt_rec_free(void *ptr, uint32_t id, size_t size)
{
    if (MT_UNLIKELY(queue_pending)) {
        drain_queue();
    }
    uint32_t node = id & ~SAMPLED_BIT;
    if (node == 0 || node >= nnodes) {
        return;
    }
    stat_sub(&stats[node], (int64_t)size);
    if (id & SAMPLED_BIT) {
        sample_entry_t e;
        if (samples_take((uintptr_t)ptr, &e) && e.node < nnodes) {
            stat_sub(&sampled[e.node], e.weight);
        }
    }
}

void mt_rec_free_nogil(void *ptr, uint32_t id, size_t size)
{
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
    queue[queue_len++] = (queued_t){ptr, id, size};
    queue_pending = 1;
    pthread_mutex_unlock(&queue_lock);
}

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
            stat_sub(&stats[node], (int64_t)q.size);
        }
        if (q.id & SAMPLED_BIT) {
            sample_entry_t e;
            if (samples_take((uintptr_t)q.ptr, &e) && e.node < nnodes) {
                stat_sub(&sampled[e.node], e.weight);
            }
        }
    }
    pthread_mutex_unlock(&queue_lock);
}

/* ------------------------------------------------------------- lifecycle */

static void clear_all(void)
{
    for (uint32_t i = 0; i < nnodes; i++) {
        Py_XDECREF(nodes[i].code);
    }
    free(nodes);
    free(stats);
    free(sampled);
    free(index_tab);
    free(samples);
    free(thread_idents);
    nodes = NULL;
    stats = sampled = NULL;
    index_tab = NULL;
    samples = NULL;
    thread_idents = NULL;
    nnodes = nodes_cap = 0;
    index_cap = index_len = 0;
    samples_cap = samples_len = 0;
    nthreads = threads_cap = 0;
    pthread_mutex_lock(&queue_lock);
    queue_len = 0;
    queue_pending = 0;
    pthread_mutex_unlock(&queue_lock);
}

int mt_rec_start(int exact, int64_t sample_bytes)
{
    clear_all();
    rec_exact = exact;
    rec_sample_bytes = exact ? 0 : sample_bytes;
    rec_generation++;
    epoch = 1;
    if (new_node(-1, NULL, -1) != 0) { /* node 0: "not attributed" */
        return -1;
    }
    mt_rec_on = 1;
    return 0;
}

void mt_rec_stop(void)
{
    if (queue_pending) {
        drain_queue();
    }
    mt_rec_on = 0;
}

void mt_rec_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    queue_lock = fresh;
}

static PyObject *stat_tuple(stat_t *s)
{
    int at_peak = s->epoch == epoch; /* changed since the peak: saved values */
    return Py_BuildValue("(LLLLLL)", (long long)s->live_b, (long long)s->live_c,
                         (long long)s->total_b, (long long)s->total_c,
                         (long long)(at_peak ? s->peak_b : s->live_b),
                         (long long)(at_peak ? s->peak_c : s->live_c));
}

/* Plain data: {"nodes": [(parent, code, lasti)], "stats": [...], "sampled":
 * [...] or None, "threads": [ident]}.  Call after mt_rec_stop(). */
PyObject *mt_rec_snapshot(void)
{
    PyObject *node_list = PyList_New(nnodes);
    PyObject *stat_list = PyList_New(nnodes);
    PyObject *sample_list = rec_sample_bytes > 0 ? PyList_New(nnodes) : Py_NewRef(Py_None);
    PyObject *threads = PyList_New(nthreads);
    if (!node_list || !stat_list || !sample_list || !threads) {
        goto error;
    }
    for (uint32_t i = 0; i < nnodes; i++) {
        node_t *n = &nodes[i];
        PyObject *code = n->code ? (PyObject *)n->code : Py_None;
        PyObject *item = Py_BuildValue("(iOi)", n->parent, code, n->lasti);
        PyObject *st = stat_tuple(&stats[i]);
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
    for (uint32_t i = 0; i < nthreads; i++) {
        PyObject *ident = PyLong_FromUnsignedLong(thread_idents[i]);
        if (ident == NULL) {
            goto error;
        }
        PyList_SET_ITEM(threads, i, ident);
    }
    PyObject *result = Py_BuildValue("{sNsNsNsNsisL}", "nodes", node_list, "stats", stat_list,
                                     "sampled", sample_list, "threads", threads, "exact",
                                     rec_exact, "sample_bytes", (long long)rec_sample_bytes);
    return result;
error:
    Py_XDECREF(node_list);
    Py_XDECREF(stat_list);
    Py_XDECREF(sample_list);
    Py_XDECREF(threads);
    return NULL;
}

void mt_rec_clear(void)
{
    mt_rec_on = 0;
    clear_all();
}
