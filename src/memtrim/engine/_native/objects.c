/* memtrim.engine._objects: the hot loops of object sizing, census, retained and why().
 *
 * Thin on purpose: functions that walk the object graph and return plain data
 * (ints, lists, dicts). All policy (which referents count, names, grouping,
 * rendering) stays in Python (memtrim.objects.*): the sizing walk asks
 * Python once per type how to size its objects, and sizes exact builtin
 * containers, scalars and plain instances itself.
 *
 * No user code: sizing must not run the program's code. sys.getsizeof is
 * only called (_PySys_GetSizeOf) for types whose __sizeof__ is a C method;
 * for a __sizeof__ written in Python the nearest C base's __sizeof__ is
 * called instead (census), or the type is left to Python (sizing, whose rules
 * do the same). Generator frames and thread frames are read in place, never
 * through gi_frame / f_locals (which create objects that stay).
 *
 * Threading: every function runs with the GIL held and never releases it, so
 * the graph cannot change under us except through code we call ourselves:
 * the `classify` and `describe` callbacks of the sizing walk. Those run
 * Python code (a mapping's items(), a WeakValueDictionary dropping entries),
 * so nothing we keep across them is borrowed: every entry of a work stack
 * owns a reference, every object in the seen-set of a walk is kept alive by a
 * reference we own until the walk ends (so its address cannot be reused by a
 * new object and wrongly skipped), and the types of census rows are owned.
 * Borrowed pointers are only used between two such calls. A Walker object
 * refuses to be re-entered from those callbacks (its `busy` flag).
 *
 * Recursion: none. Deep structures (a million-long linked list) are walked
 * with explicit heap-allocated stacks; tp_traverse is only used one level at a
 * time through visit callbacks that push onto those stacks.
 */
#include "frames.h" /* Python.h, and CPython's interpreter frames (pycore_frame.h) */
#include <stdint.h>
#include <string.h>
#ifndef Py_T_OBJECT_EX /* 3.11: member types live in structmember.h */
#include <structmember.h>
#define Py_T_OBJECT_EX T_OBJECT_EX
#endif

/* Exported by CPython 3.11-3.13 (public header until 3.12, internal in 3.13):
 * sys.getsizeof without the Python-level call. */
extern size_t _PySys_GetSizeOf(PyObject *);
/* Exported by 3.11-3.13 too (internal header in 3.13): dict.__sizeof__. */
extern Py_ssize_t _PyDict_SizeOf(PyDictObject *);

#if defined(__GNUC__)
#define LIKELY(x) __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define LIKELY(x) (x)
#define UNLIKELY(x) (x)
#define PREFETCH(p) ((void)0)
#endif

/* Interned "__sizeof__" and "", made at import; read-only afterwards. */
static PyObject *str_sizeof = NULL;
static PyObject *str_empty = NULL;

/* ---- a set (and map) of pointers, open addressing ------------------------ */

/* Not an MT_HASHTAB (hashtab.h, the engine's table), on purpose: the same
 * scheme (power-of-two capacity, at most half full, linear probing, 0 =
 * empty), but a layout that template does not have.  Keys and values are
 * two arrays, and the values one exists only for a map, decided at run
 * time (a walk's seen-set is a map only when it records owners): the
 * seen-set of a sizing walk or a census holds every object reached, and as
 * a plain set costs 8 bytes a slot, not 16.  Its hash depends on the
 * capacity (`shift`, below), its arrays come from PyMem_Calloc (which a
 * recording counts), and callers read `keys`/`values` directly, in slot
 * order (retained()).  Making it a template instance would change its
 * allocations, or give the template a parallel-array mode for this one
 * user; it stays as it is. */

typedef struct {
    uintptr_t *keys;   /* 0 = empty slot */
    void **values;     /* optional payload (parent pointers for path()) */
    size_t cap, len;
    int shift;         /* 64 - log2(cap): Fibonacci hashing takes the top bits */
} ptrmap;

static int
ptrmap_init(ptrmap *m, size_t cap, int with_values)
{
    int bits = 0;
    while (((size_t)1 << bits) < cap) {
        bits++;
    }
    m->cap = (size_t)1 << bits;
    m->len = 0;
    m->shift = 64 - bits;
    m->keys = PyMem_Calloc(m->cap, sizeof(uintptr_t));
    m->values = with_values ? PyMem_Calloc(m->cap, sizeof(void *)) : NULL;
    return (m->keys && (!with_values || m->values)) ? 0 : -1;
}

static void
ptrmap_free(ptrmap *m)
{
    PyMem_Free(m->keys);
    PyMem_Free(m->values);
    m->keys = NULL;
    m->values = NULL;
}

/* Objects are 16-byte aligned and allocated side by side, and walks meet
 * them roughly in allocation order. Keep some of that locality: the 16-byte
 * units of one 1 KiB block of memory go to consecutive slots (one or two
 * cache lines of keys), and each block starts at a pseudo-random slot
 * (Fibonacci hashing of its number). Blocks must stay small: when whole
 * stretches of memory mapped to consecutive slots (windows as large as the
 * table), two dense stretches could land on the same slots, and linear
 * probing then walked clusters of millions (a census took 48 s instead of
 * 0.8 s, depending on where the system put the heap). A fully random hash
 * of every pointer costs a cache miss per lookup instead. */
#define PTR_BLOCK_BITS 6 /* 64 slots: 1 KiB of memory */

static inline size_t
ptr_hash(const ptrmap *m, uintptr_t k)
{
    uint64_t slot = (uint64_t)k >> 4;
    uint64_t block = slot >> PTR_BLOCK_BITS;
    uint64_t base = (block * 0x9E3779B97F4A7C15ULL) >> m->shift;
    return (size_t)((base + (slot & ((1u << PTR_BLOCK_BITS) - 1))) & (m->cap - 1));
}

static int ptrmap_put(ptrmap *m, void *key, void *value);

static int
ptrmap_grow(ptrmap *m)
{
    ptrmap bigger;
    if (ptrmap_init(&bigger, m->cap * 2, m->values != NULL) < 0) {
        return -1;
    }
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i]) {
            ptrmap_put(&bigger, (void *)m->keys[i], m->values ? m->values[i] : NULL);
        }
    }
    ptrmap_free(m);
    *m = bigger;
    return 0;
}

/* Returns 1 if added, 0 if already present, -1 on memory error. */
static int
ptrmap_put(ptrmap *m, void *key, void *value)
{
    if (UNLIKELY((m->len + 1) * 2 > m->cap) && ptrmap_grow(m) < 0) {
        return -1;
    }
    uintptr_t k = (uintptr_t)key;
    size_t mask = m->cap - 1, i = ptr_hash(m, k);
    while (m->keys[i]) {
        if (m->keys[i] == k) {
            return 0;
        }
        i = (i + 1) & mask;
    }
    m->keys[i] = k;
    if (m->values) {
        m->values[i] = value;
    }
    m->len++;
    return 1;
}

static inline int
ptrmap_has(const ptrmap *m, void *key, void **value)
{
    uintptr_t k = (uintptr_t)key;
    size_t mask = m->cap - 1, i = ptr_hash(m, k);
    while (m->keys[i]) {
        if (m->keys[i] == k) {
            if (value) {
                *value = m->values ? m->values[i] : NULL;
            }
            return 1;
        }
        i = (i + 1) & mask;
    }
    return 0;
}

/* The payload slot of key (NULL if absent), to update a value in place. */
static inline void **
ptrmap_slot(const ptrmap *m, void *key)
{
    uintptr_t k = (uintptr_t)key;
    size_t mask = m->cap - 1, i = ptr_hash(m, k);
    while (m->keys[i]) {
        if (m->keys[i] == k) {
            return m->values ? &m->values[i] : NULL;
        }
        i = (i + 1) & mask;
    }
    return NULL;
}

/* ---- growable arrays -------------------------------------------------------- */

typedef struct {
    PyObject *obj;
    Py_ssize_t depth;
    int shared;        /* refcount > 1 (or weakly referable) when it was pushed */
} frame;

typedef struct {
    frame *items;
    size_t len, cap;
} stack;

static int
stack_grow(stack *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    frame *items = PyMem_Realloc(s->items, cap * sizeof(frame));
    if (!items) {
        return -1;
    }
    s->items = items;
    s->cap = cap;
    return 0;
}

/* Stores a borrowed pointer: for path(), where no Python code runs. */
static inline int
stack_push(stack *s, PyObject *obj, Py_ssize_t depth)
{
    if (UNLIKELY(s->len == s->cap) && stack_grow(s) < 0) {
        return -1;
    }
    s->items[s->len++] = (frame){obj, depth, 0};
    return 0;
}

/* Stores a new reference: the entry owns it until popped. */
static inline int
stack_push_ref(stack *s, PyObject *obj, Py_ssize_t depth, int shared)
{
    if (UNLIKELY(s->len == s->cap) && stack_grow(s) < 0) {
        return -1;
    }
    Py_INCREF(obj);
    s->items[s->len++] = (frame){obj, depth, shared};
    return 0;
}

static void
stack_clear_refs(stack *s)
{
    while (s->len) {
        Py_DECREF(s->items[--s->len].obj);
    }
}

static void
reverse_from(stack *s, size_t mark)
{
    for (size_t i = mark, j = s->len; i + 1 < j; i++, j--) {
        frame tmp = s->items[i];
        s->items[i] = s->items[j - 1];
        s->items[j - 1] = tmp;
    }
}

typedef struct {
    PyObject **items;
    size_t len, cap;
} objvec;

