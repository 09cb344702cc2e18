/* memtrim.engine._objects: the hot loops of object sizing, census and why().
 *
 * Thin on purpose: three functions that walk the object graph and return
 * plain data (ints, lists, dicts). All policy (which referents count, names,
 * grouping, rendering) stays in Python (memtrim.analysis.*): sizes() asks
 * Python once per type how to size its objects, and sizes exact builtin
 * containers, scalars and plain instances itself.
 *
 * Threading: every function runs with the GIL held and never releases it, so
 * the graph cannot change under us except through code we call ourselves:
 * the `classify` and `describe` callbacks of sizes() and a user-defined
 * __sizeof__ in census(). Those can run arbitrary Python code (a mapping's
 * items(), a metaclass __dir__, a WeakValueDictionary dropping entries), so
 * nothing we keep across them is borrowed: every entry of a work stack owns a
 * reference, every object in the seen-set of sizes() is kept alive by a
 * reference we own until the call ends (so its address cannot be reused by a
 * new object and wrongly skipped), and the types of census rows are owned.
 * Borrowed pointers are only used between two such calls.
 *
 * Recursion: none. Deep structures (a million-long linked list) are walked
 * with explicit heap-allocated stacks; tp_traverse is only used one level at a
 * time through visit callbacks that push onto those stacks.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
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

/* ---- a set (and map) of pointers, open addressing ------------------------ */

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
 * them roughly in allocation order. Keep that locality: addresses within one
 * window of cap * 16 bytes go to consecutive slots (no two collide), and each
 * window starts at a pseudo-random offset (Fibonacci hashing of its number).
 * A random hash of every pointer costs a cache miss per lookup instead. */
static inline size_t
ptr_hash(const ptrmap *m, uintptr_t k)
{
    uint64_t slot = (uint64_t)k >> 4;
    uint64_t window = slot >> (64 - m->shift);
    return (size_t)((slot + ((window * 0x9E3779B97F4A7C15ULL) >> m->shift)) & (m->cap - 1));
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

/* ---- instance layout: mirror of memtrim.analysis._layout --------------------
 *
 * Since 3.11 an instance of an ordinary class keeps its attributes in a values
 * array and builds a dict only when asked (and then keeps it). We read the
 * interpreter's fields, never asking. The reads below are the same as
 * _layout's, word for word, so the C walk and the Python fallback agree
 * (64-bit default builds of 3.11-3.13; anything else goes through Python):
 *
 *   3.11: obj - 3 words: dict pointer; obj - 4 words: values pointer.
 *   3.12: obj - 3 words: dict pointer, or values pointer - 1 (tagged, bit 0);
 *         a prefix before the values stores its size in its last byte.
 *   3.13: values inside the object at tp_basicsize: 4-byte header (capacity,
 *         size, embedded, valid), then capacity slots; dict at obj - 3 words.
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
    size_t nbytes;          /* the values storage, as _layout._values_nbytes */
} inline_values;

#if LAYOUT_SUPPORTED
static inline uintptr_t
word_at(const char *p)
{
    return *(const uintptr_t *)p;
}
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
    if (!values) {
        return 0;
    }
    const char *keys = (const char *)((PyHeapTypeObject *)tp)->ht_cached_keys;
    if (!keys || (uint8_t)keys[10] != 2) {
        return 0;
    }
    size_t usable = word_at(keys + 16), nentries = word_at(keys + 24);
    size_t slots = usable + nentries;
    iv->entries = keys + 32 + ((size_t)1 << (uint8_t)keys[9]);
    iv->values = (PyObject **)values;
#if PY_VERSION_HEX < 0x030C0000
    iv->nbytes = slots * 8;
#elif PY_VERSION_HEX < 0x030D0000
    iv->nbytes = (uint8_t)values[-1] + slots * 8;
#else
    size_t capacity = (uint8_t)values[-8];
    nentries = nentries < capacity ? nentries : capacity;
    iv->nbytes = 8 + capacity * 8 + (capacity + 7) / 8 * 8;
    (void)slots;
#endif
    iv->nentries = nentries;
    return 1;
#else
    (void)o;
    (void)iv;
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

/* ---- sizes() -------------------------------------------------------------- */

/* How the objects of one type are sized, decided once per type and call by
 * the Python `classify` callback (memtrim.analysis.sizing.native_plan). */
