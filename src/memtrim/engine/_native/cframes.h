/* Native frames in the sampled stacks (cframes.c).  GIL held. */
#ifndef MEMTRIM_CFRAMES_H
#define MEMTRIM_CFRAMES_H

#include "compat.h"
#include <stdint.h>

#define MT_CFRAMES_MAX 24 /* C frames kept below a Python line */

int mt_cframes_init(void);   /* at the start of a recording with native frames */
/* The calling thread's C frames between memtrim's hook and the interpreter,
 * outermost first, into out[max]; how many. */
int mt_cframes_capture(uintptr_t *out, int max);
uint32_t mt_cframes_index(uintptr_t pc); /* a small index for a return address */
PyObject *mt_cframes_symbols(void);       /* [(library, symbol, offset)] by index */
void mt_cframes_clear(void);
/* For the dump at SIGTERM (no GIL, the tree frozen): the addresses by index. */
uint32_t mt_cframes_count(void);
uintptr_t mt_cframes_pc(uint32_t index);

#endif
