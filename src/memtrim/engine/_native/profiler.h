/* Whole-program allocation profiling: who allocated what, live at the peak. */
#ifndef MEMTRIM_PROFILER_H
#define MEMTRIM_PROFILER_H

#include "compat.h"
#include <stdint.h>

/* The recorder is a heap listener (listeners.h), registered while a recording
 * runs.  Everything here: GIL held. */

/* `hidden`: a list of file names (or NULL) whose frames are never leaves.
 * Frees the data of a stopped recording first.  0, or -1 with an exception
 * (RuntimeError while a recording runs: one at a time per process). */
int mt_rec_start(int exact, int64_t sample_bytes, PyObject *hidden);
int mt_rec_running(void);
void mt_rec_stop(void);
PyObject *mt_rec_snapshot(void);
void mt_rec_after_fork(void);
void mt_rec_clear(void); /* stop if needed, and free everything */

#endif
