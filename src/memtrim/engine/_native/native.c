/* Native allocations: the C allocator of every loaded library.
 *
 * How: we rewrite the entries of malloc, calloc, realloc, reallocarray, free,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64,
 * munmap, mremap, dlopen and dlclose in the global offset table (GOT) of
 * every loaded object, so that its calls come here; ours call the real
 * functions through pointers (real_*), never through this object's GOT: in a
 * non-PIE executable that takes malloc's address, every reference to malloc,
 * ours included, is the executable's PLT entry, which jumps through the slot
 * we patch.  A slot is patched only if it holds the real function, that PLT
 * entry or a lazy-binding stub of its own object (not a pointer the program
 * set, nor a library's own allocator), and its value is kept to be put back.
 * Objects loaded later are patched when the outermost dlopen returns, once
 * the loader is done with them (an object appears in dl_iterate_phdr before it
 * is relocated: dlopen(RTLD_NOLOAD) waits for that).
 *
 * Why the GOT, not LD_PRELOAD: memtrim also profiles in process (@profile,
 * python -m memtrim, track()), long after the program started, so it cannot
 * count on being preloaded; and when the hooks come off, the GOT entries go
 * back to the real functions: nothing stays installed.  Why not
 * PyMem_SetAllocator alone: C libraries (Pillow, libxml2, sqlite, BLAS) call
 * malloc directly.
 *
 * What is not patched: our own engine, sampler and object walker, the dynamic
 * loader (its internal allocations do not go through a GOT), the vDSO, and an
 * allocator preloaded in libc's place (jemalloc, tcmalloc: its own mmap calls
 * are its arenas, not allocations, and hooking them would re-enter it).  libc
 * is patched: glibc routes its own malloc calls (strdup, fopen's buffers)
 * through its GOT so that an interposed malloc sees them, and so do we.
 * Allocations made inside libc without its GOT (thread stacks, malloc's own
 * arenas and mmaps) are not seen here; they show in the RSS breakdown.
 *
 * Counting once.  Python's allocators (PyMem_RawMalloc calls malloc) and
 * numpy's buffers are already counted by heap.c's domain hooks, which set
 * mt_guard while they call the original allocator: a hook entered with it
 * set passes straight through.  So a block is counted by whoever sees it
 * first, and only once.
 *
 * The hooks run in any thread, with or without the GIL, possibly in a signal
 * handler or a forked child.  They call no Python API but reads of thread
 * states (mt_have_gil, compat.h), allocate nothing of their own but the
 * accounting's tables (through the real allocator), and take only heap.c's
 * locks and region_lock below, all reset in a forked child.  mt_guard is held
 * for the whole hook: a signal handler that allocates while this thread is
 * inside one passes through uncounted instead of re-entering a lock.
 *
 * Anonymous mappings are kept in a sorted table of regions, because munmap
 * and mremap may cut any part of one: the accounting charges the whole
 * region to the line that mapped it, and a partial unmap re-charges the
 * pieces that remain to the line that unmapped (rare; said in the docs).
 * PROT_NONE reservations and file-backed mappings are not allocations: they
 * show in the RSS breakdown if they become resident.
 *
 * Lifetime: once in, the hooks stay until the heap hooks come off, even if
 * the holders that wanted them let go first: a native block allocated under
 * them must be freed under them, or its bytes would stay counted.
 *
 * Fork: heap.c, this file and the call tree take their locks before fork and
 * release them after, in one order (module.c), so the child never inherits a
 * table half-updated by another thread. */
#include "heap.h" /* first: Python.h sets the feature macros (dladdr needs _GNU_SOURCE) */
#include "calltree.h"
#include "elfspan.h"
#include "native.h"
#include "procfs.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#define R_ABS R_X86_64_64
#define SUPPORTED 1
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#define R_ABS R_AARCH64_ABS64
#define SUPPORTED 1
#else
#define SUPPORTED 0
#endif

#if __ELF_NATIVE_CLASS == 64
#define MT_R_SYM ELF64_R_SYM
#define MT_R_TYPE ELF64_R_TYPE
#else
#define MT_R_SYM ELF32_R_SYM
#define MT_R_TYPE ELF32_R_TYPE
#endif

static int n_wanted;          /* holders that asked for the hooks; GIL */
static volatile int patching; /* hooks in the GOTs: dlopen patches new objects */
static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t n_objects, n_slots, n_foreign, n_untracked, n_dlopen;

/* The real functions, resolved once (resolve_reals). */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static void *(*real_valloc)(size_t);
static void *(*real_pvalloc)(size_t);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static void *(*real_dlopen)(const char *, int);
static int (*real_dlclose)(void *);
static void *(*real_dlsym)(void *, const char *);

/* ------------------------------------------------------------ the regions */

typedef struct {
    uintptr_t start, end;
    unsigned lib; /* the library that mapped it */
} region_t;

#define MAX_REGIONS (1u << 16) /* 1 MiB of address space, touched as used */
static region_t *regions;      /* sorted by start, disjoint */
static size_t nregions;
static int64_t regions_bytes;  /* their total; atomic, read without the lock */
static pthread_mutex_t region_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t page_size(void)
{
    static size_t size;
    if (size == 0) {
        long got = sysconf(_SC_PAGESIZE);
        size = got > 0 ? (size_t)got : 4096;
    }
    return size;
}

static uintptr_t round_up(uintptr_t n)
{
    size_t page = page_size();
    return (n + page - 1) & ~(uintptr_t)(page - 1);
}

/* First region that ends after `a`. */
static size_t region_search(uintptr_t a)
{
    size_t lo = 0, hi = nregions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (regions[mid].end <= a) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo;
}

