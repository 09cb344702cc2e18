/* The line tracer: per-line exact increments, peaks and occurrences. */
#ifndef MEMTRIM_TRACER_H
#define MEMTRIM_TRACER_H

#include "compat.h"

int mt_tracer_init(void);
int mt_tracer_new_table(int first_line);                   /* -> table id, or -1 */
int mt_tracer_register_code(PyObject *code, int table, int is_root);
void mt_tracer_unregister_code(PyObject *code);
PyObject *mt_tracer_table_stats(int table);                /* list of tuples */
void mt_tracer_reset_table(int table);

/* Events, shared by the 3.11 trace function and 3.12+ sys.monitoring. */
void mt_on_start(PyObject *code);
void mt_on_line(PyObject *code, int line);
void mt_on_end(PyObject *code);

/* 3.11: install the C trace function in this thread while count > 0. */
int mt_trace_enter(void);
int mt_trace_exit(void);

/* Called by memtrim's wrappers around each stretch of a profiled call. */
int mt_step_in(void);
int mt_step_out(void);

#endif
