/* The --limit watchdog: a native thread that polls the process's resident
 * memory and, once it reaches the limit, makes the main thread raise
 * MemoryError at its next bytecode boundary.
 *
 * Why a native thread: a Python thread would need the GIL to run, and a
 * program growing its memory in a long C call holds it.  Why a pending call:
 * Py_AddPendingCall is the one API callable without the GIL or a thread state,
 * and runs its function in the main thread, where raising an exception is
 * legal (this is how signal handlers reach Python code). */
#include "compat.h"

#include <pthread.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static pthread_t watcher;
static volatile int running;
volatile int mt_limit_tripped; /* read by the heap hooks (heap.h) */
static int raised;
static volatile long long limit_bytes, fired_rss;
static long interval_ns;
static unsigned long main_ident;

static long long read_rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long long size = 0, resident = 0;
    if (f == NULL) {
        return -1;
    }
    int ok = fscanf(f, "%lld %lld", &size, &resident) == 2;
    fclose(f);
    return ok ? resident * (long long)sysconf(_SC_PAGESIZE) : -1;
}

static int raise_limit(void *unused)
{
    (void)unused;
    if (raised) {
        return 0; /* queued more than once: raise only once */
    }
    raised = 1;
    mt_limit_tripped = 0;
    PyErr_Format(PyExc_MemoryError,
                 "memtrim: resident memory reached the --limit of %lld bytes (%lld bytes)",
                 limit_bytes, fired_rss);
    return -1;
}

static void *watch(void *unused)
{
    (void)unused;
    struct timespec pause = {interval_ns / 1000000000L, interval_ns % 1000000000L};
    while (running) {
        long long rss = read_rss();
        if (rss >= limit_bytes) {
            fired_rss = rss;
            running = 0;
            /* On 3.11 a pending call added from a thread other than the main
             * one does not wake the main thread's eval loop; the heap hooks
             * see mt_limit_tripped and add it again from the main thread. */
            mt_limit_tripped = 1;
            Py_AddPendingCall(raise_limit, NULL);
            break;
        }
        nanosleep(&pause, NULL);
    }
    return NULL;
}

/* start(limit_bytes, interval_s) */
PyObject *mt_watchdog_start(PyObject *self, PyObject *args)
{
    long long limit;
    double interval;
    if (!PyArg_ParseTuple(args, "Ld", &limit, &interval)) {
        return NULL;
    }
    if (limit <= 0 || !(interval > 0)) {
        PyErr_SetString(PyExc_ValueError, "limit and interval must be positive");
        return NULL;
    }
    if (read_rss() < 0) {
        PyErr_SetString(PyExc_OSError, "cannot read /proc/self/statm: --limit needs Linux");
        return NULL;
    }
    if (running) {
        PyErr_SetString(PyExc_RuntimeError, "the watchdog is already running");
        return NULL;
    }
    limit_bytes = limit;
    fired_rss = 0;
    raised = 0;
    mt_limit_tripped = 0;
    interval_ns = (long)(interval * 1e9);
    main_ident = PyThread_get_thread_ident(); /* start() runs in the main thread */
    running = 1;
    if (pthread_create(&watcher, NULL, watch, NULL) != 0) {
        running = 0;
        PyErr_SetString(PyExc_OSError, "cannot start the watchdog thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* stop() -> the RSS that tripped the limit, or 0 */
/* Called by the heap hooks, with the GIL, once the limit is tripped. */
void mt_watchdog_poke(void)
{
    if (PyThread_get_thread_ident() == main_ident) {
        mt_limit_tripped = 0;
        Py_AddPendingCall(raise_limit, NULL);
    }
}

PyObject *mt_watchdog_stop(PyObject *self, PyObject *unused)
{
    running = 0;
    mt_limit_tripped = 0;
    Py_BEGIN_ALLOW_THREADS
    pthread_join(watcher, NULL);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(fired_rss);
}
