/* The line tracer.
 *
 * A "table" is one profiled function: per-line statistics for its own code
 * object and the code objects nested in it (lambdas, inner functions), unless
 * a nested function is profiled explicitly: then it has a table of its own.
 * Code objects point at their registration through co_extra, so an event for
 * unprofiled code costs one lookup.  Nested code counts only while a call of
 * its table's function is running in the same thread.
 *
 * Per thread we keep a stack of profiled frames.  Each frame may have two open
 * "records": the call record (only for a table's root code: the function as a
 * whole, shown on its first line) and the record of the line now running.  A
 * record remembers this thread's heap counter when it started and the highest
 * value seen since.  The heap hooks maintain that counter (mt_thread_cur) and
 * its high-water mark (mt_thread_hwm) per thread; the tracer resets the mark
 * whenever a line starts, after folding it into the innermost open record, and
 * a finished record folds its maximum into the record that encloses it.  So
 * every record ends up with the true peak of its whole execution, callees
 * included, at O(1) per event.
 *
 * The call record of a plain function closes once the function's local
 * variables are released, which CPython does right after the return event,
 * while clearing the frame.  To see that moment, the return event swaps the
 * frame's last local slot for a small "pending call" object that holds the
 * slot's value: the frame releases its slots in order, so when the pending
 * object dies, the other locals are gone; it then releases the value it held
 * and closes the record.  It is only done when nothing else can look at the
 * frame any more (no frame object kept alive, no other tracer).
 *
 * Everything here runs with the GIL held (trace functions and monitoring
 * callbacks are called with it), which protects the tables and the registry.
 * Thread state is thread-local.
 */
#include "tracer.h"
#include "frames.h"
#include "heap.h"
#include "procfs.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int64_t occurrences;
    int64_t increment;
    int64_t peak;
    int64_t mem_usage; /* highest process memory at the line's end; INT64_MIN: never ended */
} line_stats_t;

typedef struct {
    int first_line;
    int nlines;
    line_stats_t *lines;
    /* Lines folded into another line (a comprehension's lines into its first). */
    int map_first;
    int map_n;
    int *map; /* target line, 0 = not folded */
    int64_t missed; /* 3.11: calls or stretches not measured (another tracer was active) */
    int used;       /* 0 once freed: its id is dead (not reused until the registry resets) */
} table_t;

typedef struct {
    int table;
    int index;   /* dense id, for the per-thread recursion counters */
    int is_root; /* a profiled function itself, not code nested in it */
    int first_line;
    int plain;     /* not a generator or coroutine: one call, one return */
    int rebased;   /* the RSS was re-read at this function's first outermost call */
    /* 3.12+, long code objects only: per code unit, the line of a location
     * where CPython would fire LINE, else 0 (see tr_use_instructions). */
    int32_t *unit_line;
    Py_ssize_t nunits;
    /* 3.12+: the code's lines come from branch events (see "virtual lines"), or NULL */
    struct vl *vl;
    /* The code object whose co_extra points here (borrowed), or NULL once
     * unhooked: the extra's free function clears it when the code object dies
     * or its extra is replaced, so a non-NULL value is always a live object. */
    PyObject *code;
} code_info_t;

typedef struct {
    int active;
    int table;
    int line;
    int count_increment; /* 0 in a recursive call: the outermost call counts it */
    int counted;         /* its start was counted in Occurrences */
    int64_t start;
    int64_t max;
    int64_t bias; /* bytes freed in the record's window that were allocated before it */
} record_t;

typedef struct {
    code_info_t *ci;
    int skip_line; /* nested code on its caller's line: the caller's record covers it */
    int recursive;
    int table; /* a root frame: the table counted in tstate_t.table_depth, else -1 */
    int fresh; /* a root frame whose call record has seen no line yet */
    int saved_foreign; /* 3.11: tstate_t.foreign of the frame below */
    /* 3.12+, code with virtual lines: CPython's frame, and the instruction
     * (code unit) up to which its lines are accounted (-1: none yet) */
    mt_frame_t *iframe;
    int32_t vl_at;
    struct vl *vl; /* ci->vl once iframe is known, else NULL: the frame replays its lines */
    record_t call;
    record_t line;
} frame_t;

typedef struct tstate {
    frame_t *frames;
    int depth, cap;
    int32_t *code_depth; /* per code: frames of it on the stack */
    int code_cap;
    int32_t *table_depth; /* per table: root frames of it on the stack */
    int table_cap;
    int enter_count;
    int foreign; /* 3.11: unprofiled frames running above the top profiled frame */
    record_t pending; /* a call record waiting for the frame's locals to be released */
    unsigned pending_seq;
    int armed;   /* 3.11: memtrim's profile function is installed in this thread */
    int audited; /* 3.11: its first installation here went through sys.setprofile's audit */
    int refused; /* 3.11: an audit hook refused it: never retried in this thread */
    unsigned generation;
    /* The thread's heap counters (its thread-locals), for a replay of its
     * virtual lines from another thread when a table is read. */
    int64_t *cur, *hwm;
    /* 3.12+: a replay of virtual lines put off (0, VL_NOGIL or VL_LANDING),
     * with the thread's counters and the frame's unit at that moment */
    int vl_deferred;
    int vl_def_unit;
    int64_t vl_def_cur, vl_def_hwm;
    struct tstate *next;
} tstate_t;

static Py_ssize_t extra_index = -1;
static table_t *tables;
static int ntables;      /* ids handed out since the registry was last reset */
static int ntables_live; /* of which not freed */
static code_info_t **codes;
#if MT_HAVE_MONITORING
static struct vl *retired_vl; /* replaced virtual-line tables, freed at reset */
static void vl_free_retired(void);
#endif
static int ncodes;
static unsigned generation = 1;
/* Every thread's state (GIL).  The structs live as long as the process (a
 * thread's t_state points at its own); their arrays are freed when the
 * registry resets. */
static tstate_t *all_states;
static MT_TLS tstate_t *t_state;
#if !MT_HAVE_MONITORING
static int missed_any;  /* 3.11: another tracer or profiler kept memtrim's out for a while */
static int refused_any; /* 3.11: an audit hook refused memtrim's profile function */
#endif

/* Mem usage = mem_base + mt_heap_level().  mem_base is re-read from the RSS at
 * the start of an outermost profiled call, at most every REBASE_NS (GIL). */
#define REBASE_NS 100000000LL
static int64_t mem_base;
static int64_t last_rebase_ns = -1;

/* A code object's extra goes (the code dies, or the extra is replaced): the
 * code_info stays (a frame may point at it) but forgets the code.  GIL held. */
static void code_extra_gone(void *extra)
{
    if (extra != NULL) {
        ((code_info_t *)extra)->code = NULL;
    }
}

int mt_tracer_init(void)
{
    if (extra_index < 0) {
        extra_index = MT_REQUEST_CODE_EXTRA(code_extra_gone);
    }
    return extra_index < 0 ? -1 : 0;
}

/* ------------------------------------------------------------- process RSS */

int64_t mt_rss_now(void)
{
    /* no Python object: this runs inside event callbacks, whose allocations
     * would be charged to the lines */
    return mt_proc_rss(0);
}

static int64_t now_ns(void)
{
    struct timespec t;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &t);
#else
    clock_gettime(CLOCK_MONOTONIC, &t);
#endif
    return (int64_t)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void rebase(int force)
{
    int64_t now = now_ns();
    if (!force && last_rebase_ns >= 0 && now - last_rebase_ns < REBASE_NS) {
        return;
    }
    last_rebase_ns = now;
    int64_t rss = mt_rss_now();
    if (rss >= 0) {
        mem_base = rss - mt_heap_level();
    }
}

static inline int64_t mem_usage_now(void)
{
    return mem_base + mt_heap_level();
}

/* ------------------------------------------------------------- registry */

static void maybe_reset(void);

int mt_tracer_new_table(int first_line)
{
    if (ntables_live == 0) {
        maybe_reset(); /* a reset put off by a frame that was still running */
    }
    table_t *grown = realloc(tables, sizeof(table_t) * (size_t)(ntables + 1));
    if (grown == NULL) {
        return -1;
    }
    tables = grown;
    tables[ntables] = (table_t){.first_line = first_line, .used = 1};
    ntables_live++;
    return ntables++;
}

static inline int table_ok(int table)
{
    return table >= 0 && table < ntables && tables[table].used;
}

/* Is any thread following a frame, or holding a record, that names a table or
 * a code_info?  (Their indexes are only valid until the registry resets.) */
static int registry_in_use(void)
{
    for (tstate_t *ts = all_states; ts != NULL; ts = ts->next) {
        if (ts->generation == generation && (ts->depth > 0 || ts->pending.active)) {
            return 1;
        }
    }
    return 0;
}

/* Once no table is left and no thread is inside profiled code: unhook every
 * code object still pointing at a code_info, and free the code_infos, the
 * tables and the threads' arrays, so that a profiler used and let go leaves
 * nothing behind.  The thread structs themselves stay (a thread's t_state
 * still points at its own, and its 3.11 flags `armed`, `audited` and
 * `refused` remain true); their counters are all zero when no frame is
 * followed, so freeing the arrays loses nothing.  The code-extra index stays
 * reserved (CPython cannot give one back). */
static void maybe_reset(void)
{
    if (ntables_live > 0 || registry_in_use()) {
        return;
    }
    for (int i = 0; i < ncodes; i++) {
        code_info_t *ci = codes[i];
        if (ci->code != NULL) {
            PyObject *code = ci->code;
            if (MT_CODE_SET_EXTRA(code, extra_index, NULL) < 0) { /* clears ci->code */
                PyErr_Clear();
            }
            ci->code = NULL;
        }
        free(ci->unit_line);
        free(ci->vl);
        free(ci);
    }
#if MT_HAVE_MONITORING
    vl_free_retired();
#endif
    free(codes);
    codes = NULL;
    ncodes = 0;
    for (int i = 0; i < ntables; i++) {
        free(tables[i].lines);
        free(tables[i].map);
    }
    free(tables);
    tables = NULL;
    ntables = ntables_live = 0;
    for (tstate_t *ts = all_states; ts != NULL; ts = ts->next) {
        free(ts->frames);
        free(ts->code_depth);
        free(ts->table_depth);
        ts->frames = NULL;
        ts->code_depth = ts->table_depth = NULL;
        ts->cap = ts->code_cap = ts->table_cap = 0;
        ts->depth = 0;
    }
}

int mt_tracer_free_table(int table)
{
    if (!table_ok(table)) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return -1;
    }
    table_t *t = &tables[table];
    free(t->lines);
    free(t->map);
    /* the slot stays, unused: a frame still running may name it; stats_for
     * refuses it, so nothing is written there any more */
    *t = (table_t){.used = 0};
    ntables_live--;
    maybe_reset();
    return 0;
}

#if MT_HAVE_MONITORING
static void vl_sync_all(void);
#endif

/* In a forked child (pthread_atfork, the forking thread, before anything
 * else runs): the other threads are gone, and so are their frames.  Their
 * lines up to the fork are accounted (as LINE events would have been in the
 * parent; their memory came along), then nothing they held open is counted
 * further. */
void mt_tracer_after_fork(void)
{
#if MT_HAVE_MONITORING
    if (mt_have_gil()) { /* (a fork from C without it: no replay, the frames go all the same) */
        vl_sync_all();
    }
#endif
    for (tstate_t *ts = all_states; ts != NULL; ts = ts->next) {
        if (ts == t_state) {
            continue;
        }
        ts->depth = 0;
        ts->pending.active = 0;
        ts->vl_deferred = 0;
        if (ts->code_depth != NULL) {
            memset(ts->code_depth, 0, sizeof(int32_t) * (size_t)ts->code_cap);
        }
        if (ts->table_depth != NULL) {
            memset(ts->table_depth, 0, sizeof(int32_t) * (size_t)ts->table_cap);
        }
    }
}