typedef struct {
    int native;              /* 0: ask describe() about every object of the type */
    Py_ssize_t const_size;   /* sys.getsizeof of every instance, or -1: ask each */
    Py_ssize_t nslots;
    Py_ssize_t *offsets;     /* __slots__ members, in _kinds._slot_refs order */
} plan;

typedef struct {
    PyObject *classify;  /* classify(obj) -> None | (const_size, member descriptors) */
    PyObject *describe;  /* describe(obj, depth) -> (flat, [referents]) */
    size_t mask;
    Py_ssize_t limit;    /* < 0: unlimited */
    int fast;            /* size builtins and plain instances here */
    int bytes_leaf;      /* bytes has no referent that counts (its class is ignored) */
    ptrmap seen;         /* objects sized (or claimed) in this call */
    objvec held;         /* a reference to every object in `seen` */
    stack work;          /* each entry owns a reference */
    ptrmap plan_index;   /* type -> index + 1 in plans */
    plan *plans;
    size_t nplans, plans_cap;
    objvec plan_types;   /* keeps the types of plan_index alive */
} walker;

/* Exact builtin types sized here. Their rules must match
 * memtrim.analysis._kinds: flat = sys.getsizeof rounded to the alignment;
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

/* Size of the GC header sys.getsizeof adds to GC objects; measured once at
 * import (PyGC_Head is not public in 3.13). Set before any call, read-only
 * afterwards. */
static size_t gc_head = 0;

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