/* region_lock held.  A new anonymous mapping [start, end): charge it. */
static void region_add(uintptr_t start, uintptr_t end, unsigned lib)
{
    if (regions == NULL) {
        void *table = real_mmap(NULL, MAX_REGIONS * sizeof(region_t), PROT_READ | PROT_WRITE,
                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (table == MAP_FAILED) {
            n_untracked++;
            return;
        }
        regions = table;
    }
    if (nregions == MAX_REGIONS) {
        n_untracked++;
        return;
    }
    size_t i = region_search(start);
    memmove(&regions[i + 1], &regions[i], (nregions - i) * sizeof(region_t));
    regions[i] = (region_t){start, end, lib};
    nregions++;
    __atomic_add_fetch(&regions_bytes, (int64_t)(end - start), __ATOMIC_RELAXED);
    mt_heap_native_alloc((void *)start, end - start, lib);
}

/* region_lock held.  [a, b) is no longer mapped anonymously by a tracked
 * mapping: forget what it covers, re-charging the parts of a region left on
 * either side. */
static void region_cut(uintptr_t a, uintptr_t b)
{
    if (nregions == 0) {
        return;
    }
    size_t i = region_search(a);
    while (i < nregions && regions[i].start < b) {
        region_t r = regions[i];
        memmove(&regions[i], &regions[i + 1], (nregions - i - 1) * sizeof(region_t));
        nregions--;
        __atomic_sub_fetch(&regions_bytes, (int64_t)(r.end - r.start), __ATOMIC_RELAXED);
        mt_heap_native_take((void *)r.start);
        if (r.start < a) {
            region_add(r.start, a, r.lib);
            i++;
        }
        if (r.end > b) {
            region_add(b, r.end, r.lib);
            i++;
        }
    }
}

static unsigned lib_of(const void *caller);
#define CALLER lib_of(__builtin_return_address(0))

/* ---------------------------------------------------------------- the hooks */

/* Every hook: with mt_guard set (we are inside an accounting allocator, or
 * in memtrim's own code) call the real function and return.  Otherwise hold
 * mt_guard across the real call and the accounting. */

static void *h_malloc(size_t size)
{
    if (mt_guard) {
        return real_malloc(size);
    }
    mt_guard++;
    void *p = real_malloc(size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size, CALLER);
    }
    mt_guard--;
    return p;
}

static void *h_calloc(size_t n, size_t size)
{
    if (mt_guard) {
        return real_calloc(n, size);
    }
    mt_guard++;
    void *p = real_calloc(n, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, n * size, CALLER); /* no overflow: calloc refused those */
    }
    mt_guard--;
    return p;
}

static void h_free(void *ptr)
{
    if (mt_guard || ptr == NULL) {
        real_free(ptr);
        return;
    }
    mt_guard++;
    mt_heap_native_take(ptr); /* before: once freed, the address may be reused */
    real_free(ptr);
    mt_guard--;
}

static void *realloc_from(void *ptr, size_t size, unsigned lib)
{
    if (mt_guard) {
        return real_realloc(ptr, size);
    }
    mt_guard++;
    int64_t old = ptr != NULL ? mt_heap_native_take(ptr) : -1;
    void *p = real_realloc(ptr, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size, lib);
    }
    else if (old >= 0 && size != 0) {
        mt_heap_native_alloc(ptr, (size_t)old, lib); /* failed: the old block is intact */
    }
    mt_guard--;
    return p;
}

static void *h_realloc(void *ptr, size_t size)
{
    return realloc_from(ptr, size, CALLER);
}

static void *h_reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return realloc_from(ptr, total, CALLER);
}

static int h_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (mt_guard) {
        return real_posix_memalign(out, alignment, size);
    }
    mt_guard++;
    int err = real_posix_memalign(out, alignment, size);
    if (err == 0 && *out != NULL) {
        mt_heap_native_alloc(*out, size, CALLER);
    }
    mt_guard--;
    return err;
}

static void *aligned_with(void *(*fn)(size_t, size_t), size_t alignment, size_t size,
                          unsigned lib)
{
    if (mt_guard) {
        return fn(alignment, size);
    }
    mt_guard++;
    void *p = fn(alignment, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size, lib);
    }
    mt_guard--;
    return p;
}

static void *h_aligned_alloc(size_t alignment, size_t size)
{
    return aligned_with(real_aligned_alloc, alignment, size, CALLER);
}

static void *h_memalign(size_t alignment, size_t size)
{
    return aligned_with(real_memalign, alignment, size, CALLER);
}

static void *paged_with(void *(*fn)(size_t), size_t size, unsigned lib)
{
    if (mt_guard) {
        return fn(size);
    }
    mt_guard++;
    void *p = fn(size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size, lib);
    }
    mt_guard--;
    return p;
}

static void *h_valloc(size_t size)
{
    return paged_with(real_valloc, size, CALLER);
}

static void *h_pvalloc(size_t size)
{
    return paged_with(real_pvalloc, size, CALLER);
}

static void *h_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    /* !patching: a pointer handed out by h_dlsym, kept; mt_own: memtrim's own */
    if (mt_guard || mt_own || !patching) {
        return real_mmap(addr, len, prot, flags, fd, off);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    void *p = real_mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) {
        uintptr_t a = (uintptr_t)p, b = a + round_up(len);
        /* what was there is gone (MAP_FIXED), or was unmapped behind our back */
        region_cut(a, b);
        if ((flags & MAP_ANONYMOUS) && prot != PROT_NONE) { /* not a mere reservation */
            region_add(a, b, CALLER);
        }
    }
    pthread_mutex_unlock(&region_lock);
    mt_guard--;
    return p;
}