void mt_tracer_counts(int *live_tables, int *attached_codes, int *kept)
{
    int attached = 0;
    for (int i = 0; i < ncodes; i++) {
        attached += codes[i]->code != NULL;
    }
    *live_tables = ntables_live;
    *attached_codes = attached;
    *kept = ntables + ncodes;
}

static line_stats_t *stats_for(int table, int line)
{
    /* Only ids of this registry reach here (a record or frame names its table,
     * and the registry resets only when no thread follows a frame), so the
     * range check of table_ok() is not needed on this hot path: only whether
     * the table was freed while a frame of it was still running. */
    table_t *t = &tables[table];
    if (MT_UNLIKELY(!t->used)) {
        return NULL;
    }
    if (line < t->first_line) {
        /* grow downwards: shift existing lines up */
        int shift = t->first_line - line;
        line_stats_t *grown = calloc((size_t)(t->nlines + shift), sizeof(line_stats_t));
        if (grown == NULL) {
            return NULL;
        }
        for (int i = 0; i < shift; i++) {
            grown[i].mem_usage = INT64_MIN;
        }
        if (t->nlines) {
            memcpy(grown + shift, t->lines, sizeof(line_stats_t) * (size_t)t->nlines);
        }
        free(t->lines);
        t->lines = grown;
        t->nlines += shift;
        t->first_line = line;
    }
    int i = line - t->first_line;
    if (i >= t->nlines) {
        int n = i + 16;
        line_stats_t *grown = realloc(t->lines, sizeof(line_stats_t) * (size_t)n);
        if (grown == NULL) {
            return NULL;
        }
        for (int k = t->nlines; k < n; k++) {
            grown[k] = (line_stats_t){0, 0, 0, INT64_MIN};
        }
        t->lines = grown;
        t->nlines = n;
    }
    return &t->lines[i];
}

/* stats_for() on the per-event path: the line's slot when the table already
 * has it (a freed table has no lines), else the general case. */
static inline line_stats_t *stats_at(int table, int line)
{
    table_t *t = &tables[table];
    unsigned i = (unsigned)(line - t->first_line);
    if (MT_LIKELY(i < (unsigned)t->nlines)) {
        return &t->lines[i];
    }
    return stats_for(table, line);
}

static inline int fold_line(int table, int line, int *folded)
{
    table_t *t = &tables[table];
    if (MT_UNLIKELY(t->map != NULL)) {
        int i = line - t->map_first;
        if (i >= 0 && i < t->map_n && t->map[i] != 0) {
            *folded = 1;
            return t->map[i];
        }
    }
    return line;
}

static inline code_info_t *lookup(PyObject *code)
{
    void *extra = NULL;
    if (MT_CODE_GET_EXTRA(code, extra_index, &extra) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return extra;
}

/* CPython's co_extra block (_PyCodeObjectExtra in pycore_code.h, the same in
 * 3.11 to 3.13): the extras by index. */
typedef struct {
    Py_ssize_t ce_size;
    void *ce_extras[1];
} mt_code_extra_t;

/* lookup() on the per-event paths: two loads instead of a call into CPython
 * that checks its arguments (event callbacks always get code objects). */
static inline code_info_t *lookup_fast(PyObject *code)
{
    if (MT_UNLIKELY(!PyCode_Check(code))) {
        return lookup(code);
    }
    mt_code_extra_t *e = ((PyCodeObject *)code)->co_extra;
    if (e == NULL || extra_index < 0 || extra_index >= e->ce_size) {
        return NULL;
    }
    return e->ce_extras[extra_index];
}

static void describe(code_info_t *ci, PyObject *code, int table, int is_root)
{
    PyCodeObject *co = (PyCodeObject *)code;
    ci->table = table;
    ci->is_root = is_root;
    ci->first_line = co->co_firstlineno;
    ci->plain = !(co->co_flags & (CO_GENERATOR | CO_COROUTINE | CO_ASYNC_GENERATOR |
                                  CO_ITERABLE_COROUTINE));
}

int mt_tracer_register_code(PyObject *code, int table, int is_root)
{
    if (!table_ok(table)) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return -1;
    }
    code_info_t *known = lookup(code);
    if (known != NULL) {
        /* Moves to another table (a nested function profiled explicitly).
         * Running frames keep the table they were counted in. */
        describe(known, code, table, is_root);
        return 0;
    }
    code_info_t *ci = malloc(sizeof(code_info_t));
    code_info_t **grown = realloc(codes, sizeof(code_info_t *) * (size_t)(ncodes + 1));
    if (ci == NULL || grown == NULL) {
        free(ci);
        if (grown) {
            codes = grown;
        }
        PyErr_NoMemory();
        return -1;
    }
    codes = grown;
    *ci = (code_info_t){.index = ncodes, .code = code};
    describe(ci, code, table, is_root);
    if (MT_CODE_SET_EXTRA(code, extra_index, ci) < 0) {
        free(ci);
        return -1;
    }
    codes[ncodes++] = ci;
    return 0;
}

/* The code_info stays allocated: a thread may still have a frame pointing at
 * it.  It is only unhooked from the code object (which clears its `code`);
 * it is freed when the registry resets. */
void mt_tracer_unregister_code(PyObject *code)
{
    if (lookup(code) != NULL && MT_CODE_SET_EXTRA(code, extra_index, NULL) < 0) {
        PyErr_Clear();
    }
}

PyObject *mt_tracer_table_stats(int table)
{
    if (!table_ok(table)) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return NULL;
    }
#if MT_HAVE_MONITORING
    vl_sync_all();
#endif
    table_t *t = &tables[table];
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && i < t->nlines; i++) {
        line_stats_t *s = &t->lines[i];
        if (s->occurrences == 0) {
            continue;
        }
        /* A line that has not finished yet (a thread is still running it):
         * the memory now, never the placeholder. */
        int64_t usage = s->mem_usage == INT64_MIN ? mem_usage_now() : s->mem_usage;
        PyObject *row = Py_BuildValue("(iLLLL)", t->first_line + i, (long long)s->occurrences,
                                      (long long)s->increment, (long long)s->peak,
                                      (long long)usage);
        if (row == NULL || PyList_Append(out, row) < 0) {
            Py_XDECREF(row);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(row);
    }
    return out;
}

void mt_tracer_reset_table(int table)
{
    if (!table_ok(table)) {
        return;
    }
    table_t *t = &tables[table];
    for (int i = 0; i < t->nlines; i++) {
        t->lines[i] = (line_stats_t){0, 0, 0, INT64_MIN};
    }
}

/* pairs: a list of (line, target line). */
static int set_line_map(int table, PyObject *pairs)
{
    if (!table_ok(table)) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return -1;
    }
    Py_ssize_t n = PyList_Size(pairs);
    if (n < 0) {
        return -1;
    }
    int lo = 0, hi = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int line, target;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(pairs, i), "ii", &line, &target)) {
            return -1;
        }
        if (line <= 0 || target <= 0) {
            PyErr_SetString(PyExc_ValueError, "line numbers must be positive");
            return -1;
        }
        if (i == 0 || line < lo) {
            lo = line;
        }
        if (i == 0 || line > hi) {
            hi = line;
        }
    }
    table_t *t = &tables[table];
    int *map = NULL;
    if (n > 0) {
        map = calloc((size_t)(hi - lo + 1), sizeof(int));
        if (map == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            int line, target;
            PyArg_ParseTuple(PyList_GET_ITEM(pairs, i), "ii", &line, &target);
            map[line - lo] = target;
        }
    }
    free(t->map);
    t->map = map;
    t->map_first = lo;
    t->map_n = n > 0 ? hi - lo + 1 : 0;
    return 0;
}

/* ------------------------------------------------------------ thread state */

static MT_NOINLINE tstate_t *new_state(void);

static inline tstate_t *state(void)
{
    tstate_t *ts = t_state;
    if (MT_LIKELY(ts != NULL && ts->generation == generation)) {
        return ts;
    }
    return new_state();
}

static MT_NOINLINE tstate_t *new_state(void)
{
    tstate_t *ts;
    ts = calloc(1, sizeof(tstate_t));
    if (ts == NULL) {
        return NULL;
    }
    ts->generation = generation;
    ts->cur = &mt_thread_cur;
    ts->hwm = &mt_thread_hwm;
    ts->next = all_states;
    all_states = ts;
    t_state = ts;
    return ts;
}

static frame_t *push_frame(tstate_t *ts)
{
    if (ts->depth == ts->cap) {
        int cap = ts->cap ? ts->cap * 2 : 16;
        frame_t *grown = realloc(ts->frames, sizeof(frame_t) * (size_t)cap);
        if (grown == NULL) {
            return NULL;
        }
        ts->frames = grown;
        ts->cap = cap;
    }
    frame_t *fr = &ts->frames[ts->depth++];
    /* field by field: a memset of the whole struct (two records) was most of
     * the cost of a call (a record's other fields are set when it opens) */
    fr->ci = NULL;
    fr->skip_line = -1;
    fr->recursive = 0;
    fr->table = -1;
    fr->fresh = 0;
    fr->saved_foreign = 0;
    fr->iframe = NULL;
    fr->vl_at = -1;
    fr->vl = NULL;
    fr->call.active = 0;
    fr->line.active = 0;
    return fr;
}

static MT_NOINLINE int32_t *grow_counter_slow(int32_t **array, int *cap, int index);

static inline int32_t *grow_counter(int32_t **array, int *cap, int index)
{
    if (MT_LIKELY(index < *cap)) {
        return &(*array)[index];
    }
    return grow_counter_slow(array, cap, index);
}

static MT_NOINLINE int32_t *grow_counter_slow(int32_t **array, int *cap, int index)
{
    if (index >= *cap) {
        int n = index + 16;
        int32_t *grown = realloc(*array, sizeof(int32_t) * (size_t)n);
        if (grown == NULL) {
            return NULL;
        }
        memset(grown + *cap, 0, sizeof(int32_t) * (size_t)(n - *cap));
        *array = grown;
        *cap = n;
    }
    return &(*array)[index];
}

static inline int table_running(tstate_t *ts, int table)
{
    return table < ts->table_cap && ts->table_depth[table] > 0;
}

/* ----------------------------------------------------------------- records */

/* The innermost open record at or below frame index `top`. */
static record_t *open_record(tstate_t *ts, int top)
{
    for (int i = top; i >= 0; i--) {
        frame_t *fr = &ts->frames[i];
        if (fr->line.active) {
            return &fr->line;
        }
        if (fr->call.active) {
            return &fr->call;
        }
    }
    return NULL;
}

/* Open `rec`, the call record of the frame just pushed (the top one). */
static void start_record(tstate_t *ts, record_t *rec, int table, int line, int count_inc,
                         int count_occurrence)
{
    record_t *outer = open_record(ts, ts->depth - 2); /* the new frame has none open */
    if (outer != NULL && mt_thread_hwm > outer->max) {
        outer->max = mt_thread_hwm; /* fold before the mark is reset */
    }
    line_stats_t *s = stats_at(table, line);
    if (s == NULL) {
        return;
    }
    s->occurrences += count_occurrence;
    rec->counted = count_occurrence;
    rec->active = 1;
    rec->table = table;
    rec->line = line;
    rec->count_increment = count_inc;
    rec->bias = 0;
    rec->start = rec->max = mt_thread_hwm = mt_thread_cur;
}

