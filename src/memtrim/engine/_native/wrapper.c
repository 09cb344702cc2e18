/* The wrapper @profile puts around a plain function.
 *
 * Written in C so that it adds no Python frame: tracebacks, warnings'
 * stacklevel, sys._getframe() and inspect.stack() see the user's frames only,
 * and recursion uses no extra Python level.  It brackets each call with the
 * tracer's step_in/step_out (3.11: the trace function is on in this thread
 * while the call runs) and, when the last running call of this wrapper ends,
 * calls `on_end` (the decorator prints the table then).
 *
 * It behaves like a function for the rest of the program: a descriptor (so it
 * binds as a method); the function's own attributes (__name__, __doc__,
 * __defaults__, __code__...) are the wrapped function's, read, written and
 * deleted there; other attributes live in the wrapper's __dict__, which
 * functools.update_wrapper fills (__wrapped__ and the function's __dict__);
 * its repr, and pickling by qualified name.
 *
 * Each call through it is a C-level call: CPython runs the function in a new
 * evaluation loop on the C stack (about half a KiB per level), where a
 * Python-to-Python call would use none.  Deep recursion through the wrapper
 * could therefore exhaust a small thread stack before the recursion limit: a
 * call that finds less than STACK_MARGIN of C stack left raises
 * RecursionError instead of crashing.
 *
 * GIL: `active` and the references are only touched with it held.
 */
#include "compat.h"
#include "frames.h"
#include "tracer.h"

#include <pthread.h>
#include <stdint.h>

typedef struct {
    PyObject_HEAD
    PyObject *func;   /* what is called */
    PyObject *on_end; /* called with no argument when no call is running any more, or NULL */
    PyObject *code;   /* the profiled code object (unmeasured calls are noted on it), or NULL */
    PyObject *dict;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
    Py_ssize_t active;
} wrapper_t;

/* ------------------------------------------------------------ C stack guard */

/* Left for the callee below the wrapper's frame: the evaluation loop and what
 * the function's own C calls need (a quarter of the stack if it is smaller). */
#define STACK_MARGIN (64 * 1024)

/* This thread's stack: its lowest address (0: not looked up yet, 1: unknown)
 * and the lowest address a wrapper call may start from.  Stacks grow down on
 * every platform CPython supports with pthreads here (Linux). */
static MT_TLS uintptr_t t_stack_lo;
static MT_TLS uintptr_t t_stack_floor;

static void learn_stack(void)
{
    t_stack_lo = 1;
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) {
        return;
    }
    void *addr;
    size_t size;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0 && size > 0) {
        uintptr_t lo = (uintptr_t)addr, here = (uintptr_t)__builtin_frame_address(0);
        if (lo > 1 && here > lo && here - lo <= size) {
            size_t margin = size / 4 < STACK_MARGIN ? size / 4 : STACK_MARGIN;
            t_stack_lo = lo;
            t_stack_floor = lo + margin;
        }
    }
    pthread_attr_destroy(&attr);
}

/* Is this thread's C stack nearly used up?  (Not if the stack pointer is
 * outside the thread's stack: a coroutine library's own stack.) */
static inline int stack_low(void)
{
    if (MT_UNLIKELY(t_stack_lo == 0)) {
        learn_stack();
    }
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    return MT_UNLIKELY(here < t_stack_floor) && here >= t_stack_lo && t_stack_lo > 1;
}

/* ------------------------------------------------------------------ calls */

static PyObject *end_call(wrapper_t *w, PyObject *result)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyObject *exc = PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
#endif
    PyObject *r = PyObject_CallNoArgs(w->on_end);
    if (r == NULL) {
        if (result != NULL) {
            /* the call succeeded, printing its table failed: that error wins,
             * as it would from a `finally:` in a Python wrapper */
            Py_DECREF(result);
            result = NULL;
#if PY_VERSION_HEX >= 0x030C0000
            Py_XDECREF(exc);
#else
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(tb);
#endif
            return NULL;
        }
        PyErr_WriteUnraisable(w->on_end); /* keep the call's own exception */
    }
    Py_XDECREF(r);
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(type, value, tb);
#endif
    return result;
}

static PyObject *wrapper_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf,
                                    PyObject *kwnames)
{
    wrapper_t *w = (wrapper_t *)self;
    if (w->func == NULL) { /* cleared by the garbage collector: a finalizer calls it */
        PyErr_SetString(PyExc_RuntimeError, "this profiled function has been collected");
        return NULL;
    }
    if (stack_low()) {
        PyErr_SetString(PyExc_RecursionError,
                        "maximum recursion depth exceeded: memtrim's @profile wrapper uses the C "
                        "stack; profile this function with -f instead");
        return NULL;
    }
    int status = mt_step_in();
    if (status < 0) {
        return NULL;
    }
    if (status > 0 && w->code != NULL) {
        mt_tracer_note_missed(w->code); /* another tracer or profiler is active */
    }
    Py_INCREF(self); /* the call may drop the last other reference to us */
    w->active++;
    /* CPython's own C recursion accounting applies as it is: a Python call
     * made from C costs its evaluation loop's share of the budget. */
    PyObject *result = PyObject_Vectorcall(w->func, args, nargsf, kwnames);
    mt_step_out();
    if (--w->active == 0 && w->on_end != NULL) {
        result = end_call(w, result);
    }
    Py_DECREF(self);
    return result;
}

