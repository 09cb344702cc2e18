/* memtrim.engine._testing: helpers for the test suite, kept out of the
 * production extension.
 *
 * They allocate through CPython's public allocators (PyMem_RawMalloc,
 * PyMem_Malloc, PyObject_Malloc), which the heap hooks wrap like any other
 * caller's, and read the heap level through the engine's C API capsule
 * (capi.h), so that no Python object is made between an allocation and the
 * reading. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "capi.h"

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <sys/time.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static const mt_c_api_t *api;

static void *alloc_in(int domain, size_t size)
{
    switch (domain) {
    case 0:
        return PyMem_RawMalloc(size);
    case 1:
        return PyMem_Malloc(size);
    default:
        return PyObject_Malloc(size);
    }
}

static void free_in(int domain, void *ptr)
{
    switch (domain) {
    case 0:
        PyMem_RawFree(ptr);
        break;
    case 1:
        PyMem_Free(ptr);
        break;
    default:
        PyObject_Free(ptr);
    }
}

static void *realloc_in(int domain, void *ptr, size_t size)
{
    switch (domain) {
    case 0:
        return PyMem_RawRealloc(ptr, size);
    case 1:
        return PyMem_Realloc(ptr, size);
    default:
        return PyObject_Realloc(ptr, size);
    }
}

static int domain_arg(int domain)
{
    if (domain < 0 || domain > 2) {
        PyErr_SetString(PyExc_ValueError, "domain: 0 raw, 1 mem, 2 obj");
        return -1;
    }
    return 0;
}

static PyObject *py_test_alloc(PyObject *self, PyObject *args)
{
    int domain;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "in", &domain, &size) || domain_arg(domain) < 0) {
        return NULL;
    }
    void *p = alloc_in(domain, (size_t)size);
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

static PyObject *py_test_realloc(PyObject *self, PyObject *args)
{
    int domain;
    PyObject *addr;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "iOn", &domain, &addr, &size) || domain_arg(domain) < 0) {
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    void *q = realloc_in(domain, p, (size_t)size);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(q);
}

static PyObject *py_test_free(PyObject *self, PyObject *args)
{
    int domain;
    PyObject *addr;
    if (!PyArg_ParseTuple(args, "iO", &domain, &addr) || domain_arg(domain) < 0) {
        return NULL;
    }
    void *p = PyLong_AsVoidPtr(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    free_in(domain, p);
    Py_RETURN_NONE;
}

/* Allocate, reallocate and free one block, reading the level in C between the
 * steps, so that no Python object creeps into the figures. */
static PyObject *py_test_roundtrip(PyObject *self, PyObject *args)
{
    int domain;
    Py_ssize_t size, resize;
    if (!PyArg_ParseTuple(args, "inn", &domain, &size, &resize) || domain_arg(domain) < 0) {
        return NULL;
    }
    int64_t l0 = api->heap_level();
    void *p = alloc_in(domain, (size_t)size);
    int64_t l1 = api->heap_level();
    void *q = p ? realloc_in(domain, p, (size_t)resize) : NULL;
    int64_t l2 = api->heap_level();
    free_in(domain, q ? q : p);
    int64_t l3 = api->heap_level();
    if (p == NULL || q == NULL) {
        return PyErr_NoMemory();
    }
    return Py_BuildValue("(LLL)", (long long)(l1 - l0), (long long)(l2 - l1), (long long)(l3 - l2));
}

/* ------------------------------------------------------------------------
 * The C allocator, called the way a C library calls it (through this
 * object's PLT): what the native hooks must see.  Addresses go back and
 * forth as ints. */

static void *c_alloc(const char *how, size_t size)
{
    void *p = NULL;
    if (strcmp(how, "malloc") == 0) {
        p = malloc(size);
    }
    else if (strcmp(how, "calloc") == 0) {
        p = calloc(1, size);
    }
    else if (strcmp(how, "posix_memalign") == 0) {
        if (posix_memalign(&p, 64, size) != 0) {
            p = NULL;
        }
    }
    else if (strcmp(how, "aligned_alloc") == 0) {
        p = aligned_alloc(64, (size + 63) & ~(size_t)63);
    }
    else if (strcmp(how, "memalign") == 0) {
        p = memalign(64, size);
    }
    else if (strcmp(how, "valloc") == 0) {
        p = valloc(size);
    }
    else if (strcmp(how, "pvalloc") == 0) {
        p = pvalloc(size);
    }
    else if (strcmp(how, "mmap") == 0) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            p = NULL;
        }
    }
    if (p != NULL && strcmp(how, "mmap") != 0) {
        memset(p, 1, size); /* resident, as a real library's buffer would be */
    }
    return p;
}