/* Appends a new reference. */
static int
objvec_push(objvec *v, PyObject *obj)
{
    if (UNLIKELY(v->len == v->cap)) {
        size_t cap = v->cap ? v->cap * 2 : 1024;
        PyObject **items = PyMem_Realloc(v->items, cap * sizeof(PyObject *));
        if (!items) {
            return -1;
        }
        v->items = items;
        v->cap = cap;
    }
    Py_INCREF(obj);
    v->items[v->len++] = obj;
    return 0;
}

static void
objvec_free(objvec *v)
{
    for (size_t i = 0; i < v->len; i++) {
        Py_DECREF(v->items[i]);
    }
    PyMem_Free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

/* ---- instance layout: mirror of memtrim.objects._layout --------------------
 *
 * Since 3.11 an instance of an ordinary class keeps its attributes in a values
 * array and builds a dict only when asked (and then keeps it). We read the
 * interpreter's fields, never asking. The reads below are the same as
 * _layout's, word for word, so the C walk and the Python fallback agree
 * (64-bit default builds of 3.11-3.13; anything else goes through Python):
 *
 *   3.11: obj - 3 words: dict pointer; obj - 4 words: values pointer.
 *   3.12: obj - 3 words: dict pointer, or values pointer - 1 (tagged, bit 0).
 *   3.11, 3.12: the values are a block of their own, P + S * 8 bytes: a
 *         prefix of P = round8(S + 2) bytes whose last byte stores P, then S
 *         slots. S (the shared keys' dk_nentries + dk_usable when the object
 *         was made) is not stored: we take the smallest S consistent with P
 *         and the class's current slot count (_layout._values_nbytes).
 *   3.13: values inside the object at tp_basicsize: 4-byte header (capacity,
 *         size, embedded, valid), then capacity slots and the order bytes;
 *         dict at obj - 3 words. The allocation has one slot more than
 *         capacity if dk_usable was still shrinking (_layout._embedded_nbytes).
 *   Shared keys (ht_cached_keys, kind byte at +10 == DICT_KEYS_SPLIT):
 *         dk_log2_index_bytes at +9, dk_usable at +16, dk_nentries at +24,
 *         indices at +32, then (key, value) entries of two words.
 */
#if SIZEOF_VOID_P == 8 && !defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030B0000 && \
    PY_VERSION_HEX < 0x030E0000
#define LAYOUT_SUPPORTED 1
#else
#define LAYOUT_SUPPORTED 0
#endif

typedef struct {
    PyObject **values;      /* first value slot */
    const char *entries;    /* first (key, value) entry of the shared keys */
    size_t nentries;
    size_t nbytes;          /* the values storage, as _layout.inline_nbytes */
} inline_values;

#if LAYOUT_SUPPORTED
static inline uintptr_t
word_at(const char *p)
{
    return *(const uintptr_t *)p;
}

typedef struct {
    const char *entries;
    size_t nentries, usable;
} shared_keys;

/* 1 and fills k if the heap type tp has split (shared) keys. */
static int
read_shared_keys(PyTypeObject *tp, shared_keys *k)
{
    const char *keys = (const char *)((PyHeapTypeObject *)tp)->ht_cached_keys;
    if (!keys || (uint8_t)keys[10] != 2) {
        return 0;
    }
    k->usable = word_at(keys + 16);
    k->nentries = word_at(keys + 24);
    k->entries = keys + 32 + ((size_t)1 << (uint8_t)keys[9]);
    return 1;
}

#if PY_VERSION_HEX >= 0x030D0000
/* Bytes allocated inside a 3.13 object for values of this capacity. */
static size_t
embedded_for(size_t capacity, const shared_keys *k)
{
    size_t slots = capacity;
    if (k && (capacity > k->nentries + k->usable || k->usable > 1)) {
        slots++;
    }
    return (slots + 7) / 8 * 8 + (slots + 1) * 8;
}
#endif
#endif

/* 1 and fills iv if o's __dict__ was never built (attributes in values
 * storage), 0 otherwise. Never allocates, never runs Python code. */
static int
read_inline_values(PyObject *o, inline_values *iv)
{
#if LAYOUT_SUPPORTED
    PyTypeObject *tp = Py_TYPE(o);
    if (!(tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) || !(tp->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return 0;
    }
    const char *base = (const char *)o;
    const char *values;
#if PY_VERSION_HEX < 0x030C0000
    if (word_at(base - 3 * 8)) {
        return 0;
    }
    values = (const char *)word_at(base - 4 * 8);
#elif PY_VERSION_HEX < 0x030D0000
    uintptr_t tagged = word_at(base - 3 * 8);
    if (!(tagged & 1)) {
        return 0;
    }
    values = (const char *)(tagged + 1);
#else
    if (!(tp->tp_flags & Py_TPFLAGS_INLINE_VALUES) || word_at(base - 3 * 8)) {
        return 0;
    }
    const char *header = base + tp->tp_basicsize;
    if (!header[3]) { /* values->valid */
        return 0;
    }
    values = header + 8;
#endif
    shared_keys k;
    if (!values || !read_shared_keys(tp, &k)) {
        return 0;
    }
    iv->entries = k.entries;
    iv->values = (PyObject **)values;
    iv->nentries = k.nentries;
#if PY_VERSION_HEX < 0x030D0000
    size_t prefix = (uint8_t)values[-1];
    size_t slots = k.nentries + k.usable;
    if (prefix > 9 && prefix - 9 > slots) {
        slots = prefix - 9;
    }
    if (slots < 1) {
        slots = 1;
    }
    iv->nbytes = prefix + slots * 8;
#else
    size_t capacity = (uint8_t)values[-8];
    iv->nentries = k.nentries < capacity ? k.nentries : capacity;
    iv->nbytes = embedded_for(capacity, &k);
#endif
    return 1;
#else
    (void)o;
    (void)iv;
    return 0;
#endif
}

/* 3.13: bytes of the values storage inside the object, whether or not a
 * __dict__ was built over it (0 before 3.13 and for other types). */
static size_t
embedded_nbytes(PyObject *o)
{
#if LAYOUT_SUPPORTED && PY_VERSION_HEX >= 0x030D0000
    PyTypeObject *tp = Py_TYPE(o);
    unsigned long need = Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_INLINE_VALUES | Py_TPFLAGS_HEAPTYPE;
    if ((tp->tp_flags & need) != need) {
        return 0;
    }
    shared_keys k;
    int have = read_shared_keys(tp, &k);
    return embedded_for((uint8_t)((const char *)o)[tp->tp_basicsize], have ? &k : NULL);
#else
    (void)o;
    return 0;
#endif
}

/* 3.13: a dict whose values live inside the instance it belongs to. */
static int
dict_values_embedded(PyObject *d)
{
#if LAYOUT_SUPPORTED && PY_VERSION_HEX >= 0x030D0000
    const uint8_t *values = (const uint8_t *)((PyDictObject *)d)->ma_values;
    return values && values[2];
#else
    (void)d;
    return 0;
#endif
}

/* The materialized __dict__ of an instance (borrowed), or NULL if none.
 * Callers check first that there are no inline values; types whose dict
 * sits at a negative offset are not handled here (classify refuses them). */
static PyObject *
instance_dict(PyObject *o)
{
#if LAYOUT_SUPPORTED
    PyTypeObject *tp = Py_TYPE(o);
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        uintptr_t ptr = word_at((const char *)o - 3 * 8);
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
        if (ptr & 1) {
            return NULL;
        }
#endif
        return (PyObject *)ptr;
    }
    if (tp->tp_dictoffset > 0) {
        return *(PyObject **)((char *)o + tp->tp_dictoffset);
    }
#else
    (void)o;
#endif
    return NULL;
}

/* ---- flat sizes ------------------------------------------------------------- */

/* Size of the GC header sys.getsizeof adds to GC objects; measured once at
 * import (PyGC_Head is not public in 3.13). Set before any call, read-only
 * afterwards. */
static size_t gc_head = 0;

/* What sys.getsizeof adds to __sizeof__: the GC header and the managed
 * dict/weakref pointers before the object (3.13: not for static types). */
static size_t
preheader(PyObject *o)
{
    PyTypeObject *tp = Py_TYPE(o);
#if PY_VERSION_HEX >= 0x030D0000
    if (tp == &PyType_Type && !(((PyTypeObject *)o)->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
        return 0;
    }
#endif
    size_t size = PyType_IS_GC(tp) ? gc_head : 0;
#if PY_VERSION_HEX >= 0x030C0000
    if (tp->tp_flags & (Py_TPFLAGS_MANAGED_DICT | Py_TPFLAGS_MANAGED_WEAKREF)) {
#else
    if (tp->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
#endif
        size += 2 * sizeof(PyObject *);
    }
    return size;
}

/* sys.getsizeof of the commonest exact types, computed from their layout
 * exactly as their __sizeof__ does (Objects/longobject.c, unicodeobject.c,
 * bytesobject.c, listobject.c, tupleobject.c) to avoid a method call per
 * object; everything else goes through _PySys_GetSizeOf (C __sizeof__ only:
 * callers never pass objects whose __sizeof__ is written in Python). */
static inline size_t
fast_sizeof(PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyLong_Type || t == &PyBool_Type) {
        Py_ssize_t tag = ((PyVarObject *)o)->ob_size;
#if PY_VERSION_HEX >= 0x030C0000
        size_t ndigits = (size_t)tag >> 3;  /* lv_tag: digit count << 3 | sign */
#else
        size_t ndigits = (size_t)(tag < 0 ? -tag : tag);
#endif
        return (size_t)PyLong_Type.tp_basicsize +
               (ndigits ? ndigits : 1) * (size_t)PyLong_Type.tp_itemsize;
    }
    if (t == &PyFloat_Type || t == &PyComplex_Type || o == Py_None) {
        return (size_t)t->tp_basicsize;
    }
    if (t == &PyUnicode_Type && PyUnicode_IS_COMPACT(o)) {
        size_t len = (size_t)PyUnicode_GET_LENGTH(o);
        if (PyUnicode_IS_COMPACT_ASCII(o)) {
            return sizeof(PyASCIIObject) + len + 1;
        }
        PyCompactUnicodeObject *c = (PyCompactUnicodeObject *)o;
        size_t size = sizeof(PyCompactUnicodeObject) + (len + 1) * PyUnicode_KIND(o);
        if (c->utf8 && c->utf8 != PyUnicode_DATA(o)) {
            size += (size_t)c->utf8_length + 1;
        }
        return size;
    }
    if (t == &PyBytes_Type) {
        return (size_t)(t->tp_basicsize + Py_SIZE(o) * t->tp_itemsize);
    }
    if (t == &PyTuple_Type) {
        return (size_t)(t->tp_basicsize + Py_SIZE(o) * t->tp_itemsize) + gc_head;
    }
    if (t == &PyList_Type) {
        return (size_t)t->tp_basicsize + (size_t)((PyListObject *)o)->allocated * sizeof(void *) +
               gc_head;
    }
    if (t == &PyDict_Type) {
        return (size_t)_PyDict_SizeOf((PyDictObject *)o) + gc_head;
    }
    return _PySys_GetSizeOf(o);
}

/* Bytes the allocator hands out for a request of n: pymalloc's 16-byte size
 * classes up to 512 bytes, glibc malloc chunks (8-byte header, 16-byte
 * alignment, 32 bytes at least) above. Mirror of sizing._allocated. */
static inline long long
alloc_size(size_t n)
{
    if (n == 0) {
        return 0;
    }
    if (n <= 512) {
        return (long long)((n + 15) & ~(size_t)15);
    }
    size_t chunk = (n + 8 + 15) & ~(size_t)15;
    return (long long)(chunk < 32 ? 32 : chunk);
}

/* Allocator footprint of an exact builtin whose sys.getsizeof is raw: the
 * header and the separate item/table block counted as two allocations
 * (sizing._blocks); a 3.13 instance __dict__ whose values live inside the
 * instance is its header only. */
static long long
builtin_footprint(PyObject *o, size_t raw)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyList_Type || t == &PyDict_Type || t == &PySet_Type || t == &PyFrozenSet_Type ||
        t == &PyByteArray_Type) {
        size_t head = (size_t)t->tp_basicsize + (t == &PyByteArray_Type ? 0 : gc_head);
        if (t == &PyDict_Type && dict_values_embedded(o)) {
            return alloc_size(head);
        }
        return raw > head ? alloc_size(head) + alloc_size(raw - head) : alloc_size(raw);
    }
    return alloc_size(raw);
}

