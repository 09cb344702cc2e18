/* memtrim.engine._engine: the Python face of the native engine.
 *
 * Thin wrappers only: every function returns ints, tuples or lists; the
 * policy (what to hook when, how to group and print) lives in Python. */
#include "capi.h"
#include "compat.h"
#include "heap.h"
#include "native.h"
#include "rss.h"
#include "listeners.h"
#include "calltree.h"
#include "tracer.h"

#include <limits.h>
#include <pthread.h>

static mt_c_api_t c_api = {2, mt_heap_level, mt_heap_installed, mt_heap_guard_enter};

static PyObject *py_heap_install(PyObject *self, PyObject *unused)
{
    mt_heap_install();
    Py_RETURN_NONE;
}

static PyObject *py_heap_uninstall(PyObject *self, PyObject *unused)
{
    if (mt_heap_uninstall() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "heap hooks are not installed");
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_native_install(PyObject *self, PyObject *unused)
{
    if (!mt_heap_installed()) {
        PyErr_SetString(PyExc_RuntimeError, "install the heap hooks first");
        return NULL;
    }
    if (mt_native_install() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_native_wanted(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(mt_native_wanted());
}

static PyObject *py_native_uninstall(PyObject *self, PyObject *unused)
{
    mt_native_uninstall();
    Py_RETURN_NONE;
}

static PyObject *py_native_installed(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(mt_native_installed());
}

static PyObject *py_native_level(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_heap_native_level());
}

static PyObject *py_native_maps(PyObject *self, PyObject *unused)
{
    uint64_t mapped, resident;
    mt_native_maps(&mapped, &resident);
    return Py_BuildValue("(KK)", (unsigned long long)mapped, (unsigned long long)resident);
}

static PyObject *py_python_malloc_level(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_heap_python_malloc_level());
}

static PyObject *py_rss_facts(PyObject *self, PyObject *unused)
{
    mt_rss_facts_t facts;
    mt_rss_read(&facts);
    return mt_rss_dict(&facts);
}

static PyObject *py_rss_watch_start(PyObject *self, PyObject *args)
{
    double step;
    long long min_step;
    if (!PyArg_ParseTuple(args, "dL", &step, &min_step)) {
        return NULL;
    }
    mt_rss_watch_start(step, min_step);
    Py_RETURN_NONE;
}

static PyObject *py_rss_watch_stop(PyObject *self, PyObject *unused)
{
    const mt_rss_facts_t *facts = mt_rss_watch_stop();
    if (facts == NULL) {
        Py_RETURN_NONE;
    }
    return mt_rss_dict(facts);
}

static PyObject *py_heap_untouched(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_heap_untouched());
}

static PyObject *py_arenas_walk(PyObject *self, PyObject *unused)
{
    return mt_arenas_walk();
}

static PyObject *py_pymalloc_stats(PyObject *self, PyObject *unused)
{
    return mt_pymalloc_stats();
}

static PyObject *py_native_by_library(PyObject *self, PyObject *unused)
{
    int64_t by_lib[MT_MAX_LIBS];
    mt_heap_native_by_lib(by_lib);
    PyObject *out = PyList_New(0);
    for (int i = 0; out != NULL && i < MT_MAX_LIBS; i++) {
        if (by_lib[i] == 0) {
            continue;
        }
        const char *name = mt_native_lib_name((unsigned)i);
        PyObject *item = Py_BuildValue("(sL)", name ? name : "?", (long long)by_lib[i]);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(out);
            break;
        }
        Py_DECREF(item);
    }
    return out;
}

static PyObject *py_native_stats(PyObject *self, PyObject *unused)
{
    uint64_t out[5];
    mt_native_stats(out);
    return Py_BuildValue("(KKKKK)", (unsigned long long)out[0], (unsigned long long)out[1],
                         (unsigned long long)out[2], (unsigned long long)out[3],
                         (unsigned long long)out[4]);
}

static PyObject *py_heap_installed(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(mt_heap_installed());
}