static PyObject *py_c_alloc(PyObject *self, PyObject *args)
{
    const char *how;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "sn", &how, &size)) {
        return NULL;
    }
    void *p = c_alloc(how, (size_t)size);
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

static void *address(PyObject *arg)
{
    void *p = PyLong_AsVoidPtr(arg);
    if (p == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "null address");
    }
    return p;
}

static PyObject *py_c_free(PyObject *self, PyObject *arg)
{
    void *p = address(arg);
    if (p == NULL) {
        return NULL;
    }
    free(p);
    Py_RETURN_NONE;
}

static PyObject *py_c_realloc(PyObject *self, PyObject *args)
{
    PyObject *addr;
    Py_ssize_t size;
    int array = 0;
    if (!PyArg_ParseTuple(args, "On|p", &addr, &size, &array)) {
        return NULL;
    }
    void *p = addr == Py_None ? NULL : address(addr);
    if (p == NULL && PyErr_Occurred()) {
        return NULL;
    }
    void *q = array ? reallocarray(p, (size_t)size, 1) : realloc(p, (size_t)size);
    if (q == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(q);
}

static PyObject *py_c_munmap(PyObject *self, PyObject *args)
{
    PyObject *addr;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "On", &addr, &size)) {
        return NULL;
    }
    void *p = address(addr);
    if (p == NULL || munmap(p, (size_t)size) != 0) {
        return p == NULL ? NULL : PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *py_c_mremap(PyObject *self, PyObject *args)
{
    PyObject *addr;
    Py_ssize_t old, size;
    if (!PyArg_ParseTuple(args, "Onn", &addr, &old, &size)) {
        return NULL;
    }
    void *p = address(addr);
    if (p == NULL) {
        return NULL;
    }
    void *q = mremap(p, (size_t)old, (size_t)size, MREMAP_MAYMOVE);
    if (q == MAP_FAILED) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    return PyLong_FromVoidPtr(q);
}

/* malloc with the GIL released: a C library's worker in the middle of a call */
static PyObject *py_c_alloc_nogil(PyObject *self, PyObject *args)
{
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size)) {
        return NULL;
    }
    void *p;
    Py_BEGIN_ALLOW_THREADS
    p = malloc((size_t)size);
    if (p != NULL) {
        memset(p, 1, (size_t)size);
    }
    Py_END_ALLOW_THREADS
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

static void *thread_alloc(void *arg)
{
    pthread_setname_np(pthread_self(), "mt-native");
    return malloc((size_t)arg);
}

/* malloc in a thread that never had a Python thread state (a BLAS worker) */
static PyObject *py_c_alloc_in_thread(PyObject *self, PyObject *args)
{
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "n", &size)) {
        return NULL;
    }
    pthread_t thread;
    void *p = NULL;
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = pthread_create(&thread, NULL, thread_alloc, (void *)(size_t)size);
    if (err == 0) {
        pthread_join(thread, &p);
    }
    Py_END_ALLOW_THREADS
    if (p == NULL) {
        return PyErr_NoMemory();
    }
    return PyLong_FromVoidPtr(p);
}

/* A C library that allocates in a signal handler (not async-signal-safe, but
 * it happens): SIGALRM every `usec` microseconds mallocs and frees two small
 * blocks.  (With glibc's malloc this deadlocks or crashes without memtrim
 * too; the tests preload an allocator whose small blocks take no lock.) */
static volatile long storm_count;

static void storm_handler(int sig)
{
    (void)sig;
    void *small = malloc(64);
    void *big = malloc(512);
    free(small);
    free(big);
    storm_count++;
}