/* Close `rec`; `parent` is the record that encloses it (may be NULL). */
static void finish_record(record_t *rec, record_t *parent)
{
    if (!rec->active) {
        return;
    }
    rec->active = 0;
    if (mt_thread_hwm > rec->max) {
        rec->max = mt_thread_hwm;
    }
    if (parent != NULL && rec->max > parent->max) {
        parent->max = rec->max;
    }
    line_stats_t *s = stats_at(rec->table, rec->line);
    if (s == NULL) {
        return;
    }
    if (rec->count_increment) {
        s->increment += mt_thread_cur - rec->start + rec->bias;
    }
    if (rec->max - rec->start > s->peak) {
        s->peak = rec->max - rec->start;
    }
    int64_t level = mem_usage_now();
    if (level > s->mem_usage) {
        s->mem_usage = level;
    }
}

static void finish_line(tstate_t *ts, frame_t *fr)
{
    if (fr->line.active) {
        record_t *parent = fr->call.active ? &fr->call : open_record(ts, (int)(fr - ts->frames) - 1);
        finish_record(&fr->line, parent);
    }
}

static inline void flush_pending(tstate_t *ts)
{
    if (MT_UNLIKELY(ts->pending.active)) {
        finish_record(&ts->pending, open_record(ts, ts->depth - 1));
    }
}

/* ------------------------------------------------------------ pending calls */

/* The call record of a returning plain function is handed to a "pending call"
 * object put in the frame's f_locals field, holding what was there (NULL, or
 * the dict that locals() or frame.f_locals made on 3.11/3.12).  CPython clears
 * a frame by releasing its slots first, then f_locals (3.11 to 3.13), so when
 * the object dies every local is gone, including those the dict kept; it then
 * releases the dict and closes the record.  No local slot is touched: cells,
 * free variables and the 3.13 locals proxy see the frame as it is.
 *
 * It cannot escape: it is placed only when nothing else can look at the frame
 * between the return event and the clearing (no frame object kept, no other
 * trace or profile function, no other monitoring tool with PY_RETURN on this
 * code), and a cleared frame is unlinked from the thread.  So nothing but the
 * frame refers to it, and it needs no garbage-collector support. */
typedef struct pending_call {
    PyObject_HEAD
    PyObject *held; /* the frame's own f_locals (may be NULL) */
    unsigned seq;   /* which tstate_t.pending it closes */
    struct pending_call *next_free;
} pending_call_t;

static void pending_call_dealloc(PyObject *op);

static PyTypeObject pending_call_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtrim.engine._engine.pending_call",
    .tp_basicsize = sizeof(pending_call_t),
    .tp_dealloc = pending_call_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Closes a profiled call's record when its frame releases its locals.",
};

/* Allocated with the C library's malloc, which the heap hooks do not count,
 * and recycled: they never show up in the figures (GIL). */
static pending_call_t *free_pending;

static void pending_call_dealloc(PyObject *op)
{
    pending_call_t *p = (pending_call_t *)op;
    PyObject *held = p->held;
    unsigned seq = p->seq;
    p->held = NULL;
    p->next_free = free_pending;
    free_pending = p;
    Py_XDECREF(held);
    tstate_t *ts = t_state;

    if (ts != NULL && ts->generation == generation && ts->pending.active &&
        ts->pending_seq == seq) {
        finish_record(&ts->pending, open_record(ts, ts->depth - 1));
    }
}

static pending_call_t *new_pending_call(void)
{
    pending_call_t *p = free_pending;
    if (p != NULL) {
        free_pending = p->next_free;
    }
    else {
        p = malloc(sizeof(pending_call_t));
        if (p == NULL) {
            return NULL;
        }
    }
    memset(p, 0, sizeof(*p));
    PyObject_Init((PyObject *)p, &pending_call_type);
    return p;
}

#if MT_HAVE_MONITORING
/* memtrim's sys.monitoring tool id and PY_RETURN's event number (set from
 * Python once the tool is registered). */
static int own_tool = -1;
static int py_return_event = -1;

/* Does a monitoring tool other than memtrim's get this code's PY_RETURN?  The
 * code's active monitors are the union of the global and local events, read
 * from the interpreter's own tables (what it dispatches from). */
static int others_see_return(PyCodeObject *co)
{
    _PyCoMonitoringData *data = co->_co_monitoring;
    if (own_tool < 0 || py_return_event < 0 || data == NULL) {
        return 1; /* cannot tell: assume they do */
    }
    unsigned tools = data->active_monitors.tools[py_return_event];
    return (tools & ~(1u << own_tool)) != 0;
}
#else
static int profilefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
static int tracefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
#endif

/* Can the call record of the returning frame wait for its locals? Only if
 * the frame is cleared right away and nobody else sees it meanwhile. */
static mt_frame_t *clearable_frame(PyObject *code)
{
    PyThreadState *py = PyThreadState_Get();
#if MT_HAVE_MONITORING
    if (py->c_tracefunc != NULL || py->c_profilefunc != NULL ||
        others_see_return((PyCodeObject *)code)) {
        return NULL; /* a debugger, coverage or a profiler may still read the frame */
    }
#else
    if (py->c_profilefunc != profilefunc ||
        (py->c_tracefunc != NULL && py->c_tracefunc != tracefunc)) {
        return NULL;
    }
#endif
    mt_frame_t *f = mt_current_frame(py);
    if (f == NULL || mt_frame_code(f) != (PyCodeObject *)code) {
        return NULL;
    }
    if (f->frame_obj != NULL && Py_REFCNT(f->frame_obj) > 1) {
        return NULL; /* someone keeps the frame object: it will keep the locals */
    }
    if (f->f_locals != NULL && !PyDict_CheckExact(f->f_locals)) {
        return NULL; /* only a function's own locals dict is expected there */
    }
    return f;
}

#if !MT_HAVE_MONITORING
/* 3.11 creates a frame object for the profile function at the call; it is
 * freed with the frame, inside the call record's window.  Its size is what
 * _PyFrame_New_NoTrack asks for: a GC header and room for every slot. */
static int64_t frame_object_bytes(mt_frame_t *f)
{
    PyObject *fo = (PyObject *)f->frame_obj;
    if (fo == NULL) {
        return 0;
    }
    PyCodeObject *co = f->f_code;
    Py_ssize_t slots = co->co_nlocalsplus + co->co_stacksize;
    return (int64_t)(2 * sizeof(uintptr_t) + _PyObject_VAR_SIZE(Py_TYPE(fo), slots));
}
#endif

/* The root frame `fr` returns: close its call record now, or hand it to a
 * pending-call object placed in the frame's f_locals field. */
static void close_call_at_return(tstate_t *ts, frame_t *fr, PyObject *code)
{
    mt_frame_t *f = NULL;
    if (fr->call.active && fr->ci->plain) {
        f = clearable_frame(code);
    }
    pending_call_t *p = f != NULL ? new_pending_call() : NULL;
    if (p == NULL) {
        finish_record(&fr->call, open_record(ts, ts->depth - 2));
        return;
    }
    p->held = f->f_locals;
    p->seq = ++ts->pending_seq;
    f->f_locals = (PyObject *)p;
    ts->pending = fr->call;
#if !MT_HAVE_MONITORING
    ts->pending.bias = frame_object_bytes(f);
#endif
    fr->call.active = 0;
}

/* ------------------------------------------------------------------ events */

static frame_t *enter_frame(tstate_t *ts, code_info_t *ci)
{
    /* only nested code needs the record it runs in */
    record_t *outer = ci->is_root ? NULL : open_record(ts, ts->depth - 1);
    int32_t *depth = grow_counter(&ts->code_depth, &ts->code_cap, ci->index);
    int32_t *tdepth = NULL;
    if (ci->is_root) {
        tdepth = grow_counter(&ts->table_depth, &ts->table_cap, ci->table);
        if (tdepth == NULL) {
            return NULL;
        }
    }
    frame_t *fr = depth ? push_frame(ts) : NULL;
    if (fr == NULL) {
        return NULL;
    }
    fr->ci = ci;
    fr->recursive = (*depth)++ > 0;
    if (tdepth != NULL) { /* push_frame() set skip_line and table to -1 */
        (*tdepth)++;
        fr->table = ci->table;
    }
    if (!ci->is_root && outer != NULL && outer->table == ci->table) {
        fr->skip_line = outer->line;
    }
    return fr;
}

static void pop_frame(tstate_t *ts)
{
    frame_t *fr = &ts->frames[ts->depth - 1];
    int i = fr->ci->index;
    if (i < ts->code_cap && ts->code_depth[i] > 0) {
        ts->code_depth[i]--;
    }
    if (fr->table >= 0 && fr->table < ts->table_cap && ts->table_depth[fr->table] > 0) {
        ts->table_depth[fr->table]--;
    }
    ts->depth--;
}

/* Returns the new frame, or NULL if the code is not followed here. */
static frame_t *on_start(PyObject *code, int count_occurrence)
{
    code_info_t *ci = lookup_fast(code);
    if (ci == NULL) {
        return NULL;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return NULL;
    }
    flush_pending(ts);
    if (!ci->is_root && !table_running(ts, ci->table)) {
        return NULL; /* nested code run outside a call of its function */
    }
    if (ci->is_root && ts->depth == 0) {
        /* At most every REBASE_NS, except at each function's first call: what
         * was imported since the last reading shows in its first table. */
        rebase(!ci->rebased);
        ci->rebased = 1;
    }
    frame_t *fr = enter_frame(ts, ci);
    if (fr != NULL && ci->is_root) {
        start_record(ts, &fr->call, ci->table, ci->first_line, !fr->recursive,
                     count_occurrence);
        fr->fresh = 1;
    }
    return fr;
}

void mt_on_start(PyObject *code)
{
    on_start(code, 1);
}

/* The top frame `fr` moves to `line`: finish_line() then, if `start`,
 * start_record() of its line record, in one pass with the same figures.  The
 * record enclosing the line record is the same for both (the frame's call
 * record, or the innermost open one below), and once the finished record has
 * folded the mark into it, the start has nothing left to fold. */
static inline __attribute__((always_inline)) void next_line(tstate_t *ts, frame_t *fr, int table,
                                                          int line, int start)
{
    const int64_t cur = mt_thread_cur, hwm = mt_thread_hwm;
    record_t *parent = fr->call.active ? &fr->call : open_record(ts, ts->depth - 2);
    record_t *rec = &fr->line;
    if (rec->active) {
        rec->active = 0;
        int64_t max = rec->max > hwm ? rec->max : hwm;
        rec->max = max;
        if (parent != NULL && max > parent->max) {
            parent->max = max;
        }
        line_stats_t *s = stats_at(rec->table, rec->line);
        if (MT_LIKELY(s != NULL)) {
            if (rec->count_increment) {
                s->increment += cur - rec->start + rec->bias;
            }
            if (max - rec->start > s->peak) {
                s->peak = max - rec->start;
            }
            int64_t level = mem_usage_now();
            if (level > s->mem_usage) {
                s->mem_usage = level;
            }
        }
    }
    else if (parent != NULL && hwm > parent->max) {
        parent->max = hwm;
    }
    if (!start) {
        return;
    }
    line_stats_t *s = stats_at(table, line);
    if (MT_UNLIKELY(s == NULL)) {
        return;
    }
    s->occurrences++;
    rec->counted = 1;
    rec->active = 1;
    rec->table = table;
    rec->line = line;
    rec->count_increment = !fr->recursive;
    rec->bias = 0;
    rec->start = rec->max = mt_thread_hwm = cur;
}