static int h_munmap(void *addr, size_t len)
{
    if (mt_guard || !patching) {
        return real_munmap(addr, len);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    int err = real_munmap(addr, len);
    if (err == 0) {
        region_cut((uintptr_t)addr, (uintptr_t)addr + round_up(len));
    }
    pthread_mutex_unlock(&region_lock);
    mt_guard--;
    return err;
}

static void *h_mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *target = NULL;
    if (flags & MREMAP_FIXED) {
        va_list args;
        va_start(args, flags);
        target = va_arg(args, void *);
        va_end(args);
    }
    if (mt_guard || !patching) {
        return real_mremap(old, old_len, new_len, flags, target);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    uintptr_t a = (uintptr_t)old;
    size_t i = region_search(a);
    int tracked = i < nregions && regions[i].start <= a; /* moving our own mapping */
    void *p = real_mremap(old, old_len, new_len, flags, target);
    if (p != MAP_FAILED) {
        if (tracked) {
            region_cut(a, a + round_up(old_len));
        }
        uintptr_t b = (uintptr_t)p;
        region_cut(b, b + round_up(new_len));
        if (tracked) {
            region_add(b, b + round_up(new_len), CALLER);
        }
    }
    pthread_mutex_unlock(&region_lock);
    mt_guard--;
    return p;
}

/* Threads started while the hooks are in: the Python line that started one is
 * handed to it (calltree.c), so that a thread that never runs Python (a BLAS
 * or OpenMP pool) is named with where it came from. */
typedef struct {
    void *(*start)(void *);
    void *arg;
    mt_origin_t origin;
} launch_t;

static int (*real_pthread_create)(pthread_t *, const pthread_attr_t *, void *(*)(void *),
                                  void *);

static void *launch(void *data)
{
    launch_t job = *(launch_t *)data;
    real_free(data);
    mt_tree_origin_set(&job.origin);
    return job.start(job.arg);
}

static int h_pthread_create(pthread_t *thread, const pthread_attr_t *attr,
                            void *(*start)(void *), void *arg)
{
    launch_t *job = NULL;
    mt_origin_t origin;
    if (patching && !mt_guard && mt_tree_origin_here(&origin)) {
        mt_guard++;
        job = real_malloc(sizeof(launch_t));
        mt_guard--;
    }
    if (job == NULL) {
        return real_pthread_create(thread, attr, start, arg);
    }
    *job = (launch_t){start, arg, origin};
    int err = real_pthread_create(thread, attr, launch, job);
    if (err != 0) {
        real_free(job);
    }
    return err;
}

static void patch_all(void);
static void forget_closed(void);
static void *open_as(const char *file, int mode, const void *caller);

/* Only the outermost dlopen of a thread patches: a library's constructor may
 * dlopen another while the loader's lock is held, and patching waits for
 * that lock. */
static MT_TLS int t_dlopen_depth;

static void *h_dlopen(const char *file, int mode)
{
    const void *caller = __builtin_return_address(0);
    t_dlopen_depth++;
    void *handle = open_as(file, mode, caller);
    t_dlopen_depth--;
    if (handle != NULL && patching && t_dlopen_depth == 0) {
        __atomic_add_fetch(&n_dlopen, 1, __ATOMIC_RELAXED);
        patch_all(); /* the object and whatever it pulled in */
    }
    return handle;
}

static int h_dlclose(void *handle)
{
    int err = real_dlclose(handle);
    if (err == 0 && patching) {
        forget_closed();
    }
    return err;
}

static void *with_hooks(void *found);

/* ctypes and cffi call C functions through addresses from dlsym, not through
 * a GOT: `ctypes.CDLL("libc.so.6").malloc` must get our malloc.  Only their
 * dlsym is hooked: dlsym(RTLD_NEXT, ...) answers relative to its caller, and
 * neither of them asks that. */
static void *h_dlsym(void *handle, const char *name)
{
    return with_hooks(real_dlsym(handle, name));
}

/* ------------------------------------------------------------ dlopen's path */

static const ElfW(Dyn) *dynamic_of(struct link_map *map, ElfW(Sxword) tag)
{
    for (const ElfW(Dyn) *d = map->l_ld; d != NULL && d->d_tag != DT_NULL; d++) {
        if (d->d_tag == tag) {
            return d;
        }
    }
    return NULL;
}

static uintptr_t fix_address(uintptr_t value, uintptr_t base)
{
    /* glibc relocates most d_ptr entries in place; a few loaders do not */
    return value < base ? value + base : value;
}

/* `dir` (len bytes, $ORIGIN expanded) + "/" + file into out; 0 if the
 * directory uses a token we do not expand ($LIB, $PLATFORM) or is too long. */
static int path_in(char *out, size_t cap, const char *dir, size_t len, const char *origin,
                   const char *file)
{
    size_t used = 0;
    for (size_t i = 0; i < len;) {
        size_t token = 0;
        if (strncmp(dir + i, "${ORIGIN}", 9) == 0 && i + 9 <= len) {
            token = 9;
        }
        else if (strncmp(dir + i, "$ORIGIN", 7) == 0 && i + 7 <= len &&
                 (i + 7 == len || dir[i + 7] == '/')) {
            token = 7;
        }
        else if (dir[i] == '$') {
            return 0;
        }
        if (token) {
            size_t n = strlen(origin);
            if (used + n >= cap) {
                return 0;
            }
            memcpy(out + used, origin, n);
            used += n;
            i += token;
        }
        else {
            if (used + 1 >= cap) {
                return 0;
            }
            out[used++] = dir[i++];
        }
    }
    size_t n = strlen(file);
    if (used == 0 || used + 1 + n >= cap) {
        return 0;
    }
    out[used++] = '/';
    memcpy(out + used, file, n + 1);
    return 1;
}

/* The first existing file/dir of a ':'-separated list, dlopen'ed. */
static void *open_in(const char *dirs, const char *origin, const char *file, int mode)
{
    char candidate[4096];
    while (dirs != NULL && *dirs) {
        const char *end = strchr(dirs, ':');
        size_t len = end ? (size_t)(end - dirs) : strlen(dirs);
        if (path_in(candidate, sizeof(candidate), dirs, len, origin, file) &&
            access(candidate, F_OK) == 0) {
            void *handle = real_dlopen(candidate, mode);
            if (handle != NULL) {
                return handle;
            }
        }
        dirs += len + (end ? 1 : 0);
    }
    return NULL;
}

/* A bare name, searched as glibc would for the real caller: a caller's
 * DT_RUNPATH after LD_LIBRARY_PATH, a DT_RPATH (without RUNPATH) before it.
 * NULL: leave it to dlopen itself (which then searches as for memtrim, whose
 * engine has neither). */
static void *open_from_paths(const char *file, int mode, struct link_map *map)
{
    const ElfW(Dyn) *runpath = dynamic_of(map, DT_RUNPATH);
    const ElfW(Dyn) *rpath = runpath ? NULL : dynamic_of(map, DT_RPATH);
    const ElfW(Dyn) *strtab = dynamic_of(map, DT_STRTAB);
    if ((runpath == NULL && rpath == NULL) || strtab == NULL) {
        return NULL;
    }
    const char *strs = (const char *)fix_address(strtab->d_un.d_ptr, map->l_addr);
    const char *dirs = strs + (runpath ? runpath : rpath)->d_un.d_val;
    char origin[4096] = "";
    const char *name = map->l_name;
    if (name == NULL || name[0] == '\0') { /* the executable */
        ssize_t n = readlink("/proc/self/exe", origin, sizeof(origin) - 1);
        origin[n > 0 ? n : 0] = '\0';
    }
    else {
        strncpy(origin, name, sizeof(origin) - 1);
    }
    char *slash = strrchr(origin, '/');
    if (slash != NULL) {
        *slash = '\0';
    }
    void *handle = NULL;
    if (runpath != NULL) {
        handle = open_in(getenv("LD_LIBRARY_PATH"), "", file, mode);
    }
    return handle != NULL ? handle : open_in(dirs, origin, file, mode);
}

static void *open_as(const char *file, int mode, const void *caller)
{
    /* setuid programs: the loader ignores $ORIGIN and the environment; so do we */
    if (file != NULL && strchr(file, '/') == NULL && !getauxval(AT_SECURE)) {
        Dl_info info;
        struct link_map *map = NULL;
        if (dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) != 0 && map != NULL) {
            void *handle = real_dlopen(file, mode | RTLD_NOLOAD); /* loaded: as is */
            if (handle == NULL) {
                handle = open_from_paths(file, mode, map);
            }
            if (handle != NULL) {
                return handle;
            }
        }
    }
    return real_dlopen(file, mode);
}

