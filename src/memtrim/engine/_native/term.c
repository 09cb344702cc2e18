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
 * for the process to die.
 *
 * The dump (term_prepare): when nobody claimed the signal, the thread holding
 * the GIL is stuck in a C call and no Python code can run to write the
 * capture.  Then, if memtrim run prepared it, the thread writes the call tree
 * as it is (calltree.c's mt_tree_dump, behind the context the run last set
 * with term_context) to a file, and execs a new Python in this process (the
 * same pid: the program's parent still waits for it), which builds the
 * capture and the reports from that file and then dies of SIGTERM.  exec ends
 * every thread of the program at once, as the signal would have.  The new
 * image starts with this thread's mask (every signal blocked): a second
 * SIGTERM waits until the capture is written (SIGKILL still ends it). */
#include "calltree.h"
#include "compat.h"
#include "heap.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

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

/* What term_prepare set (GIL, under prepared_lock): the dump's path, the
 * command to exec, the descriptor it must inherit (memtrim's stderr), and the
 * context blob term_context last set. */
static pthread_mutex_t prepared_lock = PTHREAD_MUTEX_INITIALIZER;
static char *dump_path;
static char **exec_argv;
static int keep_fd = -1;
static char *context[2]; /* the run's context, and its thread names */
static size_t context_len[2];

static void free_argv(char **argv)
{
    for (char **a = argv; a != NULL && *a != NULL; a++) {
        free(*a);
    }
    free(argv);
}

static int put_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            return -1;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* GIL held, the thread stopped: no dump from now on (term_disarm). */
static void forget_prepared(void)
{
    pthread_mutex_lock(&prepared_lock);
    free(dump_path);
    free_argv(exec_argv);
    for (int i = 0; i < 2; i++) {
        free(context[i]);
        context[i] = NULL;
        context_len[i] = 0;
    }
    dump_path = NULL;
    exec_argv = NULL;
    keep_fd = -1;
    pthread_mutex_unlock(&prepared_lock);
}

/* The deadline thread: write the dump and exec the command that turns it
 * into the capture.  Returns only if that could not be done. */
static void dump_and_exec(void)
{
    /* the lock is only ever held for a pointer swap: wait for it a little */
    int locked = 0;
    for (int i = 0; i < 1000 && !locked; i++) {
        locked = pthread_mutex_trylock(&prepared_lock) == 0;
        if (!locked) {
            struct timespec ms = {0, 1000000L};
            nanosleep(&ms, NULL);
        }
    }
    if (!locked) {
        return;
    }
    if (dump_path == NULL || exec_argv == NULL || context[0] == NULL) {
        pthread_mutex_unlock(&prepared_lock);
        return;
    }
    /* held to the exec: a term_context meanwhile (a thread starting) waits,
     * and exec ends it */
    int fd = open(dump_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        pthread_mutex_unlock(&prepared_lock);
        return;
    }
    static const char magic[8] = "MTTERM1";
    int64_t head[4] = {now_ns(), atomic_load(&seen_ns), (int64_t)context_len[0],
                       (int64_t)context_len[1]};
    int ok = put_all(fd, magic, sizeof(magic)) == 0 && put_all(fd, head, sizeof(head)) == 0 &&
             put_all(fd, context[0], context_len[0]) == 0 &&
             (context[1] == NULL || put_all(fd, context[1], context_len[1]) == 0);
    ok = ok && mt_tree_dump(fd) == 0;
    ok = close(fd) == 0 && ok;
    if (!ok) {
        unlink(dump_path);
        pthread_mutex_unlock(&prepared_lock);
        return;
    }
    if (keep_fd >= 0) {
        int flags = fcntl(keep_fd, F_GETFD);
        if (flags >= 0) {
            fcntl(keep_fd, F_SETFD, flags & ~FD_CLOEXEC);
        }
    }
    execve(exec_argv[0], exec_argv, environ);
    unlink(dump_path); /* exec failed: nobody will read it */
    pthread_mutex_unlock(&prepared_lock);
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
            /* the deadline claims the signal like the Python writers: if
             * one of them claimed it in the meantime, it writes the capture
             * and ends the process itself */
            if (left <= 0 && atomic_exchange(&claimed, 1) == 0) {
                dump_and_exec();
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
    forget_prepared();
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
    /* the dump was the parent's (its capture's path): none in a child, and
     * the lock may have been held by a thread of the parent's (the strings
     * are left: they are the parent's memory, and small) */
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    prepared_lock = fresh;
    dump_path = NULL;
    exec_argv = NULL;
    context[0] = context[1] = NULL;
    context_len[0] = context_len[1] = 0;
    keep_fd = -1;
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

/* term_prepare(path, argv, fd) or term_prepare(None, None, -1): where the
 * dump goes and the command (absolute executable first) to exec on it, or
 * no dump (the default: the process just dies). */
PyObject *mt_term_prepare(PyObject *self, PyObject *args)
{
    PyObject *path_obj, *argv_obj;
    int fd;
    if (!PyArg_ParseTuple(args, "OOi", &path_obj, &argv_obj, &fd)) {
        return NULL;
    }
    char *path = NULL;
    char **argv = NULL;
    if (path_obj != Py_None) {
        PyObject *bytes = NULL;
        if (!PyUnicode_FSConverter(path_obj, &bytes)) {
            return NULL;
        }
        path = strdup(PyBytes_AS_STRING(bytes));
        Py_DECREF(bytes);
        PyObject *seq = PySequence_Fast(argv_obj, "argv must be a sequence");
        if (seq == NULL || path == NULL) {
            free(path);
            Py_XDECREF(seq);
            return path == NULL ? PyErr_NoMemory() : NULL;
        }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        argv = calloc((size_t)n + 1, sizeof(char *));
        for (Py_ssize_t i = 0; argv != NULL && i < n; i++) {
            PyObject *word = NULL;
            if (!PyUnicode_FSConverter(PySequence_Fast_GET_ITEM(seq, i), &word)) {
                free_argv(argv);
                free(path);
                Py_DECREF(seq);
                return NULL;
            }
            argv[i] = strdup(PyBytes_AS_STRING(word));
            Py_DECREF(word);
        }
        Py_DECREF(seq);
        if (argv == NULL || n == 0) {
            free_argv(argv);
            free(path);
            PyErr_SetString(PyExc_ValueError, "argv must name the executable");
            return NULL;
        }
    }
    pthread_mutex_lock(&prepared_lock);
    char *old_path = dump_path;
    char **old_argv = exec_argv;
    dump_path = path;
    exec_argv = argv;
    keep_fd = fd;
    pthread_mutex_unlock(&prepared_lock);
    free(old_path);
    free_argv(old_argv);
    Py_RETURN_NONE;
}

/* term_context(which, bytes or None): what the command exec'ed at the dump
 * needs besides the tree: 0, the run's meta, the timeline so far, where to
 * write; 1, the names of its threads (set as each starts). */
PyObject *mt_term_context(PyObject *self, PyObject *args)
{
    int which;
    PyObject *arg;
    if (!PyArg_ParseTuple(args, "iO", &which, &arg)) {
        return NULL;
    }
    if (which != 0 && which != 1) {
        PyErr_SetString(PyExc_ValueError, "which must be 0 or 1");
        return NULL;
    }
    char *copy = NULL;
    size_t len = 0;
    if (arg != Py_None) {
        if (!PyBytes_Check(arg)) {
            PyErr_SetString(PyExc_TypeError, "the context must be bytes");
            return NULL;
        }
        len = (size_t)PyBytes_GET_SIZE(arg);
        copy = malloc(len ? len : 1);
        if (copy == NULL) {
            return PyErr_NoMemory();
        }
        memcpy(copy, PyBytes_AS_STRING(arg), len);
    }
    pthread_mutex_lock(&prepared_lock);
    char *old = context[which];
    context[which] = copy;
    context_len[which] = len;
    pthread_mutex_unlock(&prepared_lock);
    free(old);
    Py_RETURN_NONE;
}
