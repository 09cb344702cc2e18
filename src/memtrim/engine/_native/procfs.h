/* Reading /proc: the one place the engine's extensions read a process's
 * resident memory (the line tracer's Mem usage, the --limit watchdog, the
 * timeline sampler).
 *
 * No Python object and no CPython allocator: these run inside allocation
 * hooks' callers, in event callbacks whose allocations would be charged to
 * the lines, and in native threads without the GIL.  Plain open/read/close
 * (no stdio buffer to malloc), retried on EINTR.  Linux; elsewhere they
 * report "unknown" (-1). */
#ifndef MEMTRIM_PROCFS_H
#define MEMTRIM_PROCFS_H

#include <stdint.h>
#include <sys/types.h>

/* Read a small /proc file whole into `out` (NUL-terminated); its length, or
 * -1 if it cannot be opened. */
ssize_t mt_proc_read(const char *path, char *out, size_t size);

/* The resident set size of process `pid` (0: this process) in bytes, from
 * /proc/PID/statm; -1 if unknown. */
int64_t mt_proc_rss(pid_t pid);

/* Resident bytes of this process's [start, start + size), from mincore(); 0
 * for pages it cannot tell. */
size_t mt_resident(uintptr_t start, size_t size);

#endif