int mt_on_line(PyObject *code, int line)
{
    code_info_t *ci = lookup_fast(code);
    if (ci == NULL) {
        return 0;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return 0;
    }
    flush_pending(ts);
    int folded = 0;
    line = fold_line(ci->table, line, &folded);
    frame_t *fr = ts->depth ? &ts->frames[ts->depth - 1] : NULL;
    if (fr == NULL || fr->ci != ci) {
        if (!ci->is_root && !table_running(ts, ci->table)) {
            return 0;
        }
        /* profiling switched on while this frame was already running */
        fr = enter_frame(ts, ci);
        if (fr == NULL) {
            return 0;
        }
    }
    if (fr->line.active && fr->line.line == line) {
        /* a jump back to the same line: still the same execution.  A folded
         * line's event here never starts anything: it can be turned off. */
        return folded;
    }
    fr->fresh = 0;
    next_line(ts, fr, ci->table, line, line != fr->skip_line);
    return 0;
}

#if MT_HAVE_MONITORING
static void vl_ending(tstate_t *ts, code_info_t *ci);
#endif

static frame_t *ending_frame(PyObject *code, tstate_t **out)
{
    code_info_t *ci = lookup_fast(code);
    tstate_t *ts = t_state;
    if (ts == NULL || ts->generation != generation) {
        return NULL;
    }
#if MT_HAVE_MONITORING
    vl_ending(ts, ci); /* its last lines first */
#endif
    if (ci == NULL || ts->depth == 0) {
        return NULL;
    }
    flush_pending(ts);
    frame_t *fr = &ts->frames[ts->depth - 1];
    if (fr->ci != ci) {
        return NULL; /* a frame we never saw start */
    }
    finish_line(ts, fr);
    *out = ts;
    return fr;
}

void mt_on_end(PyObject *code)
{
    tstate_t *ts;
    frame_t *fr = ending_frame(code, &ts);
    if (fr != NULL) {
        finish_record(&fr->call, open_record(ts, ts->depth - 2));
        pop_frame(ts);
    }
}

void mt_on_return(PyObject *code)
{
    tstate_t *ts;
    frame_t *fr = ending_frame(code, &ts);
    if (fr != NULL) {
        close_call_at_return(ts, fr, code);
        pop_frame(ts);
    }
}

/* An event's int argument (a line, an offset): CPython's own exact int,
 * read in place; anything else through PyLong_AsLong.  -1 and an exception
 * on error. */
static inline long event_int(PyObject *arg)
{
#if MT_HAVE_MONITORING
    if (MT_LIKELY(PyLong_CheckExact(arg) && PyUnstable_Long_IsCompact((PyLongObject *)arg))) {
        return (long)PyUnstable_Long_CompactValue((PyLongObject *)arg);
    }
#endif
    return PyLong_AsLong(arg);
}

/* ------------------------------------------ 3.12+: virtual lines */

/* LINE events cost CPython a callback per line run, and a boxed int (an
 * allocation the hooks count) for every line number above 256.  Code whose
 * control flow allows it takes its lines from the events that change the
 * flow instead: JUMP and BRANCH (each loop round, each `if`), the calls,
 * returns, yields and handled exceptions.  Between two such events a frame
 * runs straight through its instructions, so the LINE events CPython would
 * have sent on the way are known from the bytecode: each instruction that
 * CPython marks as a line location fires when the instruction before it is on
 * another line (or is a RESUME).  These "virtual" lines are replayed, with the
 * same figures, at the next point where they matter:
 *
 *   - before the thread's heap level changes (the hooks call mt_vl_heap), so
 *     a line's record starts at the level it started at;
 *   - before a call starts (the caller's line encloses the callee);
 *   - at the frame's next flow event, return, yield or exception.
 *
 * A line that allocates nothing needs no record of its own when it runs:
 * its increment and peak are 0 either way, its occurrence and its Mem usage
 * (the level then, unchanged since the last heap event) are what the replay
 * gives it.  Jumps whose source and target are on one line, with only that
 * line between them, change nothing and are switched off (DISABLE); code with
 * such a jump that sends no event (SEND, JUMP_BACKWARD_NO_INTERRUPT) across
 * lines keeps its LINE events (tracer.py decides, from the bytecode).
 *
 * Without the GIL (a C call that released it) the tracer's tables cannot be
 * touched: the first allocation there notes the thread's level and mark, and
 * the replay happens with those figures at the next point with the GIL. */

#if MT_HAVE_MONITORING
#define VL_MARKED 1 /* CPython instruments this instruction for LINE */
#define VL_RESUME 2 /* a RESUME: the next line location always fires */
#define VL_QUIET 4  /* a jump that changes no line: its event can go */
#define VL_TARGET 8 /* where a jump can land */

typedef struct vl {
    int32_t nunits;
    int32_t *start; /* code unit -> first unit of its instruction */
    int32_t *line;  /* instruction -> its line, -1: none */
    int32_t *vline; /* instruction -> the line CPython fires there when the
                     * instruction before it ran last, else 0 */
    int32_t *vidx;  /* unit -> how many vline instructions at or before it */
    int32_t *vlist; /* the vline instructions, in order (vidx indexes it) */
    uint8_t *flags;
    /* jumps back that send no event: (source, target) by source */
    int32_t nback;
    int32_t (*back)[2];
    struct vl *retired_next; /* on the retired list (see py_use_branches) */
} vl_t;

static void vl_free_retired(void)
{
    while (retired_vl != NULL) {
        vl_t *next = retired_vl->retired_next;
        free(retired_vl);
        retired_vl = next;
    }
}

MT_TLS void *mt_vl_frame;
MT_TLS const void *mt_vl_ip;
/* A replay put off: 0, VL_NOGIL (an allocation without the GIL) or VL_LANDING
 * (an allocation at a jump target that the jump's event has not reached yet:
 * CPython boxes the event's offsets after it has moved the frame there). */
#define VL_NOGIL 1
#define VL_LANDING 2

static inline int vl_unit(vl_t *vl, Py_ssize_t unit)
{
    return unit >= 0 && unit < vl->nunits ? vl->start[unit] : -1;
}

/* The unit of the instruction the frame is running. */
static inline int vl_frame_unit(vl_t *vl, mt_frame_t *f)
{
    return vl_unit(vl, mt_frame_lasti(f));
}

/* What a LINE event at `line` does to the top frame `fr` (mt_on_line). */
static MT_NOINLINE void vl_line(tstate_t *ts, frame_t *fr, int line)
{
    int folded = 0;
    int table = fr->ci->table;
    line = fold_line(table, line, &folded);
    if (fr->line.active && fr->line.line == line) {
        return;
    }
    fr->fresh = 0;
    next_line(ts, fr, table, line, line != fr->skip_line);
}

static inline void vl_replay(tstate_t *ts, frame_t *fr, vl_t *vl, int from, int to)
{
    for (int k = vl->vidx[from], end = vl->vidx[to]; k < end; k++) {
        vl_line(ts, fr, vl->vline[vl->vlist[k]]);
    }
}

static inline int vl_fires(vl_t *vl, int src, int dest);

/* Replay the lines the top frame `fr` ran straight from fr->vl_at to `unit`.
 * A unit before vl_at: the frame jumped back without an event, by the first
 * such jump after vl_at (it ran straight to it): up to the jump, then from
 * its target (on one line, these replay nothing). */
static MT_NOINLINE void vl_walk_slow(tstate_t *ts, frame_t *fr, vl_t *vl, int unit)
{
    int at = fr->vl_at;
    if (unit < 0) {
        return;
    }
    if (at >= 0 && unit > at) {
        vl_replay(ts, fr, vl, at, unit);
    }
    else if (at >= 0 && unit < at) {
        for (int i = 0; i < vl->nback; i++) {
            int src = vl->back[i][0], target = vl->back[i][1];
            if (src < at) {
                continue;
            }
            if (target <= unit) {
                vl_replay(ts, fr, vl, at, src);
                if (vl_fires(vl, src, target)) {
                    vl_line(ts, fr, vl->line[target]);
                }
                vl_replay(ts, fr, vl, target, unit);
            }
            break;
        }
    }
    fr->vl_at = unit;
}

/* vl_walk_slow(), inline when the frame has not moved, or only forward past
 * at most one line location (most calls to it). */
static inline void vl_walk(tstate_t *ts, frame_t *fr, vl_t *vl, int unit)
{
    int at = fr->vl_at;
    if (unit == at) {
        return;
    }
    if (unit > at && at >= 0) {
        int k = vl->vidx[at], n = vl->vidx[unit] - k;
        if (n == 0) {
            fr->vl_at = unit;
            return;
        }
        if (n == 1) {
            vl_line(ts, fr, vl->vline[vl->vlist[k]]);
            fr->vl_at = unit;
            return;
        }
    }
    vl_walk_slow(ts, fr, vl, unit);
}

/* Does CPython fire LINE at `dest` when it comes from `src` (a jump, or an
 * exception caught there)? */
static inline int vl_fires(vl_t *vl, int src, int dest)
{
    uint8_t f = vl->flags[dest];
    int line = vl->line[dest];
    return (f & VL_MARKED) && line >= 0 &&
           (line != vl->line[src] || (vl->flags[src] & VL_RESUME));
}

static inline frame_t *vl_top(tstate_t *ts)
{
    if (ts == NULL || ts->generation != generation || ts->depth == 0) {
        return NULL;
    }
    frame_t *fr = &ts->frames[ts->depth - 1];
    return fr->vl != NULL ? fr : NULL;
}

/* Put the replay off, with the figures of this moment: the thread's mark is
 * reset, as a new line's would be (vl_undefer sorts out which it was). */
static void vl_defer(tstate_t *ts, int kind, int unit)
{
    ts->vl_deferred = kind;
    ts->vl_def_cur = mt_thread_cur;
    ts->vl_def_hwm = mt_thread_hwm;
    ts->vl_def_unit = unit;
    mt_thread_hwm = mt_thread_cur;
}

/* A put-off replay that was a jump's landing after all (the jump's own event
 * replays up to its source): nothing to replay, the mark comes back. */
static void vl_drop_deferred(tstate_t *ts)
{
    ts->vl_deferred = 0;
    if (ts->vl_def_hwm > mt_thread_hwm) {
        mt_thread_hwm = ts->vl_def_hwm;
    }
}

/* The replay put off, with the figures of that moment. */
static MT_NOINLINE void vl_undefer_slow(tstate_t *ts)
{
    ts->vl_deferred = 0;
    frame_t *fr = vl_top(ts);
    if (fr == NULL) {
        return;
    }
    int64_t cur = mt_thread_cur, hwm = mt_thread_hwm;
    mt_thread_cur = ts->vl_def_cur;
    mt_thread_hwm = ts->vl_def_hwm;
    vl_walk(ts, fr, fr->vl, ts->vl_def_unit);
    int64_t mark = mt_thread_hwm; /* the new line's start, or the old mark */
    mt_thread_cur = cur;
    mt_thread_hwm = hwm > mark ? hwm : mark;
}

static inline void vl_undefer(tstate_t *ts)
{
    if (MT_UNLIKELY(ts != NULL && ts->vl_deferred)) {
        vl_undefer_slow(ts);
    }
}

/* Bring the top frame's lines up to where it is now. */
static inline void vl_sync_top(tstate_t *ts)
{
    vl_undefer(ts);
    frame_t *fr = vl_top(ts);
    if (fr != NULL) {
        vl_walk(ts, fr, fr->vl, vl_frame_unit(fr->vl, fr->iframe));
    }
}

/* After an event: which frame the heap hooks replay for (none while memtrim's
 * own callbacks run: they clear it on entry). */
static inline void vl_retop(tstate_t *ts)
{
    frame_t *fr = vl_top(ts);
    mt_vl_frame = fr != NULL ? fr->iframe : NULL;
    /* The frame's lines are accounted as of where it is now, even if it has
     * not moved there yet (a jump's event comes with the frame still at the
     * jump, and CPython frees the event's boxed offsets after it). */
    mt_vl_ip = fr != NULL ? mt_frame_ip(fr->iframe) : NULL;
}

/* Before a table is read: every thread's lines up to where its frame is (a
 * line still running shows, as with LINE events).  Another thread is not
 * running Python (this one holds the GIL): its counters are taken into this
 * thread's for the replay, and given back. */
