/* Reading the running thread's Python frames without creating objects.
 *
 * The allocator hooks must not allocate, so they cannot use the public frame
 * API (PyThreadState_GetFrame creates frame objects).  We read CPython's
 * internal _PyInterpreterFrame structs instead, from the interpreter's own
 * headers; only this file knows their layout, which changed in every version
 * from 3.11 to 3.13. */
#ifndef MEMTRIM_FRAMES_H
#define MEMTRIM_FRAMES_H

#include "compat.h"

#define Py_BUILD_CORE 1
#include <internal/pycore_frame.h>
#undef Py_BUILD_CORE

typedef _PyInterpreterFrame mt_frame_t;

static inline mt_frame_t *mt_current_frame(PyThreadState *ts)
{
#if PY_VERSION_HEX >= 0x030D0000
    return ts->current_frame;
#else
    return ts->cframe ? ts->cframe->current_frame : NULL;
#endif
}

/* The frame's code object, or NULL for frames that are not (yet) running
 * Python code: C-stack shims and frames still setting up. */
static inline PyCodeObject *mt_frame_code(mt_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (f->owner == FRAME_OWNED_BY_CSTACK || !PyCode_Check(f->f_executable)) {
        return NULL;
    }
#elif PY_VERSION_HEX >= 0x030C0000
    if (f->owner == FRAME_OWNED_BY_CSTACK) {
        return NULL;
    }
#endif
    if (_PyFrame_IsIncomplete(f)) {
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030D0000
    return (PyCodeObject *)f->f_executable;
#else
    return f->f_code;
#endif
}

/* Where the frame is in its code: a pointer into the code object's bytecode,
 * so (frame, pointer) tells both the code and the instruction with two loads. */
static inline const void *mt_frame_ip(mt_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return f->instr_ptr;
#else
    return f->prev_instr;
#endif
}

/* The frame's executable as a plain pointer (no type check): enough to tell
 * whether two frames run the same code. */
static inline const void *mt_frame_executable(mt_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return f->f_executable;
#else
    return f->f_code;
#endif
}

/* A C-stack shim frame (3.12+): never a Python frame of the program. */
static inline int mt_frame_is_shim(mt_frame_t *f)
{
#if PY_VERSION_HEX >= 0x030C0000
    return f->owner == FRAME_OWNED_BY_CSTACK;
#else
    (void)f;
    return 0;
#endif
}

/* Index of the instruction running in the frame, in code units. */
static inline int mt_frame_lasti(mt_frame_t *f)
{
    return _PyInterpreterFrame_LASTI(f);
}

#endif