/* -------------------------------------------------------------- libraries
 *
 * Which library made a native allocation: the hook's return address lies in
 * the calling object.  Objects get a small index by name (up to 255; later
 * ones share 0, "not known"), and their address ranges are kept sorted in a
 * table rebuilt after each pass of the patcher and published whole (readers,
 * the hooks, take no lock; a replaced table is leaked: it is small, and a
 * hook may still be reading it). */
typedef struct {
    uintptr_t lo, hi;
    unsigned lib;
} span_t;

typedef struct {
    size_t n;
    span_t s[];
} spans_t;

static spans_t *spans;                 /* atomic pointer */
static char *lib_names[MT_MAX_LIBS];   /* index -> file; patch_lock */
static unsigned nlib_names = 1;

static unsigned lib_of(const void *caller)
{
    const spans_t *t = __atomic_load_n(&spans, __ATOMIC_ACQUIRE);
    if (t == NULL) {
        return 0;
    }
    uintptr_t a = (uintptr_t)caller;
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->s[mid].hi <= a) {
            lo = mid + 1;
        }
        else {
            hi = mid;
        }
    }
    return lo < t->n && t->s[lo].lo <= a ? t->s[lo].lib : 0;
}

static unsigned lib_index(const char *name)
{
    char exe[4096];
    if (name == NULL || name[0] == '\0') {
        ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
        exe[n > 0 ? n : 0] = '\0';
        name = exe;
    }
    for (unsigned i = 1; i < nlib_names; i++) {
        if (strcmp(lib_names[i], name) == 0) {
            return i;
        }
    }
    if (nlib_names == MT_MAX_LIBS) {
        return 0;
    }
    char *copy = strdup(name);
    if (copy == NULL) {
        return 0;
    }
    lib_names[nlib_names] = copy;
    return nlib_names++;
}

typedef struct {
    spans_t *t;
    size_t cap;
} span_list_t;

static int add_span(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    span_list_t *list = data;
    uintptr_t lo, hi;
    if (mt_object_span(info, &lo, &hi) && list->t->n < list->cap) {
        list->t->s[list->t->n++] = (span_t){lo, hi, lib_index(info->dlpi_name)};
    }
    return 0;
}