static PyObject *wrapper_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    static char *names[] = {"func", "on_end", "code", NULL};
    PyObject *func, *on_end = Py_None, *code = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|OO:Wrapper", names, &func, &on_end,
                                     &code)) {
        return NULL;
    }
    if (code != Py_None && !PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "code must be a code object or None");
        return NULL;
    }
    if (!PyCallable_Check(func)) {
        PyErr_SetString(PyExc_TypeError, "Wrapper() needs a callable");
        return NULL;
    }
    if (on_end != Py_None && !PyCallable_Check(on_end)) {
        PyErr_SetString(PyExc_TypeError, "on_end must be callable or None");
        return NULL;
    }
    wrapper_t *w = (wrapper_t *)type->tp_alloc(type, 0);
    if (w == NULL) {
        return NULL;
    }
    w->func = Py_NewRef(func);
    w->on_end = on_end == Py_None ? NULL : Py_NewRef(on_end);
    w->code = code == Py_None ? NULL : Py_NewRef(code);
    w->vectorcall = wrapper_vectorcall;
    return (PyObject *)w;
}

static int wrapper_traverse(PyObject *self, visitproc visit, void *arg)
{
    wrapper_t *w = (wrapper_t *)self;
    Py_VISIT(w->func);
    Py_VISIT(w->on_end);
    Py_VISIT(w->code);
    Py_VISIT(w->dict);
    return 0;
}

static int wrapper_clear(PyObject *self)
{
    wrapper_t *w = (wrapper_t *)self;
    Py_CLEAR(w->func);
    Py_CLEAR(w->on_end);
    Py_CLEAR(w->code);
    Py_CLEAR(w->dict);
    return 0;
}

