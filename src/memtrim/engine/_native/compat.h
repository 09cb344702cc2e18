/* Version shims for the few unstable CPython APIs the engine uses (3.11-3.13). */
#ifndef MEMTRIM_COMPAT_H
#define MEMTRIM_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX >= 0x030C0000
#define MT_REQUEST_CODE_EXTRA PyUnstable_Eval_RequestCodeExtraIndex
#define MT_CODE_GET_EXTRA PyUnstable_Code_GetExtra
#define MT_CODE_SET_EXTRA PyUnstable_Code_SetExtra
#define MT_HAVE_MONITORING 1
#else
#define MT_REQUEST_CODE_EXTRA _PyEval_RequestCodeExtraIndex
#define MT_CODE_GET_EXTRA _PyCode_GetExtra
#define MT_CODE_SET_EXTRA _PyCode_SetExtra
#define MT_HAVE_MONITORING 0
#endif

#ifdef Py_GIL_DISABLED
#error "memtrim's engine relies on the GIL; free-threaded builds are not supported"
#endif

/* Hot thread-locals use the initial-exec model: no __tls_get_addr call per
 * allocation.  glibc reserves static TLS space for dlopen'ed libraries that
 * need a few bytes of it, which is all we use. */
#define MT_TLS __thread __attribute__((tls_model("initial-exec")))

/* Does the calling thread hold the GIL?  Safe from any thread, without the
 * GIL.  Not PyGILState_Check(): once a subinterpreter exists it stops
 * checking and answers 1 for every thread.  The thread state running now
 * (global on 3.11, per thread on 3.12+) is compared with this thread's own. */
static inline int mt_have_gil(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyThreadState *running = PyThreadState_GetUnchecked();
#else
    PyThreadState *running = _PyThreadState_UncheckedGet();
#endif
    return running != NULL && running == PyGILState_GetThisThreadState();
}

#define MT_LIKELY(x) __builtin_expect(!!(x), 1)
#define MT_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define MT_NOINLINE __attribute__((noinline))

#endif
