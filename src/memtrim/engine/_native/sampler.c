/* memtrim.engine._sampler: a native thread that samples memory at a fixed interval.
 *
 * Why a native thread and not a Python one: a Python thread needs the GIL to
 * run, and a program busy in one long C call (``list(range(10**8))``, a big
 * numpy operation) keeps the GIL for seconds, so a Python sampler would fall
 * silent exactly when memory moves most.  This thread never takes the GIL and
 * never touches a Python object: it reads /proc and, optionally, the engine's
 * heap level through the engine's C API (a plain 64-bit counter read without
 * the GIL: a benign race, the value may be a few allocations old).
 *
 * Locking: each Sampler owns one pthread mutex, ``lock``.  It guards the
 * sample buffer, ``stop_flag`` and ``root_gone``.  The thread holds it only to
 * append a finished sample and to sleep on ``wake`` (a condition variable on
 * CLOCK_MONOTONIC, so stop() wakes it at once instead of after an interval).
 * Reading /proc happens outside the lock.  Python code calls into this module
 * with the GIL held and takes ``lock`` only briefly (to swap the buffer out);
 * the thread never waits for the GIL, so the two locks cannot deadlock.
 * Everything else in the object (configuration) is written before the thread
 * starts and only read while it runs.
 *
 * Kernel marks (``marks``): with marks on, each process is read from
 * /proc/PID/status, which gives its resident size and its high-water mark
 * (VmHWM) from the same counters; with marks == 2 the mark of every process
 * but this one is then reset (writing 5 to /proc/PID/clear_refs, where we
 * may), so that the next read gives the peak of one interval.  The time of
 * each reset is taken after it is done, so a reader can tell which interval
 * a mark covers (see memtrim.timeline.model).  This process's own mark is
 * never reset here: memtrim.timeline.session shares it among nested windows.
 *
 * Children: the thread keeps a table of every process's parent, sorted by
 * pid.  Per sample it reads /proc/loadavg to learn whether any pid was handed
 * out since (none: nothing to look for), reads the few new ones, or lists
 * /proc and reads the stat of processes it has not seen (plus a few,
 * round-robin); every process found to be a descendant is confirmed from its
 * stat.  The old way, reading every process's stat per sample, cost ~20 us
 * per process on the machine.
 * /proc/PID/task/TID/children would be cheaper still but is missing on
 * kernels built without CONFIG_PROC_CHILDREN (and is documented as racy).
 * sample_now(), called from Python, has no table and reads every stat.
 *
 * Fork: memtrim.engine.sampler pauses every running thread around os.fork()
 * (pause()/resume()), so a child is forked without it.  A child (also of a
 * fork() memtrim did not see) has no sampler thread; ``owner`` remembers the
 * process that started it, and a child never joins or locks (the mutex may
 * have been copied locked).
 *
 * Linux only (it reads /proc); on other systems the module only exports
 * SUPPORTED = 0 and memtrim samples with psutil from Python instead. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef __linux__

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capi.h" /* the engine's C API (version 1) */
#include "procfs.h"

#define API_CAPSULE MT_CAPI_CAPSULE
#define NO_HEAP INT64_MIN

enum { METRIC_RSS = 0, METRIC_PSS = 1, METRIC_USS = 2 };

/* A growable flat array of int64.  One sample is
 * [t_ns, heap, n, pid_1, bytes_1, ..., pid_n, bytes_n]. */
typedef struct {
    int64_t *data;
    size_t len, cap;
} buf_t;

static int buf_reserve(buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return 0;
    }
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + more) {
        cap *= 2;
    }
    int64_t *data = realloc(b->data, cap * sizeof(int64_t));
    if (data == NULL) {
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

/* A list of pids: the root first, then its descendants. */
typedef struct {
    pid_t *pid;
    size_t len, cap;
} pids_t;

static int pids_add(pids_t *p, pid_t pid)
{
    if (p->len == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        pid_t *grown = realloc(p->pid, cap * sizeof(pid_t));
        if (grown == NULL) {
            return -1;
        }
        p->pid = grown;
        p->cap = cap;
    }
    p->pid[p->len++] = pid;
    return 0;
}

/* ------------------------------------------------------------ /proc reading */

/* Value of "Key:   123 kB" in a /proc file's text, in bytes; -1 if absent. */
static int64_t field_kb(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *line = text; line && *line; line = strchr(line, '\n')) {
        if (*line == '\n') {
            line++;
        }
        if (strncmp(line, key, klen) == 0) {
            return (int64_t)strtoll(line + klen, NULL, 10) * 1024;
        }
    }
    return -1;
}

/* Memory of one process in bytes; 0 for a zombie (no memory left), -1 if it
 * cannot be read (gone, or not ours). */
