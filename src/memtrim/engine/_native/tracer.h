/* The line tracer: per-line exact increments, peaks and occurrences. */
#ifndef MEMTRIM_TRACER_H
#define MEMTRIM_TRACER_H

#include "compat.h"

int mt_tracer_init(void);
int mt_tracer_new_table(int first_line);                   /* -> table id, or -1 */
/* Profile `code` into `table` (a code already registered moves to it). */
int mt_tracer_register_code(PyObject *code, int table, int is_root);
void mt_tracer_unregister_code(PyObject *code);
PyObject *mt_tracer_table_stats(int table);                /* list of tuples */
void mt_tracer_reset_table(int table);
/* The table's owner lets it go: its memory is freed and its id is dead.  Once
 * no table is left and no thread is inside profiled code, the whole registry
 * (code infos, code extras, per-thread arrays) is freed too.  0, or -1 with
 * ValueError for an unknown id. */
int mt_tracer_free_table(int table);
/* In a forked child: forget the frames of the threads that did not come along. */
void mt_tracer_after_fork(void);
/* Tables not freed, code objects still hooked, registry entries kept. */
void mt_tracer_counts(int *live_tables, int *attached_codes, int *kept);

/* Events, shared by the 3.11 trace function and 3.12+ sys.monitoring. */
void mt_on_start(PyObject *code);
int mt_on_line(PyObject *code, int line); /* 1: this event location can be disabled */
void mt_on_end(PyObject *code);           /* a yield, or an exit by exception */
void mt_on_return(PyObject *code);        /* a return */

/* 3.11: memtrim's trace functions in this thread while count > 0, unless
 * another tracer or profiler is there.  0: measured, 1: not, -1: error. */
int mt_trace_enter(void);
int mt_trace_exit(void);

/* Called by memtrim's wrappers around each stretch of a profiled call
 * (mt_step_in returns as mt_trace_enter does). */
int mt_step_in(void);
int mt_step_out(void);
/* A call of profiled `code` ran unmeasured (mt_step_in returned 1). */
void mt_tracer_note_missed(PyObject *code);

/* 3.12+: lines from branch events (tracer.c, "virtual lines").  Non-NULL
 * while this thread's innermost followed frame takes its lines that way: the
 * heap hooks then call mt_vl_heap() before each change of the thread's level,
 * so that the lines run since the last event are accounted first. */
#if MT_HAVE_MONITORING
#include "frames.h"

extern MT_TLS void *mt_vl_frame;
extern MT_TLS const void *mt_vl_ip; /* its instruction when its lines were last replayed */
void mt_vl_heap(int gil);

/* One load when no such frame is followed; two more while one is, and a call
 * only when it has moved since its lines were last replayed. */
static inline void mt_vl_check(int gil)
{
    mt_frame_t *f = mt_vl_frame;
    if (MT_UNLIKELY(f != NULL) && mt_frame_ip(f) != mt_vl_ip) {
        mt_vl_heap(gil);
    }
}
#else
static inline void mt_vl_check(int gil)
{
    (void)gil;
}
#endif

/* Process memory: the resident set size now (bytes, -1 if unknown). */
int64_t mt_rss_now(void);

/* The tracer's extra module functions and types (tracer.c, wrapper.c). */
int mt_tracer_add_to_module(PyObject *module);
int mt_wrapper_add_to_module(PyObject *module);

#endif
