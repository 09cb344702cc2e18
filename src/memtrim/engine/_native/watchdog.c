/* The --limit watchdog: a native thread that polls the process's resident
 * memory and, once it reaches the limit, makes the main thread raise
 * MemoryError at its next bytecode boundary.  If the program handles that
 * error and keeps growing (5 % of the limit past where it tripped), the
 * watchdog calls the `on_exceeded` callback in the main thread, which writes
 * the profile and ends the process the way an out-of-memory kill would.
 *
 * Why a native thread: a Python thread would need the GIL to run, and a
 * program growing its memory in a long C call holds it.  Why a pending call:
 * Py_AddPendingCall is the one API callable without the GIL or a thread state,
 * and runs its function in the main thread, where raising an exception is
 * legal (this is how signal handlers reach Python code). */
#include "compat.h"
#include "heap.h"
#include "procfs.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static pthread_t watcher;
static volatile int running;
volatile int mt_limit_tripped; /* read by the heap hooks (heap.h) */
static int raised, finished, started;
static volatile int armed; /* the MemoryError was raised: watch for growth past raised_rss */
static volatile long long limit_bytes, fired_rss, raised_rss, exceeded_rss;
static PyObject *on_exceeded; /* main thread, GIL */
static int (*volatile pending)(void *); /* what the hooks re-queue on 3.11 */
static long interval_ns;
static unsigned long main_ident;

static long long read_rss(void)
{
    return (long long)mt_proc_rss(0);
}

static int raise_limit(void *unused)
{
    (void)unused;
    if (raised) {
        return 0; /* queued more than once: raise only once */
    }
    raised = 1;
    mt_limit_tripped = 0;
    raised_rss = read_rss();
    armed = 1;
    PyErr_Format(PyExc_MemoryError,
                 "memtrim: resident memory reached the --limit of %lld bytes (%lld bytes)",
                 limit_bytes, fired_rss);
    return -1;
}

/* The program went on growing after its MemoryError: hand over to Python. */
static int call_exceeded(void *unused)
{
    (void)unused;
    if (finished || on_exceeded == NULL) {
        return 0;
    }
    finished = 1;
    mt_limit_tripped = 0;
    PyObject *result = PyObject_CallFunction(on_exceeded, "L", exceeded_rss);
    if (result == NULL) {
        return -1;
    }
    Py_DECREF(result);
    return 0;
}

static void trip(int (*fn)(void *))
{
    /* On 3.11 a pending call added from a thread other than the main one
     * does not wake the main thread's eval loop; the heap hooks see
     * mt_limit_tripped and add it again from the main thread. */
    pending = fn;
    mt_limit_tripped = 1;
    Py_AddPendingCall(fn, NULL);
}

static void *watch(void *unused)
{
    (void)unused;
    mt_heap_guard_enter(); /* what libc allocates for this thread is memtrim's */
    struct timespec pause = {interval_ns / 1000000000L, interval_ns % 1000000000L};
    while (running) {
        long long rss = read_rss();
        if (fired_rss == 0 && rss >= limit_bytes) {
            fired_rss = rss;
            trip(raise_limit);
        }
        else if (armed && rss >= raised_rss + limit_bytes / 20) {
            exceeded_rss = rss;
            running = 0;
            trip(call_exceeded);
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
    PyObject *callback = NULL;
    if (!PyArg_ParseTuple(args, "Ld|O", &limit, &interval, &callback)) {
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
    fired_rss = raised_rss = exceeded_rss = 0;
    raised = finished = armed = 0;
    Py_XINCREF(callback);
    Py_XSETREF(on_exceeded, callback);
    mt_limit_tripped = 0;
    interval_ns = (long)(interval * 1e9);
    main_ident = PyThread_get_thread_ident(); /* start() runs in the main thread */
    running = 1;
    started = 1;
    /* every signal blocked in the watcher (it inherits this mask): the
     * program's signals go to its own threads (see sampler.c) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&watcher, NULL, watch, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        running = started = 0;
        PyErr_SetString(PyExc_OSError, "cannot start the watchdog thread");
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Called by the heap hooks, with the GIL, once the limit is tripped. */
void mt_watchdog_poke(void)
{
    if (PyThread_get_thread_ident() == main_ident && pending != NULL) {
        mt_limit_tripped = 0;
        Py_AddPendingCall(pending, NULL);
    }
}

/* stop() -> the RSS that tripped the limit, or 0 */
PyObject *mt_watchdog_stop(PyObject *self, PyObject *unused)
{
    running = 0;
    mt_limit_tripped = 0;
    if (started) { /* stop() may be called more than once */
        started = 0;
        Py_BEGIN_ALLOW_THREADS
        pthread_join(watcher, NULL);
        Py_END_ALLOW_THREADS
    }
    pending = NULL;
    Py_CLEAR(on_exceeded);
    return PyLong_FromLongLong(fired_rss);
}