static int64_t read_memory(pid_t pid, int metric)
{
    char path[64], text[4096];
    if (metric == METRIC_RSS) {
        return mt_proc_rss(pid);
    }
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    if (mt_proc_read(path, text, sizeof text) < 0) {
        return -1;
    }
    if (text[0] == '\0') {
        return 0; /* a zombie's smaps_rollup is empty */
    }
    if (metric == METRIC_PSS) {
        return field_kb(text, "Pss:");
    }
    int64_t clean = field_kb(text, "Private_Clean:");
    int64_t dirty = field_kb(text, "Private_Dirty:");
    return (clean < 0 || dirty < 0) ? -1 : clean + dirty;
}

/* Resident bytes and high-water mark of one process from /proc/PID/status
 * (same kernel counters, so hwm >= rss).  Returns rss (0 for a zombie or a
 * kernel thread: no memory), or -1 if it cannot be read. */
static int64_t read_status(pid_t pid, int64_t *hwm)
{
    char path[64], text[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (mt_proc_read(path, text, sizeof text) <= 0) {
        return -1;
    }
    int64_t rss = field_kb(text, "VmRSS:");
    int64_t mark = field_kb(text, "VmHWM:");
    if (rss < 0 || mark < 0) {
        *hwm = 0;
        return 0; /* no mm: a zombie or a kernel thread */
    }
    *hwm = mark > rss ? mark : rss;
    return rss;
}

/* Restart the kernel's high-water mark of `pid` from its current RSS.
 * Returns 0 when done (we may write its clear_refs), -1 otherwise. */
static int reset_mark(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/clear_refs", (int)pid);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    ssize_t n;
    do {
        n = write(fd, "5", 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    return n == 1 ? 0 : -1;
}

/* The parent pid from /proc/PID/stat ("pid (comm) state ppid ..."); the
 * command name may contain spaces and parentheses, so parse after the last ')'. */
static pid_t read_ppid(pid_t pid)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (mt_proc_read(path, text, sizeof text) <= 0) {
        return -1;
    }
    char *end = strrchr(text, ')');
    int ppid = -1;
    char state;
    if (end == NULL || sscanf(end + 1, " %c %d", &state, &ppid) != 2) {
        return -1;
    }
    return (pid_t)ppid;
}

static int pid_cmp(const void *a, const void *b)
{
    pid_t x = *(const pid_t *)a, y = *(const pid_t *)b;
    return (x > y) - (x < y);
}

/* Every process listed in /proc, sorted by pid (the kernel lists them in
 * order already; sorted again in case it does not).  Returns -1 on failure. */
static int list_processes(pids_t *out)
{
    DIR *dir = opendir("/proc");
    if (dir == NULL) {
        return -1;
    }
    struct dirent *entry;
    int sorted = 1;
    while ((entry = readdir(dir)) != NULL) {
        if (!isdigit((unsigned char)entry->d_name[0])) {
            continue;
        }
        pid_t pid = (pid_t)atoi(entry->d_name);
        if (out->len > 0 && out->pid[out->len - 1] > pid) {
            sorted = 0;
        }
        if (pids_add(out, pid) < 0) {
            closedir(dir);
            return -1;
        }
    }
    closedir(dir);
    if (!sorted) {
        qsort(out->pid, out->len, sizeof(pid_t), pid_cmp);
    }
    return 0;
}

static int in_pids(const pids_t *p, pid_t pid)
{
    for (size_t i = 0; i < p->len; i++) {
        if (p->pid[i] == pid) {
            return 1;
        }
    }
    return 0;
}

/* Parent links of every process, sorted by pid. */
typedef struct {
    pid_t pid, ppid;
} link_t;

typedef struct {
    link_t *v;
    size_t len, cap;
    size_t cursor; /* round-robin position of the re-reads */
} links_t;

static int links_add(links_t *l, pid_t pid, pid_t ppid)
{
    if (l->len == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        link_t *grown = realloc(l->v, cap * sizeof(link_t));
        if (grown == NULL) {
            return -1;
        }
        l->v = grown;
        l->cap = cap;
    }
    l->v[l->len++] = (link_t){pid, ppid};
    return 0;
}

static int links_has(const links_t *l, pid_t pid)
{
    size_t lo = 0, hi = l->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].pid < pid) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo < l->len && l->v[lo].pid == pid;
}

/* Re-read a few known links per sample: a pid is reused only after the
 * kernel's cyclic allocator wraps around pid_max, so a stale link is all but
 * impossible; this bounds how long one could last. */
#define REFRESH_PER_SAMPLE 2