/* patch_lock held. */
static void rebuild_spans(void)
{
    size_t cap = 1024;
    spans_t *t = real_malloc(sizeof(spans_t) + cap * sizeof(span_t));
    if (t == NULL) {
        return;
    }
    t->n = 0;
    span_list_t list = {t, cap};
    dl_iterate_phdr(add_span, &list);
    for (size_t i = 1; i < t->n; i++) { /* insertion sort: a few hundred objects */
        span_t key = t->s[i];
        size_t j = i;
        for (; j > 0 && t->s[j - 1].lo > key.lo; j--) {
            t->s[j] = t->s[j - 1];
        }
        t->s[j] = key;
    }
    __atomic_store_n(&spans, t, __ATOMIC_RELEASE);
}

const char *mt_native_lib_name(unsigned index)
{
    return index > 0 && index < nlib_names ? lib_names[index] : NULL;
}

/* --------------------------------------------------------------- the patcher */

typedef struct {
    const char *name;
    void *hook;
    void **real;      /* where the real function's address is kept */
    void *canonical;  /* what dlsym(RTLD_DEFAULT) answers (a non-PIE PLT entry) */
    int ffi_only;     /* patched in ctypes and cffi only */
} target_t;

static target_t targets[] = {
    {"malloc", (void *)h_malloc, (void **)&real_malloc, NULL, 0},
    {"calloc", (void *)h_calloc, (void **)&real_calloc, NULL, 0},
    {"realloc", (void *)h_realloc, (void **)&real_realloc, NULL, 0},
    {"reallocarray", (void *)h_reallocarray, NULL, NULL, 0},
    {"free", (void *)h_free, (void **)&real_free, NULL, 0},
    {"posix_memalign", (void *)h_posix_memalign, (void **)&real_posix_memalign, NULL, 0},
    {"aligned_alloc", (void *)h_aligned_alloc, (void **)&real_aligned_alloc, NULL, 0},
    {"memalign", (void *)h_memalign, (void **)&real_memalign, NULL, 0},
    {"valloc", (void *)h_valloc, (void **)&real_valloc, NULL, 0},
    {"pvalloc", (void *)h_pvalloc, (void **)&real_pvalloc, NULL, 0},
    {"mmap", (void *)h_mmap, (void **)&real_mmap, NULL, 0},
    {"mmap64", (void *)h_mmap, NULL, NULL, 0},
    {"munmap", (void *)h_munmap, (void **)&real_munmap, NULL, 0},
    {"mremap", (void *)h_mremap, (void **)&real_mremap, NULL, 0},
    {"dlopen", (void *)h_dlopen, (void **)&real_dlopen, NULL, 0},
    {"dlclose", (void *)h_dlclose, (void **)&real_dlclose, NULL, 0},
    {"pthread_create", (void *)h_pthread_create, (void **)&real_pthread_create, NULL, 0},
    {"dlsym", (void *)h_dlsym, (void **)&real_dlsym, NULL, 1},
};
#define NTARGETS (sizeof(targets) / sizeof(targets[0]))
#define NALLOCATORS 14 /* the first ones: what dlsym hands our hooks out for */

/* The real function of each target and the address every object sees for it. */
static void *real_of(const target_t *t)
{
    return t->real != NULL ? *t->real : t->canonical;
}

static void *with_hooks(void *found)
{
    if (found != NULL && patching) {
        for (size_t i = 0; i < NALLOCATORS; i++) {
            if (targets[i].hook != NULL &&
                (found == real_of(&targets[i]) || found == targets[i].canonical)) {
                return targets[i].hook;
            }
        }
    }
    return found;
}

/* Is `addr` a symbol's definition (not an executable's PLT entry standing
 * for a function defined elsewhere)? */
static int defined_at(void *addr)
{
    Dl_info info;
    const ElfW(Sym) *sym = NULL;
    if (dladdr1(addr, &info, (void **)&sym, RTLD_DL_SYMENT) == 0 || sym == NULL) {
        return 1; /* nothing says otherwise */
    }
    return sym->st_shndx != SHN_UNDEF;
}

typedef struct {
    char **names;
    size_t n, cap;
} names_t;

static int collect_name(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    names_t *names = data;
    if (info->dlpi_name == NULL || info->dlpi_name[0] == '\0' || names->n == names->cap) {
        return 0;
    }
    names->names[names->n] = strdup(info->dlpi_name);
    names->n += names->names[names->n] != NULL;
    return 0;
}

/* The first definition of `name` in load order, skipping PLT entries: with a
 * preloaded allocator, its malloc; else libc's. */
static void *first_definition(const char *name)
{
    char *storage[512];
    names_t names = {storage, 0, 512};
    dl_iterate_phdr(collect_name, &names);
    void *found = NULL;
    for (size_t i = 0; i < names.n; i++) {
        if (found == NULL) {
            void *handle = dlopen(names.names[i], RTLD_NOLOAD | RTLD_LAZY);
            if (handle != NULL) {
                void *p = dlsym(handle, name);
                if (p != NULL && defined_at(p)) {
                    found = p;
                }
                dlclose(handle);
            }
        }
        free(names.names[i]);
    }
    return found;
}

static char *allocator_name; /* the object of the real malloc, if not libc's */

