/* The SIGTERM deadline: a profiled program dies of SIGTERM as promptly as
 * without memtrim, even in a long C call.
 *
 * Without memtrim, SIGTERM's default action ends the process at once.  memtrim
 * installs a Python handler (to write the capture first), and CPython runs
 * Python handlers only in the main thread, between bytecodes: a program in a
 * 30 s regex match, or a numpy call, would die only when the call returns
 * (under a container's grace period: a SIGKILL, and no capture).
 *
 * So memtrim wraps CPython's C handler for SIGTERM: the wrapper calls it (the
 * Python handler still runs when it can) and wakes a native thread, which
 * waits `grace` seconds for memtrim's Python side to claim the signal (the
 * main thread's handler, or the disk keeper's thread, which can write the
 * capture when the main thread's C call has released the GIL).  If nobody has
 * claimed it by then, the thread puts back the default action and raises
 * SIGTERM: the process dies of it, as without memtrim, and the capture last
 * kept on disk is what remains.
 *
 * Why a native thread: a Python thread needs the GIL, which the long C call
 * may hold.  Why a pipe: write() is async-signal-safe and portable (no unnamed
 * semaphores on macOS).  The claim is one atomic exchange: the first of the
 * two Python writers to claim the signal writes the capture, the other waits
 * for the process to die. */
#include "compat.h"
#include "heap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static struct sigaction python_action; /* CPython's, called by the wrapper */
static int wake[2] = {-1, -1};         /* the wrapper and claim() -> the thread */
static pthread_t deadline_thread;
static int armed;                      /* GIL */
static atomic_int stopping, claimed;
static atomic_llong seen_ns; /* when the signal came (monotonic ns); 0: not yet */
static long long grace_ns;

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void poke(void)
{
    char byte = 1;
    ssize_t rc = write(wake[1], &byte, 1); /* full pipe: it is awake already */
    (void)rc;
}

/* Any thread, in the signal: async-signal-safe calls only. */
static void on_term(int sig, siginfo_t *info, void *context)
{
    int saved = errno;
    if (python_action.sa_flags & SA_SIGINFO) {
        python_action.sa_sigaction(sig, info, context);
    }
    else if (python_action.sa_handler != SIG_DFL && python_action.sa_handler != SIG_IGN) {
        python_action.sa_handler(sig);
    }
    long long expected = 0;
    atomic_compare_exchange_strong(&seen_ns, &expected, now_ns());
    poke();
    errno = saved;
}

static void die_of_sigterm(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGTERM, &dfl, NULL);
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_UNBLOCK, &term, NULL); /* this thread blocked it */
    raise(SIGTERM);                            /* the process ends here */
}

static void drain(void)
{
    char buffer[64];
    while (read(wake[0], buffer, sizeof(buffer)) > 0) {
    }
}

static void *watch(void *unused)
{
    (void)unused;
    mt_heap_guard_enter(); /* what libc allocates for this thread is memtrim's */
    struct pollfd pfd = {.fd = wake[0], .events = POLLIN};
    while (!atomic_load(&stopping)) {
        long long seen = atomic_load(&seen_ns);
        int timeout = -1;
        if (seen != 0 && !atomic_load(&claimed)) {
            long long left = seen + grace_ns - now_ns();
            if (left <= 0) {
                die_of_sigterm();
                return NULL; /* not reached */
            }
            timeout = (int)(left / 1000000) + 1;
        }
        if (poll(&pfd, 1, timeout) > 0) {
            drain();
        }
    }
    return NULL;
}

static int make_pipe(void)
{
    if (pipe(wake) != 0) {
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        fcntl(wake[i], F_SETFD, FD_CLOEXEC);
        fcntl(wake[i], F_SETFL, O_NONBLOCK);
    }
    return 0;
}

static void close_pipe(void)
{
    for (int i = 0; i < 2; i++) {
        if (wake[i] >= 0) {
            close(wake[i]);
            wake[i] = -1;
        }
    }
}

static int start_thread(void)
{
    atomic_store(&stopping, 0);
    atomic_store(&claimed, 0);
    atomic_store(&seen_ns, 0);
    if (make_pipe() != 0) {
        return -1;
    }
    /* every signal blocked in the thread (it inherits this mask): the
     * program's signals go to its own threads (see sampler.c) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    /* memtrim's own: in a forked child that goes on recording, what starting
     * the thread allocates here (its TLS, libc's bookkeeping) is not the
     * program's */
    mt_heap_own_enter();
    int rc = pthread_create(&deadline_thread, NULL, watch, NULL);
    mt_heap_own_exit();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        close_pipe();
        return -1;
    }
    return 0;
}