/* How the census sizes the objects of one type without running Python code:
 * sys.getsizeof when the type's __sizeof__ is a C method; otherwise the
 * nearest C base's __sizeof__ (an override written in Python is never
 * called) plus what sys.getsizeof adds, or tp_basicsize if no base has one.
 * Mirror of sizing.getsizeof. */
typedef struct {
    PyObject *base;  /* owned: the C __sizeof__ to call, or NULL */
    int basic;       /* 1: no C __sizeof__ in the MRO */
} sizeof_rule;

static PyObject *
type_dict(PyTypeObject *tp)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyType_GetDict(tp); /* static builtin types keep it off tp_dict */
#else
    return Py_XNewRef(tp->tp_dict);
#endif
}

static void
sizeof_rule_for(PyTypeObject *tp, sizeof_rule *r)
{
    r->base = NULL;
    r->basic = 0;
    PyObject *found = _PyType_Lookup(tp, str_sizeof);
    if (found && Py_IS_TYPE(found, &PyMethodDescr_Type)) {
        return;
    }
    PyObject *mro = tp->tp_mro;
    Py_ssize_t n = mro && PyTuple_Check(mro) ? PyTuple_GET_SIZE(mro) : 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *dict = type_dict((PyTypeObject *)PyTuple_GET_ITEM(mro, i));
        PyObject *descr = dict ? PyDict_GetItemWithError(dict, str_sizeof) : NULL;
        if (descr && Py_IS_TYPE(descr, &PyMethodDescr_Type)) {
            r->base = Py_NewRef(descr);
            Py_DECREF(dict);
            return;
        }
        Py_XDECREF(dict);
        PyErr_Clear();
    }
    r->basic = 1;
}

static size_t
sizeof_by_rule(PyObject *o, const sizeof_rule *r)
{
    if (!r->base && !r->basic) {
        size_t size = _PySys_GetSizeOf(o);
        if (size != (size_t)-1) {
            return size;
        }
        PyErr_Clear(); /* a C __sizeof__ that failed: fall back as below */
    }
    Py_ssize_t n = -1;
    if (r->base) {
        PyObject *res = PyObject_CallOneArg(r->base, o);
        if (res) {
            n = PyLong_AsSsize_t(res);
            Py_DECREF(res);
        }
        if (n < 0) {
            PyErr_Clear();
            n = -1;
        }
    }
    if (n < 0) {
        n = Py_TYPE(o)->tp_basicsize;
    }
    return (size_t)n + preheader(o);
}

/* ---- frames, read in place ---------------------------------------------------
 *
 * Neither sys._current_frames() nor a generator's gi_frame are used: both
 * create frame objects that stay attached to the interpreter frame. The
 * interpreter frames are read through CPython's own struct (frames.h). */

typedef int (*local_fn)(PyObject *value, void *arg);

/* Calls fn for every set local, cell and free slot of every Python frame of
 * every thread, except frames running with globals in skip (memtrim's own
 * modules). Locals only: the evaluation stack of a running frame has no
 * valid top. Thread states are linked under the runtime's HEAD_LOCK, which
 * an extension cannot take; with the GIL held no thread can run Python code
 * or drop its state (a thread being created only prepends itself). */
static int
for_each_local(const ptrmap *skip, local_fn fn, void *arg)
{
    PyInterpreterState *interp = PyInterpreterState_Get();
    for (PyThreadState *ts = PyInterpreterState_ThreadHead(interp); ts;
         ts = PyThreadState_Next(ts)) {
        for (mt_frame_t *f = mt_current_frame(ts); f; f = f->previous) {
            PyCodeObject *code = mt_frame_code(f);
            if (!code || (skip && ptrmap_has(skip, f->f_globals, NULL))) {
                continue;
            }
            PyObject **locals = _PyFrame_GetLocalsArray(f);
            for (int i = 0; i < code->co_nlocalsplus; i++) {
                if (locals[i] && fn(locals[i], arg) < 0) {
                    return -1;
                }
            }
        }
    }
    return 0;
}

PyDoc_STRVAR(frame_values_doc,
"frame_values(gen) -> list[tuple[str, object]] | None\n\n"
"What a generator's, coroutine's or async generator's frame holds, read in\n"
"place (no frame object is created): (name, value) for every set local,\n"
"cell and free slot, then ('', value) for the evaluation stack of a\n"
"suspended one. [] once it finished; None for other objects.");

