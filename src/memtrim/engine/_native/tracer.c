/* The line tracer.
 *
 * A "table" is one profiled function: per-line statistics for its own code
 * object and the code objects nested in it (comprehensions, lambdas, inner
 * functions).  Code objects point at their registration through co_extra, so
 * an event for unprofiled code costs one lookup.
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
 * Everything here runs with the GIL held (trace functions and monitoring
 * callbacks are called with it), which protects the tables and the registry.
 * Thread state is thread-local.
 */
#include "tracer.h"
#include "heap.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t occurrences;
    int64_t increment;
    int64_t peak;
    int64_t mem_usage; /* highest process level (engine bytes) at the line's end */
} line_stats_t;

typedef struct {
    int first_line;
    int nlines;
    line_stats_t *lines;
} table_t;

typedef struct {
    int table;
    int index;   /* dense id, for the per-thread recursion counters */
    int is_root; /* the decorated function itself, not a nested code object */
    int first_line;
} code_info_t;

typedef struct {
    int active;
    int table;
    int line;
    int count_increment; /* 0 in a recursive call: the outermost call counts it */
    int64_t start;
    int64_t max;
} record_t;

typedef struct {
    code_info_t *ci;
    int skip_line; /* nested code on its caller's line: the caller's record covers it */
    int recursive;
    int wrapped; /* called by memtrim's wrapper, which closes the call record */
    int saved_foreign; /* 3.11: tstate_t.foreign of the frame below */
    record_t call;
    record_t line;
} frame_t;

typedef struct tstate {
    frame_t *frames;
    int depth, cap;
    int32_t *code_depth;
    int code_cap;
    int enter_count;
    int foreign; /* 3.11: unprofiled frames running above the top profiled frame */
    int wrapped_next; /* the wrapper is about to call a profiled function */
    record_t pending; /* a wrapped call record, closed when the wrapper regains control */
    Py_tracefunc saved_func; /* 3.11: the tracer and profiler that were there */
    PyObject *saved_obj;
    Py_tracefunc saved_pfunc;
    PyObject *saved_pobj;
    unsigned generation;
    struct tstate *next;
} tstate_t;

static Py_ssize_t extra_index = -1;
static table_t *tables;
static int ntables;
static code_info_t **codes;
static int ncodes;
static unsigned generation = 1;
static tstate_t *all_states; /* GIL; freed when the registry is cleared */
static MT_TLS tstate_t *t_state;

int mt_tracer_init(void)
{
    if (extra_index < 0) {
        extra_index = MT_REQUEST_CODE_EXTRA(NULL);
    }
    return extra_index < 0 ? -1 : 0;
}

/* ------------------------------------------------------------- registry */

int mt_tracer_new_table(int first_line)
{
    table_t *grown = realloc(tables, sizeof(table_t) * (size_t)(ntables + 1));
    if (grown == NULL) {
        return -1;
    }
    tables = grown;
    tables[ntables] = (table_t){.first_line = first_line, .nlines = 0, .lines = NULL};
    return ntables++;
}