/* Bring `table` up to date with /proc: new processes are read, gone ones
 * dropped, and the children of a gone parent re-read (they were reparented).
 * Returns -1 if /proc cannot be listed. */
static int links_update(links_t *table)
{
    pids_t now = {0};
    if (list_processes(&now) < 0) {
        free(now.pid);
        return -1;
    }
    links_t next = {0};
    size_t j = 0;
    for (size_t i = 0; i < now.len; i++) {
        pid_t pid = now.pid[i];
        while (j < table->len && table->v[j].pid < pid) {
            j++;
        }
        pid_t ppid = (j < table->len && table->v[j].pid == pid) ? table->v[j].ppid : read_ppid(pid);
        if (ppid >= 0 && links_add(&next, pid, ppid) < 0) {
            break;
        }
    }
    free(now.pid);
    for (size_t k = 0; k < next.len; k++) {
        if (next.v[k].ppid > 0 && !links_has(&next, next.v[k].ppid)) {
            pid_t ppid = read_ppid(next.v[k].pid); /* its parent is gone */
            next.v[k].ppid = ppid >= 0 ? ppid : 0;
        }
    }
    for (int r = 0; r < REFRESH_PER_SAMPLE && next.len > 0; r++) {
        size_t k = table->cursor++ % next.len;
        pid_t ppid = read_ppid(next.v[k].pid);
        if (ppid >= 0) {
            next.v[k].ppid = ppid;
        }
    }
    free(table->v);
    next.cursor = table->cursor;
    *table = next;
    return 0;
}

/* Append every descendant of out->pid[0] (breadth first) using `table`,
 * confirming each one's parent from its stat (the table may be stale). */
static void descendants_from(links_t *table, pids_t *out)
{
    for (size_t at = 0; at < out->len; at++) {
        pid_t parent = out->pid[at];
        for (size_t k = 0; k < table->len; k++) {
            link_t *link = &table->v[k];
            if (link->ppid != parent || in_pids(out, link->pid)) {
                continue;
            }
            pid_t ppid = read_ppid(link->pid);
            if (ppid == parent) {
                pids_add(out, link->pid);
            }
            else if (ppid >= 0) {
                link->ppid = ppid;
            }
        }
    }
}

/* The newest pid the kernel has handed out (processes and threads), from
 * the last field of /proc/loadavg; -1 if unknown. */
static long read_last_pid(void)
{
    char text[256];
    if (mt_proc_read("/proc/loadavg", text, sizeof text) <= 0) {
        return -1;
    }
    char *last = strrchr(text, ' ');
    return last == NULL ? -1 : strtol(last + 1, NULL, 10);
}

/* Insert or update a link, keeping the table sorted by pid. */
static int links_put(links_t *l, pid_t pid, pid_t ppid)
{
    size_t lo = 0, hi = l->len;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (l->v[mid].pid < pid) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    if (lo < l->len && l->v[lo].pid == pid) {
        l->v[lo].ppid = ppid;
        return 0;
    }
    if (links_add(l, pid, ppid) < 0) { /* grows by one at the end */
        return -1;
    }
    memmove(&l->v[lo + 1], &l->v[lo], (l->len - 1 - lo) * sizeof(link_t));
    l->v[lo] = (link_t){pid, ppid};
    return 0;
}

/* For a new pid: whether it is a process (not a thread) and its parent. */
static int read_process(pid_t pid, pid_t *ppid)
{
    char path[64], text[8192];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    if (mt_proc_read(path, text, sizeof text) <= 0) {
        return -1;
    }
    const char *tgid = strstr(text, "\nTgid:");
    const char *parent = strstr(text, "\nPPid:");
    if (tgid == NULL || parent == NULL || strtol(tgid + 6, NULL, 10) != pid) {
        return -1; /* a thread (or unreadable) */
    }
    *ppid = (pid_t)strtol(parent + 6, NULL, 10);
    return 0;
}

/* What the sampling thread knows of the machine's processes between samples. */
typedef struct {
    links_t table;
    long last_pid; /* newest pid at the last update; -1: list /proc every time */
    int primed;
    size_t probed; /* pids read one by one since /proc was last listed */
} scan_t;

/* Look at at most this many new pids one by one; more: list /proc. */
#define PROBE_MAX 256

/* Bring the table up to date cheaply.  New processes always get a new pid,
 * handed out in increasing order until pid_max wraps around, and the newest
 * one is in /proc/loadavg: when it has not changed no process was created,
 * and the table only lacks nothing (gone processes are dropped at the next
 * listing; a descendant is confirmed from its stat before it is counted).
 * When a few pids are new they are read one by one; otherwise, or after a
 * wrap, /proc is listed.  /proc must show this pid namespace (/proc/self is
 * our pid) for the numbers to agree; if not, /proc is listed every time. */