static inline long long
aligned(const walker *w, size_t size)
{
    return (long long)((size + w->mask) & ~w->mask);
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
 * Must be asked before the walk takes a reference of its own. */
static inline int
unshared(PyObject *o)
{
    return Py_REFCNT(o) == 1 && Py_TYPE(o)->tp_weaklistoffset == 0;
}

/* 1 if o was not seen before (it is now, and kept alive), 0 if it was, -1 on error. */
static inline int
seen_add(walker *w, PyObject *o)
{
    int added = ptrmap_put(&w->seen, o, NULL);
    if (added > 0 && objvec_push(&w->held, o) < 0) {
        return -1;
    }
    return added;
}

/* Leaves are sized on discovery (they have no referents, so the order does
 * not matter); everything else is pushed and sized when popped. */
static inline int
visit_child(walker *w, PyObject *c, Py_ssize_t depth, long long *total)
{
    if (is_leaf(w, Py_TYPE(c))) {
        if (!unshared(c)) {
            int added = seen_add(w, c);
            if (added <= 0) {
                return added;
            }
        }
        size_t size = fast_sizeof(c);
        if (UNLIKELY(size == (size_t)-1)) {
            return -1;
        }
        *total += aligned(w, size);
        return 0;
    }
    return stack_push_ref(&w->work, c, depth, !unshared(c));
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
 * names and values), its class, its __slots__ values. Returns 1 when the
 * object has to go to describe() after all. Runs no Python code. */
static int
walk_instance(walker *w, PyObject *o, const plan *p, Py_ssize_t depth, long long *total)
{
    size_t size = (size_t)p->const_size;
    if (p->const_size < 0) {
        size = _PySys_GetSizeOf(o);
        if (size == (size_t)-1) {
            PyErr_Clear();
            return 1;
        }
    }
    *total += aligned(w, size);
    if (!follows(w, depth)) {
        return 0;
    }
    size_t mark = w->work.len;
    inline_values iv;
    if (read_inline_values(o, &iv)) {
        *total += aligned(w, iv.nbytes);
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

static int
walk_one(walker *w, PyObject *o, Py_ssize_t depth, long long *total)
{
    PyTypeObject *t = Py_TYPE(o);
    if (w->fast) {
        if (is_leaf(w, t) || is_builtin_container(t)) {
            size_t size = fast_sizeof(o);
            if (size == (size_t)-1) {
                return -1;
            }
            *total += aligned(w, size);
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
            int rc = walk_instance(w, o, p, depth, total);
            if (rc <= 0) {
                return rc;
            }
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
    *total += flat;
    /* Every referent gets a reference of its own on the stack; they always
     * go through the seen-set (the list itself holds a second reference). */
    int rc = 0;
    for (Py_ssize_t i = PyList_GET_SIZE(refs) - 1; i >= 0 && rc == 0; i--) {
        rc = stack_push_ref(&w->work, PyList_GET_ITEM(refs, i), depth + 1, 1);
    }
    Py_DECREF(res);
    return rc;
}

static long long
walk_top(walker *w, PyObject *top, int *error)
{
    long long total = 0;
    if (stack_push_ref(&w->work, top, 0, 0) < 0) {
        goto fail;
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
        int rc = walk_one(w, f.obj, f.depth, &total);
        Py_DECREF(f.obj);
        if (rc < 0) {
            goto fail;
        }
    }
    return total;
fail:
    stack_clear_refs(&w->work);
    *error = 1;
    return 0;
}

PyDoc_STRVAR(sizes_doc,
"sizes(objs, classify, describe, mask, limit, fast, bytes_leaf) -> list[int]\n\n"
"Deep size of each object in objs (0 for repeats), sharing one seen-set.");

static PyObject *
objects_sizes(PyObject *self, PyObject *args)
{
    PyObject *objs, *classify, *describe;
    unsigned long long mask;
    Py_ssize_t limit;
    int fast, bytes_leaf;
    if (!PyArg_ParseTuple(args, "O!OOKnpp", &PyList_Type, &objs, &classify, &describe, &mask,
                          &limit, &fast, &bytes_leaf)) {
        return NULL;
    }
    walker w;
    memset(&w, 0, sizeof(w));
    w.classify = classify;
    w.describe = describe;
    w.mask = (size_t)mask;
    w.limit = limit;
    w.fast = fast;
    w.bytes_leaf = bytes_leaf;
    /* a private copy: user code run by the callbacks cannot reach it */
    PyObject *tops = PyList_GetSlice(objs, 0, PyList_GET_SIZE(objs));
    PyObject *result = PyList_New(0);
    ptrmap top = {0};
    int error = 0;
    if (!tops || !result || ptrmap_init(&w.seen, 1 << 16, 0) < 0 ||
        ptrmap_init(&w.plan_index, 64, 1) < 0 || ptrmap_init(&top, 64, 0) < 0) {
        goto fail;
    }
    /* Top-level objects are never charged to one another (Pympler's exclude_refs). */
    Py_ssize_t n = PyList_GET_SIZE(tops);
    for (Py_ssize_t i = 0; i < n; i++) {
        if (seen_add(&w, PyList_GET_ITEM(tops, i)) < 0) {
            goto fail;
        }
    }
    for (Py_ssize_t i = 0; i < n && !error; i++) {
        PyObject *o = PyList_GET_ITEM(tops, i);
        long long size = 0;
        int added = ptrmap_put(&top, o, NULL);
        if (added < 0) {
            goto fail;
        }
        if (added > 0) {
            size = walk_top(&w, o, &error);
        }
        PyObject *value = error ? NULL : PyLong_FromLongLong(size);
        if (!value || PyList_Append(result, value) < 0) {
            error = 1;
        }
        Py_XDECREF(value);
    }
    if (error) {
        goto fail;
    }
    goto done;
fail:
    if (!PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    Py_CLEAR(result);
done:
    stack_clear_refs(&w.work);
    PyMem_Free(w.work.items);
    ptrmap_free(&top);
    ptrmap_free(&w.seen);
    plans_free(&w);
    Py_XDECREF(tops);
    objvec_free(&w.held); /* last: may run finalizers of objects user code dropped */
    return result;
}

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
    PyTypeObject *type;  /* owned: a user __sizeof__ could drop the last instance */
    unsigned long long count, total, largest;
} row;

typedef struct {
    ptrmap index;   /* type -> row number + 1 */
    row *rows;
    size_t len, cap;
} tally;

/* sys.getsizeof, plus the values storage of an instance whose attributes
 * live there (3.11+, no __dict__ built): the same bytes asizeof charges to
 * the instance and its "__dict__ (inline values)". May run a user __sizeof__. */
static int
count(tally *t, PyObject *o)
{
    size_t size = _PySys_GetSizeOf(o);
    if (size == (size_t)-1) {
        /* a raising __sizeof__: count the object, charge its basic size */
        PyErr_Clear();
        size = (size_t)Py_TYPE(o)->tp_basicsize;
    }
    inline_values iv;
    if (read_inline_values(o, &iv)) {
        size += iv.nbytes;
    }
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
        t->rows[i] = (row){(PyTypeObject *)Py_NewRef(Py_TYPE(o)), 0, 0, 0};
        if (ptrmap_put(&t->index, Py_TYPE(o), (void *)(i + 1)) < 0) {
            return -1;
        }
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

PyDoc_STRVAR(census_doc,
"census(objs, skip) -> dict[type, (count, bytes, largest)]\n\n"
"Group objs (gc.get_objects()) and every untracked object reachable from\n"
"them through untracked objects by type. Objects in skip (a list) are left\n"
"out. bytes are sys.getsizeof figures, plus the inline values storage of\n"
"instances whose __dict__ was never built.");

static PyObject *
objects_census(PyObject *self, PyObject *args)
{
    PyObject *objs, *skiplist, *table = NULL;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &objs, &PyList_Type, &skiplist)) {
        return NULL;
    }
    ptrmap seen = {0};
    tally t = {0};
    stack todo = {0};
    untracked_ctx ctx = {&seen, &todo, 0};
    if (ptrmap_init(&seen, 1 << 16, 0) < 0 || ptrmap_init(&t.index, 256, 1) < 0) {
        goto done;
    }
    /* skipped objects (memtrim's own bookkeeping) are marked seen up front */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(skiplist); i++) {
        if (ptrmap_put(&seen, PyList_GET_ITEM(skiplist, i), NULL) < 0) {
            goto done;
        }
    }
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
        /* untracked objects can hold further untracked ones (a tuple of strs);
         * each entry of todo owns a reference (count() may run user code) */
        while (todo.len) {
            PyObject *u = todo.items[--todo.len].obj;
            int rc = count(&t, u);
            trav = Py_TYPE(u)->tp_traverse;
            if (rc == 0 && trav && PyObject_IS_GC(u) && trav(u, visit_untracked, &ctx) < 0 &&
                ctx.error) {
                rc = -1;
            }
            Py_DECREF(u);
            if (rc < 0) {
                goto done;
            }
        }
    }
    table = tally_dict(&t);
done:
    if (!table && !PyErr_Occurred()) {
        PyErr_NoMemory();
    }
    stack_clear_refs(&todo);
    ptrmap_free(&seen);
    ptrmap_free(&t.index);
    for (size_t i = 0; i < t.len; i++) {
        Py_DECREF(t.rows[i].type);
    }
    PyMem_Free(t.rows);
    PyMem_Free(todo.items);
    return table;
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
    ptrmap parents, skip;
    stack cur = {0}, next = {0};
    PyObject *result = NULL;
    int found = 0;
    if (ptrmap_init(&parents, 1 << 16, 1) < 0 || ptrmap_init(&skip, 64, 0) < 0) {
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
        if (r == target) {
            found = 1;
        }
    }
    bfs_ctx ctx = {&parents, &next, NULL, &skip, 0};
    while (!found && cur.len) {
        next.len = 0;
        for (size_t i = 0; i < cur.len && !found; i++) {
            PyObject *o = cur.items[i].obj;
            traverseproc trav = Py_TYPE(o)->tp_traverse;
            /* PyObject_IS_GC, not PyType_IS_GC: static types must not be traversed */
            if (o == target || !trav || !PyObject_IS_GC(o)) {
                continue;
            }
            ctx.parent = o;
            if (trav(o, visit_bfs, &ctx) < 0 && ctx.error) {
                PyErr_NoMemory();
                goto done;
            }
            found = ptrmap_has(&parents, target, NULL);
        }
        stack tmp = cur;
        cur = next;
        next = tmp;
    }
    if (!found) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = PyList_New(0);
    /* Every object on the chain is alive: reached from a root while we hold
     * the GIL and run no Python code. */
    for (PyObject *o = target; o && result;) {
        if (PyList_Append(result, o) < 0) {
            Py_CLEAR(result);
            break;
        }
        void *parent = NULL;
        ptrmap_has(&parents, o, &parent);
        o = parent;
    }
    if (result && PyList_Reverse(result) < 0) {
        Py_CLEAR(result);
    }
done:
    ptrmap_free(&parents);
    ptrmap_free(&skip);
    PyMem_Free(cur.items);
    PyMem_Free(next.items);
    return result;
}

static PyMethodDef methods[] = {
    {"sizes", objects_sizes, METH_VARARGS, sizes_doc},
    {"census", objects_census, METH_VARARGS, census_doc},
    {"path", objects_path, METH_VARARGS, path_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "memtrim.engine._objects",
    "Native walkers for memtrim's object sizing, census and why().", -1, methods,
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
    return PyModule_Create(&module);
}