/* GIL held, before any slot is patched. */
static int resolve_reals(void)
{
    for (size_t i = 0; i < NTARGETS; i++) {
        target_t *t = &targets[i];
        void *found = dlsym(RTLD_DEFAULT, t->name);
        t->canonical = found;
        if (found != NULL && !defined_at(found)) {
            found = first_definition(t->name);
        }
        if (t->real != NULL) {
            *t->real = found;
        }
        if (found == NULL) {
            t->hook = NULL; /* one we cannot call through is one we must not hook */
        }
    }
    if (real_malloc == NULL || real_free == NULL || real_mmap == NULL || real_munmap == NULL ||
        real_dlopen == NULL || real_dlclose == NULL || real_realloc == NULL ||
        real_calloc == NULL) {
        return -1;
    }
    Dl_info info;
    if (dladdr((void *)real_malloc, &info) != 0 && info.dli_fname != NULL) {
        const char *base = strrchr(info.dli_fname, '/');
        base = base ? base + 1 : info.dli_fname;
        if (strncmp(base, "libc.so", 7) != 0 && strncmp(base, "libc-", 5) != 0) {
            allocator_name = strdup(info.dli_fname);
        }
    }
    return 0;
}

static const target_t *target_named(const char *name, int ffi)
{
    /* a cheap first test: most imported symbols are not ours */
    switch (name[0]) {
    case 'm': case 'c': case 'r': case 'f': case 'p': case 'a': case 'v': case 'd':
        break;
    default:
        return NULL;
    }
    for (size_t i = 0; i < NTARGETS; i++) {
        if (targets[i].hook != NULL && strcmp(name, targets[i].name) == 0) {
            return targets[i].ffi_only && !ffi ? NULL : &targets[i];
        }
    }
    return NULL;
}

static int is_hook(void *value)
{
    for (size_t i = 0; i < NTARGETS; i++) {
        if (value == targets[i].hook && value != NULL) {
            return 1;
        }
    }
    return 0;
}

static char *own_name; /* this extension's file: never patched */

static int skip_object(const char *name)
{
    if (name == NULL) {
        return 1;
    }
    if ((own_name != NULL && strcmp(name, own_name) == 0) ||
        (allocator_name != NULL && strcmp(name, allocator_name) == 0)) {
        return 1;
    }
    /* the loader, the vDSO, and memtrim's other engine modules */
    return strstr(name, "/ld-linux") != NULL || strstr(name, "/ld-musl") != NULL ||
           strstr(name, "linux-vdso") != NULL || strstr(name, "linux-gate") != NULL ||
           strstr(name, "memtrim/engine/_sampler") != NULL ||
           strstr(name, "memtrim/engine/_objects") != NULL;
}

/* The values slots held before we patched them: put back as they were. */
typedef struct {
    void **slot;
    void *value;
} saved_t;

static saved_t *saved; /* patch_lock */
static size_t nsaved, saved_cap;

static void save_slot(void **slot, void *value)
{
    for (size_t i = nsaved; i-- > 0;) { /* a slot seen again (re-patched after dlclose) */
        if (saved[i].slot == slot) {
            saved[i].value = value;
            return;
        }
    }
    if (nsaved == saved_cap) {
        size_t cap = saved_cap ? saved_cap * 2 : 256;
        saved_t *grown = real_realloc(saved, cap * sizeof(saved_t));
        if (grown == NULL) {
            return;
        }
        saved = grown;
        saved_cap = cap;
    }
    saved[nsaved++] = (saved_t){slot, value};
}

static void *saved_value(void **slot, const target_t *t)
{
    for (size_t i = 0; i < nsaved; i++) {
        if (saved[i].slot == slot) {
            return saved[i].value;
        }
    }
    return real_of(t);
}

/* Where an object's slots live: its loaded segments and its RELRO range (the
 * pages the loader made read-only after relocating: whole pages only). */
typedef struct {
    uintptr_t base;
    int ffi; /* ctypes or cffi: dlsym is hooked too */
    const ElfW(Phdr) *phdr;
    int phnum;
    uintptr_t relro_start, relro_end;
} object_t;

/* The protection a slot's page has now, as far as the headers tell. */
static int page_prot(const object_t *o, uintptr_t page)
{
    if (page >= o->relro_start && page < o->relro_end) {
        return PROT_READ;
    }
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        uintptr_t start = o->base + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && page + page_size() > start && page < start + ph->p_memsz) {
            return ((ph->p_flags & PF_R) ? PROT_READ : 0) |
                   ((ph->p_flags & PF_W) ? PROT_WRITE : 0) |
                   ((ph->p_flags & PF_X) ? PROT_EXEC : 0);
        }
    }
    return PROT_READ | PROT_WRITE;
}

/* Is `value` inside one of the object's own segments (a lazy-binding stub)? */
static int inside(const object_t *o, uintptr_t value)
{
    for (int i = 0; i < o->phnum; i++) {
        const ElfW(Phdr) *ph = &o->phdr[i];
        uintptr_t start = o->base + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && value >= start && value < start + ph->p_memsz) {
            return 1;
        }
    }
    return 0;
}

/* Write `value` into a slot, lifting a read-only page's protection for the
 * time of the write. */
static void write_slot(const object_t *o, void **slot, void *value)
{
    uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(page_size() - 1);
    int prot = page_prot(o, page);
    int lift = !(prot & PROT_WRITE);
    if (lift && mprotect((void *)page, page_size(), prot | PROT_READ | PROT_WRITE) != 0) {
        return;
    }
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    if (lift) {
        mprotect((void *)page, page_size(), prot);
    }
}