static void vl_sync_all(void)
{
    void *own_frame = mt_vl_frame;
    mt_vl_frame = NULL;
    for (tstate_t *ts = all_states; ts != NULL; ts = ts->next) {
        if (vl_top(ts) == NULL) {
            continue;
        }
        if (ts == t_state) {
            vl_sync_top(ts);
            continue;
        }
        int64_t cur = mt_thread_cur, hwm = mt_thread_hwm;
        mt_thread_cur = *ts->cur;
        mt_thread_hwm = *ts->hwm;
        vl_sync_top(ts);
        *ts->cur = mt_thread_cur;
        *ts->hwm = mt_thread_hwm;
        mt_thread_cur = cur;
        mt_thread_hwm = hwm;
    }
    mt_vl_frame = own_frame;
}

static MT_NOINLINE void vl_heap_slow(int gil)
{
    mt_frame_t *f = mt_vl_frame;
    tstate_t *ts = t_state;
    frame_t *fr = vl_top(ts);
    if (fr == NULL || fr->iframe != f) {
        mt_vl_frame = NULL; /* cannot happen: the events keep it right */
        return;
    }
    const void *ip = mt_frame_ip(f); /* mt_vl_check saw it move since mt_vl_ip */
    vl_t *vl = fr->vl;
    int unit = vl_frame_unit(vl, f);
    if (!gil) {
        if (!ts->vl_deferred) {
            vl_defer(ts, VL_NOGIL, unit);
        }
        return;
    }
    mt_vl_frame = NULL; /* no re-entry from what the replay allocates */
    vl_undefer(ts);
    if (unit >= 0 && unit != fr->vl_at && (vl->flags[unit] & VL_TARGET)) {
        /* perhaps a jump's landing, its event still to come: put off */
        vl_defer(ts, VL_LANDING, unit);
    }
    else {
        vl_walk(ts, fr, vl, unit);
    }
    mt_vl_frame = f;
    mt_vl_ip = ip;
}

/* Most heap events find the frame moved forward, not to a jump's target:
 * the lines on the way (mostly none, or a call's first line) are replayed
 * here, without vl_heap_slow's checks. */
void mt_vl_heap(int gil)
{
    mt_frame_t *f = mt_vl_frame;
    tstate_t *ts = t_state;
    if (MT_LIKELY(gil && ts != NULL && ts->generation == generation && ts->depth > 0 &&
                  !ts->vl_deferred)) {
        frame_t *fr = &ts->frames[ts->depth - 1];
        vl_t *vl = fr->vl;
        if (MT_LIKELY(vl != NULL && fr->iframe == f)) {
            int unit = vl_frame_unit(vl, f), at = fr->vl_at;
            if (unit >= at && at >= 0 && (unit == at || !(vl->flags[unit] & VL_TARGET))) {
                mt_vl_frame = NULL; /* no re-entry from what the replay allocates */
                vl_walk(ts, fr, vl, unit);
                mt_vl_frame = f;
                mt_vl_ip = mt_frame_ip(f);
                return;
            }
        }
    }
    vl_heap_slow(gil);
}

/* `fr` was just pushed for `code`, of virtual-line code, at `offset` (its
 * RESUME): it replays its lines from there. */
static void vl_started(frame_t *fr, PyObject *code, PyObject *offset_obj)
{
    mt_frame_t *f = mt_current_frame(PyThreadState_Get());
    if (f == NULL || (PyObject *)mt_frame_code(f) != code) {
        fr->iframe = NULL; /* not expected: no replay for this frame */
        fr->vl = NULL;
        return;
    }
    fr->iframe = f;
    fr->vl = fr->ci->vl;
    long offset = offset_obj != NULL ? event_int(offset_obj) : -1;
    if (offset == -1 && PyErr_Occurred()) {
        PyErr_Clear();
    }
    fr->vl_at = offset >= 0 ? vl_unit(fr->vl, offset / 2) : vl_frame_unit(fr->vl, f);
}

/* The jump from unit `s` to unit `d` of the top frame `fr`, which replays
 * its lines (fr->vl): the lines up to the jump, then the target's (also an
 * exception raised at `s`, caught at `d`).  1: the jump's event can be
 * switched off. */
static inline int vl_jump_top(tstate_t *ts, frame_t *fr, vl_t *vl, int s, int d)
{
    vl_walk(ts, fr, vl, s);
    if (vl_fires(vl, s, d)) {
        vl_line(ts, fr, vl->line[d]);
    }
    fr->vl_at = d;
    return (vl->flags[s] & VL_QUIET) != 0;
}

/* A JUMP or BRANCH event from `src` to `dest` (byte offsets).  1: it can be
 * switched off. */
static int vl_jump(PyObject *code, long src, long dest)
{
    code_info_t *ci = lookup_fast(code);
    if (ci == NULL || ci->vl == NULL) {
        return 0;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return 0;
    }
    vl_t *vl = ci->vl;
    int s = vl_unit(vl, src / 2), d = vl_unit(vl, dest / 2);
    if (ts->vl_deferred == VL_LANDING && ts->vl_def_unit == d) {
        vl_drop_deferred(ts); /* this jump's landing */
    }
    vl_undefer(ts);
    flush_pending(ts);
    if (s < 0 || d < 0) {
        return 0;
    }
    frame_t *fr = ts->depth ? &ts->frames[ts->depth - 1] : NULL;
    if (fr == NULL || fr->ci != ci) {
        if (!ci->is_root && !table_running(ts, ci->table)) {
            return 0;
        }
        /* profiling switched on while this frame was already running */
        fr = enter_frame(ts, ci);
        if (fr == NULL) {
            return 0;
        }
        mt_frame_t *f = mt_current_frame(PyThreadState_Get());
        fr->iframe = f != NULL && (PyObject *)mt_frame_code(f) == code ? f : NULL;
        fr->vl = fr->iframe != NULL ? vl : NULL;
        fr->vl_at = s;
    }
    return vl_jump_top(ts, fr, vl, s, d);
}

/* An exception raised in the top frame was caught there, at `handler`. */
static void vl_handled(PyObject *code, long handler)
{
    code_info_t *ci = lookup_fast(code);
    if (ci == NULL || ci->vl == NULL) {
        return;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return;
    }
    vl_undefer(ts);
    flush_pending(ts);
    frame_t *fr = vl_top(ts);
    if (fr == NULL || fr->ci != ci) {
        return;
    }
    vl_t *vl = ci->vl;
    int x = vl_frame_unit(vl, fr->iframe), h = vl_unit(vl, handler / 2);
    if (x < 0 || h < 0) {
        return;
    }
    (void)vl_jump_top(ts, fr, vl, x, h); /* up to where it was raised, then the handler */
}

/* Before the top frame ends (return, yield, exception) in code `ci` (NULL:
 * not followed): its last lines. */
static void vl_ending(tstate_t *ts, code_info_t *ci)
{
    vl_undefer(ts);
    frame_t *fr = vl_top(ts);
    if (fr != NULL && fr->ci == ci && ci != NULL) {
        vl_walk(ts, fr, fr->vl, vl_frame_unit(fr->vl, fr->iframe));
    }
}

#endif

/* ------------------------------------------------ 3.11: profile + trace */

/* Python 3.11 has no per-code events.  Any trace or profile function puts the
 * whole thread in "tracing" dispatch (no specialized instructions), and a
 * trace function on top makes CPython compute line numbers at every
 * instruction.  So, while a profiled call runs in this thread, we install a
 * C *profile* function (call/return events only), and switch the C *trace*
 * function (line events) on only while the running frame is profiled code:
 * a callee such as a comprehension or a library function runs without it.
 *
 * memtrim never displaces a trace or profile function that is not its own
 * (a debugger, coverage, cProfile): while one is installed in the thread,
 * memtrim's are not ("armed" is 0) and the profiled code that runs meanwhile
 * is not measured.  Records left open when another one takes a slot are
 * dropped, with the occurrences they had counted, so a table never shows a
 * figure that was not measured; the tables concerned count a "missed" call.
 * memtrim's functions come back as soon as both slots are free again: checked
 * at every call of a profiled function, in memtrim's own trace and profile
 * functions, and right after the program changes a slot (an audit hook puts
 * a one-shot "checker" in the other slot, which runs at the next event).
 *
 * Only the first installation in a thread goes through PyEval's audited
 * setter (one "sys.setprofile" audit event; an audit hook that refuses it
 * keeps memtrim out of that thread).  Afterwards memtrim writes its own
 * functions into the thread state's slots the way _PyEval_SetTrace and
 * _PyEval_SetProfile do, minus the audit event: only into a slot that is
 * empty or holds one of memtrim's functions, whose object is always NULL. */

#if !MT_HAVE_MONITORING
static int checkfunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);
static MT_TLS int t_self_setting; /* our own audited sys.setprofile is running */

static inline void update_tracing(PyThreadState *py)
{
    /* _PyThreadState_UpdateTracingState (pycore_pystate.h, 3.11) */
    int on = py->tracing == 0 && (py->c_tracefunc != NULL || py->c_profilefunc != NULL);
    py->cframe->use_tracing = on ? 255 : 0;
}

static inline int own_or_free(Py_tracefunc f)
{
    return f == NULL || f == tracefunc || f == profilefunc || f == checkfunc;
}

static void set_trace_raw(PyThreadState *py, Py_tracefunc f)
{
    if (own_or_free(py->c_tracefunc) && py->c_traceobj == NULL) {
        py->c_tracefunc = f;
        update_tracing(py);
    }
}

static void set_profile_raw(PyThreadState *py, Py_tracefunc f)
{
    if (own_or_free(py->c_profilefunc) && py->c_profileobj == NULL) {
        py->c_profilefunc = f;
        update_tracing(py);
    }
}

/* Take memtrim's one-shot checkers out of both slots. */
static void clear_checkers(PyThreadState *py)
{
    if (py->c_tracefunc == checkfunc) {
        set_trace_raw(py, NULL);
    }
    if (py->c_profilefunc == checkfunc) {
        set_profile_raw(py, NULL);
    }
}

static void uncount(record_t *rec)
{
    if (!rec->active) {
        return;
    }
    rec->active = 0;
    line_stats_t *s = rec->counted ? stats_for(rec->table, rec->line) : NULL;
    if (s != NULL && s->occurrences > 0) {
        s->occurrences--;
    }
}

/* Drop this thread's profiled frames: what they were measuring can no longer
 * be followed (`missed`: another tracer took over). */
static void abandon_frames(tstate_t *ts, int missed)
{
    while (ts->depth > 0) {
        frame_t *fr = &ts->frames[ts->depth - 1];
        uncount(&fr->line);
        uncount(&fr->call);
        if (missed) {
            tables[fr->ci->table].missed++;
            missed_any = 1;
        }
        pop_frame(ts);
    }
    ts->foreign = 0;
}

static void disarm(tstate_t *ts, PyThreadState *py, int missed)
{
    if (py->c_profilefunc == profilefunc) {
        set_profile_raw(py, NULL);
    }
    if (py->c_tracefunc == tracefunc) {
        set_trace_raw(py, NULL);
    }
    ts->armed = 0;
    abandon_frames(ts, missed);
}

static void arm(tstate_t *ts, PyThreadState *py)
{
    clear_checkers(py);
    if (py->c_profilefunc != NULL || py->c_profileobj != NULL || py->c_traceobj != NULL) {
        return;
    }
    abandon_frames(ts, 0);
    if (!ts->audited) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        t_self_setting = 1;
        int failed = _PyEval_SetProfile(py, profilefunc, NULL) < 0;
        t_self_setting = 0;
        if (failed) {
            PyErr_Clear(); /* an audit hook said no: stay out of this thread */
            ts->refused = 1;
            refused_any = 1;
        }
        PyErr_Restore(type, value, tb);
        if (failed) {
            return;
        }
        ts->audited = 1;
    }
    else {
        set_profile_raw(py, profilefunc);
    }
    ts->armed = 1;
}

