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
/* Tables not freed, code objects still hooked, registry entries kept. */
void mt_tracer_counts(int *live_tables, int *attached_codes, int *kept);

/* Events, shared by the 3.11 trace function and 3.12+ sys.monitoring. */
void mt_on_start(PyObject *code);
int mt_on_line(PyObject *code, int line); /* 1: this event location can be disabled */
void mt_on_end(PyObject *code);           /* a yield, or an exit by exception */
void mt_on_return(PyObject *code);        /* a return */
void mt_on_throw(PyObject *code, PyObject *exc);

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

/* Process memory: the resident set size now (bytes, -1 if unknown). */
int64_t mt_rss_now(void);

/* The tracer's extra module functions and types (tracer.c, wrapper.c). */
int mt_tracer_add_to_module(PyObject *module);
int mt_wrapper_add_to_module(PyObject *module);

#endif
