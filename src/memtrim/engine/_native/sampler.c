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
 * Fork: a forked child has no sampler thread; ``owner`` remembers the process
 * that started it, and a child never joins or locks (the mutex may have been
 * copied locked).
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
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capi.h" /* the engine's C API (version 1) */

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

static long page_size;

/* Read a small /proc file whole; returns its length or -1. */
static ssize_t read_small(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = read(fd, out + got, size - 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    return (ssize_t)got;
}

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
        snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
        if (read_small(path, text, 256) <= 0) {
            return -1;
        }
        long long size = 0, resident = 0;
        if (sscanf(text, "%lld %lld", &size, &resident) != 2) {
            return -1;
        }
        return (int64_t)resident * page_size;
    }
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
    if (read_small(path, text, sizeof text) < 0) {
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

/* The parent pid from /proc/PID/stat ("pid (comm) state ppid ..."); the
 * command name may contain spaces and parentheses, so parse after the last ')'. */
static pid_t read_ppid(const char *pid_name)
{
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%s/stat", pid_name);
    if (read_small(path, text, sizeof text) <= 0) {
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

/* Append every descendant of the pids already in `out` (breadth first).
 * /proc/PID/task/TID/children is not available on every kernel, so scan
 * /proc once per sample: a few hundred small reads. */
static void add_descendants(pids_t *out)
{
    pids_t all = {0}, parents = {0};
    DIR *dir = opendir("/proc");
    if (dir == NULL) {
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        if (!isdigit((unsigned char)entry->d_name[0])) {
            continue;
        }
        pid_t ppid = read_ppid(entry->d_name);
        if (ppid > 0 && (pids_add(&all, (pid_t)atoi(entry->d_name)) < 0 ||
                         pids_add(&parents, ppid) < 0)) {
            break;
        }
    }
    closedir(dir);
    /* `all`/`parents` are in directory order; children have bigger pids
     * mostly, but pid reuse breaks that, so repeat until nothing is added. */
    size_t before;
    do {
        before = out->len;
        for (size_t i = 0; i < all.len; i++) {
            if (all.pid[i] == 0) {
                continue;
            }
            for (size_t j = 0; j < out->len; j++) {
                if (parents.pid[i] == out->pid[j]) {
                    pids_add(out, all.pid[i]);
                    all.pid[i] = 0; /* taken */
                    break;
                }
            }
        }
    } while (out->len != before);
    free(all.pid);
    free(parents.pid);
}

/* ----------------------------------------------------------------- Sampler */

typedef struct {
    PyObject_HEAD
    /* configuration: set in __init__, read-only while the thread runs */
    pid_t root;
    int children;
    int metric;
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

/* Take one sample into `out` (not shared: no lock needed).  Returns 0, or -1
 * when the root process could not be read (nothing is appended then). */
static int take_sample(Sampler *s, buf_t *out)
{
    pids_t pids = {0};
    if (pids_add(&pids, s->root) < 0) {
        return -1;
    }
    if (s->children) {
        add_descendants(&pids); /* discovery first, so the reads below are close */
    }
    if (buf_reserve(out, 3 + 2 * pids.len) < 0) {
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
    size_t at = head + 3;
    for (size_t i = 0; i < pids.len; i++) {
        int64_t bytes = read_memory(pids.pid[i], s->metric);
        if (bytes <= 0) {
            if (i == 0) { /* the root is gone (or a zombie): no sample */
                free(pids.pid);
                return -1;
            }
            continue; /* a child that just exited */
        }
        out->data[at++] = pids.pid[i];
        out->data[at++] = bytes;
        n++;
    }
    out->data[head] = t;
    out->data[head + 1] = heap;
    out->data[head + 2] = n;
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

static void *sampler_main(void *arg)
{
    Sampler *s = arg;
    buf_t one = {0};
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
        int ok = take_sample(s, &one) == 0; /* /proc reads: outside the lock */
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
    return NULL;
}

static int Sampler_init(Sampler *s, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"pid", "interval", "children", "metric", "heap", NULL};
    int pid, children = 0, metric = METRIC_RSS;
    double interval;
    PyObject *heap = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "id|piO", kwlist, &pid, &interval, &children,
                                     &metric, &heap)) {
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
    int rc = pthread_create(&s->thread, NULL, sampler_main, s);
    if (rc != 0) {
        errno = rc;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    s->started = 1;
    Py_RETURN_NONE;
}

/* Stop and join the thread (GIL released while joining: the thread never
 * needs it, but other Python threads should not wait for us). */
static void sampler_stop(Sampler *s)
{
    if (s->started != 1) {
        return;
    }
    s->started = 2;
    if (s->owner != getpid()) {
        return; /* a forked child: the thread does not exist here */
    }
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&s->lock);
    s->stop_flag = 1;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    Py_END_ALLOW_THREADS
}

static PyObject *Sampler_stop(Sampler *s, PyObject *unused)
{
    sampler_stop(s);
    Py_RETURN_NONE;
}

/* Build the Python tuple for the sample starting at data[*at]. */
static PyObject *sample_tuple(const int64_t *data, size_t *at)
{
    const int64_t *rec = data + *at;
    int64_t n = rec[2];
    PyObject *procs = PyTuple_New((Py_ssize_t)n);
    if (procs == NULL) {
        return NULL;
    }
    for (int64_t i = 0; i < n; i++) {
        PyObject *pair = Py_BuildValue("(LL)", (long long)rec[3 + 2 * i],
                                       (long long)rec[4 + 2 * i]);
        if (pair == NULL) {
            Py_DECREF(procs);
            return NULL;
        }
        PyTuple_SET_ITEM(procs, (Py_ssize_t)i, pair);
    }
    *at += 3 + 2 * (size_t)n;
    if (rec[1] == NO_HEAP) {
        return Py_BuildValue("(LON)", (long long)rec[0], Py_None, procs);
    }
    return Py_BuildValue("(LLN)", (long long)rec[0], (long long)rec[1], procs);
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
    ok = take_sample(s, &one) == 0;
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
    {"drain", (PyCFunction)Sampler_drain, METH_NOARGS,
     "Samples taken since the last drain: [(t_ns, heap|None, ((pid, bytes), ...)), ...]."},
    {"sample_now", (PyCFunction)Sampler_sample_now, METH_NOARGS,
     "Take one sample now in the calling thread; None if the process is gone."},
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
    .tp_doc = "Sampler(pid, interval, children=False, metric=0, heap=None)",
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

static PyMethodDef module_methods[] = {
    {"read_memory", py_read_memory, METH_VARARGS,
     "read_memory(pid, metric=0) -> bytes; 0 for a zombie, -1 if unreadable."},
    {NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrim.engine._sampler",
    "A native thread sampling memory at a fixed interval, without the GIL.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__sampler(void)
{
    page_size = sysconf(_SC_PAGESIZE);
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