/* Armed if both slots are free (or memtrim's), disarmed if another tool has
 * taken one. */
static void settle(tstate_t *ts, PyThreadState *py)
{
    if (ts->armed && (py->c_profilefunc != profilefunc ||
                      (py->c_tracefunc != NULL && py->c_tracefunc != tracefunc))) {
        disarm(ts, py, 1);
    }
    if (!ts->armed && ts->enter_count > 0 && !ts->refused) {
        if ((py->c_profilefunc == NULL || py->c_profilefunc == checkfunc) &&
            (py->c_tracefunc == NULL || py->c_tracefunc == checkfunc)) {
            arm(ts, py);
        }
        else {
            missed_any = 1;
        }
    }
}

static inline void line_tracing(PyThreadState *py, int on)
{
    if (on) {
        if (py->c_tracefunc == NULL) {
            set_trace_raw(py, tracefunc);
        }
    }
    else if (py->c_tracefunc == tracefunc) {
        set_trace_raw(py, NULL);
    }
}

/* Which frame runs next is tracked by counting unprofiled frames above the top
 * profiled one, rather than by asking for the caller's frame object: that
 * would create frame objects, i.e. allocations charged to the lines. */
static int profilefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    if (what != PyTrace_CALL && what != PyTrace_RETURN) {
        return 0;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return 0;
    }
    PyThreadState *py = PyThreadState_Get();
    if (MT_UNLIKELY(!ts->armed || (py->c_tracefunc != NULL && py->c_tracefunc != tracefunc))) {
        settle(ts, py); /* a debugger started: leave it the thread */
        if (!ts->armed || py->c_profilefunc != profilefunc) {
            return 0;
        }
    }
    /* borrowed: the frame holds it for the whole event */
    PyObject *code = (PyObject *)frame->f_frame->f_code;
    code_info_t *ci = lookup_fast(code);
    if (what == PyTrace_CALL) {
        int saved = ts->foreign, depth = ts->depth;
        ts->foreign = 0;
        if (ci != NULL) {
            on_start(code, 1);
        }
        if (ts->depth > depth) {
            ts->frames[ts->depth - 1].saved_foreign = saved;
        }
        else {
            ts->foreign = saved + 1; /* not followed: a foreign frame */
        }
    }
    else if (ts->foreign > 0) {
        ts->foreign--;
    }
    else if (ci != NULL) {
        int depth = ts->depth;
        int saved = depth ? ts->frames[depth - 1].saved_foreign : 0;
        if (arg != NULL && ci->plain) {
            mt_on_return(code);
        }
        else {
            mt_on_end(code); /* a yield, or an exit by exception (arg is NULL) */
        }
        if (ts->depth < depth) {
            ts->foreign = saved;
        }
    }
    line_tracing(py, ts->depth > 0 && ts->foreign == 0);
    return 0;
}

/* A close() throws GeneratorExit in: the profile function saw a call, the
 * trace function now sees the exception before any line. */
static void uncount_close(PyObject *code, PyObject *arg)
{
    tstate_t *ts = t_state;
    if (ts == NULL || ts->depth == 0 || !PyTuple_Check(arg) || PyTuple_GET_SIZE(arg) < 1) {
        return;
    }
    frame_t *fr = &ts->frames[ts->depth - 1];
    if (!fr->fresh || fr->ci != lookup(code) || fr->ci->plain) {
        return;
    }
    fr->fresh = 0;
    PyObject *type = PyTuple_GET_ITEM(arg, 0);
    if (PyType_Check(type) && PyErr_GivenExceptionMatches(type, PyExc_GeneratorExit)) {
        line_stats_t *s = stats_for(fr->call.table, fr->call.line);
        if (s != NULL && s->occurrences > 0) {
            s->occurrences--;
        }
    }
}

static int tracefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    PyThreadState *py = PyThreadState_Get();
    if (MT_UNLIKELY(py->c_profilefunc != profilefunc)) {
        tstate_t *ts = t_state;
        if (ts != NULL && ts->generation == generation) {
            settle(ts, py); /* the program's profiler took the other slot */
        }
        else {
            set_trace_raw(py, NULL);
        }
        return 0;
    }
    if (what == PyTrace_LINE) {
        /* CPython set f_lineno for this call (call_trace); the code is the
         * frame's, borrowed */
        int line = frame->f_lineno != 0 ? frame->f_lineno : PyFrame_GetLineNumber(frame);
        mt_on_line((PyObject *)frame->f_frame->f_code, line);
    }
    else if (what == PyTrace_EXCEPTION) {
        PyObject *code = (PyObject *)PyFrame_GetCode(frame);
        uncount_close(code, arg);
        Py_DECREF(code);
    }
    return 0;
}

/* Put in a free slot by the audit hook when the program changes the other
 * one: runs once, at the next event, and settles memtrim's functions. */
static int checkfunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    PyThreadState *py = PyThreadState_Get();
    int as_profile = py->c_profilefunc == checkfunc;
    clear_checkers(py);
    tstate_t *ts = t_state;
    if (ts == NULL || ts->generation != generation) {
        return 0;
    }
    settle(ts, py);
    /* A call seen in the profile slot: memtrim's profile function, armed
     * just now, would have seen it there.  (In the trace slot, CPython calls
     * the profile function for the same event right after.) */
    if (as_profile && ts->armed && what == PyTrace_CALL) {
        return profilefunc(obj, frame, what, arg);
    }
    return 0;
}

/* Runs before the program's sys.settrace / sys.setprofile (including
 * cProfile's and a debugger's) takes effect in this thread.  The records that
 * memtrim's function in that slot was keeping are dropped (what follows would
 * be charged to the running line), and a checker in the other slot, if it is
 * free, looks again right after the change. */
static int audit_hook(const char *event, PyObject *args, void *data)
{
    (void)args;
    (void)data;
    if (event[0] != 's' || t_self_setting) {
        return 0;
    }
    int profile = strcmp(event, "sys.setprofile") == 0;
    if (!profile && strcmp(event, "sys.settrace") != 0) {
        return 0;
    }
    tstate_t *ts = t_state;
    if (ts == NULL || ts->generation != generation || ts->enter_count == 0) {
        return 0;
    }
    PyThreadState *py = PyThreadState_Get();
    if (ts->armed && (profile ? py->c_profilefunc == profilefunc : py->c_tracefunc == tracefunc)) {
        disarm(ts, py, 1);
    }
    if (profile) {
        if (py->c_tracefunc == NULL) {
            set_trace_raw(py, checkfunc);
        }
    }
    else if (py->c_profilefunc == NULL) {
        set_profile_raw(py, checkfunc);
    }
    return 0;
}

static void ensure_audit_hook(void)
{
    static int tried; /* GIL */
    if (tried) {
        return;
    }
    tried = 1;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (PySys_AddAuditHook(audit_hook, NULL) < 0) {
        PyErr_Clear(); /* refused: memtrim then re-arms at the next profiled call */
    }
    PyErr_Restore(type, value, tb);
}
#endif

/* 0: this thread is measured now; 1: not (another tracer or profiler is
 * active, 3.11); -1: error. */
int mt_trace_enter(void)
{
    tstate_t *ts = state();
    if (ts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    ts->enter_count++;
#if !MT_HAVE_MONITORING
    ensure_audit_hook();
    settle(ts, PyThreadState_Get());
    return ts->armed ? 0 : 1;
#else
    return 0;
#endif
}

int mt_trace_exit(void)
{
    tstate_t *ts = state();
    if (ts == NULL || ts->enter_count == 0) {
        return 0;
    }
    if (--ts->enter_count == 0) {
#if !MT_HAVE_MONITORING
        PyThreadState *py = PyThreadState_Get();
        disarm(ts, py, 0);
        clear_checkers(py);
#endif
    }
    return 0;
}

static PyObject *py_watch_profilers(PyObject *self, PyObject *unused)
{
#if !MT_HAVE_MONITORING
    ensure_audit_hook();
#endif
    Py_RETURN_NONE;
}

/* A call of the profiled `code` that was not measured (its wrapper found
 * another tracer or profiler active). */
void mt_tracer_note_missed(PyObject *code)
{
    code_info_t *ci = code != NULL ? lookup(code) : NULL;
    if (ci != NULL && ci->table >= 0 && ci->table < ntables) {
        tables[ci->table].missed++;
    }
}

/* The wrapper brackets each stretch of a profiled function's execution. */
int mt_step_in(void)
{
    return MT_HAVE_MONITORING ? 0 : mt_trace_enter();
}

int mt_step_out(void)
{
    tstate_t *ts = t_state;
    if (ts != NULL && ts->generation == generation) {
        flush_pending(ts); /* a call record the frame could not close itself */
    }
    return MT_HAVE_MONITORING ? 0 : mt_trace_exit();
}

/* -------------------------------------------------- module functions */

static PyObject *disable_obj; /* sys.monitoring.DISABLE */

/* A callback's answer: DISABLE when the event's location can be switched off. */
static inline PyObject *event_result(int off)
{
    if (off && disable_obj != NULL) {
        return Py_NewRef(disable_obj);
    }
    Py_RETURN_NONE;
}

/* CPython boxes an event's int argument (a line, an instruction offset)
 * above 256 right before calling the callbacks and frees it right after: an
 * allocation in the program's thread that the heap hooks count, between the
 * line that ran and the event.  The callbacks take it out of this thread's
 * counter while they run, so that it is charged to no line: the level is
 * exact; the mark is too unless it was within one box of the level. */
#if MT_HAVE_MONITORING
static int64_t boxed_size = -1;
#endif

static inline int64_t unbox_enter(PyObject *arg)
{
#if MT_HAVE_MONITORING
    if (arg == NULL || _Py_IsImmortal(arg) || Py_REFCNT(arg) != 1 || !PyLong_CheckExact(arg)) {
        return 0;
    }
    int64_t size;
    if ((void *)arg == mt_thread_last_ptr) { /* the box is the latest block: its own size */
        size = mt_thread_last_size;         /* (3.12 boxes offsets in 28 B, lines in 32 B) */
        mt_thread_cur -= size;
        mt_thread_hwm = mt_thread_last_hwm; /* and the mark before it */
        return size;
    }
    if (MT_UNLIKELY(boxed_size <= 0)) {
        int64_t cur = mt_thread_cur, hwm = mt_thread_hwm;
        PyObject *probe = PyLong_FromLong(1000000); /* one digit, as a line or an offset */
        int64_t size = mt_thread_cur - cur;
        Py_XDECREF(probe);
        mt_thread_cur = cur;
        mt_thread_hwm = hwm;
        if (size <= 0) {
            return 0; /* the hooks are not counting here */
        }
        boxed_size = size;
    }
    size = boxed_size;
    if (mt_thread_hwm <= mt_thread_cur) {
        mt_thread_hwm = mt_thread_cur - size; /* the box may have set the mark */
    }
    mt_thread_cur -= size;
    return size;
#else
    (void)arg;
    return 0;
#endif
}

/* A JUMP or BRANCH event's two offsets: CPython boxes the target first, then
 * the source.  Both the latest blocks: out at their sizes, and the mark back
 * to what it was before the first. */
static inline int64_t unbox_pair(PyObject *src, PyObject *dest)
{
#if MT_HAVE_MONITORING
    if ((void *)src == mt_thread_last_ptr && (void *)dest == mt_thread_prev_ptr && src != NULL &&
        dest != NULL && !_Py_IsImmortal(src) && !_Py_IsImmortal(dest)) {
        int64_t size = mt_thread_last_size + mt_thread_prev_size;
        mt_thread_cur -= size;
        mt_thread_hwm = mt_thread_prev_hwm;
        return size;
    }
#endif
    return unbox_enter(src) + unbox_enter(dest);
}

/* Put the box back: CPython's free of it takes it out again. */
static inline void unbox_exit(int64_t size)
{
    mt_thread_cur += size;
}

/* Around each monitoring callback: the heap hooks replay no virtual line
 * while it runs (VL_ENTER), and know the top frame again after (VL_LEAVE). */
#if MT_HAVE_MONITORING
#define VL_ENTER() (mt_vl_frame = NULL)
#define VL_LEAVE() vl_retop(t_state)
#else
#define VL_ENTER() ((void)0)
#define VL_LEAVE() ((void)0)
#endif

/* PY_START, PY_RESUME and PY_THROW: the caller's lines up to the call, then
 * the new frame (which replays its own lines from its RESUME, if it can). */
static inline void on_start_event(PyObject *code, PyObject *offset, int count_occurrence)
{
    VL_ENTER();
#if MT_HAVE_MONITORING
    vl_sync_top(t_state);
#endif
    int64_t box = unbox_enter(offset);
    frame_t *fr = on_start(code, count_occurrence);
#if MT_HAVE_MONITORING
    if (fr != NULL && fr->ci->vl != NULL) {
        vl_started(fr, code, offset);
    }
#else
    (void)fr;
#endif
    unbox_exit(box);
    VL_LEAVE();
}

static PyObject *py_on_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        on_start_event(args[0], nargs >= 2 ? args[1] : NULL, 1);
    }
    Py_RETURN_NONE;
}