static int scan_update(scan_t *scan)
{
    long newest = scan->last_pid >= 0 || !scan->primed ? read_last_pid() : -1;
    if (!scan->primed) {
        char self[32];
        ssize_t n = readlink("/proc/self", self, sizeof self - 1);
        int ours = n > 0 && (self[n] = '\0', strtol(self, NULL, 10) == (long)getpid());
        newest = ours ? newest : -1;
    }
    else if (newest >= 0 && scan->last_pid >= 0 && newest >= scan->last_pid &&
             newest - scan->last_pid <= PROBE_MAX &&
             scan->probed <= scan->table.len / 2 + PROBE_MAX) { /* else drop the gone */
        scan->probed += (size_t)(newest - scan->last_pid);
        for (long pid = scan->last_pid + 1; pid <= newest; pid++) {
            pid_t ppid;
            if (read_process((pid_t)pid, &ppid) == 0 &&
                links_put(&scan->table, (pid_t)pid, ppid) < 0) {
                break;
            }
        }
        scan->last_pid = newest;
        return 0;
    }
    if (links_update(&scan->table) < 0) {
        return -1;
    }
    scan->last_pid = newest;
    scan->primed = 1;
    scan->probed = 0;
    return 0;
}

/* The same without a table: read every process's stat once. */
static void descendants_scan(pids_t *out)
{
    pids_t all = {0};
    if (list_processes(&all) < 0) {
        free(all.pid);
        return;
    }
    links_t table = {0};
    for (size_t i = 0; i < all.len; i++) {
        pid_t ppid = read_ppid(all.pid[i]);
        if (ppid >= 0 && links_add(&table, all.pid[i], ppid) < 0) {
            break;
        }
    }
    free(all.pid);
    /* each link was just read: no need to confirm it */
    for (size_t at = 0; at < out->len; at++) {
        for (size_t k = 0; k < table.len; k++) {
            if (table.v[k].ppid == out->pid[at] && !in_pids(out, table.v[k].pid)) {
                pids_add(out, table.v[k].pid);
            }
        }
    }
    free(table.v);
}

/* ----------------------------------------------------------------- Sampler */

typedef struct {
    PyObject_HEAD
    /* configuration: set in __init__, read-only while the thread runs */
    pid_t root;
    int children;
    int metric;
    int marks; /* 0: none, 1: read the marks, 2: read and reset them (not ours) */
    int64_t interval_ns;
    const mt_c_api_t *api; /* NULL: do not read the heap level */
    PyObject *capsule;     /* keeps the engine module alive for `api` */
    pid_t owner;           /* the process that started the thread */
    int started;           /* Python side only (GIL) */
    pthread_t thread;
    /* guarded by `lock` */
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stop_flag;
    int root_gone;
    uint64_t count;
    buf_t buf;
} Sampler;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts); /* the clock of time.monotonic() */
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* One process read with its mark: its bytes (<= 0: no memory, or
 * unreadable), its mark, and the time its mark was reset after the read
 * (0: not reset). */
static int64_t read_with_mark(const Sampler *s, pid_t pid, int64_t *hwm, int64_t *reset_ns)
{
    *hwm = 0;
    *reset_ns = 0;
    int64_t bytes = read_status(pid, hwm);
    if (bytes > 0 && s->marks == 2 && pid != getpid() && reset_mark(pid) == 0) {
        *reset_ns = now_ns(); /* after the reset: the next mark covers only later */
    }
    return bytes;
}

/* Samples in a buffer: [t_ns, heap, n, width, n * width values], width 2
 * (pid, bytes) or 4 (pid, bytes, hwm, reset_ns). */
#define SAMPLE_HEAD 4

/* Take one sample into `out` (not shared: no lock needed).  `scan` is the
 * thread's knowledge of the processes (NULL: scan /proc).  Returns 0, or -1
 * when the root process could not be read or has no memory (nothing is
 * appended then). */