static line_stats_t *stats_for(int table, int line)
{
    table_t *t = &tables[table];
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

static inline code_info_t *lookup(PyObject *code)
{
    void *extra = NULL;
    if (MT_CODE_GET_EXTRA(code, extra_index, &extra) < 0) {
        PyErr_Clear();
        return NULL;
    }
    return extra;
}

int mt_tracer_register_code(PyObject *code, int table, int is_root)
{
    if (table < 0 || table >= ntables) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return -1;
    }
    if (lookup(code) != NULL) {
        return 0; /* already profiled (a function decorated twice) */
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
    *ci = (code_info_t){.table = table, .index = ncodes, .is_root = is_root};
    ci->first_line = ((PyCodeObject *)code)->co_firstlineno;
    if (MT_CODE_SET_EXTRA(code, extra_index, ci) < 0) {
        free(ci);
        return -1;
    }
    codes[ncodes++] = ci;
    return 0;
}

/* The code_info stays allocated: a thread may still have a frame pointing at
 * it.  It is only unhooked from the code object. */
void mt_tracer_unregister_code(PyObject *code)
{
    if (lookup(code) != NULL) {
        MT_CODE_SET_EXTRA(code, extra_index, NULL);
    }
}

PyObject *mt_tracer_table_stats(int table)
{
    if (table < 0 || table >= ntables) {
        PyErr_SetString(PyExc_ValueError, "no such table");
        return NULL;
    }
    table_t *t = &tables[table];
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && i < t->nlines; i++) {
        line_stats_t *s = &t->lines[i];
        if (s->occurrences == 0) {
            continue;
        }
        PyObject *row = Py_BuildValue("(iLLLL)", t->first_line + i, (long long)s->occurrences,
                                      (long long)s->increment, (long long)s->peak,
                                      (long long)s->mem_usage);
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
    if (table < 0 || table >= ntables) {
        return;
    }
    table_t *t = &tables[table];
    for (int i = 0; i < t->nlines; i++) {
        t->lines[i] = (line_stats_t){0, 0, 0, INT64_MIN};
    }
}

/* ------------------------------------------------------------ thread state */

static tstate_t *state(void)
{
    tstate_t *ts = t_state;
    if (MT_LIKELY(ts != NULL && ts->generation == generation)) {
        return ts;
    }
    ts = calloc(1, sizeof(tstate_t));
    if (ts == NULL) {
        return NULL;
    }
    ts->generation = generation;
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
    memset(fr, 0, sizeof(*fr));
    return fr;
}

static int32_t *code_depth(tstate_t *ts, int index)
{
    if (index >= ts->code_cap) {
        int cap = index + 16;
        int32_t *grown = realloc(ts->code_depth, sizeof(int32_t) * (size_t)cap);
        if (grown == NULL) {
            return NULL;
        }
        memset(grown + ts->code_cap, 0, sizeof(int32_t) * (size_t)(cap - ts->code_cap));
        ts->code_depth = grown;
        ts->code_cap = cap;
    }
    return &ts->code_depth[index];
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

static void start_record(tstate_t *ts, record_t *rec, int table, int line, int count_inc)
{
    record_t *outer = open_record(ts, ts->depth - 1);
    if (outer != NULL && outer != rec && mt_thread_hwm > outer->max) {
        outer->max = mt_thread_hwm; /* fold before the mark is reset */
    }
    line_stats_t *s = stats_for(table, line);
    if (s == NULL) {
        return;
    }
    s->occurrences++;
    rec->active = 1;
    rec->table = table;
    rec->line = line;
    rec->count_increment = count_inc;
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
    line_stats_t *s = stats_for(rec->table, rec->line);
    if (s == NULL) {
        return;
    }
    if (rec->count_increment) {
        s->increment += mt_thread_cur - rec->start;
    }
    if (rec->max - rec->start > s->peak) {
        s->peak = rec->max - rec->start;
    }
    int64_t level = mt_heap_level();
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

/* A wrapped call's record stays open after its frame returns, so that it also
 * sees the frame's locals being released; it closes when the wrapper regains
 * control (mt_step_out) or at the thread's next event, whichever is first. */
static inline void flush_pending(tstate_t *ts)
{
    if (MT_UNLIKELY(ts->pending.active)) {
        finish_record(&ts->pending, open_record(ts, ts->depth - 1));
    }
}

/* ------------------------------------------------------------------ events */

static frame_t *enter_frame(tstate_t *ts, code_info_t *ci)
{
    record_t *outer = open_record(ts, ts->depth - 1);
    int32_t *depth = code_depth(ts, ci->index);
    frame_t *fr = depth ? push_frame(ts) : NULL;
    if (fr == NULL) {
        return NULL;
    }
    fr->ci = ci;
    fr->recursive = (*depth)++ > 0;
    fr->skip_line = -1;
    if (!ci->is_root && outer != NULL && outer->table == ci->table) {
        fr->skip_line = outer->line;
    }
    return fr;
}

void mt_on_start(PyObject *code)
{
    code_info_t *ci = lookup(code);
    if (ci == NULL) {
        return;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return;
    }
    flush_pending(ts);
    frame_t *fr = enter_frame(ts, ci);
    if (fr != NULL && ci->is_root) {
        fr->wrapped = ts->wrapped_next;
        ts->wrapped_next = 0;
        start_record(ts, &fr->call, ci->table, ci->first_line, !fr->recursive);
    }
}

void mt_on_line(PyObject *code, int line)
{
    code_info_t *ci = lookup(code);
    if (ci == NULL) {
        return;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return;
    }
    flush_pending(ts);
    frame_t *fr = ts->depth ? &ts->frames[ts->depth - 1] : NULL;
    if (fr == NULL || fr->ci != ci) {
        /* profiling switched on while this frame was already running */
        fr = enter_frame(ts, ci);
        if (fr == NULL) {
            return;
        }
    }
    if (fr->line.active && fr->line.line == line) {
        return; /* a jump back to the same line: still the same execution */
    }
    finish_line(ts, fr);
    if (line != fr->skip_line) {
        start_record(ts, &fr->line, ci->table, line, !fr->recursive);
    }
}

void mt_on_end(PyObject *code)
{
    code_info_t *ci = lookup(code);
    tstate_t *ts = t_state;
    if (ci == NULL || ts == NULL || ts->generation != generation || ts->depth == 0) {
        return;
    }
    flush_pending(ts);
    frame_t *fr = &ts->frames[ts->depth - 1];
    if (fr->ci != ci) {
        return; /* a frame we never saw start */
    }
    finish_line(ts, fr);
    if (fr->wrapped && fr->call.active) {
        ts->pending = fr->call;
        fr->call.active = 0;
    }
    else {
        finish_record(&fr->call, open_record(ts, ts->depth - 2));
    }
    int32_t *depth = code_depth(ts, ci->index);
    if (depth && *depth > 0) {
        (*depth)--;
    }
    ts->depth--;
}

/* ------------------------------------------------ 3.11: profile + trace */

/* Python 3.11 has no per-code events.  Any trace or profile function puts the
 * whole thread in "tracing" dispatch (no specialized instructions), and a
 * trace function on top makes CPython compute line numbers at every
 * instruction.  So, while a profiled call runs in this thread, we install a
 * C *profile* function (call/return events only), and switch the C *trace*
 * function (line events) on only while the running frame is profiled code:
 * a callee such as a comprehension or a library function runs without it. */

static int tracefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg);

static void line_tracing(int on)
{
    PyThreadState *py = PyThreadState_Get();
    if (on && py->c_tracefunc != tracefunc) {
        PyEval_SetTrace(tracefunc, NULL);
    }
    else if (!on && py->c_tracefunc == tracefunc) {
        PyEval_SetTrace(NULL, NULL);
    }
}

/* Which frame runs next is tracked by counting unprofiled frames above the top
 * profiled one, rather than by asking for the caller's frame object: that
 * would create frame objects, i.e. allocations charged to the lines. */
static int profilefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)arg;
    if (what != PyTrace_CALL && what != PyTrace_RETURN) {
        return 0;
    }
    tstate_t *ts = state();
    if (ts == NULL) {
        return 0;
    }
    PyObject *code = (PyObject *)PyFrame_GetCode(frame);
    int profiled = lookup(code) != NULL;
    if (what == PyTrace_CALL) {
        if (profiled) {
            int saved = ts->foreign, depth = ts->depth;
            ts->foreign = 0;
            mt_on_start(code);
            if (ts->depth > depth) {
                ts->frames[ts->depth - 1].saved_foreign = saved;
            }
        }
        else {
            ts->foreign++;
        }
    }
    else if (profiled) {
        int depth = ts->depth;
        int saved = depth ? ts->frames[depth - 1].saved_foreign : 0;
        mt_on_end(code);
        if (ts->depth < depth) {
            ts->foreign = saved;
        }
    }
    else if (ts->foreign > 0) {
        ts->foreign--;
    }
    line_tracing(ts->depth > 0 && ts->foreign == 0);
    Py_DECREF(code);
    return 0;
}

