/* Whole-program allocation profiling: who allocated what, live at the peak. */
#ifndef MEMTRIM_CALLTREE_H
#define MEMTRIM_CALLTREE_H

#include "compat.h"
#include <stdint.h>

/* The call tree is a heap listener (listeners.h), registered while a recording
 * runs.  Everything here: GIL held. */

/* `hidden`: a list of file names (or NULL) whose frames are never leaves.
 * Frees the data of a stopped recording first.  0, or -1 with an exception
 * (RuntimeError while a recording runs: one at a time per process). */
/* `cframes`: C frames below the Python ones in the sampled stacks of native
 * allocations (default mode only; cframes.c). */
int mt_tree_start(int exact, int64_t sample_bytes, PyObject *hidden, uint64_t seed,
                  int cframes);
int mt_tree_running(void);
void mt_tree_stop(void);
PyObject *mt_tree_snapshot(void);
void mt_tree_fork_prepare(void);
void mt_tree_fork_parent(void);
void mt_tree_after_fork(void);
void mt_tree_clear(void); /* stop if needed, and free everything */

/* The advisor's hooks into a running (or stopped, not cleared) recording:
 * the node each object's block was charged to, a node's line, and a callable
 * run once (from the main thread) when the heap's peak reaches `at` bytes
 * (cb None or at <= 0: disarm). */
PyObject *mt_tree_block_nodes(PyObject *objs);
PyObject *mt_tree_node_site(long node);
int mt_tree_on_peak(int64_t at, PyObject *cb);

/* term.c's deadline thread, no GIL: freeze the recording for good and write
 * it to `fd` (run/termdump.py reads it).  0, or -1 (no recording, the GIL
 * holder did not leave the tree, or a write failed). */
int mt_tree_dump(int fd);

/* Where a thread was started from (native.c's pthread_create hook): any
 * thread, no GIL needed; 1 if the calling thread runs Python code the
 * recording knows. */
typedef struct {
    unsigned generation;
    uint32_t slot;
    int32_t line;
} mt_origin_t;
int mt_tree_origin_here(mt_origin_t *out);
void mt_tree_origin_set(const mt_origin_t *origin);

#endif