static int take_sample(Sampler *s, buf_t *out, scan_t *scan)
{
    pids_t pids = {0};
    if (pids_add(&pids, s->root) < 0) {
        return -1;
    }
    if (s->children) { /* discovery first, so the reads below are close */
        if (scan != NULL && scan_update(scan) == 0) {
            descendants_from(&scan->table, &pids);
        }
        else {
            descendants_scan(&pids);
        }
    }
    int64_t width = s->marks ? 4 : 2;
    if (buf_reserve(out, SAMPLE_HEAD + (size_t)width * pids.len) < 0) {
        free(pids.pid);
        return -1;
    }
    size_t head = out->len;
    int64_t t = now_ns();
    int64_t heap = NO_HEAP;
    if (s->api != NULL && s->api->heap_installed()) {
        heap = s->api->heap_level(); /* racy 64-bit read, see the top */
    }
    int64_t n = 0;
    size_t at = head + SAMPLE_HEAD;
    for (size_t i = 0; i < pids.len; i++) {
        int64_t hwm = 0, reset_ns = 0;
        int64_t bytes = s->marks ? read_with_mark(s, pids.pid[i], &hwm, &reset_ns)
                                 : read_memory(pids.pid[i], s->metric);
        if (bytes <= 0) {
            if (i == 0) { /* the root is gone (or a zombie): no sample */
                free(pids.pid);
                return -1;
            }
            continue; /* a child that just exited */
        }
        out->data[at++] = pids.pid[i];
        out->data[at++] = bytes;
        if (s->marks) {
            out->data[at++] = hwm;
            out->data[at++] = reset_ns;
        }
        n++;
    }
    out->data[head] = t;
    out->data[head + 1] = heap;
    out->data[head + 2] = n;
    out->data[head + 3] = width;
    out->len = at;
    free(pids.pid);
    return 0;
}

/* Wait on `wake` until the absolute CLOCK_MONOTONIC `deadline` or stop();
 * called and returns with `lock` held.  Returns whether to go on. */
static int wait_until(Sampler *s, const struct timespec *deadline)
{
    while (!s->stop_flag) {
        if (pthread_cond_timedwait(&s->wake, &s->lock, deadline) == ETIMEDOUT) {
            break;
        }
    }
    return !s->stop_flag;
}

/* Sampler threads alive in this process (for the test suite's leak check):
 * counted up before pthread_create, down as the thread returns, atomically
 * (the threads never hold the GIL).  A forked child has none of them. */
static int live_threads;
static void *sampler_main(void *arg);

static void live_threads_reset_in_child(void)
{
    live_threads = 0;
}

static int spawn_thread(Sampler *s)
{
    __atomic_add_fetch(&live_threads, 1, __ATOMIC_RELAXED);
    /* The thread starts with every signal blocked (it inherits this mask):
     * a SIGTERM or SIGINT the kernel gave to it would run CPython's C handler
     * here and leave the main thread blocked in a C call (a semaphore wait)
     * never to see it, where plain python would have died of it. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        __atomic_sub_fetch(&live_threads, 1, __ATOMIC_RELAXED);
    }
    return rc;
}

/* The engine's guard (capi.h version 2), bound once by bind_engine(): the
 * sampler threads' own allocations (opendir's buffers, through libc's GOT,
 * which the native hooks patch) are memtrim's, not the program's. */
static void (*guard_enter)(void);

static void *sampler_main(void *arg)
{
    Sampler *s = arg;
    if (guard_enter != NULL) {
        guard_enter();
    }
    buf_t one = {0};
    scan_t scan = {{0}, -1, 0, 0}; /* this thread's own: no lock */
    /* Fixed rate: deadlines are start + k * interval.  The first sample is
     * one interval after start(); callers take the sample at time zero
     * themselves with sample_now().  Ticks missed (machine suspended or
     * overloaded) are skipped rather than taken in a burst. */
    int64_t next = now_ns() + s->interval_ns;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        struct timespec deadline = {next / 1000000000, next % 1000000000};
        if (!wait_until(s, &deadline)) {
            break;
        }
        pthread_mutex_unlock(&s->lock);
        one.len = 0;
        int ok = take_sample(s, &one, &scan) == 0; /* /proc reads: outside the lock */
        pthread_mutex_lock(&s->lock);
        if (!ok) {
            s->root_gone = 1;
            break;
        }
        if (buf_reserve(&s->buf, one.len) == 0) {
            memcpy(s->buf.data + s->buf.len, one.data, one.len * sizeof(int64_t));
            s->buf.len += one.len;
            s->count++;
        }
        next += s->interval_ns;
        int64_t now = now_ns();
        if (next <= now) {
            next += ((now - next) / s->interval_ns + 1) * s->interval_ns;
        }
    }
    pthread_mutex_unlock(&s->lock);
    free(one.data);
    free(scan.table.v);
    __atomic_sub_fetch(&live_threads, 1, __ATOMIC_RELAXED);
    return NULL;
}