static PyObject *py_c_signal_storm(PyObject *self, PyObject *args)
{
    long usec;
    if (!PyArg_ParseTuple(args, "l", &usec)) {
        return NULL;
    }
    struct sigaction action;
    memset(&action, 0, sizeof(action));
    action.sa_handler = usec > 0 ? storm_handler : SIG_DFL;
    action.sa_flags = SA_RESTART;
    struct itimerval timer = {{0, usec > 0 ? usec : 0}, {0, usec > 0 ? usec : 0}};
    if (usec <= 0) {
        setitimer(ITIMER_REAL, &timer, NULL); /* off first, then the default action */
    }
    if (sigaction(SIGALRM, &action, NULL) != 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (usec > 0) {
        storm_count = 0;
        setitimer(ITIMER_REAL, &timer, NULL);
    }
    return PyLong_FromLong(storm_count);
}

/* A C trace and profile function that does nothing: the floor of a line
 * profiler on 3.11, where CPython runs every frame of a traced thread in its
 * tracing mode and calls the functions at each call, line and return
 * (benchmarks/launchers/noop_trace.py). */
static int noop_tracefunc(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)
{
    (void)obj;
    (void)frame;
    (void)what;
    (void)arg;
    return 0;
}

static PyObject *py_noop_tracing(PyObject *self, PyObject *arg)
{
    int on = PyObject_IsTrue(arg);
    if (on < 0) {
        return NULL;
    }
    PyEval_SetProfile(on ? noop_tracefunc : NULL, NULL);
    PyEval_SetTrace(on ? noop_tracefunc : NULL, NULL);
    if (PyErr_Occurred()) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"noop_tracing", py_noop_tracing, METH_O,
     "(on): a C trace and profile function that does nothing, in this thread (or none)."},
    {"c_signal_storm", py_c_signal_storm, METH_VARARGS,
     "(usec): SIGALRM every usec microseconds, its C handler mallocs and frees; 0 stops it "
     "and returns how many times it ran."},
    {"c_alloc", py_c_alloc, METH_VARARGS,
     "(how, size) -> address: malloc, calloc, posix_memalign, aligned_alloc, memalign, valloc, "
     "pvalloc or mmap, called from C."},
    {"c_free", py_c_free, METH_O, "free(address) from C."},
    {"c_realloc", py_c_realloc, METH_VARARGS, "(address or None, size[, array]) -> address."},
    {"c_munmap", py_c_munmap, METH_VARARGS, "(address, size): munmap from C."},
    {"c_mremap", py_c_mremap, METH_VARARGS, "(address, old, size) -> address: mremap from C."},
    {"c_alloc_nogil", py_c_alloc_nogil, METH_VARARGS, "malloc(size) with the GIL released."},
    {"c_alloc_in_thread", py_c_alloc_in_thread, METH_VARARGS,
     "malloc(size) in a new thread with no Python state."},
    {"test_alloc", py_test_alloc, METH_VARARGS, "Allocate (domain, size): 0 raw, 1 mem, 2 obj."},
    {"test_realloc", py_test_realloc, METH_VARARGS, "Reallocate (domain, address, size)."},
    {"test_free", py_test_free, METH_VARARGS, "Free (domain, address)."},
    {"test_roundtrip", py_test_roundtrip, METH_VARARGS,
     "(domain, size, resize) -> level changes of alloc, realloc, free."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_testing", "memtrim's engine test helpers (not for production use).",
    -1, methods,
};

PyMODINIT_FUNC PyInit__testing(void)
{
    /* PyCapsule_Import would walk attributes from `memtrim` down, which
     * fails until the engine has been imported: import it first. */
    PyObject *engine = PyImport_ImportModule("memtrim.engine._engine");
    if (engine == NULL) {
        return NULL;
    }
    PyObject *capsule = PyObject_GetAttrString(engine, "_C_API");
    Py_DECREF(engine);
    if (capsule == NULL) {
        return NULL;
    }
    api = PyCapsule_GetPointer(capsule, MT_CAPI_CAPSULE);
    Py_DECREF(capsule); /* the engine module keeps it (and `api`) alive */
    if (api == NULL) {
        return NULL;
    }
    if (api->version < 1) {
        PyErr_SetString(PyExc_RuntimeError, "the engine's C API is too old");
        return NULL;
    }
    return PyModule_Create(&module);
}