static void patch_relocs(const object_t *o, const void *table, size_t size, int rela,
                         const ElfW(Sym) *symtab, const char *strtab, int restore, int *patched)
{
    size_t entry = rela ? sizeof(ElfW(Rela)) : sizeof(ElfW(Rel));
    for (size_t off = 0; off + entry <= size; off += entry) {
        const ElfW(Rel) *r = (const ElfW(Rel) *)((const char *)table + off);
        unsigned type = (unsigned)MT_R_TYPE(r->r_info);
        if (type != R_JUMP_SLOT && type != R_GLOB_DAT && type != R_ABS) {
            continue;
        }
        if (type == R_ABS && (!rela || ((const ElfW(Rela) *)r)->r_addend != 0)) {
            continue; /* symbol + offset: not a pointer to the function */
        }
        size_t sym = MT_R_SYM(r->r_info);
        if (sym == 0) {
            continue;
        }
        const target_t *t = target_named(strtab + symtab[sym].st_name, o->ffi);
        if (t == NULL) {
            continue;
        }
        void **slot = (void **)(o->base + r->r_offset);
        void *now = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (restore) {
            if (is_hook(now)) {
                write_slot(o, slot, saved_value(slot, t));
            }
        }
        else if (now == t->hook) {
            continue;
        }
        else if (now == real_of(t) || now == t->canonical ||
                 (type == R_JUMP_SLOT && inside(o, (uintptr_t)now))) {
            save_slot(slot, now);
            write_slot(o, slot, t->hook);
            n_slots++;
            *patched = 1;
        }
        else {
            n_foreign++; /* the program's own pointer, or the object's own allocator */
        }
    }
}

typedef struct {
    int restore;       /* put the saved values back instead */
    uintptr_t only;    /* patch this object alone (its load address) */
} pass_t;

static int patch_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    pass_t *pass = data;
    if ((!pass->restore && info->dlpi_addr != pass->only) || skip_object(info->dlpi_name)) {
        return 0;
    }
    uintptr_t base = info->dlpi_addr;
    uintptr_t mask = ~(uintptr_t)(page_size() - 1);
    const char *name = info->dlpi_name;
    int ffi = strstr(name, "/_ctypes") != NULL || strstr(name, "/_cffi_backend") != NULL;
    object_t o = {base, ffi, info->dlpi_phdr, info->dlpi_phnum, 0, 0};
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(base + ph->p_vaddr);
        }
        else if (ph->p_type == PT_GNU_RELRO) {
            o.relro_start = (base + ph->p_vaddr) & mask;
            o.relro_end = (base + ph->p_vaddr + ph->p_memsz) & mask;
        }
    }
    if (dyn == NULL) {
        return 0;
    }
    uintptr_t symtab = 0, strtab = 0, jmprel = 0, rel = 0;
    size_t jmprel_size = 0, rel_size = 0;
    int plt_rela = 1, rel_rela = 1;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = dyn->d_un.d_ptr; break;
        case DT_STRTAB: strtab = dyn->d_un.d_ptr; break;
        case DT_JMPREL: jmprel = dyn->d_un.d_ptr; break;
        case DT_PLTRELSZ: jmprel_size = dyn->d_un.d_val; break;
        case DT_PLTREL: plt_rela = dyn->d_un.d_val == DT_RELA; break;
        case DT_RELA: rel = dyn->d_un.d_ptr; rel_rela = 1; break;
        case DT_RELASZ: rel_size = dyn->d_un.d_val; break;
        case DT_REL: rel = dyn->d_un.d_ptr; rel_rela = 0; break;
        case DT_RELSZ: rel_size = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (symtab == 0 || strtab == 0) {
        return 0;
    }
    const ElfW(Sym) *syms = (const ElfW(Sym) *)fix_address(symtab, base);
    const char *strs = (const char *)fix_address(strtab, base);
    int patched = 0;
    if (jmprel != 0) {
        patch_relocs(&o, (const void *)fix_address(jmprel, base), jmprel_size, plt_rela, syms,
                     strs, pass->restore, &patched);
    }
    if (rel != 0) {
        patch_relocs(&o, (const void *)fix_address(rel, base), rel_size, rel_rela, syms, strs,
                     pass->restore, &patched);
    }
    n_objects += (uint64_t)patched;
    return 0;
}

/* The objects patched, by load address (patch_lock); the loader's count of
 * loads and unloads at the last complete pass. */
#define MAX_OBJECTS 4096
static uintptr_t done[MAX_OBJECTS];
static size_t ndone;
static unsigned long long seen_adds = (unsigned long long)-1, seen_subs;

typedef struct {
    uintptr_t base;
    char *name; /* strdup'ed; "" for the executable */
} fresh_t;

typedef struct {
    fresh_t *items;
    size_t n, cap;
    unsigned long long adds, subs;
} fresh_list_t;

static int is_done(uintptr_t base)
{
    for (size_t i = 0; i < ndone; i++) {
        if (done[i] == base) {
            return 1;
        }
    }
    return 0;
}

static int collect_fresh(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    fresh_list_t *list = data;
    list->adds = info->dlpi_adds;
    list->subs = info->dlpi_subs;
    if (is_done(info->dlpi_addr) || skip_object(info->dlpi_name) || list->n == list->cap) {
        return 0;
    }
    char *name = strdup(info->dlpi_name ? info->dlpi_name : "");
    if (name != NULL) {
        list->items[list->n++] = (fresh_t){info->dlpi_addr, name};
    }
    return 0;
}

static int adds_of(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    unsigned long long *out = data;
    out[0] = info->dlpi_adds;
    out[1] = info->dlpi_subs;
    return 1;
}