static PyObject *py_heap_level(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_heap_level());
}

static PyObject *py_heap_peak(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_heap_peak());
}

static PyObject *py_heap_reset_peak(PyObject *self, PyObject *unused)
{
    mt_heap_reset_peak();
    Py_RETURN_NONE;
}

static PyObject *py_heap_counts(PyObject *self, PyObject *unused)
{
    uint64_t allocs, frees;
    mt_heap_counts(&allocs, &frees);
    return Py_BuildValue("(KKL)", (unsigned long long)allocs, (unsigned long long)frees,
                         (long long)mt_heap_overhead());
}

static PyObject *py_thread_level(PyObject *self, PyObject *unused)
{
    return PyLong_FromLongLong(mt_thread_cur);
}

static PyObject *py_watch_begin(PyObject *self, PyObject *unused)
{
    int id = mt_watch_begin();
    if (id < 0) {
        PyErr_SetString(PyExc_RuntimeError, "too many nested peak watches (64 at most)");
        return NULL;
    }
    return PyLong_FromLong(id);
}

static int watch_id(PyObject *arg, int *id)
{
    long v = PyLong_AsLong(arg);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (v < 0 || v >= 64) {
        PyErr_SetString(PyExc_ValueError, "bad watch id");
        return -1;
    }
    *id = (int)v;
    return 0;
}