static int tracefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)arg;
    if (what == PyTrace_LINE) {
        PyObject *code = (PyObject *)PyFrame_GetCode(frame);
        mt_on_line(code, PyFrame_GetLineNumber(frame));
        Py_DECREF(code);
    }
    return 0;
}

int mt_trace_enter(void)
{
    tstate_t *ts = state();
    if (ts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (ts->enter_count++ == 0) {
        PyThreadState *py = PyThreadState_Get();
        ts->saved_func = py->c_tracefunc;
        ts->saved_obj = py->c_traceobj;
        ts->saved_pfunc = py->c_profilefunc;
        ts->saved_pobj = py->c_profileobj;
        Py_XINCREF(ts->saved_obj);
        Py_XINCREF(ts->saved_pobj);
        PyEval_SetTrace(NULL, NULL);
        PyEval_SetProfile(profilefunc, NULL);
    }
    return 0;
}

int mt_trace_exit(void)
{
    tstate_t *ts = state();
    if (ts == NULL || ts->enter_count == 0) {
        return 0;
    }
    if (--ts->enter_count == 0) {
        PyEval_SetProfile(ts->saved_pfunc, ts->saved_pobj);
        PyEval_SetTrace(ts->saved_func, ts->saved_obj);
        Py_CLEAR(ts->saved_obj);
        Py_CLEAR(ts->saved_pobj);
        ts->saved_func = ts->saved_pfunc = NULL;
    }
    return 0;
}

/* The wrapper brackets each stretch of a profiled function's execution. */
int mt_step_in(void)
{
    tstate_t *ts = state();
    if (ts == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    ts->wrapped_next = 1;
    return MT_HAVE_MONITORING ? 0 : mt_trace_enter();
}

int mt_step_out(void)
{
    tstate_t *ts = state();
    if (ts == NULL) {
        return 0;
    }
    ts->wrapped_next = 0;
    flush_pending(ts);
    return MT_HAVE_MONITORING ? 0 : mt_trace_exit();
}