static void wrapper_dealloc(PyObject *self)
{
    wrapper_t *w = (wrapper_t *)self;
    PyObject_GC_UnTrack(self);
    if (w->weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    wrapper_clear(self);
    Py_TYPE(self)->tp_free(self);
}

/* A method when read through an instance, like a function. */
static PyObject *wrapper_get(PyObject *self, PyObject *obj, PyObject *type)
{
    if (obj == NULL || obj == Py_None) {
        return Py_NewRef(self);
    }
    return PyMethod_New(self, obj);
}

/* The function's own attributes: read, set and deleted on the wrapped
 * function, as if the wrapper were it. */
static const char *const forwarded_names[] = {
    "__doc__",         "__name__",        "__qualname__", "__module__",
    "__defaults__",    "__kwdefaults__",  "__code__",     "__globals__",
    "__annotations__", "__type_params__", "__closure__",  "__builtins__",
    NULL,
};
static PyObject *forwarded[sizeof(forwarded_names) / sizeof(forwarded_names[0])];

static int init_forwarded(void)
{
    for (int i = 0; forwarded_names[i] != NULL; i++) {
        if (forwarded[i] == NULL) {
            forwarded[i] = PyUnicode_InternFromString(forwarded_names[i]);
            if (forwarded[i] == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

static int is_forwarded(PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        return 0;
    }
    for (int i = 0; forwarded[i] != NULL; i++) {
        if (name == forwarded[i]) {
            return 1; /* attribute names are interned: the usual case */
        }
    }
    if (PyUnicode_GET_LENGTH(name) < 6 || PyUnicode_READ_CHAR(name, 0) != '_') {
        return 0;
    }
    for (int i = 0; forwarded[i] != NULL; i++) {
        if (PyUnicode_Compare(name, forwarded[i]) == 0) {
            return 1;
        }
    }
    return 0;
}

/* The function's own attributes from the function, others from the wrapper
 * (its __dict__: __wrapped__ and what update_wrapper copied), then from the
 * function. */
static PyObject *wrapper_getattro(PyObject *self, PyObject *name)
{
    wrapper_t *w = (wrapper_t *)self;
    if (w->func != NULL && is_forwarded(name)) {
        return PyObject_GetAttr(w->func, name);
    }
    PyObject *found = PyObject_GenericGetAttr(self, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return found;
    }
    if (w->func == NULL) {
        return NULL;
    }
    PyErr_Clear();
    return PyObject_GetAttr(w->func, name);
}

/* value NULL: delete. */
static int wrapper_setattro(PyObject *self, PyObject *name, PyObject *value)
{
    wrapper_t *w = (wrapper_t *)self;
    if (w->func != NULL && is_forwarded(name)) {
        return PyObject_SetAttr(w->func, name, value);
    }
    return PyObject_GenericSetAttr(self, name, value);
}

/* The wrapped function's repr.  References are held across the repr, which
 * runs arbitrary code (that may delete __wrapped__ or clear the wrapper). */
static PyObject *wrapper_repr(PyObject *self)
{
    wrapper_t *w = (wrapper_t *)self;
    static PyObject *key;
    if (key == NULL && (key = PyUnicode_InternFromString("__wrapped__")) == NULL) {
        return NULL;
    }
    PyObject *inner = w->dict != NULL ? PyDict_GetItemWithError(w->dict, key) : NULL;
    if (inner == NULL && PyErr_Occurred()) {
        return NULL;
    }
    if (inner == NULL) {
        inner = w->func;
    }
    if (inner == NULL) {
        return PyUnicode_FromFormat("<collected profiled function at %p>", self);
    }
    Py_INCREF(inner);
    PyObject *repr = PyObject_Repr(inner);
    Py_DECREF(inner);
    return repr;
}

/* pickle: by reference, through the module and qualified name. */
static PyObject *wrapper_reduce(PyObject *self, PyObject *unused)
{
    return PyObject_GetAttrString(self, "__qualname__");
}

static PyObject *wrapper_active(PyObject *self, void *closure)
{
    return PyLong_FromSsize_t(((wrapper_t *)self)->active);
}

static PyMethodDef wrapper_methods[] = {
    {"__reduce__", wrapper_reduce, METH_NOARGS, "Pickled by qualified name, as functions are."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef wrapper_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_memtrim_active", wrapper_active, NULL, "calls of this wrapper now running", NULL},
    {NULL},
};

static PyTypeObject wrapper_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "memtrim.engine._engine.Wrapper",
    .tp_doc = "A profiled function: calls `func`, then `on_end` when no call runs any more.",
    .tp_basicsize = sizeof(wrapper_t),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL |
                Py_TPFLAGS_METHOD_DESCRIPTOR,
    .tp_new = wrapper_new,
    .tp_dealloc = wrapper_dealloc,
    .tp_traverse = wrapper_traverse,
    .tp_clear = wrapper_clear,
    .tp_call = PyVectorcall_Call,
    .tp_vectorcall_offset = offsetof(wrapper_t, vectorcall),
    .tp_descr_get = wrapper_get,
    .tp_getattro = wrapper_getattro,
    .tp_setattro = wrapper_setattro,
    .tp_repr = wrapper_repr,
    .tp_dictoffset = offsetof(wrapper_t, dict),
    .tp_weaklistoffset = offsetof(wrapper_t, weakreflist),
    .tp_methods = wrapper_methods,
    .tp_getset = wrapper_getset,
};

/* ------------------------------------------------------------ the script */

/* Run a script's code as python runs it: at the bottom of the stack.  The
 * frames below (runpy, memtrim's command line) are hidden while it runs: the
 * thread's current frame is unset for the call, so the script's first frame
 * has no caller, as under plain python (sys._getframe(), inspect.stack(),
 * tracebacks printed by the program, warnings' stacklevel).  The recursion
 * limit counts from there too: the hidden frames are given back to the
 * remaining depth for the call. */
static PyObject *run_detached(PyObject *self, PyObject *args)
{
    PyObject *code, *globals;
    if (!PyArg_ParseTuple(args, "O!O!:run_detached", &PyCode_Type, &code, &PyDict_Type,
                          &globals)) {
        return NULL;
    }
    PyThreadState *ts = PyThreadState_Get();
    /* the depth used by everything below, as python's count has it */
#if PY_VERSION_HEX >= 0x030C0000
    int hidden = ts->py_recursion_limit - ts->py_recursion_remaining;
#else
    int hidden = ts->recursion_limit - ts->recursion_remaining;
#endif
#if PY_VERSION_HEX >= 0x030D0000
    mt_frame_t *saved = ts->current_frame;
    ts->current_frame = NULL;
    ts->py_recursion_remaining += hidden;
#elif PY_VERSION_HEX >= 0x030C0000
    mt_frame_t *saved = ts->cframe->current_frame;
    ts->cframe->current_frame = NULL;
    ts->py_recursion_remaining += hidden;
#else
    mt_frame_t *saved = ts->cframe->current_frame;
    ts->cframe->current_frame = NULL;
    ts->recursion_remaining += hidden;
#endif
    PyObject *result = PyEval_EvalCode(code, globals, globals);
#if PY_VERSION_HEX >= 0x030D0000
    ts->current_frame = saved;
    ts->py_recursion_remaining -= hidden;
#elif PY_VERSION_HEX >= 0x030C0000
    ts->cframe->current_frame = saved;
    ts->py_recursion_remaining -= hidden;
#else
    ts->cframe->current_frame = saved;
    ts->recursion_remaining -= hidden;
#endif
    return result;
}

static PyMethodDef runner_methods[] = {
    {"run_detached", run_detached, METH_VARARGS,
     "(code, globals): exec a script's code with no caller frame, as python runs it."},
    {NULL, NULL, 0, NULL},
};

int mt_wrapper_add_to_module(PyObject *module)
{
    if (init_forwarded() < 0 || PyType_Ready(&wrapper_type) < 0 ||
        PyModule_AddFunctions(module, runner_methods) < 0) {
        return -1;
    }
    Py_INCREF(&wrapper_type);
    if (PyModule_AddObject(module, "Wrapper", (PyObject *)&wrapper_type) < 0) {
        Py_DECREF(&wrapper_type);
        return -1;
    }
    return 0;
}
