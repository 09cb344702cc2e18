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

static PyMethodDef methods[] = {
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