static PyObject *py_watch_peak(PyObject *self, PyObject *arg)
{
    int id;
    if (watch_id(arg, &id) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(mt_watch_peak(id));
}

static PyObject *py_watch_end(PyObject *self, PyObject *arg)
{
    int id;
    if (watch_id(arg, &id) < 0) {
        return NULL;
    }
    int64_t peak = mt_watch_peak(id);
    mt_watch_end(id);
    return PyLong_FromLongLong(peak);
}

/* numpy's C-API table: entry 306 is PyDataMem_DefaultHandler (numpy >= 1.22),
 * a capsule named "mem_handler"; we check that before using it. */
#define NUMPY_DEFAULT_HANDLER_SLOT 306

static PyObject *py_numpy_patch(PyObject *self, PyObject *api_capsule)
{
    void **api = PyCapsule_GetPointer(api_capsule, NULL);
    if (api == NULL) {
        return NULL;
    }
    PyObject *handler = *(PyObject **)api[NUMPY_DEFAULT_HANDLER_SLOT];
    if (handler == NULL || !PyCapsule_IsValid(handler, "mem_handler")) {
        PyErr_SetString(PyExc_RuntimeError, "numpy has no default memory handler");
        return NULL;
    }
    if (mt_numpy_patch(handler) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_new_table(PyObject *self, PyObject *arg)
{
    long first = PyLong_AsLong(arg);
    if (first == -1 && PyErr_Occurred()) {
        return NULL;
    }
    int id = mt_tracer_new_table((int)first);
    if (id < 0) {
        return PyErr_NoMemory();
    }
    return PyLong_FromLong(id);
}

static PyObject *py_register_code(PyObject *self, PyObject *args)
{
    PyObject *code;
    int table, is_root;
    if (!PyArg_ParseTuple(args, "O!ip", &PyCode_Type, &code, &table, &is_root)) {
        return NULL;
    }
    if (mt_tracer_register_code(code, table, is_root) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_unregister_code(PyObject *self, PyObject *code)
{
    if (!PyCode_Check(code)) {
        PyErr_SetString(PyExc_TypeError, "expected a code object");
        return NULL;
    }
    mt_tracer_unregister_code(code);
    Py_RETURN_NONE;
}

static PyObject *py_table_stats(PyObject *self, PyObject *arg)
{
    long table = PyLong_AsLong(arg);
    if (table == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return mt_tracer_table_stats((int)table);
}

static PyObject *py_reset_table(PyObject *self, PyObject *arg)
{
    long table = PyLong_AsLong(arg);
    if (table == -1 && PyErr_Occurred()) {
        return NULL;
    }
    mt_tracer_reset_table((int)table);
    Py_RETURN_NONE;
}

static PyObject *py_free_table(PyObject *self, PyObject *arg)
{
    long table = PyLong_AsLong(arg);
    if (table == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (mt_tracer_free_table((int)table) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_tables_live(PyObject *self, PyObject *unused)
{
    int tables, codes, kept;
    mt_tracer_counts(&tables, &codes, &kept);
    return Py_BuildValue("(iii)", tables, codes, kept);
}

static PyObject *py_step_in(PyObject *self, PyObject *unused)
{
    if (mt_step_in() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_step_out(PyObject *self, PyObject *unused)
{
    mt_step_out();
    Py_RETURN_NONE;
}

static PyObject *py_trace_enter(PyObject *self, PyObject *unused)
{
    if (mt_trace_enter() < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_trace_exit(PyObject *self, PyObject *unused)
{
    mt_trace_exit();
    Py_RETURN_NONE;
}

/* sys.monitoring callbacks (3.12+).  Registered from Python; METH_FASTCALL so
 * the interpreter calls them without building a tuple. */
static PyObject *cb_start(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        mt_on_start(args[0]);
    }
    Py_RETURN_NONE;
}

static PyObject *cb_line(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 2) {
        int line = (int)PyLong_AsLong(args[1]);
        if (line == -1 && PyErr_Occurred()) {
            return NULL;
        }
        mt_on_line(args[0], line);
    }
    Py_RETURN_NONE;
}

static PyObject *cb_end(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs >= 1) {
        mt_on_end(args[0]);
    }
    Py_RETURN_NONE;
}

static PyObject *py_tree_start(PyObject *self, PyObject *args)
{
    int exact;
    long long sample_bytes;
    PyObject *hidden = NULL;
    unsigned long long seed = 0;
    int cframes = 0;
    if (!PyArg_ParseTuple(args, "pL|OKp", &exact, &sample_bytes, &hidden, &seed, &cframes)) {
        return NULL;
    }
    if (!mt_heap_installed()) {
        PyErr_SetString(PyExc_RuntimeError, "install the heap hooks before recording");
        return NULL;
    }
    PyObject *hidden_seq = NULL;
    if (hidden != NULL && hidden != Py_None) {
        hidden_seq = PySequence_Fast(hidden, "hidden must be a sequence of file names");
        if (hidden_seq == NULL) {
            return NULL;
        }
    }
    if (mt_tree_running()) {
        Py_XDECREF(hidden_seq);
        PyErr_SetString(PyExc_RuntimeError,
                        "a recording is already running in this process; stop it first");
        return NULL;
    }
    mt_heap_reset_peak();
    int failed = mt_tree_start(exact, sample_bytes, hidden_seq, (uint64_t)seed, cframes) < 0;
    Py_XDECREF(hidden_seq);
    if (failed) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *py_tree_stop(PyObject *self, PyObject *unused)
{
    mt_tree_stop();
    Py_RETURN_NONE;
}

static PyObject *py_tree_snapshot(PyObject *self, PyObject *unused)
{
    return mt_tree_snapshot();
}

/* tree_dump(fd): the SIGTERM dump of the recording (calltree.c), for the
 * tests: it freezes the recording for good (the process should end after). */
static PyObject *py_tree_dump(PyObject *self, PyObject *arg)
{
    /* METH_O: no argument tuple (on 3.13 a tuple from the free list is moved
     * to the calling line, which would change the tree just before the dump) */
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a file descriptor");
        return NULL;
    }
    return PyBool_FromLong(mt_tree_dump((int)fd) == 0);
}

static PyObject *py_tree_clear(PyObject *self, PyObject *unused)
{
    mt_tree_clear();
    Py_RETURN_NONE;
}

static PyObject *py_tree_recording(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(mt_tree_running());
}

static PyObject *py_heap_listeners(PyObject *self, PyObject *unused)
{
    return PyLong_FromLong(mt_listeners_n);
}

PyObject *mt_watchdog_start(PyObject *self, PyObject *args); /* watchdog.c */
PyObject *mt_watchdog_stop(PyObject *self, PyObject *unused);
int mt_tree_reftracer_ours(void); /* calltree.c */

static PyObject *py_tree_reftracer(PyObject *self, PyObject *unused)
{
    return PyBool_FromLong(mt_tree_reftracer_ours());
}

PyObject *mt_term_arm(PyObject *self, PyObject *args); /* term.c */
PyObject *mt_term_disarm(PyObject *self, PyObject *unused);
PyObject *mt_term_claim(PyObject *self, PyObject *unused);
PyObject *mt_term_waiting(PyObject *self, PyObject *unused);
PyObject *mt_term_after_fork(PyObject *self, PyObject *args);
PyObject *mt_term_die(PyObject *self, PyObject *unused);
PyObject *mt_term_prepare(PyObject *self, PyObject *args);
PyObject *mt_term_context(PyObject *self, PyObject *args);

static PyObject *py_set_limit(PyObject *self, PyObject *arg)
{
    long long at = PyLong_AsLongLong(arg);
    if (at == -1 && PyErr_Occurred()) {
        return NULL;
    }
    mt_heap_set_limit((int64_t)at);
    Py_RETURN_NONE;
}

static PyObject *py_limit_state(PyObject *self, PyObject *unused)
{
    uint64_t refused;
    int64_t level, size;
    mt_heap_limit_state(&refused, &level, &size);
    return Py_BuildValue("(KLL)", (unsigned long long)refused, (long long)level, (long long)size);
}

static PyObject *py_own_enter(PyObject *self, PyObject *unused)
{
    mt_heap_own_enter();
    Py_RETURN_NONE;
}

static PyObject *py_own_exit(PyObject *self, PyObject *unused)
{
    mt_heap_own_exit();
    Py_RETURN_NONE;
}

static PyObject *py_tree_block_nodes(PyObject *self, PyObject *objs)
{
    return mt_tree_block_nodes(objs);
}

static PyObject *py_tree_node_site(PyObject *self, PyObject *arg)
{
    long node = PyLong_AsLong(arg);
    if (node == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return mt_tree_node_site(node);
}

static PyObject *py_tree_on_peak(PyObject *self, PyObject *args)
{
    long long at;
    PyObject *cb;
    if (!PyArg_ParseTuple(args, "LO", &at, &cb)) {
        return NULL;
    }
    if (mt_tree_on_peak((int64_t)at, cb) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"heap_install", py_heap_install, METH_NOARGS, "Install the allocator hooks (counted)."},
    {"heap_uninstall", py_heap_uninstall, METH_NOARGS, "Remove the hooks when the count hits 0."},
    {"heap_installed", py_heap_installed, METH_NOARGS, "Are the hooks in?"},
    {"native_install", py_native_install, METH_NOARGS,
     "Hook the C allocator of every loaded library (counted; heap hooks first)."},
    {"native_uninstall", py_native_uninstall, METH_NOARGS,
     "One holder less (the hooks stay until the heap hooks come off)."},
    {"native_wanted", py_native_wanted, METH_NOARGS, "How many holders want the native hooks."},
    {"native_by_library", py_native_by_library, METH_NOARGS,
     "[(library file, live native bytes)] of the libraries that allocated ('?': not known)."},
    {"native_maps", py_native_maps, METH_NOARGS,
     "(bytes mapped, bytes resident) of the hooked libraries' anonymous mappings."},
    {"python_malloc_level", py_python_malloc_level, METH_NOARGS,
     "Live bytes of Python's blocks in malloc's heap (raw domain, numpy, over 512 bytes)."},
    {"rss_facts", py_rss_facts, METH_NOARGS, "The facts of the RSS breakdown, read now."},
    {"rss_watch_start", py_rss_watch_start, METH_VARARGS,
     "(step, min_step): read the facts again at each new heap peak step above the last."},
    {"rss_watch_stop", py_rss_watch_stop, METH_NOARGS, "Stop; the facts last read, or None."},
    {"heap_untouched", py_heap_untouched, METH_NOARGS,
     "Bytes of the counted big blocks on pages never touched (not resident)."},
    {"arenas_walk", py_arenas_walk, METH_NOARGS,
     "[(base, size, resident, live blocks, live bytes, pools in use)] of the arenas known."},
    {"pymalloc_stats", py_pymalloc_stats, METH_NOARGS,
     "pymalloc's statistics (sys._debugmallocstats' text), read into a string."},
    {"native_installed", py_native_installed, METH_NOARGS, "Are the native hooks in?"},
    {"native_level", py_native_level, METH_NOARGS, "Live bytes from the native hooks."},
    {"native_stats", py_native_stats, METH_NOARGS,
     "(objects patched, slots patched, mappings not tracked, dlopen calls, slots left alone)."},
    {"heap_level", py_heap_level, METH_NOARGS, "Live bytes allocated since install."},
    {"heap_peak", py_heap_peak, METH_NOARGS, "Highest level since install or reset."},
    {"heap_reset_peak", py_heap_reset_peak, METH_NOARGS, "Reset the peak to the level."},
    {"heap_counts", py_heap_counts, METH_NOARGS, "(allocations, frees, shadow bytes)."},
    {"heap_listeners", py_heap_listeners, METH_NOARGS, "How many listeners hear the hooks."},
    {"thread_level", py_thread_level, METH_NOARGS, "This thread's net bytes."},
    {"watch_begin", py_watch_begin, METH_NOARGS, "Start a peak watch; returns its id."},
    {"watch_peak", py_watch_peak, METH_O, "Highest level since the watch began."},
    {"watch_end", py_watch_end, METH_O, "End a watch; returns its peak."},
    {"numpy_patch", py_numpy_patch, METH_O, "Wrap numpy's default data handler."},
    {"new_table", py_new_table, METH_O, "New line table; returns its id."},
    {"register_code", py_register_code, METH_VARARGS, "Profile (code, table, is_root)."},
    {"unregister_code", py_unregister_code, METH_O, "Stop profiling a code object."},
    {"table_stats", py_table_stats, METH_O,
     "[(line, occurrences, increment, peak, mem_usage)] for lines that ran."},
    {"reset_table", py_reset_table, METH_O, "Zero a table."},
    {"free_table", py_free_table, METH_O, "Free a table (its id is not valid any more)."},
    {"tables_live", py_tables_live, METH_NOARGS,
     "(tables not freed, code objects registered, registry entries kept)."},
    {"step_in", py_step_in, METH_NOARGS, "A wrapped profiled call (re)starts."},
    {"step_out", py_step_out, METH_NOARGS, "A wrapped profiled call paused or ended."},
    {"trace_enter", py_trace_enter, METH_NOARGS, "3.11: trace this thread (counted)."},
    {"trace_exit", py_trace_exit, METH_NOARGS, "3.11: undo one trace_enter."},
    {"cb_start", (PyCFunction)(void (*)(void))cb_start, METH_FASTCALL, "monitoring callback"},
    {"cb_line", (PyCFunction)(void (*)(void))cb_line, METH_FASTCALL, "monitoring callback"},
    {"cb_end", (PyCFunction)(void (*)(void))cb_end, METH_FASTCALL, "monitoring callback"},
    {"tree_start", py_tree_start, METH_VARARGS,
     "Start attributing allocations: (exact, sample_bytes[, hidden_files[, seed]])."},
    {"tree_stop", py_tree_stop, METH_NOARGS, "Stop attributing; the data stays."},
    {"tree_snapshot", py_tree_snapshot, METH_NOARGS, "The call tree and its statistics."},
    {"tree_dump", py_tree_dump, METH_O,
     "tree_dump(fd): write the recording as the SIGTERM dump does; freezes it for good."},
    {"tree_clear", py_tree_clear, METH_NOARGS, "Free the recorded data."},
    {"tree_running", py_tree_recording, METH_NOARGS, "Is a recording running?"},
    {"tree_block_nodes", py_tree_block_nodes, METH_O,
     "The node each object's block was charged to (-1: not known)."},
    {"tree_node_site", py_tree_node_site, METH_O,
     "(filename, qualname, first line, line, parent) of a node, or None."},
    {"tree_on_peak", py_tree_on_peak, METH_VARARGS,
     "(at, callable): call it once from the main thread when the heap's peak reaches at."},
    {"set_limit", py_set_limit, METH_O,
     "Refuse the Python allocation that would take the heap level past this (0: none)."},
    {"limit_state", py_limit_state, METH_NOARGS,
     "(refusals so far, level at the last one, bytes it asked for)."},
    {"own_enter", py_own_enter, METH_NOARGS,
     "This thread's new blocks pass uncounted (memtrim's own work); nested."},
    {"own_exit", py_own_exit, METH_NOARGS, "Undo one own_enter."},
    {"watchdog_start", mt_watchdog_start, METH_VARARGS,
     "(limit_bytes, interval_s[, on_exceeded]): raise MemoryError in the main thread at that "
     "RSS; call on_exceeded(rss) there if the program grows on past it."},
    {"watchdog_stop", mt_watchdog_stop, METH_NOARGS, "Stop; returns the RSS that tripped it."},
    {"tree_reftracer", py_tree_reftracer, METH_NOARGS,
     "3.13+: memtrim's CPython reference tracer is the one set (a recording runs)."},
    {"term_arm", mt_term_arm, METH_VARARGS,
     "(grace_s): wrap the SIGTERM handler installed now; an unclaimed SIGTERM kills at once "
     "after grace_s."},
    {"term_disarm", mt_term_disarm, METH_NOARGS, "Put the SIGTERM handler back; stop."},
    {"term_claim", mt_term_claim, METH_NOARGS,
     "True for the first caller (or when not armed): it writes the capture."},
    {"term_waiting", mt_term_waiting, METH_NOARGS,
     "Seconds since an unclaimed SIGTERM came, or -1.0."},
    {"term_die", mt_term_die, METH_NOARGS, "End the process of SIGTERM's default action."},
    {"term_prepare", mt_term_prepare, METH_VARARGS,
     "term_prepare(path, argv, fd): dump the recording there and exec argv at the deadline."},
    {"term_context", mt_term_context, METH_VARARGS,
     "term_context(which, bytes): the context (0) or thread names (1) written before the dump."},
    {"term_after_fork", mt_term_after_fork, METH_VARARGS,
     "(rearm): in a forked child: a thread of its own, or forget the deadline."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_engine", "memtrim's native engine.", -1, methods,
};

/* One lock order for fork, the order the hooks nest them in: the patcher's,
 * the regions', the heap's (no-GIL, big table), the call tree's queue. */
static void before_fork(void)
{
    mt_native_fork_prepare();
    mt_heap_fork_prepare();
    mt_tree_fork_prepare();
}

static void after_fork_in_parent(void)
{
    mt_tree_fork_parent();
    mt_heap_fork_parent();
    mt_native_fork_parent();
}

static void after_fork_in_child(void)
{
    mt_heap_after_fork();
    mt_native_after_fork();
    mt_tree_after_fork();
    mt_tracer_after_fork();
}

PyMODINIT_FUNC PyInit__engine(void)
{
    static int atfork_done;
    if (!atfork_done) {
        pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child);
        atfork_done = 1;
    }
    if (mt_tracer_init() < 0) {
        PyErr_SetString(PyExc_RuntimeError, "no code-object extra slot available");
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) {
        return NULL;
    }
    if (mt_tracer_add_to_module(m) < 0 || mt_wrapper_add_to_module(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddIntConstant(m, "HAVE_MONITORING", MT_HAVE_MONITORING) < 0 ||
        PyModule_AddObject(m, "_C_API", PyCapsule_New(&c_api, MT_CAPI_CAPSULE,
                                                       NULL)) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