static int Sampler_init(Sampler *s, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "interval", "children", "metric", "heap", "marks", NULL};
    int pid, children = 0, metric = METRIC_RSS, marks = 0;
    double interval;
    PyObject *heap = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "id|piOi", kwlist, &pid, &interval, &children,
                                     &metric, &heap, &marks)) {
        return -1;
    }
    if (s->started) {
        PyErr_SetString(PyExc_RuntimeError, "a Sampler cannot be re-initialised");
        return -1;
    }
    if (!(interval > 0) || interval > 86400.0) {
        PyErr_SetString(PyExc_ValueError, "interval must be > 0 seconds (and at most a day)");
        return -1;
    }
    if (pid <= 0) {
        PyErr_Format(PyExc_ValueError, "bad pid %d", pid);
        return -1;
    }
    if (metric < METRIC_RSS || metric > METRIC_USS) {
        PyErr_Format(PyExc_ValueError, "bad metric %d", metric);
        return -1;
    }
    if (marks < 0 || marks > 2 || (marks && metric != METRIC_RSS)) {
        PyErr_SetString(PyExc_ValueError, "marks must be 0, 1 or 2, and only with the rss metric");
        return -1;
    }
    s->api = NULL;
    Py_CLEAR(s->capsule);
    if (heap != Py_None) {
        const mt_c_api_t *api = PyCapsule_GetPointer(heap, API_CAPSULE);
        if (api == NULL) {
            return -1;
        }
        if (api->version < 1) {
            PyErr_SetString(PyExc_RuntimeError, "the engine's C API is too old");
            return -1;
        }
        s->api = api;
        s->capsule = Py_NewRef(heap);
    }
    s->root = (pid_t)pid;
    s->children = children;
    s->metric = metric;
    s->marks = marks;
    s->interval_ns = (int64_t)(interval * 1e9);
    if (s->interval_ns < 1000) {
        s->interval_ns = 1000;
    }
    return 0;
}

static PyObject *Sampler_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    Sampler *s = (Sampler *)type->tp_alloc(type, 0);
    if (s == NULL) {
        return NULL;
    }
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&s->wake, &attr);
    pthread_condattr_destroy(&attr);
    pthread_mutex_init(&s->lock, NULL);
    return (PyObject *)s;
}

static PyObject *Sampler_start(Sampler *s, PyObject *unused)
{
    if (s->started) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler was already started");
        return NULL;
    }
    if (s->interval_ns == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler was not initialised");
        return NULL;
    }
    s->stop_flag = 0;
    s->root_gone = 0;
    s->owner = getpid();
    int rc = spawn_thread(s);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->started = 1;
    Py_RETURN_NONE;
}

/* The number of threads of this process, from /proc/self/stat (field 20). */
static long own_threads(void)
{
    char text[1024];
    if (mt_proc_read("/proc/self/stat", text, sizeof text) <= 0) {
        return -1;
    }
    char *field = strrchr(text, ')');
    for (int i = 0; field != NULL && i < 18; i++) { /* from the state (3) to 20 */
        field = strchr(field + 1, ' ');
    }
    return field == NULL ? -1 : strtol(field + 1, NULL, 10);
}

/* Tell the thread to stop and join it, with the GIL released (the thread
 * never needs it, but other Python threads should not wait for us). */
static void join_thread(Sampler *s)
{
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&s->lock);
    s->stop_flag = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
}

/* started: 0 never, 1 running, 2 stopped, 3 paused (see pause()). */
static void sampler_stop(Sampler *s)
{
    if (s->started == 3) {
        s->started = 2; /* paused: already joined (or, in a forked child, never here) */
        return;
    }
    if (s->started != 1) {
        return;
    }
    s->started = 2;
    if (s->owner != getpid()) {
        return; /* a forked child: the thread does not exist here */
    }
    join_thread(s);
}

static PyObject *Sampler_stop(Sampler *s, PyObject *unused)
{
    sampler_stop(s);
    Py_RETURN_NONE;
}

/* Stop the thread for a while, keeping what it sampled: before fork(), so
 * that the child is not forked from a process with a thread in the middle of
 * a read, and so that Python 3.12 does not warn the program that it forks a
 * multi-threaded process (3.13 counts threads after the fork hooks: see
 * memtrim/engine/sampler.py).  The thread has ended in the kernel too when
 * this returns (pthread_join can return a moment before). */