/* GeneratorExit is a close(): not a resumption in Occurrences (3.12+ closes a
 * generator without running it when no handler surrounds the yield). */
static PyObject *py_on_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        PyObject *exc = nargs >= 3 ? args[2] : NULL;
        int closing = exc != NULL && PyErr_GivenExceptionMatches(exc, PyExc_GeneratorExit);
        on_start_event(args[0], nargs >= 2 ? args[1] : NULL, !closing);
    }
    Py_RETURN_NONE;
}



#if MT_HAVE_MONITORING
static inline int compact_int(PyObject *o)
{
    return PyLong_CheckExact(o) && PyUnstable_Long_IsCompact((PyLongObject *)o);
}

/* The common JUMP or BRANCH event: in the top frame, which replays its
 * lines, with nothing put off or pending.  What vl_jump() does, without its
 * lookups; -1 when it does not apply. */
static inline int jump_fast(PyObject *code, PyObject *src, PyObject *dest)
{
    tstate_t *ts = t_state;
    if (MT_UNLIKELY(ts == NULL || ts->generation != generation || ts->depth == 0 ||
                    ts->vl_deferred || ts->pending.active || !compact_int(src) ||
                    !compact_int(dest))) {
        return -1;
    }
    frame_t *fr = &ts->frames[ts->depth - 1];
    vl_t *vl = fr->vl;
    if (MT_UNLIKELY(vl == NULL || fr->ci->code != code)) {
        return -1;
    }
    int s = vl_unit(vl, PyUnstable_Long_CompactValue((PyLongObject *)src) / 2);
    int d = vl_unit(vl, PyUnstable_Long_CompactValue((PyLongObject *)dest) / 2);
    if (MT_UNLIKELY(s < 0 || d < 0)) {
        return -1;
    }
    mt_vl_frame = NULL;
    /* offsets below 256 are CPython's own small ints: no box */
    int boxed = !_Py_IsImmortal(src) || !_Py_IsImmortal(dest);
    int64_t boxes = boxed ? unbox_pair(src, dest) : 0;
    int off = vl_jump_top(ts, fr, vl, s, d);
    if (boxed) {
        unbox_exit(boxes);
    }
    mt_vl_frame = fr->iframe; /* what VL_LEAVE would find: the same top frame */
    mt_vl_ip = mt_frame_ip(fr->iframe);
    return off;
}

/* JUMP and BRANCH: (code, source offset, destination offset). */
static PyObject *py_on_jump(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3) {
        Py_RETURN_NONE;
    }
    int off = jump_fast(args[0], args[1], args[2]);
    if (off < 0) {
        long src = event_int(args[1]), dest = event_int(args[2]);
        if ((src == -1 || dest == -1) && PyErr_Occurred()) {
            return NULL;
        }
        VL_ENTER();
        int64_t boxes = unbox_pair(args[1], args[2]);
        off = vl_jump(args[0], src, dest);
        unbox_exit(boxes);
        VL_LEAVE();
    }
    return event_result(off);
}

/* EXCEPTION_HANDLED: (code, handler offset, exception). */
static PyObject *py_on_handled(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2) {
        Py_RETURN_NONE;
    }
    long handler = event_int(args[1]);
    if (handler == -1 && PyErr_Occurred()) {
        return NULL;
    }
    VL_ENTER();
    int64_t box = unbox_enter(args[1]);
    vl_handled(args[0], handler);
    unbox_exit(box);
    VL_LEAVE();
    Py_RETURN_NONE;
}
#endif

static PyObject *py_on_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2) {
        int line = (int)event_int(args[1]);
        if (line == -1 && PyErr_Occurred()) {
            return NULL;
        }
        VL_ENTER();
        int64_t box = unbox_enter(args[1]);
        int off = mt_on_line(args[0], line);
        unbox_exit(box);
        VL_LEAVE();
        return event_result(off);
    }
    Py_RETURN_NONE;
}

/* 3.12+: long code objects get their line events from INSTRUCTION events.
 *
 * CPython stores each LINE location's line as an 8-bit delta from a guess
 * (first line + offset / 16); where it does not fit, every LINE event there
 * recomputes the line by scanning the code's location table from the start
 * (PyCode_Addr2Line), so a function of N statements cost O(N) per line event
 * and O(N^2) per call.  For such code memtrim asks for INSTRUCTION events
 * instead (their argument is the offset: nothing computed) and keeps its own
 * table of the LINE locations CPython instrumented, with their lines: an
 * instruction that is not one is switched off at its first event, the others
 * become line events, as CPython would have sent them (mt_on_line treats an
 * event on the line already running as the same execution, which is what
 * CPython's own "same line" filter does). */
static PyObject *py_on_instruction(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2) {
        Py_RETURN_NONE;
    }
    code_info_t *ci = lookup_fast(args[0]);
    if (ci == NULL || ci->unit_line == NULL) {
        Py_RETURN_NONE;
    }
    Py_ssize_t offset = PyLong_AsSsize_t(args[1]);
    if (offset == -1 && PyErr_Occurred()) {
        return NULL;
    }
    Py_ssize_t unit = offset / 2;
    int line = unit >= 0 && unit < ci->nunits ? ci->unit_line[unit] : 0;
    VL_ENTER();
    int64_t box = unbox_enter(args[1]);
    int off = line <= 0 || mt_on_line(args[0], line);
    unbox_exit(box);
    VL_LEAVE();
    return event_result(off);
}

/* (code, [(start, end, line)] from code.co_lines()): called right after
 * memtrim's LINE events were set on the registered `code`.  If CPython would
 * recompute lines at some of its LINE locations, build the table and return
 * True: the caller then switches the code to INSTRUCTION events. */
static PyObject *py_use_instructions(PyObject *self, PyObject *args)
{
    PyObject *code, *ranges;
    if (!PyArg_ParseTuple(args, "O!O!", &PyCode_Type, &code, &PyList_Type, &ranges)) {
        return NULL;
    }
    /* 3.12 and 3.13 (the tests compare the tables through both events). */
#if MT_HAVE_MONITORING && PY_VERSION_HEX >= 0x030C0000
    code_info_t *ci = lookup(code);
    PyCodeObject *co = (PyCodeObject *)code;
    _PyCoMonitoringData *data = co->_co_monitoring;
    if (ci == NULL || data == NULL || data->lines == NULL) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t n = Py_SIZE(co);
    int far = 0;
    for (Py_ssize_t i = 0; i < n && !far; i++) {
        int8_t delta = data->lines[i].line_delta;
        /* -127 (and -126 from 3.13.1): "computed"; -128: no line */
        far = data->lines[i].original_opcode != 0 && (delta == -127 || delta == -126);
    }
    if (!far) {
        Py_RETURN_FALSE;
    }
    int32_t *unit_line = calloc((size_t)n + 1, sizeof(int32_t));
    if (unit_line == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t nranges = PyList_GET_SIZE(ranges);
    for (Py_ssize_t r = 0; r < nranges; r++) {
        Py_ssize_t start, end;
        PyObject *line_obj;
        if (!PyArg_ParseTuple(PyList_GET_ITEM(ranges, r), "nnO", &start, &end, &line_obj)) {
            free(unit_line);
            return NULL;
        }
        if (line_obj == Py_None) {
            continue;
        }
        long line = PyLong_AsLong(line_obj);
        if (line == -1 && PyErr_Occurred()) {
            free(unit_line);
            return NULL;
        }
        for (Py_ssize_t u = start / 2; u < end / 2 && u < n; u++) {
            if (u >= 0 && data->lines[u].original_opcode != 0 && line > 0) {
                unit_line[u] = (int32_t)line;
            }
        }
    }
    free(ci->unit_line);
    ci->unit_line = unit_line;
    ci->nunits = n;
    Py_RETURN_TRUE;
#else
    (void)code;
    (void)ranges;
    Py_RETURN_FALSE;
#endif
}

#if MT_HAVE_MONITORING
/* Item i of a list of ints (-1 and an exception if it is not one). */
static int list_int(PyObject *list, Py_ssize_t i)
{
    long v = PyLong_AsLong(PyList_GET_ITEM(list, i));
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "out of range");
        return -1;
    }
    return (int)v;
}

/* (code, [unit, units, line, flags, ...] per instruction in order, [source,
 * target, ...] of the jumps back without events): flat lists of ints, no
 * tuples (the program's next tuples would come from a free list they filled).
 * Called once the code's LINE events were set (CPython then knows its line
 * locations).
 * Builds the code's tables: True if its lines can come from branch events. */