/* GIL held (join): stop the thread start_thread made and close its pipe. */
static void stop_thread(void)
{
    atomic_store(&stopping, 1);
    poke();
    Py_BEGIN_ALLOW_THREADS
    pthread_join(deadline_thread, NULL);
    Py_END_ALLOW_THREADS
    close_pipe();
}

/* Put CPython's handler back, unless the program has set its own since. */
static void unwrap(void)
{
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) == 0 && (current.sa_flags & SA_SIGINFO) &&
        current.sa_sigaction == on_term) {
        sigaction(SIGTERM, &python_action, NULL);
    }
}

/* term_arm(grace_s): wrap the SIGTERM handler installed now (the Python one). */
PyObject *mt_term_arm(PyObject *self, PyObject *args)
{
    double grace;
    if (!PyArg_ParseTuple(args, "d", &grace)) {
        return NULL;
    }
    if (!(grace > 0)) {
        PyErr_SetString(PyExc_ValueError, "grace must be positive");
        return NULL;
    }
    if (armed) {
        PyErr_SetString(PyExc_RuntimeError, "the SIGTERM deadline is already armed");
        return NULL;
    }
    grace_ns = (long long)(grace * 1e9);
    struct sigaction current;
    if (sigaction(SIGTERM, NULL, &current) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (start_thread() != 0) {
        PyErr_SetString(PyExc_OSError, "cannot start the SIGTERM deadline thread");
        return NULL;
    }
    python_action = current;
    struct sigaction wrapper = current; /* CPython's flags and mask */
    wrapper.sa_flags |= SA_SIGINFO;
    wrapper.sa_sigaction = on_term;
    if (sigaction(SIGTERM, &wrapper, NULL) != 0) {
        PyObject *error = PyErr_SetFromErrno(PyExc_OSError);
        stop_thread();
        return error;
    }
    armed = 1;
    Py_RETURN_NONE;
}

/* term_disarm(): put CPython's handler back (unless the program has set its
 * own since) and stop the thread.  Safe to call twice. */
PyObject *mt_term_disarm(PyObject *self, PyObject *unused)
{
    if (!armed) {
        Py_RETURN_NONE;
    }
    armed = 0;
    unwrap();
    stop_thread();
    Py_RETURN_NONE;
}

/* term_claim() -> True for the first caller since the signal came: it writes
 * the capture (no deadline from now on); False for any other. */
PyObject *mt_term_claim(PyObject *self, PyObject *unused)
{
    int first = armed && atomic_exchange(&claimed, 1) == 0;
    if (first) {
        poke();
    }
    return PyBool_FromLong(first || !armed);
}

/* term_waiting() -> seconds since an unclaimed SIGTERM came, or -1.0. */
PyObject *mt_term_waiting(PyObject *self, PyObject *unused)
{
    long long seen = atomic_load(&seen_ns);
    if (!armed || seen == 0 || atomic_load(&claimed)) {
        return PyFloat_FromDouble(-1.0);
    }
    return PyFloat_FromDouble((double)(now_ns() - seen) / 1e9);
}

/* term_die(): end the process of SIGTERM's default action, from any thread. */
PyObject *mt_term_die(PyObject *self, PyObject *unused)
{
    die_of_sigterm();
    Py_RETURN_NONE; /* not reached */
}

/* term_after_fork(rearm): in a forked child, which has no deadline thread.
 * rearm: the child is profiled too, with a thread of its own (the wrapper is
 * still installed); otherwise forget it (the caller puts CPython's handler
 * back with signal.signal). */
PyObject *mt_term_after_fork(PyObject *self, PyObject *args)
{
    int rearm;
    if (!PyArg_ParseTuple(args, "p", &rearm)) {
        return NULL;
    }
    if (!armed) {
        Py_RETURN_NONE;
    }
    close_pipe(); /* the parent's: its thread is not in this process */
    armed = 0;
    if (rearm) {
        if (start_thread() != 0) {
            sigaction(SIGTERM, &python_action, NULL); /* no deadline: as before */
            Py_RETURN_NONE;
        }
        armed = 1;
    }
    else {
        unwrap();
    }
    Py_RETURN_NONE;
}