static PyObject *
objects_frame_values(PyObject *self, PyObject *gen)
{
    if (!PyGen_CheckExact(gen) && !PyCoro_CheckExact(gen) && !PyAsyncGen_CheckExact(gen)) {
        Py_RETURN_NONE;
    }
    /* coroutines and async generators share the generator's head (_PyGenObject_HEAD) */
    PyGenObject *g = (PyGenObject *)gen;
    PyObject *out = PyList_New(0);
    int state = g->gi_frame_state;
    if (!out || state >= FRAME_COMPLETED) {
        return out;
    }
    _PyInterpreterFrame *f = (_PyInterpreterFrame *)g->gi_iframe;
#if PY_VERSION_HEX >= 0x030D0000
    if (!PyCode_Check(f->f_executable)) {
        return out;
    }
    PyCodeObject *code = (PyCodeObject *)f->f_executable;
#else
    PyCodeObject *code = f->f_code;
#endif
    PyObject **slots = _PyFrame_GetLocalsArray(f);
    int nlocals = code->co_nlocalsplus;
    int top = state < FRAME_EXECUTING && f->stacktop > nlocals ? f->stacktop : nlocals;
    for (int i = 0; i < top; i++) {
        if (!slots[i]) {
            continue;
        }
        PyObject *name = i < nlocals ? PyTuple_GET_ITEM(code->co_localsplusnames, i)
                                     : str_empty;
        PyObject *pair = PyTuple_Pack(2, name, slots[i]);
        if (!pair || PyList_Append(out, pair) < 0) {
            Py_XDECREF(pair);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(pair);
    }
    return out;
}

/* ---- the sizing walk -------------------------------------------------------- */

/* How the objects of one type are sized, decided once per type and walk by
 * the Python `classify` callback (memtrim.objects.sizing.native_plan). */
typedef struct {
    int native;              /* 0: ask describe() about every object of the type */
    Py_ssize_t const_size;   /* sys.getsizeof of every instance, or -1: ask each */
    Py_ssize_t nslots;
    Py_ssize_t *offsets;     /* __slots__ members, in _kinds._slot_refs order */
} plan;

typedef struct {
    PyObject *classify;  /* classify(obj) -> None | (const_size, member descriptors) */
    PyObject *describe;  /* describe(obj, depth) -> (flat, [referents]) */
    PyObject *standin;   /* the type of _kinds.InlineDict (stand-ins for inline values) */
    size_t mask;
    Py_ssize_t limit;    /* < 0: unlimited */
    int footprint;       /* allocator footprint instead of sys.getsizeof figures */
    int bytes_leaf;      /* bytes has no referent that counts (its class is ignored) */
    int record;          /* retained(): every object goes into seen, with its flat size */
    ptrmap seen;         /* objects sized (or claimed) by this walk */
    ptrmap owners;       /* record: stand-in -> the instance it stands for */
    objvec held;         /* a reference to every object in `seen` */
    stack work;          /* each entry owns a reference */
    ptrmap plan_index;   /* type -> index + 1 in plans */
    plan *plans;
    size_t nplans, plans_cap;
    objvec plan_types;   /* keeps the types of plan_index alive */
} walker;

static int
walker_init(walker *w, int record)
{
    w->record = record;
    if (ptrmap_init(&w->seen, 1 << 16, record) < 0 || ptrmap_init(&w->plan_index, 64, 1) < 0 ||
        (record && ptrmap_init(&w->owners, 64, 1) < 0)) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static void
plans_free(walker *w)
{
    for (size_t i = 0; i < w->nplans; i++) {
        PyMem_Free(w->plans[i].offsets);
    }
    PyMem_Free(w->plans);
    w->plans = NULL;
    w->nplans = w->plans_cap = 0;
    ptrmap_free(&w->plan_index);
    objvec_free(&w->plan_types);
}

static void
walker_free(walker *w)
{
    stack_clear_refs(&w->work);
    PyMem_Free(w->work.items);
    w->work.items = NULL;
    w->work.cap = 0;
    ptrmap_free(&w->seen);
    ptrmap_free(&w->owners);
    plans_free(w);
    objvec_free(&w->held); /* last: may run finalizers of objects user code dropped */
}

/* Exact builtin types sized here. Their rules must match
 * memtrim.objects._kinds: flat = sys.getsizeof rounded to the alignment;
 * referents = items (list, tuple, set, frozenset), keys and values (dict),
 * none for the scalars. bytes is a leaf unless its class can be sized
 * (Pympler gives bytes a __class__ referent, counted only with code=True
 * and ignored=False). */
static inline int
is_leaf(const walker *w, PyTypeObject *t)
{
    return t == &PyLong_Type || t == &PyUnicode_Type || t == &PyFloat_Type ||
           (t == &PyBytes_Type && w->bytes_leaf) || t == &PyBool_Type ||
           t == &PyComplex_Type || t == Py_TYPE(Py_None);
}

static inline int
is_builtin_container(PyTypeObject *t)
{
    return t == &PyList_Type || t == &PyTuple_Type || t == &PyDict_Type ||
           t == &PySet_Type || t == &PyFrozenSet_Type;
}

static inline long long
aligned(const walker *w, size_t size)
{
    return (long long)((size + w->mask) & ~w->mask);
}

static inline long long
builtin_flat(const walker *w, PyObject *o, size_t size)
{
    return w->footprint ? builtin_footprint(o, size) : aligned(w, size);
}

static inline int
follows(const walker *w, Py_ssize_t depth)
{
    return w->limit < 0 || depth < w->limit;
}

/* An object only one reference points to can be reached only once, so it
 * need not enter the seen-set (most ints, floats and tuples in real data).
 * Objects that accept weak references are excluded: describe() follows
 * weakrefs (as Pympler does), a second way in that holds no reference.
 * Must be asked before the walk takes a reference of its own. retained()
 * needs every object in the seen-set (its member set): never there. */
static inline int
shared(const walker *w, PyObject *o)
{
    return w->record || Py_REFCNT(o) != 1 || Py_TYPE(o)->tp_weaklistoffset != 0;
}

/* 1 if o was not seen before (it is now, and kept alive), 0 if it was, -1 on error. */
static inline int
seen_add(walker *w, PyObject *o)
{
    int added = ptrmap_put(&w->seen, o, NULL);
    if (added > 0 && objvec_push(&w->held, o) < 0) {
        return -1;
    }
    if (added < 0) {
        PyErr_NoMemory();
    }
    return added;
}

static inline void
record_flat(walker *w, PyObject *o, long long flat)
{
    void **slot = ptrmap_slot(&w->seen, o);
    if (slot) {
        *slot = (void *)(intptr_t)flat;
    }
}

/* Leaves are sized on discovery (they have no referents, so the order does
 * not matter); everything else is pushed and sized when popped. */
static inline int
visit_child(walker *w, PyObject *c, Py_ssize_t depth, long long *total)
{
    int is_shared = shared(w, c);
    if (is_leaf(w, Py_TYPE(c))) {
        if (is_shared) {
            int added = seen_add(w, c);
            if (added <= 0) {
                return added;
            }
        }
        size_t size = fast_sizeof(c);
        if (UNLIKELY(size == (size_t)-1)) {
            return -1;
        }
        long long flat = builtin_flat(w, c, size);
        *total += flat;
        if (w->record) {
            record_flat(w, c, flat);
        }
        return 0;
    }
    if (stack_push_ref(&w->work, c, depth, is_shared) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

/* Referents of an exact builtin container, pushed so that they pop in order
 * (Pympler's recursion order). Runs no Python code, so the borrowed pointers
 * read from the container stay valid until each is pushed (with a reference). */
static int
push_builtin_refs(walker *w, PyObject *o, Py_ssize_t depth, long long *total)
{
    PyTypeObject *t = Py_TYPE(o);
    if (t == &PyList_Type || t == &PyTuple_Type) {
        PyObject **items = t == &PyList_Type ? ((PyListObject *)o)->ob_item
                                             : ((PyTupleObject *)o)->ob_item;
        Py_ssize_t n = Py_SIZE(o);
        /* each item's header is read right away (its type): ask for it ahead */
        for (Py_ssize_t i = n - 1; i >= 0 && i >= n - 8; i--) {
            PREFETCH(items[i]);
        }
        for (Py_ssize_t i = n - 1; i >= 0; i--) {
            if (i >= 8) {
                PREFETCH(items[i - 8]);
            }
            if (visit_child(w, items[i], depth, total) < 0) {
                return -1;
            }
        }
        return 0;
    }
    size_t mark = w->work.len;
    if (t == &PyDict_Type) {
        /* in batches, so that the keys and values can be prefetched */
        enum { BATCH = 16 };
        PyObject *batch[2 * BATCH];
        Py_ssize_t pos = 0;
        int more = 1;
        while (more) {
            int k = 0;
            PyObject *key, *value;
            while (k < 2 * BATCH && (more = PyDict_Next(o, &pos, &key, &value))) {
                PREFETCH(key);
                PREFETCH(value);
                batch[k++] = key;
                batch[k++] = value;
            }
            for (int j = 0; j < k; j++) {
                if (visit_child(w, batch[j], depth, total) < 0) {
                    return -1;
                }
            }
        }
    }
    else { /* set, frozenset: the C iterator runs no Python code */
        PyObject *it = PyObject_GetIter(o), *key;
        if (!it) {
            return -1;
        }
        while ((key = PyIter_Next(it))) {
            Py_DECREF(key);  /* the set holds it */
            if (visit_child(w, key, depth, total) < 0) {
                Py_DECREF(it);
                return -1;
            }
        }
        Py_DECREF(it);
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    reverse_from(&w->work, mark);
    return 0;
}

/* Turn classify()'s answer into a plan: (const_size, (member descriptor, ...)).
 * Anything unexpected (a descriptor that is not a plain object slot) leaves
 * the type to describe(). */
static int
fill_plan(plan *p, PyObject *answer)
{
    *p = (plan){0, -1, 0, NULL};
    if (!LAYOUT_SUPPORTED || answer == Py_None) {
        return 0;
    }
    Py_ssize_t const_size;
    PyObject *slots;
    if (!PyArg_ParseTuple(answer, "nO!", &const_size, &PyTuple_Type, &slots)) {
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(slots);
    p->offsets = PyMem_Malloc(sizeof(Py_ssize_t) * (n ? n : 1));
    if (!p->offsets) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PyTuple_GET_ITEM(slots, i);
        if (Py_TYPE(d) != &PyMemberDescr_Type) {
            return 0;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
#ifdef Py_RELATIVE_OFFSET
        if (m->flags & Py_RELATIVE_OFFSET) {
            return 0;
        }
#endif
        if (m->type != Py_T_OBJECT_EX || m->offset <= 0) {
            return 0;
        }
        p->offsets[i] = m->offset;
    }
    p->nslots = n;
    p->const_size = const_size;
    p->native = 1;
    return 0;
}

/* The plan of o's type (asking classify the first time), or NULL on error. */
static const plan *
plan_for(walker *w, PyObject *o)
{
    PyTypeObject *t = Py_TYPE(o);
    void *slot = NULL;
    if (ptrmap_has(&w->plan_index, t, &slot)) {
        return &w->plans[(size_t)slot - 1];
    }
    if (w->nplans == w->plans_cap) {
        size_t cap = w->plans_cap ? w->plans_cap * 2 : 64;
        plan *plans = PyMem_Realloc(w->plans, cap * sizeof(plan));
        if (!plans) {
            PyErr_NoMemory();
            return NULL;
        }
        w->plans = plans;
        w->plans_cap = cap;
    }
    /* classify may run user code; o and its type are owned by the caller's
     * stack entry, and the type is kept by plan_types from here on */
    PyObject *answer = PyObject_CallOneArg(w->classify, o);
    if (!answer) {
        return NULL;
    }
    plan *p = &w->plans[w->nplans];
    int rc = fill_plan(p, answer);
    Py_DECREF(answer);
    if (rc < 0) {
        PyMem_Free(p->offsets);
        return NULL;
    }
    if (objvec_push(&w->plan_types, (PyObject *)t) < 0 ||
        ptrmap_put(&w->plan_index, t, (void *)(w->nplans + 1)) < 0) {
        PyMem_Free(p->offsets);
        PyErr_NoMemory();
        return NULL;
    }
    w->nplans++;
    return p;
}

/* An instance sized here, exactly as describe() sizes it through
 * _kinds._inst_refs: flat size, then its __dict__ (or the inline values,
 * charged as one "__dict__ (inline values)" object holding the attribute
 * names and values), its class, its __slots__ values. *own gets the bytes
 * charged to the instance itself (its values storage included). Returns 1
 * when the object has to go to describe() after all. Runs no Python code. */
static int
walk_instance(walker *w, PyObject *o, const plan *p, Py_ssize_t depth, long long *total,
              long long *own)
{
    size_t size = (size_t)p->const_size;
    if (p->const_size < 0) {
        size = _PySys_GetSizeOf(o);
        if (size == (size_t)-1) {
            PyErr_Clear();
            return 1;
        }
    }
    /* footprint: a 3.13 instance's values are part of its own block */
    *own = w->footprint ? alloc_size(size + embedded_nbytes(o)) : aligned(w, size);
    *total += *own;
    if (!follows(w, depth)) {
        return 0;
    }
    size_t mark = w->work.len;
    inline_values iv;
    if (read_inline_values(o, &iv)) {
        long long values = aligned(w, iv.nbytes);
        if (w->footprint) { /* 3.13: inside the instance's block, counted there */
            values = PY_VERSION_HEX >= 0x030D0000 ? 0 : alloc_size(iv.nbytes);
        }
        *total += values;
        if (w->record) { /* retained(): freed with the instance */
            *own += values;
        }
        if (follows(w, depth + 1)) {
            for (size_t i = 0; i < iv.nentries; i++) {
                PyObject *value = iv.values[i];
                PyObject *key = *(PyObject *const *)(iv.entries + i * 2 * sizeof(PyObject *));
                if (value && key &&
                    (visit_child(w, key, depth + 2, total) < 0 ||
                     visit_child(w, value, depth + 2, total) < 0)) {
                    return -1;
                }
            }
        }
    }
    else {
        PyObject *dict = instance_dict(o);
        if (dict && visit_child(w, dict, depth + 1, total) < 0) {
            return -1;
        }
    }
    if (visit_child(w, (PyObject *)Py_TYPE(o), depth + 1, total) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < p->nslots; i++) {
        PyObject *value = *(PyObject **)((char *)o + p->offsets[i]);
        if (value && visit_child(w, value, depth + 1, total) < 0) {
            return -1;
        }
    }
    reverse_from(&w->work, mark);
    return 0;
}

/* Size o (found at depth) and push what it refers to. *own gets o's own
 * flat size. */
static int
walk_one(walker *w, PyObject *o, Py_ssize_t depth, long long *total, long long *own)
{
    PyTypeObject *t = Py_TYPE(o);
    if (is_leaf(w, t) || is_builtin_container(t)) {
        size_t size = fast_sizeof(o);
        if (size == (size_t)-1) {
            return -1;
        }
        *own = builtin_flat(w, o, size);
        *total += *own;
        if (follows(w, depth) && !is_leaf(w, t)) {
            return push_builtin_refs(w, o, depth + 1, total);
        }
        return 0;
    }
    const plan *p = plan_for(w, o);
    if (!p) {
        return -1;
    }
    if (p->native) {
        int rc = walk_instance(w, o, p, depth, total, own);
        if (rc <= 0) {
            return rc;
        }
    }
    PyObject *res = PyObject_CallFunction(w->describe, "On", o, depth);
    if (!res) {
        return -1;
    }
    long long flat;
    PyObject *refs;
    if (!PyArg_ParseTuple(res, "LO!", &flat, &PyList_Type, &refs)) {
        Py_DECREF(res);
        return -1;
    }
    *own = flat;
    *total += flat;
    /* Every referent gets a reference of its own on the stack; they always
     * go through the seen-set (the list itself holds a second reference). */
    int rc = 0;
    for (Py_ssize_t i = PyList_GET_SIZE(refs) - 1; i >= 0 && rc == 0; i--) {
        PyObject *ref = PyList_GET_ITEM(refs, i);
        if (w->record && (PyObject *)Py_TYPE(ref) == w->standin &&
            ptrmap_put(&w->owners, ref, o) < 0) {
            PyErr_NoMemory();
            rc = -1;
            break;
        }
        if (stack_push_ref(&w->work, ref, depth + 1, 1) < 0) {
            PyErr_NoMemory();
            rc = -1;
        }
    }
    Py_DECREF(res);
    return rc;
}

/* Deep size of top (already in the seen-set), found at depth. *top_flat
 * (if given) gets top's own flat size. Returns -1 with an exception set on
 * error (the work stack is emptied). */
static long long
walk_from(walker *w, PyObject *top, Py_ssize_t depth, long long *top_flat)
{
    long long total = 0;
    int first = 1;
    if (stack_push_ref(&w->work, top, depth, 0) < 0) {
        PyErr_NoMemory();
        return -1;
    }
    while (w->work.len) {
        frame f = w->work.items[--w->work.len];
        if (w->work.len >= 2) {
            /* what pops after f's own referents: often pushed long ago (the
             * rows of a big list), so its header is no longer in cache */
            PREFETCH(w->work.items[w->work.len - 1].obj);
            PREFETCH(w->work.items[w->work.len - 2].obj);
        }
        if (f.shared) {
            int added = seen_add(w, f.obj);
            if (added <= 0) {
                Py_DECREF(f.obj);
                if (added < 0) {
                    goto fail;
                }
                continue;
            }
        }
        long long own = 0;
        int rc = walk_one(w, f.obj, f.depth, &total, &own);
        if (rc == 0 && w->record) {
            record_flat(w, f.obj, own);
        }
        if (first && top_flat) {
            *top_flat = own;
        }
        first = 0;
        Py_DECREF(f.obj);
        if (rc < 0) {
            goto fail;
        }
    }
    return total;
fail:
    stack_clear_refs(&w->work);
    if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    return -1;
}

/* ---- Walker: one sizing call's state, driven from Python -------------------- */

typedef struct {
    PyObject_HEAD
    walker w;
    PyObject *classify, *describe, *standin; /* owned; w holds borrowed copies */
    int busy;                                /* a method is running: no re-entry */
} WalkerObject;

static PyObject *
Walker_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *classify, *describe, *standin;
    unsigned long long mask;
    Py_ssize_t limit;
    int footprint, bytes_leaf;
    static char *kwlist[] = {"classify", "describe", "standin", "mask", "limit", "footprint",
                             "bytes_leaf", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOKnpp", kwlist, &classify, &describe,
                                     &standin, &mask, &limit, &footprint, &bytes_leaf)) {
        return NULL;
    }
    WalkerObject *self = (WalkerObject *)type->tp_alloc(type, 0);
    if (!self) {
        return NULL;
    }
    memset(&self->w, 0, sizeof(self->w));
    self->classify = Py_NewRef(classify);
    self->describe = Py_NewRef(describe);
    self->standin = Py_NewRef(standin);
    self->w.classify = classify;
    self->w.describe = describe;
    self->w.standin = standin;
    self->w.mask = (size_t)mask;
    self->w.limit = limit;
    self->w.footprint = footprint;
    self->w.bytes_leaf = bytes_leaf;
    if (walker_init(&self->w, 0) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static void
Walker_dealloc(WalkerObject *self)
{
    walker_free(&self->w);
    Py_XDECREF(self->classify);
    Py_XDECREF(self->describe);
    Py_XDECREF(self->standin);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int
walker_enter(WalkerObject *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "Walker is already running");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static PyObject *
Walker_exclude(WalkerObject *self, PyObject *objs)
{
    if (!PyList_Check(objs)) {
        PyErr_SetString(PyExc_TypeError, "exclude() takes a list");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        if (seen_add(&self->w, PyList_GET_ITEM(objs, i)) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *
Walker_claim(WalkerObject *self, PyObject *obj)
{
    int added = seen_add(&self->w, obj);
    if (added < 0) {
        return NULL;
    }
    return PyBool_FromLong(added);
}

/* objs, privately copied (user code run by the callbacks cannot reach it) */
static PyObject *
private_list(PyObject *objs)
{
    if (!PyList_Check(objs)) {
        PyErr_SetString(PyExc_TypeError, "expected a list");
        return NULL;
    }
    return PyList_GetSlice(objs, 0, PyList_GET_SIZE(objs));
}

static PyObject *
append_int(PyObject *list, long long value)
{
    PyObject *v = PyLong_FromLongLong(value);
    if (!v || PyList_Append(list, v) < 0) {
        Py_XDECREF(v);
        return NULL;
    }
    Py_DECREF(v);
    return list;
}

PyDoc_STRVAR(Walker_sizes_doc,
"sizes(objs) -> list[int]\n\n"
"Deep size of each top-level object (0 for a repeat in objs). Top-level\n"
"objects are never charged to one another: exclude() them first.");

static PyObject *
Walker_sizes(WalkerObject *self, PyObject *objs)
{
    PyObject *tops = private_list(objs);
    if (!tops || walker_enter(self) < 0) {
        Py_XDECREF(tops);
        return NULL;
    }
    PyObject *result = PyList_New(0);
    ptrmap top = {0};
    if (!result || ptrmap_init(&top, 64, 0) < 0) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(tops); i++) {
        PyObject *o = PyList_GET_ITEM(tops, i);
        long long size = 0;
        int added = ptrmap_put(&top, o, NULL);
        if (added < 0 || seen_add(&self->w, o) < 0) {
            goto fail;
        }
        if (added > 0 && (size = walk_from(&self->w, o, 0, NULL)) < 0) {
            goto fail;
        }
        if (!append_int(result, size)) {
            goto fail;
        }
    }
    goto done;
fail:
    if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_CLEAR(result);
done:
    ptrmap_free(&top);
    Py_DECREF(tops);
    self->busy = 0;
    return result;
}

PyDoc_STRVAR(Walker_deep_doc,
"deep(objs, depth) -> list[int]\n\n"
"For each object found at depth, in order: claim it and return its deep size\n"
"and its own flat size ([size, flat, size, flat, ...]), or -1, -1 if it was\n"
"seen before.");

static PyObject *
Walker_deep(WalkerObject *self, PyObject *args)
{
    PyObject *objs;
    Py_ssize_t depth;
    if (!PyArg_ParseTuple(args, "On", &objs, &depth)) {
        return NULL;
    }
    PyObject *items = private_list(objs);
    if (!items || walker_enter(self) < 0) {
        Py_XDECREF(items);
        return NULL;
    }
    PyObject *result = PyList_New(0);
    for (Py_ssize_t i = 0; result && i < PyList_GET_SIZE(items); i++) {
        PyObject *o = PyList_GET_ITEM(items, i);
        long long size = -1, flat = -1;
        int added = seen_add(&self->w, o);
        if (added < 0 || (added && (size = walk_from(&self->w, o, depth, &flat)) < 0) ||
            !append_int(result, size) || !append_int(result, flat)) {
            Py_CLEAR(result);
        }
    }
    Py_DECREF(items);
    self->busy = 0;
    return result;
}

static PyMethodDef Walker_methods[] = {
    {"exclude", (PyCFunction)Walker_exclude, METH_O,
     "exclude(objs): mark objects as seen without sizing them."},
    {"claim", (PyCFunction)Walker_claim, METH_O,
     "claim(obj) -> bool: mark obj seen; False if it was already."},
    {"sizes", (PyCFunction)Walker_sizes, METH_O, Walker_sizes_doc},
    {"deep", (PyCFunction)Walker_deep, METH_VARARGS, Walker_deep_doc},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject WalkerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "memtrim.engine._objects.Walker",
    .tp_basicsize = sizeof(WalkerObject),
    .tp_dealloc = (destructor)Walker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Walker(classify, describe, standin, mask, limit, footprint, bytes_leaf)\n\n"
              "The seen-set of one sizing call, shared by its sizes() and deep() calls.",
    .tp_methods = Walker_methods,
    .tp_new = Walker_new,
};

/* ---- census() ------------------------------------------------------------- */

typedef struct {
    ptrmap *seen;
    stack *todo;
    int error;
} untracked_ctx;

/* tp_traverse visitor: collect referents the GC does not track (ints, strs,
 * atomic tuples...), which gc.get_objects() never lists. */
static int
visit_untracked(PyObject *o, void *arg)
{
    untracked_ctx *ctx = arg;
    if (PyObject_GC_IsTracked(o)) {
        return 0;
    }
    int added = ptrmap_put(ctx->seen, o, NULL);
    if (added < 0 || (added && stack_push_ref(ctx->todo, o, 0, 0) < 0)) {
        ctx->error = 1;
        return -1;
    }
    return 0;
}

/* Per-type rows accumulated in C and turned into a dict once at the end:
 * building Python ints per object would dominate the run time. */
typedef struct {
    PyTypeObject *type;  /* owned */
    sizeof_rule rule;
    unsigned long long count, total, largest;
} row;

typedef struct {
    ptrmap index;   /* type -> row number + 1 */
    row *rows;
    size_t len, cap;
} tally;

static void
tally_free(tally *t)
{
    ptrmap_free(&t->index);
    for (size_t i = 0; i < t->len; i++) {
        Py_DECREF(t->rows[i].type);
        Py_XDECREF(t->rows[i].rule.base);
    }
    PyMem_Free(t->rows);
}

/* sys.getsizeof (never a __sizeof__ written in Python: sizeof_rule), plus
 * the values storage of an instance whose attributes live there (3.11+, no
 * __dict__ built): the same bytes asizeof charges to the instance and its
 * "__dict__ (inline values)". Runs no Python code. */
static int
count(tally *t, PyObject *o)
{
    void *slot = NULL;
    size_t i;
    if (ptrmap_has(&t->index, Py_TYPE(o), &slot)) {
        i = (size_t)slot - 1;
    }
    else {
        if (t->len == t->cap) {
            size_t cap = t->cap ? t->cap * 2 : 256;
            row *rows = PyMem_Realloc(t->rows, cap * sizeof(row));
            if (!rows) {
                return -1;
            }
            t->rows = rows;
            t->cap = cap;
        }
        i = t->len++;
        t->rows[i] = (row){(PyTypeObject *)Py_NewRef(Py_TYPE(o)), {NULL, 0}, 0, 0, 0};
        sizeof_rule_for(Py_TYPE(o), &t->rows[i].rule);
        if (ptrmap_put(&t->index, Py_TYPE(o), (void *)(i + 1)) < 0) {
            return -1;
        }
    }
    size_t size = sizeof_by_rule(o, &t->rows[i].rule);
    inline_values iv;
    if (read_inline_values(o, &iv)) {
        size += iv.nbytes;
    }
    t->rows[i].count++;
    t->rows[i].total += size;
    if (size > t->rows[i].largest) {
        t->rows[i].largest = size;
    }
    return 0;
}

static PyObject *
tally_dict(tally *t)
{
    PyObject *table = PyDict_New();
    for (size_t i = 0; table && i < t->len; i++) {
        row *r = &t->rows[i];
        PyObject *v = Py_BuildValue("(KKK)", r->count, r->total, r->largest);
        if (!v || PyDict_SetItem(table, (PyObject *)r->type, v) < 0) {
            Py_CLEAR(table);
        }
        Py_XDECREF(v);
    }
    return table;
}

/* Count what todo holds and every untracked object found through it
 * (untracked objects can hold further untracked ones: a tuple of strs). */
static int
drain_untracked(tally *t, untracked_ctx *ctx)
{
    while (ctx->todo->len) {
        PyObject *u = ctx->todo->items[--ctx->todo->len].obj;
        int rc = count(t, u);
        traverseproc trav = Py_TYPE(u)->tp_traverse;
        if (rc == 0 && trav && PyObject_IS_GC(u) && trav(u, visit_untracked, ctx) < 0 &&
            ctx->error) {
            rc = -1;
        }
        Py_DECREF(u);
        if (rc < 0) {
            return -1;
        }
    }
    return 0;
}

static int
census_local(PyObject *value, void *arg)
{
    untracked_ctx *ctx = arg;
    return visit_untracked(value, ctx) < 0 && ctx->error ? -1 : 0;
}

/* A ptrmap of the objects in a list (borrowed keys). */
static int
ptrmap_of_list(ptrmap *m, PyObject *list)
{
    if (ptrmap_init(m, 64, 0) < 0) {
        return -1;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list); i++) {
        if (ptrmap_put(m, PyList_GET_ITEM(list, i), NULL) < 0) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(census_doc,
"census(objs, skip, skip_globals) -> dict[type, (count, bytes, largest)]\n\n"
"Group objs (gc.get_objects()) and every untracked object reachable from\n"
"them, or from the local variables of any thread's frames, through\n"
"untracked objects by type. Objects in skip (a list) are left out, and so\n"
"are the locals of frames whose globals are in skip_globals (a list).\n"
"bytes are sys.getsizeof figures (a __sizeof__ written in Python is never\n"
"called), plus the inline values storage of instances whose __dict__ was\n"
"never built.");

static PyObject *
objects_census(PyObject *self, PyObject *args)
{
    PyObject *objs, *skiplist, *globals_list, *table = NULL;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &objs, &PyList_Type, &skiplist,
                          &PyList_Type, &globals_list)) {
        return NULL;
    }
    ptrmap seen = {0}, skip_globals = {0};
    tally t = {0};
    stack todo = {0};
    untracked_ctx ctx = {&seen, &todo, 0};
    if (ptrmap_of_list(&seen, skiplist) < 0 || ptrmap_of_list(&skip_globals, globals_list) < 0 ||
        ptrmap_init(&t.index, 256, 1) < 0) {
        goto done;
    }
    /* skipped objects (memtrim's own bookkeeping) are marked seen up front */
    Py_ssize_t n = PyList_GET_SIZE(objs);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *o = PyList_GET_ITEM(objs, i);
        int added = ptrmap_put(&seen, o, NULL);
        if (added < 0) {
            goto done;
        }
        if (!added) {
            continue;
        }
        if (count(&t, o) < 0) {
            goto done;
        }
        traverseproc trav = Py_TYPE(o)->tp_traverse;
        if (trav && trav(o, visit_untracked, &ctx) < 0 && ctx.error) {
            goto done;
        }
        if (drain_untracked(&t, &ctx) < 0) {
            goto done;
        }
    }
    /* a running frame does not report its locals to the GC: an untracked
     * tuple held only by a local variable is found here */
    if (for_each_local(&skip_globals, census_local, &ctx) < 0 || drain_untracked(&t, &ctx) < 0) {
        goto done;
    }
    table = tally_dict(&t);
done:
    if (!table && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    stack_clear_refs(&todo);
    ptrmap_free(&seen);
    ptrmap_free(&skip_globals);
    tally_free(&t);
    PyMem_Free(todo.items);
    return table;
}

/* ---- untracked() ---------------------------------------------------------- */

typedef struct {
    untracked_ctx base;
    PyObject *types; /* a tuple of exact types to collect */
} wanted_ctx;

static int
is_wanted(PyObject *types, PyObject *o)
{
    Py_ssize_t n = PyTuple_GET_SIZE(types);
    for (Py_ssize_t i = 0; i < n; i++) {
        if ((PyObject *)Py_TYPE(o) == PyTuple_GET_ITEM(types, i)) {
            return 1;
        }
    }
    return 0;
}

/* Like visit_untracked, but an atom (no GC support: an int, a float) that is
 * not wanted is not even remembered: a list of a million floats costs no
 * seen-set entries. */
static int
visit_wanted(PyObject *o, void *arg)
{
    wanted_ctx *ctx = arg;
    if (PyObject_GC_IsTracked(o) || (!PyObject_IS_GC(o) && !is_wanted(ctx->types, o))) {
        return 0;
    }
    return visit_untracked(o, &ctx->base);
}

PyDoc_STRVAR(untracked_doc,
"untracked(objs, types) -> list\n\n"
"The objects of the exact types in the tuple types that the GC does not\n"
"track (strs, bytes, atomic tuples and dicts) reachable from objs (a list,\n"
"gc.get_objects()) through untracked objects, each once.");

static PyObject *
objects_untracked(PyObject *self, PyObject *args)
{
    PyObject *objs, *types, *out = NULL;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &objs, &PyTuple_Type, &types)) {
        return NULL;
    }
    ptrmap seen = {0};
    stack todo = {0};
    wanted_ctx ctx = {{&seen, &todo, 0}, types};
    if (ptrmap_init(&seen, 1024, 0) < 0 || (out = PyList_New(0)) == NULL) {
        goto fail;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(objs); i++) {
        PyObject *o = PyList_GET_ITEM(objs, i);
        traverseproc trav = Py_TYPE(o)->tp_traverse;
        if (trav && trav(o, visit_wanted, &ctx) < 0 && ctx.base.error) {
            goto fail;
        }
        while (todo.len) {
            PyObject *u = todo.items[--todo.len].obj;
            int rc = 0;
            if (is_wanted(types, u)) {
                rc = PyList_Append(out, u);
            }
            traverseproc t2 = Py_TYPE(u)->tp_traverse;
            if (rc == 0 && t2 && PyObject_IS_GC(u) && t2(u, visit_wanted, &ctx) < 0 &&
                ctx.base.error) {
                rc = -1;
            }
            Py_DECREF(u);
            if (rc < 0) {
                goto fail;
            }
        }
    }
    stack_clear_refs(&todo);
    ptrmap_free(&seen);
    PyMem_Free(todo.items);
    return out;
fail:
    if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_XDECREF(out);
    stack_clear_refs(&todo);
    ptrmap_free(&seen);
    PyMem_Free(todo.items);
    return NULL;
}

/* ---- retained() ----------------------------------------------------------- *
 *
 * What would be freed if obj went away, from reference counts (no heap scan):
 *
 *   R = the members (obj's asizeof set, walked with the sizing rules) plus
 *       every object all of whose references come from R (found greedily:
 *       an object reached from R whose R-references reach its refcount).
 *   A member is held if its refcount exceeds the references it gets from R
 *       (and the one our walk keeps): something outside R refers to it (a
 *       module global, another container, a frame's local, a C static, an
 *       immortal's huge count). What a held object refers to is held too.
 *   The members left would be freed with obj.
 *
 * References are what tp_traverse reports, plus what it leaves out for
 * objects the GC need not see: the str keys of a combined dict and the parts
 * of a code object. A reference nothing reports (an extension's own field)
 * only makes its target look held: the answer errs towards "not retained".
 * No Python code runs after the member walk: every pointer is borrowed from
 * objects the members (kept alive by the walk) or the caller own. */

typedef struct {
    walker *w;           /* its seen-set is the member set (with flat sizes) */
    PyObject *target;
    ptrmap in;           /* object of R -> references it gets from R (+1: members start at 1) */
    ptrmap candidates;   /* object outside R -> references it gets from R so far */
    stack queue;         /* R objects whose references are still to be counted */
    ptrmap held;         /* R objects kept alive by something outside R */
    int error;
} retain_ctx;

typedef int (*edge_fn)(PyObject *to, retain_ctx *ctx);

typedef struct {
    retain_ctx *ctx;
    edge_fn fn;
} edge_visit;

static int
edge_trampoline(PyObject *o, void *arg)
{
    edge_visit *v = arg;
    return v->fn(o, v->ctx);
}

/* Calls fn for every reference o owns that we can see. */
static int
for_each_edge(PyObject *o, edge_fn fn, retain_ctx *ctx)
{
    if (PyCode_Check(o)) { /* not a GC type: no tp_traverse */
        PyCodeObject *c = (PyCodeObject *)o;
        /* the parts Python can see too (_retained._edges): not co_localsplusnames */
        PyObject *parts[] = {c->co_consts,   c->co_names,      c->co_filename,
                             c->co_name,     c->co_qualname,   c->co_linetable,
                             c->co_exceptiontable};
        for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
            if (parts[i] && fn(parts[i], ctx) < 0) {
                return -1;
            }
        }
        return 0;
    }
    traverseproc trav = Py_TYPE(o)->tp_traverse;
    if (!trav || !PyObject_IS_GC(o)) {
        return 0;
    }
    edge_visit v = {ctx, fn};
    if (trav(o, edge_trampoline, &v) < 0) {
        return -1;
    }
#if LAYOUT_SUPPORTED
    /* dict_traverse skips the keys of a combined table of str keys (DICT_KEYS_UNICODE:
     * kind byte 1 at +10 of the keys; a split table's keys belong to its class) */
    if (PyDict_Check(o) && !((PyDictObject *)o)->ma_values &&
        ((const uint8_t *)((PyDictObject *)o)->ma_keys)[10] == 1) {
        Py_ssize_t pos = 0;
        PyObject *key, *value;
        while (PyDict_Next(o, &pos, &key, &value)) {
            if (fn(key, ctx) < 0) {
                return -1;
            }
        }
    }
#endif
    return 0;
}

static inline uintptr_t
get_count(const ptrmap *m, PyObject *o, int *found)
{
    void **slot = ptrmap_slot(m, o);
    *found = slot != NULL;
    return slot ? (uintptr_t)*slot : 0;
}

/* One reference from an R object to `to`. */
static int
count_edge(PyObject *to, retain_ctx *ctx)
{
    int found;
    void **slot = ptrmap_slot(&ctx->in, to);
    if (slot) {
        *slot = (void *)((uintptr_t)*slot + 1);
        return 0;
    }
    uintptr_t n = get_count(&ctx->candidates, to, &found) + 1;
    if ((Py_ssize_t)n >= Py_REFCNT(to)) { /* every reference to it comes from R */
        if (ptrmap_put(&ctx->in, to, (void *)n) < 0 || stack_push(&ctx->queue, to, 0) < 0) {
            goto fail;
        }
        if (found) {
            *ptrmap_slot(&ctx->candidates, to) = (void *)0; /* promoted: not counted twice */
        }
        return 0;
    }
    if (found) {
        *ptrmap_slot(&ctx->candidates, to) = (void *)n;
    }
    else if (ptrmap_put(&ctx->candidates, to, (void *)n) < 0) {
        goto fail;
    }
    return 0;
fail:
    ctx->error = 1;
    return -1;
}

/* A reference from a held object: what it refers to in R is held too. */
static int
hold_edge(PyObject *to, retain_ctx *ctx)
{
    if (to == ctx->target || !ptrmap_has(&ctx->in, to, NULL)) {
        return 0;
    }
    int added = ptrmap_put(&ctx->held, to, NULL);
    if (added < 0 || (added && stack_push(&ctx->queue, to, 0) < 0)) {
        ctx->error = 1;
        return -1;
    }
    return 0;
}

static int
drain(retain_ctx *ctx, edge_fn fn)
{
    while (ctx->queue.len) {
        PyObject *o = ctx->queue.items[--ctx->queue.len].obj;
        if (for_each_edge(o, fn, ctx) < 0 || ctx->error) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(retained_doc,
"retained(obj, classify, describe, standin, mask, limit, footprint, bytes_leaf)\n"
"    -> (retained, reachable, objects)\n\n"
"Walk what obj reaches under the sizing rules (the members; reachable is\n"
"their total), then find from reference counts which members something\n"
"other than obj keeps alive. The rest would be freed with obj: their bytes\n"
"and number (stand-ins for inline values count with their instance, not as\n"
"objects).");

static PyObject *
objects_retained(PyObject *self, PyObject *args)
{
    PyObject *target, *classify, *describe, *standin;
    unsigned long long mask;
    Py_ssize_t limit;
    int footprint, bytes_leaf;
    if (!PyArg_ParseTuple(args, "OOOOKnpp", &target, &classify, &describe, &standin, &mask,
                          &limit, &footprint, &bytes_leaf)) {
        return NULL;
    }
    walker w;
    memset(&w, 0, sizeof(w));
    w.classify = classify;
    w.describe = describe;
    w.standin = standin;
    w.mask = (size_t)mask;
    w.limit = limit;
    w.footprint = footprint;
    w.bytes_leaf = bytes_leaf;
    retain_ctx ctx;
    memset(&ctx, 0, sizeof(ctx));
    ctx.w = &w;
    ctx.target = target;
    PyObject *result = NULL;
    if (walker_init(&w, 1) < 0 || seen_add(&w, target) < 0) {
        goto done;
    }
    long long reachable = walk_from(&w, target, 0, NULL);
    if (reachable < 0) {
        goto done;
    }
    plans_free(&w); /* drops its references to types: counts below are the program's */
    /* from here on no Python code runs */
    if (ptrmap_init(&ctx.in, w.seen.len * 2 + 64, 1) < 0 ||
        ptrmap_init(&ctx.candidates, 1 << 10, 1) < 0 || ptrmap_init(&ctx.held, 1 << 10, 0) < 0) {
        goto nomem;
    }
    for (size_t i = 0; i < w.seen.cap; i++) { /* members: one reference is our walk's */
        PyObject *o = (PyObject *)w.seen.keys[i];
        if (o && (ptrmap_put(&ctx.in, o, (void *)1) < 0 || stack_push(&ctx.queue, o, 0) < 0)) {
            goto nomem;
        }
    }
    if (drain(&ctx, count_edge) < 0) {
        goto nomem;
    }
    for (size_t i = 0; i < w.seen.cap; i++) {
        PyObject *o = (PyObject *)w.seen.keys[i];
        int found;
        if (o && o != target &&
            Py_REFCNT(o) > (Py_ssize_t)get_count(&ctx.in, o, &found)) { /* referred from outside */
            int added = ptrmap_put(&ctx.held, o, NULL);
            if (added < 0 || (added && stack_push(&ctx.queue, o, 0) < 0)) {
                goto nomem;
            }
        }
    }
    if (drain(&ctx, hold_edge) < 0) {
        goto nomem;
    }
    long long freed = 0, nfreed = 0;
    for (size_t i = 0; i < w.seen.cap; i++) {
        PyObject *o = (PyObject *)w.seen.keys[i];
        if (!o || ptrmap_has(&ctx.held, o, NULL)) {
            continue;
        }
        void *owner = NULL;
        int standin_of = ptrmap_has(&w.owners, o, &owner);
        if (standin_of && ptrmap_has(&ctx.held, owner, NULL)) {
            continue;
        }
        freed += (long long)(intptr_t)w.seen.values[i];
        nfreed += !standin_of;
    }
    result = Py_BuildValue("(LLL)", freed, reachable, nfreed);
    goto done;
nomem:
    PyErr_NoMemory();
done:
    ptrmap_free(&ctx.in);
    ptrmap_free(&ctx.candidates);
    ptrmap_free(&ctx.held);
    PyMem_Free(ctx.queue.items);
    walker_free(&w);
    return result;
}

/* ---- path() --------------------------------------------------------------- */

typedef struct {
    ptrmap *parents;  /* child -> parent (roots map to NULL) */
    stack *next;
    PyObject *parent;
    ptrmap *skip;
    int error;
} bfs_ctx;

static int
visit_bfs(PyObject *o, void *arg)
{
    bfs_ctx *ctx = arg;
    if (ptrmap_has(ctx->skip, o, NULL)) {
        return 0;
    }
    int added = ptrmap_put(ctx->parents, o, ctx->parent);
    if (added < 0 || (added && stack_push(ctx->next, o, 0) < 0)) {
        ctx->error = 1;
        return -1;
    }
    return 0;
}

/* The chain [root, ..., o] from the BFS parents (every object on it is alive:
 * reached from a root while we hold the GIL and run no Python code). */
static PyObject *
chain_to(ptrmap *parents, PyObject *target)
{
    PyObject *result = PyList_New(0);
    for (PyObject *o = target; o && result;) {
        if (PyList_Append(result, o) < 0) {
            Py_CLEAR(result);
            break;
        }
        void *parent = NULL;
        ptrmap_has(parents, o, &parent);
        o = parent;
    }
    if (result && PyList_Reverse(result) < 0) {
        Py_CLEAR(result);
    }
    return result;
}

/* One breadth-first search from roots for every object of targets (a list):
 * [chain or None per target]; it stops once all are found. */
static PyObject *
bfs_paths(PyObject *roots, PyObject *targets, PyObject *skiplist)
{
    ptrmap parents, skip, wanted;
    stack cur = {0}, next = {0};
    PyObject *result = NULL;
    Py_ssize_t ntargets = PyList_GET_SIZE(targets), found = 0;
    if (ptrmap_init(&parents, 1 << 16, 1) < 0 || ptrmap_init(&skip, 64, 0) < 0 ||
        ptrmap_of_list(&wanted, targets) < 0) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(skiplist); i++) {
        if (ptrmap_put(&skip, PyList_GET_ITEM(skiplist, i), NULL) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(roots); i++) {
        PyObject *r = PyList_GET_ITEM(roots, i);
        if (ptrmap_put(&parents, r, NULL) > 0 && stack_push(&cur, r, 0) < 0) {
            PyErr_NoMemory();
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < ntargets; i++) {
        found += ptrmap_has(&parents, PyList_GET_ITEM(targets, i), NULL) ? 1 : 0;
    }
    bfs_ctx ctx = {&parents, &next, NULL, &skip, 0};
    while (found < ntargets && cur.len) {
        next.len = 0;
        for (size_t i = 0; i < cur.len && found < ntargets; i++) {
            PyObject *o = cur.items[i].obj;
            traverseproc trav = Py_TYPE(o)->tp_traverse;
            /* PyObject_IS_GC, not PyType_IS_GC: static types must not be traversed.
             * A target found is gone through too: another target may be
             * reached only through it. */
            if (!trav || !PyObject_IS_GC(o)) {
                continue;
            }
            size_t before = next.len;
            ctx.parent = o;
            if (trav(o, visit_bfs, &ctx) < 0 && ctx.error) {
                PyErr_NoMemory();
                goto done;
            }
            for (size_t k = before; k < next.len; k++) { /* newly reached */
                found += ptrmap_has(&wanted, next.items[k].obj, NULL) ? 1 : 0;
            }
        }
        stack tmp = cur;
        cur = next;
        next = tmp;
    }
    result = PyList_New(ntargets);
    for (Py_ssize_t i = 0; result && i < ntargets; i++) {
        PyObject *t = PyList_GET_ITEM(targets, i);
        PyObject *chain = ptrmap_has(&parents, t, NULL) ? chain_to(&parents, t)
                                                        : Py_NewRef(Py_None);
        if (chain == NULL) {
            Py_CLEAR(result);
            break;
        }
        PyList_SET_ITEM(result, i, chain);
    }
done:
    ptrmap_free(&parents);
    ptrmap_free(&skip);
    ptrmap_free(&wanted);
    PyMem_Free(cur.items);
    PyMem_Free(next.items);
    return result;
}

PyDoc_STRVAR(path_doc,
"path(roots, target, skip) -> list | None\n\n"
"Breadth-first search over tp_traverse from roots; returns the shortest\n"
"chain [root, ..., target] or None. Objects in skip (a list) are not entered.");

static PyObject *
objects_path(PyObject *self, PyObject *args)
{
    PyObject *roots, *target, *skiplist;
    if (!PyArg_ParseTuple(args, "O!OO!", &PyList_Type, &roots, &target, &PyList_Type,
                          &skiplist)) {
        return NULL;
    }
    PyObject *targets = PyList_New(1);
    if (targets == NULL) {
        return NULL;
    }
    PyList_SET_ITEM(targets, 0, Py_NewRef(target));
    PyObject *found = bfs_paths(roots, targets, skiplist);
    Py_DECREF(targets);
    if (found == NULL) {
        return NULL;
    }
    PyObject *chain = Py_NewRef(PyList_GET_ITEM(found, 0));
    Py_DECREF(found);
    return chain;
}

PyDoc_STRVAR(paths_doc,
"paths(roots, targets, skip) -> [list | None]\n\n"
"path() for each object of the list targets, from one search.");

static PyObject *
objects_paths(PyObject *self, PyObject *args)
{
    PyObject *roots, *targets, *skiplist;
    if (!PyArg_ParseTuple(args, "O!O!O!", &PyList_Type, &roots, &PyList_Type, &targets,
                          &PyList_Type, &skiplist)) {
        return NULL;
    }
    return bfs_paths(roots, targets, skiplist);
}

static PyMethodDef methods[] = {
    {"census", objects_census, METH_VARARGS, census_doc},
    {"untracked", objects_untracked, METH_VARARGS, untracked_doc},
    {"retained", objects_retained, METH_VARARGS, retained_doc},
    {"path", objects_path, METH_VARARGS, path_doc},
    {"paths", objects_paths, METH_VARARGS, paths_doc},
    {"frame_values", objects_frame_values, METH_O, frame_values_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrim.engine._objects",
    "Native walkers for memtrim's object sizing, census, retained and why().", -1, methods,
};

PyMODINIT_FUNC
PyInit__objects(void)
{
    PyObject *probe = PyList_New(0);  /* allocated == 0: getsizeof = basic + GC head */
    if (!probe) {
        return NULL;
    }
    size_t size = _PySys_GetSizeOf(probe);
    Py_DECREF(probe);
    if (size == (size_t)-1) {
        return NULL;
    }
    gc_head = size - (size_t)PyList_Type.tp_basicsize;
    str_sizeof = PyUnicode_InternFromString("__sizeof__");
    str_empty = PyUnicode_InternFromString("");
    if (!str_sizeof || !str_empty || PyType_Ready(&WalkerType) < 0) {
        return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (!m) {
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "Walker", (PyObject *)&WalkerType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
