/* Native frames for `memtrim run --native`: the C functions between the
 * Python line and a library's malloc, in the sampled stacks.
 *
 * At a sampled native allocation the call tree asks for the C stack
 * (backtrace(), glibc's unwinder, warmed up at start: its first call loads
 * libgcc_s, which must not happen inside an allocation hook), keeps the frames
 * between memtrim's own hook and the interpreter (libpython or the python
 * executable), and charges the block under them.  Frames are kept as return
 * addresses, given a small index here; they are named (dladdr: the library and
 * the exported symbol, else library+offset) only when the tree is read, with
 * the GIL and outside any hook, since dladdr takes the loader's lock.
 *
 * GIL held for everything here (the call tree's sampling runs with it). */
#include "compat.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>

#include "cframes.h"
#include "elfspan.h"

typedef struct {
    uintptr_t lo, hi;
} range_t;

static range_t own, interpreter;
static uintptr_t *pcs; /* index -> return address */
static uint32_t npcs, pcs_cap;
static int ready;

typedef struct {
    uintptr_t addr;
    range_t found;
} find_t;

static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    find_t *f = data;
    uintptr_t lo, hi;
    if (mt_object_span(info, &lo, &hi) && f->addr >= lo && f->addr < hi) {
        f->found = (range_t){lo, hi};
        return 1;
    }
    return 0;
}

static range_t object_of(const void *addr)
{
    find_t f = {(uintptr_t)addr, {0, 0}};
    dl_iterate_phdr(find_object, &f);
    return f.found;
}

int mt_cframes_init(void)
{
    if (!ready) {
        own = object_of((const void *)mt_cframes_init);
        interpreter = object_of((const void *)PyObject_Malloc);
        void *warm[4];
        backtrace(warm, 4); /* loads the unwinder now, not inside a hook */
        ready = 1;
    }
    npcs = 0;
    return 0;
}

static inline int inside(const range_t *r, uintptr_t a)
{
    return a >= r->lo && a < r->hi;
}

int mt_cframes_capture(uintptr_t *out, int max)
{
    void *raw[MT_CFRAMES_MAX + 24];
    int n = backtrace(raw, MT_CFRAMES_MAX + 24);
    int i = 0;
    while (i < n && inside(&own, (uintptr_t)raw[i])) { /* memtrim's hook and call tree */
        i++;
    }
    int kept = 0;
    for (; i < n && kept < max; i++) {
        uintptr_t pc = (uintptr_t)raw[i];
        if (inside(&interpreter, pc) || inside(&own, pc)) {
            break; /* back in the interpreter: the Python frames take over */
        }
        out[kept++] = pc;
    }
    /* innermost first from backtrace: outermost first for the tree */
    for (int a = 0, b = kept - 1; a < b; a++, b--) {
        uintptr_t t = out[a];
        out[a] = out[b];
        out[b] = t;
    }
    return kept;
}

uint32_t mt_cframes_index(uintptr_t pc)
{
    for (uint32_t i = npcs; i-- > 0;) { /* few distinct call sites allocate */
        if (pcs[i] == pc) {
            return i;
        }
    }
    if (npcs == pcs_cap) {
        uint32_t cap = pcs_cap ? pcs_cap * 2 : 256;
        uintptr_t *grown = realloc(pcs, cap * sizeof(uintptr_t));
        if (grown == NULL) {
            return UINT32_MAX;
        }
        pcs = grown;
        pcs_cap = cap;
    }
    pcs[npcs] = pc;
    return npcs++;
}

PyObject *mt_cframes_symbols(void)
{
    PyObject *out = PyList_New(npcs);
    for (uint32_t i = 0; out != NULL && i < npcs; i++) {
        Dl_info info;
        memset(&info, 0, sizeof(info));
        /* a return address: the call is the byte before it */
        int known = dladdr((void *)(pcs[i] - 1), &info) != 0;
        const char *lib = known && info.dli_fname ? info.dli_fname : "?";
        const char *sym = known && info.dli_sname ? info.dli_sname : "";
        unsigned long long offset =
            known ? (unsigned long long)(pcs[i] - (uintptr_t)(info.dli_sname ? info.dli_saddr
                                                                               : info.dli_fbase))
                  : (unsigned long long)pcs[i];
        PyObject *item = Py_BuildValue("(ssK)", lib, sym, offset);
        if (item == NULL) {
            Py_CLEAR(out);
            break;
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

uint32_t mt_cframes_count(void)
{
    return npcs;
}

uintptr_t mt_cframes_pc(uint32_t index)
{
    return index < npcs ? pcs[index] : 0;
}

void mt_cframes_clear(void)
{
    free(pcs);
    pcs = NULL;
    npcs = pcs_cap = 0;
}