static PyObject *Sampler_pause(Sampler *s, PyObject *unused)
{
    if (s->started != 1 || s->owner != getpid()) {
        Py_RETURN_NONE;
    }
    long before = own_threads();
    join_thread(s);
    s->started = 3;
    Py_BEGIN_ALLOW_THREADS
    for (int i = 0; before > 0 && i < 2000 && own_threads() >= before; i++) {
        struct timespec pause = {0, 10000}; /* 10 us, 20 ms at most */
        nanosleep(&pause, NULL);
    }
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

/* Start the thread again after pause() (in the process that paused it);
 * returns 0, or an errno. */
static int sampler_resume(Sampler *s)
{
    if (s->started != 3 || s->owner != getpid()) {
        return 0;
    }
    s->stop_flag = 0;
    int rc = spawn_thread(s);
    s->started = rc == 0 ? 1 : 2;
    return rc;
}

static PyObject *Sampler_resume(Sampler *s, PyObject *unused)
{
    int rc = sampler_resume(s);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* Build the Python tuple for the sample starting at data[*at]:
 * (t_ns, heap | None, ((pid, bytes), ...), ((pid, hwm, reset_ns), ...) | None). */
static PyObject *sample_tuple(const int64_t *data, size_t *at)
{
    const int64_t *rec = data + *at;
    int64_t n = rec[2], width = rec[3];
    const int64_t *row = rec + SAMPLE_HEAD;
    PyObject *procs = PyTuple_New((Py_ssize_t)n);
    PyObject *marks = width == 4 ? PyTuple_New((Py_ssize_t)n) : Py_NewRef(Py_None);
    if (procs == NULL || marks == NULL) {
        Py_XDECREF(procs);
        Py_XDECREF(marks);
        return NULL;
    }
    for (int64_t i = 0; i < n; i++, row += width) {
        PyObject *pair = Py_BuildValue("(LL)", (long long)row[0], (long long)row[1]);
        if (pair == NULL) {
            goto fail;
        }
        PyTuple_SET_ITEM(procs, (Py_ssize_t)i, pair);
        if (width == 4) {
            PyObject *mark = Py_BuildValue("(LLL)", (long long)row[0], (long long)row[2],
                                           (long long)row[3]);
            if (mark == NULL) {
                goto fail;
            }
            PyTuple_SET_ITEM(marks, (Py_ssize_t)i, mark);
        }
    }
    *at += SAMPLE_HEAD + (size_t)(width * n);
    if (rec[1] == NO_HEAP) {
        return Py_BuildValue("(LONN)", (long long)rec[0], Py_None, procs, marks);
    }
    return Py_BuildValue("(LLNN)", (long long)rec[0], (long long)rec[1], procs, marks);
fail:
    Py_DECREF(procs);
    Py_DECREF(marks);
    return NULL;
}

static PyObject *samples_list(const buf_t *b)
{
    PyObject *list = PyList_New(0);
    size_t at = 0;
    while (list != NULL && at < b->len) {
        PyObject *item = sample_tuple(b->data, &at);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(item);
    }
    return list;
}

static PyObject *Sampler_drain(Sampler *s, PyObject *unused)
{
    buf_t taken = {0};
    if (s->owner == 0 || s->owner == getpid()) {
        pthread_mutex_lock(&s->lock); /* short: swap the buffer out */
        taken = s->buf;
        s->buf = (buf_t){0};
        pthread_mutex_unlock(&s->lock);
    }
    PyObject *list = samples_list(&taken);
    free(taken.data);
    return list;
}

static PyObject *Sampler_sample_now(Sampler *s, PyObject *unused)
{
    buf_t one = {0};
    int ok;
    Py_BEGIN_ALLOW_THREADS
    ok = take_sample(s, &one, NULL) == 0;
    Py_END_ALLOW_THREADS
    if (!ok) {
        free(one.data);
        Py_RETURN_NONE;
    }
    size_t at = 0;
    PyObject *item = sample_tuple(one.data, &at);
    free(one.data);
    return item;
}

/* The root's bytes and mark now, reset after reading as configured:
 * (t_ns, bytes, hwm, reset_ns), or None if it has no memory or is gone. */
static PyObject *Sampler_mark_now(Sampler *s, PyObject *unused)
{
    if (s->interval_ns == 0) {
        PyErr_SetString(PyExc_RuntimeError, "the sampler was not initialised");
        return NULL;
    }
    int64_t t, bytes, hwm, reset_ns;
    Py_BEGIN_ALLOW_THREADS
    t = now_ns();
    bytes = read_with_mark(s, s->root, &hwm, &reset_ns);
    Py_END_ALLOW_THREADS
    if (bytes <= 0) {
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(LLLL)", (long long)t, (long long)bytes, (long long)hwm,
                         (long long)reset_ns);
}

static PyObject *Sampler_get_count(Sampler *s, void *unused)
{
    uint64_t count = 0;
    if (s->owner == 0 || s->owner == getpid()) {
        pthread_mutex_lock(&s->lock);
        count = s->count;
        pthread_mutex_unlock(&s->lock);
    }
    return PyLong_FromUnsignedLongLong(count);
}

static PyObject *Sampler_get_root_gone(Sampler *s, void *unused)
{
    int gone = 0;
    if (s->owner == 0 || s->owner == getpid()) {
        pthread_mutex_lock(&s->lock);
        gone = s->root_gone;
        pthread_mutex_unlock(&s->lock);
    }
    return PyBool_FromLong(gone);
}

static PyObject *Sampler_get_running(Sampler *s, void *unused)
{
    return PyBool_FromLong(s->started == 1);
}

static void Sampler_dealloc(Sampler *s)
{
    sampler_stop(s);
    if (s->owner == 0 || s->owner == getpid()) {
        pthread_mutex_destroy(&s->lock);
        pthread_cond_destroy(&s->wake);
    }
    free(s->buf.data);
    Py_CLEAR(s->capsule);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyMethodDef Sampler_methods[] = {
    {"start", (PyCFunction)Sampler_start, METH_NOARGS, "Start the sampling thread."},
    {"stop", (PyCFunction)Sampler_stop, METH_NOARGS, "Stop the thread and wait for it."},
    {"pause", (PyCFunction)Sampler_pause, METH_NOARGS,
     "Stop the thread until resume(), keeping its samples (around fork())."},
    {"resume", (PyCFunction)Sampler_resume, METH_NOARGS, "Start the thread again after pause()."},
    {"drain", (PyCFunction)Sampler_drain, METH_NOARGS,
     "Samples taken since the last drain: [(t_ns, heap|None, ((pid, bytes), ...)), ...]."},
    {"sample_now", (PyCFunction)Sampler_sample_now, METH_NOARGS,
     "Take one sample now in the calling thread; None if the process is gone."},
    {"mark_now", (PyCFunction)Sampler_mark_now, METH_NOARGS,
     "(t_ns, bytes, hwm, reset_ns) of the watched process now; None if it has no memory."},
    {NULL},
};

static PyGetSetDef Sampler_getset[] = {
    {"count", (getter)Sampler_get_count, NULL, "Samples taken by the thread.", NULL},
    {"root_gone", (getter)Sampler_get_root_gone, NULL, "Has the sampled process gone?", NULL},
    {"running", (getter)Sampler_get_running, NULL, "Is the thread running?", NULL},
    {NULL},
};

static PyTypeObject SamplerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtrim.engine._sampler.Sampler",
    .tp_basicsize = sizeof(Sampler),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sampler(pid, interval, children=False, metric=0, heap=None, marks=0)",
    .tp_new = Sampler_new,
    .tp_init = (initproc)Sampler_init,
    .tp_dealloc = (destructor)Sampler_dealloc,
    .tp_methods = Sampler_methods,
    .tp_getset = Sampler_getset,
};

static PyObject *py_read_memory(PyObject *self, PyObject *args)
{
    int pid, metric = METRIC_RSS;
    if (!PyArg_ParseTuple(args, "i|i", &pid, &metric)) {
        return NULL;
    }
    int64_t bytes;
    Py_BEGIN_ALLOW_THREADS
    bytes = read_memory((pid_t)pid, metric);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(bytes);
}

static PyObject *py_active_count(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(__atomic_load_n(&live_threads, __ATOMIC_RELAXED));
}

static PyObject *py_bind_engine(PyObject *self, PyObject *capsule)
{
    const mt_c_api_t *api = PyCapsule_GetPointer(capsule, API_CAPSULE);
    if (api == NULL) {
        return NULL;
    }
    if (api->version >= 2) {
        guard_enter = api->guard_enter;
    }
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"bind_engine", py_bind_engine, METH_O,
     "bind_engine(capsule): the engine's C API; sampler threads then pass its hooks uncounted."},
    {"read_memory", py_read_memory, METH_VARARGS,
     "read_memory(pid, metric=0) -> bytes; 0 for a zombie, -1 if unreadable."},
    {"active_count", py_active_count, METH_NOARGS,
     "How many sampler threads are alive in this process."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrim.engine._sampler",
    "A native thread sampling memory at a fixed interval, without the GIL.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__sampler(void)
{
    static int atfork_done;
    if (!atfork_done) {
        pthread_atfork(NULL, NULL, live_threads_reset_in_child);
        atfork_done = 1;
    }
    if (PyType_Ready(&SamplerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "SUPPORTED", 1) < 0 ||
        PyModule_AddIntConstant(m, "METRIC_RSS", METRIC_RSS) < 0 ||
        PyModule_AddIntConstant(m, "METRIC_PSS", METRIC_PSS) < 0 ||
        PyModule_AddIntConstant(m, "METRIC_USS", METRIC_USS) < 0 ||
        PyModule_AddObjectRef(m, "Sampler", (PyObject *)&SamplerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

#else /* not Linux: nothing to sample natively */

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrim.engine._sampler", "Not supported on this system.", -1, NULL,
};

PyMODINIT_FUNC PyInit__sampler(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "SUPPORTED", 0) < 0) {
        Py_CLEAR(m);
    }
    return m;
}

#endif