static PyObject *py_use_branches(PyObject *self, PyObject *args)
{
    PyObject *code, *instrs, *backs;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyCode_Type, &code, &PyList_Type, &instrs,
                          &PyList_Type, &backs)) {
        return NULL;
    }
    code_info_t *ci = lookup(code);
    PyCodeObject *co = (PyCodeObject *)code;
    _PyCoMonitoringData *data = co->_co_monitoring;
    if (ci == NULL || data == NULL || data->lines == NULL) {
        Py_RETURN_FALSE;
    }
    Py_ssize_t n = Py_SIZE(co);
    if (n <= 0 || n > INT32_MAX / 2) {
        Py_RETURN_FALSE;
    }
    size_t cells = (size_t)n + 1;
    Py_ssize_t nback = PyList_GET_SIZE(backs) / 2;
    vl_t *vl = calloc(1, sizeof(vl_t) + (size_t)nback * 2 * sizeof(int32_t) +
                             cells * (6 * sizeof(int32_t)) + cells);
    if (vl == NULL) {
        return PyErr_NoMemory();
    }
    vl->nunits = (int32_t)n;
    vl->nback = (int32_t)nback;
    vl->back = (int32_t(*)[2])(vl + 1);
    vl->start = (int32_t *)(vl->back + nback);
    vl->line = vl->start + cells;
    vl->vline = vl->line + cells;
    vl->vidx = vl->vline + cells;
    vl->vlist = vl->vidx + cells;
    vl->flags = (uint8_t *)(vl->vlist + cells);
    for (Py_ssize_t u = 0; u < n; u++) {
        vl->start[u] = -1;
        vl->line[u] = -1;
    }
    Py_ssize_t count = PyList_GET_SIZE(instrs);
    int prev = -1;
    if (count % 4 != 0 || PyList_GET_SIZE(backs) % 2 != 0) {
        free(vl);
        PyErr_SetString(PyExc_ValueError, "instructions come by 4 ints, jumps back by 2");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < count; i += 4) {
        int unit = list_int(instrs, i), units = list_int(instrs, i + 1);
        int line = list_int(instrs, i + 2), flags = list_int(instrs, i + 3);
        if (PyErr_Occurred()) {
            free(vl);
            return NULL;
        }
        if (unit < 0 || units < 1 || unit + units > n || unit <= prev) {
            free(vl);
            PyErr_SetString(PyExc_ValueError, "instructions out of order or out of the code");
            return NULL;
        }
        for (int u = unit; u < unit + units; u++) {
            vl->start[u] = unit;
        }
        vl->line[unit] = line;
        vl->flags[unit] = (uint8_t)(flags & (VL_RESUME | VL_QUIET | VL_TARGET));
        if (data->lines[unit].original_opcode != 0) {
            vl->flags[unit] |= VL_MARKED;
        }
        if (prev >= 0 && vl_fires(vl, prev, unit)) {
            vl->vline[unit] = line;
        }
        prev = unit;
    }
    for (Py_ssize_t i = 0; i < nback; i++) {
        int src = list_int(backs, 2 * i), target = list_int(backs, 2 * i + 1);
        if (PyErr_Occurred()) {
            free(vl);
            return NULL;
        }
        if (src < 0 || src >= n || target < 0 || target > src || vl->start[src] != src ||
            vl->start[target] != target || (i > 0 && src <= vl->back[i - 1][0])) {
            free(vl);
            PyErr_SetString(PyExc_ValueError, "jumps back out of order or out of the code");
            return NULL;
        }
        vl->back[i][0] = src;
        vl->back[i][1] = target;
    }
    int32_t seen = 0;
    for (Py_ssize_t u = 0; u < n; u++) {
        if (vl->vline[u] != 0) {
            vl->vlist[seen++] = (int32_t)u;
        }
        vl->vidx[u] = seen;
    }
    /* Frames running the code keep replaying, with the new tables (the same
     * code: the same layout).  The old ones are not freed before the registry
     * resets: a thread running without the GIL may be reading them in its
     * allocation hook right now. */
    for (tstate_t *ts = all_states; ts != NULL; ts = ts->next) {
        for (int i = 0; i < ts->depth; i++) {
            if (ts->frames[i].ci == ci && ts->frames[i].vl != NULL) {
                ts->frames[i].vl = vl;
            }
        }
    }
    if (ci->vl != NULL) {
        ci->vl->retired_next = retired_vl;
        retired_vl = ci->vl;
    }
    ci->vl = vl;
    Py_RETURN_TRUE;
}
#endif

static PyObject *py_on_return(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        VL_ENTER();
        int64_t box = unbox_enter(nargs >= 2 ? args[1] : NULL);
        mt_on_return(args[0]); /* replays the frame's last lines first */
        unbox_exit(box);
        VL_LEAVE();
    }
    Py_RETURN_NONE;
}

static PyObject *py_on_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        VL_ENTER();
        int64_t box = unbox_enter(nargs >= 2 ? args[1] : NULL);
        mt_on_end(args[0]); /* replays the frame's last lines first */
        unbox_exit(box);
        VL_LEAVE();
    }
    Py_RETURN_NONE;
}

static PyObject *py_set_disable(PyObject *self, PyObject *obj)
{
    Py_XSETREF(disable_obj, Py_NewRef(obj));
    Py_RETURN_NONE;
}

static PyObject *py_set_line_map(PyObject *self, PyObject *args)
{
    int table;
    PyObject *pairs;
    if (!PyArg_ParseTuple(args, "iO!", &table, &PyList_Type, &pairs)) {
        return NULL;
    }
    if (set_line_map(table, pairs) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_rebase(PyObject *self, PyObject *unused)
{
    rebase(1);
    return PyLong_FromLongLong(mem_base);
}

static PyObject *py_set_base(PyObject *self, PyObject *arg)
{
    long long base = PyLong_AsLongLong(arg);
    if (base == -1 && PyErr_Occurred()) {
        return NULL;
    }
    mem_base = base;
    Py_RETURN_NONE;
}

static PyObject *py_mem_usage(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mem_usage_now());
}

static PyObject *py_rss(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_rss_now());
}

/* 3.11: (another tracer kept memtrim out for a while, an audit hook refused
 * memtrim's profile function). */
static PyObject *py_missed_any(PyObject *self, PyObject *unused)
{
#if !MT_HAVE_MONITORING
    return Py_BuildValue("(OO)", missed_any ? Py_True : Py_False, refused_any ? Py_True : Py_False);
#else
    return Py_BuildValue("(OO)", Py_False, Py_False);
#endif
}

static PyObject *py_missed(PyObject *self, PyObject *arg)
{
    long table = PyLong_AsLong(arg);
    if (table == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (!table_ok((int)table)) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return NULL;
    }
    return PyLong_FromLongLong(tables[table].missed);
}

/* Is a frame of `code` on the stack of any thread (as the tracer follows them)? */
static PyObject *py_running(PyObject *self, PyObject *code)
{
    code_info_t *ci = PyCode_Check(code) ? lookup(code) : NULL;
    for (tstate_t *ts = all_states; ci != NULL && ts != NULL; ts = ts->next) {
        if (ts->generation == generation && ci->index < ts->code_cap &&
            ts->code_depth[ci->index] > 0) {
            Py_RETURN_TRUE;
        }
    }
    Py_RETURN_FALSE;
}

static PyObject *py_set_tool(PyObject *self, PyObject *args)
{
    int tool, event;
    if (!PyArg_ParseTuple(args, "ii", &tool, &event)) {
        return NULL;
    }
#if MT_HAVE_MONITORING
    if (tool == -1) { /* the tool id was given back */
        own_tool = py_return_event = -1;
        Py_RETURN_NONE;
    }
    if (tool < 0 || tool > 7 || event < 0 || event >= _PY_MONITORING_UNGROUPED_EVENTS) {
        PyErr_SetString(PyExc_ValueError, "no such tool or event");
        return NULL;
    }
    own_tool = tool;
    py_return_event = event;
#endif
    Py_RETURN_NONE;
}

/* The monitoring callbacks are objects of their own type, called through
 * their vectorcall slot: CPython calls them directly, without a builtin
 * function's recursion check and argument-convention switch (LINE runs at
 * every line of profiled code). */
typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
} event_callback_t;

static PyTypeObject event_callback_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtrim.engine._engine.event_callback",
    .tp_basicsize = sizeof(event_callback_t),
    .tp_vectorcall_offset = offsetof(event_callback_t, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "A sys.monitoring callback of memtrim's line tracer.",
};

#define EVENT_VECTORCALL(name, impl)                                                            \
    static PyObject *name(PyObject *self, PyObject *const *args, size_t nargsf,                 \
                          PyObject *kwnames)                                                    \
    {                                                                                           \
        (void)kwnames;                                                                          \
        return impl(self, args, PyVectorcall_NARGS(nargsf));                                    \
    }

/* A callback that does nothing, of the same type as the others: the
 * benchmarks' floor of CPython's event dispatch (benchmarks/launchers). */
static PyObject *py_noop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    (void)args;
    (void)nargs;
    Py_RETURN_NONE;
}

EVENT_VECTORCALL(vc_noop, py_noop)
EVENT_VECTORCALL(vc_start, py_on_start)
EVENT_VECTORCALL(vc_throw, py_on_throw)
EVENT_VECTORCALL(vc_line, py_on_line)
EVENT_VECTORCALL(vc_return, py_on_return)
EVENT_VECTORCALL(vc_instruction, py_on_instruction)
EVENT_VECTORCALL(vc_end, py_on_end)
#if MT_HAVE_MONITORING
EVENT_VECTORCALL(vc_jump, py_on_jump)
EVENT_VECTORCALL(vc_handled, py_on_handled)
#endif

static int add_callback(PyObject *module, const char *name, vectorcallfunc fn)
{
    event_callback_t *cb = PyObject_New(event_callback_t, &event_callback_type);
    if (cb == NULL) {
        return -1;
    }
    cb->vectorcall = fn;
    int rc = PyModule_AddObjectRef(module, name, (PyObject *)cb);
    Py_DECREF(cb);
    return rc;
}

#define FASTCALL(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL

static PyMethodDef tracer_methods[] = {
    {"tr_use_instructions", py_use_instructions, METH_VARARGS,
     "3.12+: (code, code.co_lines() as a list): True if the code must take its line events "
     "from INSTRUCTION events (CPython would recompute its lines at each LINE event)."},
#if MT_HAVE_MONITORING
    {"tr_use_branches", py_use_branches, METH_VARARGS,
     "3.12+: (code, [unit, units, line, flags, ...] per instruction, [source, target, ...] of "
     "the jumps back without events): build the code's tables for lines from branch events; "
     "True if it can take them."},
#endif
    {"tr_set_disable", py_set_disable, METH_O, "The value that turns a monitoring event off."},
    {"tr_set_line_map", py_set_line_map, METH_VARARGS,
     "(table, [(line, target)]): count `line` as `target` (folded lines)."},
    {"tr_rebase", py_rebase, METH_NOARGS, "Re-read the RSS now; returns the new base."},
    {"tr_set_base", py_set_base, METH_O, "Set the base of Mem usage (bytes)."},
    {"tr_mem_usage", py_mem_usage, METH_NOARGS, "Mem usage now: base + heap level."},
    {"rss", py_rss, METH_NOARGS, "The process's resident set size (bytes), -1 if unknown."},
    {"tr_watch_profilers", py_watch_profilers, METH_NOARGS,
     "3.11: watch the program's sys.settrace/sys.setprofile (memtrim steps aside)."},
    {"tr_missed_any", py_missed_any, METH_NOARGS,
     "3.11: (another tracer or profiler kept memtrim out, an audit hook refused it)."},
    {"tr_missed", py_missed, METH_O, "3.11: calls or stretches of a table not measured."},
    {"tr_running", py_running, METH_O, "Is a frame of this code being followed in a thread?"},
    {"tr_set_tool", py_set_tool, METH_VARARGS,
     "3.12+: (memtrim's monitoring tool id, PY_RETURN's event number); (-1, -1): none."},
    {NULL, NULL, 0, NULL},
};

int mt_tracer_add_to_module(PyObject *module)
{
    if (PyType_Ready(&pending_call_type) < 0 || PyType_Ready(&event_callback_type) < 0) {
        return -1;
    }
    /* PY_START, PY_RESUME; PY_THROW; LINE; PY_RETURN; INSTRUCTION (long code
     * objects, 3.12+); PY_YIELD, PY_UNWIND */
    if (add_callback(module, "tr_start", vc_start) < 0 ||
        add_callback(module, "tr_throw", vc_throw) < 0 ||
        add_callback(module, "tr_line", vc_line) < 0 ||
        add_callback(module, "tr_return", vc_return) < 0 ||
        add_callback(module, "tr_instruction", vc_instruction) < 0 ||
        add_callback(module, "tr_end", vc_end) < 0 ||
        add_callback(module, "tr_noop", vc_noop) < 0) {
        return -1;
    }
#if MT_HAVE_MONITORING
    /* JUMP, BRANCH; EXCEPTION_HANDLED (code with virtual lines) */
    if (add_callback(module, "tr_jump", vc_jump) < 0 ||
        add_callback(module, "tr_handled", vc_handled) < 0) {
        return -1;
    }
#endif
    return PyModule_AddFunctions(module, tracer_methods);
}