/* Patch the objects loaded since the last pass.  Any thread; serialized. */
static void patch_all(void)
{
    mt_guard++; /* the loader's and our own allocations here are not the program's */
    pthread_mutex_lock(&patch_lock);
    unsigned long long counts[2] = {0, 0};
    dl_iterate_phdr(adds_of, counts);
    if (!patching || (counts[0] == seen_adds && counts[1] == seen_subs)) {
        pthread_mutex_unlock(&patch_lock);
        mt_guard--;
        return;
    }
    static fresh_t items[MAX_OBJECTS / 8]; /* patch_lock: off the caller's stack */
    fresh_list_t list = {items, 0, MAX_OBJECTS / 8, 0, 0};
    dl_iterate_phdr(collect_fresh, &list);
    int complete = list.n < list.cap;
    for (size_t i = 0; i < list.n; i++) {
        fresh_t *f = &list.items[i];
        /* Relocated yet?  NOLOAD waits for a dlopen in flight in another
         * thread; the executable and its startup libraries are. */
        void *handle = f->name[0] ? real_dlopen(f->name, RTLD_NOLOAD | RTLD_LAZY) : NULL;
        if (f->name[0] == '\0' || handle != NULL) {
            pass_t pass = {0, f->base};
            dl_iterate_phdr(patch_object, &pass);
            if (ndone < MAX_OBJECTS) {
                done[ndone++] = f->base;
            }
        }
        else {
            complete = 0; /* try again at the next dlopen */
        }
        if (handle != NULL) {
            real_dlclose(handle);
        }
        free(f->name);
    }
    if (complete) {
        seen_adds = list.adds;
        seen_subs = list.subs;
    }
    rebuild_spans();
    pthread_mutex_unlock(&patch_lock);
    mt_guard--;
}

static int keep_loaded(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    uintptr_t *live = data;
    for (size_t i = 0; i < ndone; i++) {
        if (done[i] == info->dlpi_addr) {
            live[i] = 1;
        }
    }
    return 0;
}

/* After a dlclose: forget the objects gone, so that one loaded later at the
 * same address is patched. */
static void forget_closed(void)
{
    mt_guard++;
    pthread_mutex_lock(&patch_lock);
    static uintptr_t live[MAX_OBJECTS]; /* patch_lock: off the caller's stack */
    memset(live, 0, sizeof(live));
    dl_iterate_phdr(keep_loaded, live);
    size_t kept = 0;
    for (size_t i = 0; i < ndone; i++) {
        if (live[i]) {
            done[kept++] = done[i];
        }
    }
    ndone = kept;
    seen_adds = (unsigned long long)-1;
    rebuild_spans();
    pthread_mutex_unlock(&patch_lock);
    mt_guard--;
}

static void restore_all(void)
{
    mt_guard++;
    pthread_mutex_lock(&patch_lock);
    patching = 0;
    pass_t pass = {1, 0};
    dl_iterate_phdr(patch_object, &pass);
    ndone = 0;
    nsaved = 0;
    seen_adds = (unsigned long long)-1;
    pthread_mutex_unlock(&patch_lock);
    mt_guard--;
}

/* ---------------------------------------------------------------- lifecycle */

int mt_native_install(void)
{
    if (!SUPPORTED) {
        PyErr_SetString(PyExc_NotImplementedError,
                        "native allocation tracking is not supported on this platform");
        return -1;
    }
    n_wanted++;
    if (patching) {
        return 0;
    }
    if (own_name == NULL) {
        Dl_info info;
        if (dladdr((void *)mt_native_install, &info) != 0 && info.dli_fname != NULL) {
            own_name = strdup(info.dli_fname);
        }
    }
    if (real_malloc == NULL && resolve_reals() < 0) {
        n_wanted--;
        PyErr_SetString(PyExc_RuntimeError, "cannot find the C allocator's functions");
        return -1;
    }
    n_objects = n_slots = n_foreign = n_untracked = n_dlopen = 0;
    patching = 1;
    patch_all();
    return 0;
}

void mt_native_uninstall(void)
{
    if (n_wanted > 0) {
        n_wanted--; /* the hooks stay until the heap hooks go: mt_native_off */
    }
}

void mt_native_off(void)
{
    n_wanted = 0;
    if (!patching) {
        return;
    }
    restore_all();
    /* the regions' bytes go with the heap's accounting; forget them too */
    pthread_mutex_lock(&region_lock);
    nregions = 0;
    regions_bytes = 0;
    pthread_mutex_unlock(&region_lock);
}

/* Called at a new peak too, from inside a hook that may hold region_lock
 * (a mapping that made the peak): never wait for it.  Busy: the resident
 * bytes are taken as the mapped ones. */
void mt_native_maps(uint64_t *mapped, uint64_t *resident)
{
    *mapped = (uint64_t)__atomic_load_n(&regions_bytes, __ATOMIC_RELAXED);
    *resident = *mapped;
    if (pthread_mutex_trylock(&region_lock) != 0) {
        return;
    }
    *resident = 0;
    for (size_t i = 0; i < nregions; i++) {
        *resident += mt_resident(regions[i].start, regions[i].end - regions[i].start);
    }
    pthread_mutex_unlock(&region_lock);
}

int mt_native_installed(void)
{
    return patching;
}

int mt_native_wanted(void)
{
    return n_wanted;
}

/* fork: patch_lock, then region_lock (module.c calls these around heap.c's) */
void mt_native_fork_prepare(void)
{
    pthread_mutex_lock(&patch_lock);
    pthread_mutex_lock(&region_lock);
}

void mt_native_fork_parent(void)
{
    pthread_mutex_unlock(&region_lock);
    pthread_mutex_unlock(&patch_lock);
}

void mt_native_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    patch_lock = fresh;
    region_lock = fresh;
}

void mt_native_stats(uint64_t out[5])
{
    out[0] = n_objects;
    out[1] = n_slots;
    out[2] = n_untracked;
    out[3] = n_dlopen;
    out[4] = n_foreign;
}
