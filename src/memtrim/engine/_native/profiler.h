/* Whole-program allocation profiling: who allocated what, live at the peak. */
#ifndef MEMTRIM_PROFILER_H
#define MEMTRIM_PROFILER_H

#include "compat.h"
#include <stdint.h>

/* Set while recording; read by the heap hooks on every allocation. */
extern int mt_rec_on;

/* Called by the heap hooks with the GIL held: attribute an allocation and
 * return the id to keep with the block; the id comes back on free. */
uint32_t mt_rec_alloc(void *ptr, size_t size);
void mt_rec_free(void *ptr, uint32_t id, size_t size);
/* Without the GIL: count the block apart (no frame can be charged without the
 * GIL); a free is queued for the next call with the GIL. */
uint32_t mt_rec_alloc_nogil(size_t size);
void mt_rec_free_nogil(void *ptr, uint32_t id, size_t size);
/* A new process-wide peak was reached (GIL held). */
void mt_rec_new_peak(void);

/* `hidden`: a list of file names (or NULL) whose frames are never leaves. */
int mt_rec_start(int exact, int64_t sample_bytes, PyObject *hidden);
void mt_rec_stop(void);
PyObject *mt_rec_snapshot(void);
void mt_rec_after_fork(void);
void mt_rec_clear(void);

#endif
