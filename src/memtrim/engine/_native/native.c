/* Native allocations: the C allocator of every loaded library.
 *
 * How: we rewrite the entries of malloc, calloc, realloc, reallocarray, free,
 * posix_memalign, aligned_alloc, memalign, valloc, pvalloc, mmap, mmap64,
 * munmap, mremap, dlopen and dlclose in the global offset table (GOT) of
 * every loaded object, so that its calls come here; ours call the real
 * functions.  Objects loaded later are patched when dlopen returns.
 *
 * Why the GOT, not LD_PRELOAD: memtrim also profiles in process (@profile,
 * python -m memtrim, track()), long after the program started, so it cannot
 * count on being preloaded; and when the hooks come off, the GOT entries go
 * back to the real functions: nothing stays installed.  Why not
 * PyMem_SetAllocator alone: C libraries (Pillow, libxml2, sqlite, BLAS) call
 * malloc directly.
 *
 * What is not patched: our own engine and sampler (their malloc is the real
 * one: the hooks below call it), the dynamic loader (its internal allocations
 * do not go through a GOT) and the vDSO.  libc is patched: glibc routes its
 * own malloc calls (strdup, fopen's buffers) through its GOT so that an
 * interposed malloc sees them, and so do we.  Allocations made inside libc
 * without its GOT (thread stacks, malloc's own arenas and mmaps) are not
 * seen here; they show in the RSS breakdown.
 *
 * Counting once.  Python's allocators (PyMem_RawMalloc calls malloc) and
 * numpy's buffers are already counted by heap.c's domain hooks, which set
 * mt_guard while they call the original allocator: a hook entered with it
 * set passes straight through.  So a block is counted by whoever sees it
 * first, and only once.
 *
 * The hooks run in any thread, with or without the GIL, possibly in a signal
 * handler or a forked child.  They call no Python API but PyGILState_Check
 * (which reads a thread-local), allocate nothing of their own but the
 * accounting's tables (through the real allocator), and take only heap.c's
 * locks and region_lock below, all reset in a forked child.  mt_guard is held
 * for the whole hook: a signal handler that allocates while this thread is
 * inside one passes through uncounted instead of re-entering a lock.
 *
 * Anonymous mappings are kept in a sorted table of regions, because munmap
 * and mremap may cut any part of one: the accounting charges the whole
 * region to the line that mapped it, and a partial unmap re-charges the
 * pieces that remain to the line that unmapped (rare; said in the docs).
 * File-backed mappings are not allocations: they show in the RSS breakdown.
 */
#include "heap.h" /* first: Python.h sets the feature macros (dladdr needs _GNU_SOURCE) */
#include "native.h"

#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
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

static int n_installed;      /* GIL */
static volatile int patching; /* hooks in the GOTs: dlopen patches new objects */
static pthread_mutex_t patch_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t n_objects, n_slots, n_untracked, n_dlopen;

/* ------------------------------------------------------------ the regions */

typedef struct {
    uintptr_t start, end;
} region_t;

#define MAX_REGIONS (1u << 16) /* 1 MiB of address space, touched as used */
static region_t *regions;      /* sorted by start, disjoint */
static size_t nregions;
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
static void region_add(uintptr_t start, uintptr_t end)
{
    if (regions == NULL) {
        void *table = mmap(NULL, MAX_REGIONS * sizeof(region_t), PROT_READ | PROT_WRITE,
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
    regions[i] = (region_t){start, end};
    nregions++;
    mt_heap_native_alloc((void *)start, end - start);
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
        mt_heap_native_take((void *)r.start);
        if (r.start < a) {
            region_add(r.start, a);
            i++;
        }
        if (r.end > b) {
            region_add(b, r.end);
            i++;
        }
    }
}

/* ---------------------------------------------------------------- the hooks */

/* Every hook: with mt_guard set (we are inside an accounting allocator, or
 * in memtrim's own code) call the real function and return.  Otherwise hold
 * mt_guard across the real call and the accounting.  The calls below are to
 * the real functions: this object's own GOT is never patched. */

static void *h_malloc(size_t size)
{
    if (mt_guard) {
        return malloc(size);
    }
    mt_guard++;
    void *p = malloc(size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void *h_calloc(size_t n, size_t size)
{
    if (mt_guard) {
        return calloc(n, size);
    }
    mt_guard++;
    void *p = calloc(n, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, n * size);
    }
    mt_guard--;
    return p;
}

static void h_free(void *ptr)
{
    if (mt_guard || ptr == NULL) {
        free(ptr);
        return;
    }
    mt_guard++;
    mt_heap_native_take(ptr); /* before: once freed, the address may be reused */
    free(ptr);
    mt_guard--;
}

static void *h_realloc(void *ptr, size_t size)
{
    if (mt_guard) {
        return realloc(ptr, size);
    }
    mt_guard++;
    int64_t old = ptr != NULL ? mt_heap_native_take(ptr) : -1;
    void *p = realloc(ptr, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size);
    }
    else if (old >= 0 && size != 0) {
        mt_heap_native_alloc(ptr, (size_t)old); /* failed: the old block is intact */
    }
    mt_guard--;
    return p;
}

static void *h_reallocarray(void *ptr, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return h_realloc(ptr, total);
}

static int h_posix_memalign(void **out, size_t alignment, size_t size)
{
    if (mt_guard) {
        return posix_memalign(out, alignment, size);
    }
    mt_guard++;
    int err = posix_memalign(out, alignment, size);
    if (err == 0 && *out != NULL) {
        mt_heap_native_alloc(*out, size);
    }
    mt_guard--;
    return err;
}

/* The obsolete aligned allocators: called through the real pointers, looked
 * up once, since some libcs warn on (or lack) their declarations. */
typedef void *(*align_fn)(size_t, size_t);
typedef void *(*page_fn)(size_t);
static align_fn real_aligned_alloc, real_memalign;
static page_fn real_valloc, real_pvalloc;

static void *aligned_with(align_fn fn, size_t alignment, size_t size)
{
    if (mt_guard) {
        return fn(alignment, size);
    }
    mt_guard++;
    void *p = fn(alignment, size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void *h_aligned_alloc(size_t alignment, size_t size)
{
    return aligned_with(real_aligned_alloc, alignment, size);
}

static void *h_memalign(size_t alignment, size_t size)
{
    return aligned_with(real_memalign, alignment, size);
}

static void *paged_with(page_fn fn, size_t size)
{
    if (mt_guard) {
        return fn(size);
    }
    mt_guard++;
    void *p = fn(size);
    if (p != NULL) {
        mt_heap_native_alloc(p, size);
    }
    mt_guard--;
    return p;
}

static void *h_valloc(size_t size)
{
    return paged_with(real_valloc, size);
}

static void *h_pvalloc(size_t size)
{
    return paged_with(real_pvalloc, size);
}

static void *h_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    if (mt_guard || !patching) { /* !patching: a pointer handed out by h_dlsym, kept */
        return mmap(addr, len, prot, flags, fd, off);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    void *p = mmap(addr, len, prot, flags, fd, off);
    if (p != MAP_FAILED) {
        uintptr_t a = (uintptr_t)p, b = a + round_up(len);
        if (flags & MAP_FIXED) {
            region_cut(a, b); /* the new mapping replaced what was there */
        }
        if (flags & MAP_ANONYMOUS) {
            region_add(a, b);
        }
    }
    pthread_mutex_unlock(&region_lock);
    mt_guard--;
    return p;
}

static int h_munmap(void *addr, size_t len)
{
    if (mt_guard || !patching) {
        return munmap(addr, len);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    int err = munmap(addr, len);
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
        return mremap(old, old_len, new_len, flags, target);
    }
    mt_guard++;
    pthread_mutex_lock(&region_lock);
    uintptr_t a = (uintptr_t)old;
    size_t i = region_search(a);
    int tracked = i < nregions && regions[i].start <= a; /* moving our own mapping */
    void *p = mremap(old, old_len, new_len, flags, target);
    if (p != MAP_FAILED) {
        if (tracked) {
            region_cut(a, a + round_up(old_len));
        }
        uintptr_t b = (uintptr_t)p;
        if (flags & MREMAP_FIXED) {
            region_cut(b, b + round_up(new_len));
        }
        if (tracked) {
            region_add(b, b + round_up(new_len));
        }
    }
    pthread_mutex_unlock(&region_lock);
    mt_guard--;
    return p;
}

static void patch_all(void);
static void forget_closed(void);

/* dlopen resolves a bare file name against the *calling* object's RUNPATH
 * (glibc reads the caller from its return address): called from here, the
 * caller would be memtrim.  So a bare name is first looked up the way glibc
 * would for the real caller: in its DT_RUNPATH (or DT_RPATH), $ORIGIN
 * expanded. */
static void *open_as(const char *file, int mode, const void *caller);

static void *h_dlopen(const char *file, int mode)
{
    const void *caller = __builtin_return_address(0);
    void *handle = open_as(file, mode, caller);
    if (handle != NULL && patching) {
        __atomic_add_fetch(&n_dlopen, 1, __ATOMIC_RELAXED);
        patch_all(); /* the object and whatever it pulled in */
    }
    return handle;
}

static int h_dlclose(void *handle)
{
    int err = dlclose(handle);
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
    return with_hooks(dlsym(handle, name));
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

static void *try_runpath(const char *file, int mode, struct link_map *map)
{
    const ElfW(Dyn) *path = dynamic_of(map, DT_RUNPATH);
    if (path == NULL) {
        path = dynamic_of(map, DT_RPATH);
    }
    const ElfW(Dyn) *strtab = dynamic_of(map, DT_STRTAB);
    if (path == NULL || strtab == NULL) {
        return NULL;
    }
    const char *dirs = (const char *)fix_address(strtab->d_un.d_ptr, map->l_addr) +
                       path->d_un.d_val;
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
    char candidate[4096];
    while (*dirs) {
        const char *end = strchr(dirs, ':');
        size_t len = end ? (size_t)(end - dirs) : strlen(dirs);
        size_t used = 0;
        for (size_t i = 0; i < len && used < sizeof(candidate) - 1;) {
            if (strncmp(dirs + i, "$ORIGIN", 7) == 0 && i + 7 <= len) {
                used += (size_t)snprintf(candidate + used, sizeof(candidate) - used, "%s", origin);
                i += 7;
            }
            else if (strncmp(dirs + i, "${ORIGIN}", 9) == 0 && i + 9 <= len) {
                used += (size_t)snprintf(candidate + used, sizeof(candidate) - used, "%s", origin);
                i += 9;
            }
            else {
                candidate[used++] = dirs[i++];
            }
        }
        if (used < sizeof(candidate) - 1 && used > 0) {
            snprintf(candidate + used, sizeof(candidate) - used, "/%s", file);
            if (access(candidate, F_OK) == 0) {
                void *handle = dlopen(candidate, mode);
                if (handle != NULL) {
                    return handle;
                }
            }
        }
        dirs += len + (end ? 1 : 0);
    }
    return NULL;
}

static void *open_as(const char *file, int mode, const void *caller)
{
    if (file != NULL && strchr(file, '/') == NULL) {
        Dl_info info;
        struct link_map *map = NULL;
        if (dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) != 0 && map != NULL) {
            void *handle = dlopen(file, mode | RTLD_NOLOAD); /* already loaded: as is */
            if (handle == NULL) {
                handle = try_runpath(file, mode, map);
            }
            if (handle != NULL) {
                return handle;
            }
        }
    }
    return dlopen(file, mode);
}

/* --------------------------------------------------------------- the patcher */

typedef struct {
    const char *name;
    void *hook;
    void *real;
    int ffi_only; /* patched in ctypes and cffi only */
} target_t;

static target_t targets[] = {
    {"malloc", (void *)h_malloc, NULL},
    {"calloc", (void *)h_calloc, NULL},
    {"realloc", (void *)h_realloc, NULL},
    {"reallocarray", (void *)h_reallocarray, NULL},
    {"free", (void *)h_free, NULL},
    {"posix_memalign", (void *)h_posix_memalign, NULL},
    {"aligned_alloc", (void *)h_aligned_alloc, NULL},
    {"memalign", (void *)h_memalign, NULL},
    {"valloc", (void *)h_valloc, NULL},
    {"pvalloc", (void *)h_pvalloc, NULL},
    {"mmap", (void *)h_mmap, NULL},
    {"mmap64", (void *)h_mmap, NULL},
    {"munmap", (void *)h_munmap, NULL},
    {"mremap", (void *)h_mremap, NULL},
    {"dlopen", (void *)h_dlopen, NULL},
    {"dlclose", (void *)h_dlclose, NULL},
    {"dlsym", (void *)h_dlsym, NULL, 1},
};
#define NALLOCATORS 14 /* the first ones: what dlsym hands our hooks out for */

static void *with_hooks(void *found)
{
    if (found != NULL && patching) {
        for (size_t i = 0; i < NALLOCATORS; i++) {
            if (found == targets[i].real && targets[i].hook != NULL) {
                return targets[i].hook;
            }
        }
    }
    return found;
}
#define NTARGETS (sizeof(targets) / sizeof(targets[0]))

static int resolve_reals(void)
{
    for (size_t i = 0; i < NTARGETS; i++) {
        targets[i].real = dlsym(RTLD_DEFAULT, targets[i].name);
    }
    real_aligned_alloc = (align_fn)targets[6].real;
    real_memalign = (align_fn)targets[7].real;
    real_valloc = (page_fn)targets[8].real;
    real_pvalloc = (page_fn)targets[9].real;
    /* one we cannot call through is one we must not hook */
    for (size_t i = 6; i < 10; i++) {
        if (targets[i].real == NULL) {
            targets[i].hook = NULL;
        }
    }
    return targets[0].real != NULL && targets[4].real != NULL ? 0 : -1;
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

static const char *own_name; /* this extension's file: never patched */

static int skip_object(const char *name)
{
    if (name == NULL) {
        return 1;
    }
    if (own_name != NULL && strcmp(name, own_name) == 0) {
        return 1;
    }
    /* the loader, the vDSO, and memtrim's own sampler thread's library */
    return strstr(name, "/ld-linux") != NULL || strstr(name, "/ld-musl") != NULL ||
           strstr(name, "linux-vdso") != NULL || strstr(name, "linux-gate") != NULL ||
           strstr(name, "memtrim/engine/_sampler") != NULL ||
           strstr(name, "memtrim/engine/_objects") != NULL;
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

typedef struct {
    int restore; /* put the real functions back instead */
} pass_t;

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
                write_slot(o, slot, t->real);
            }
        }
        else if (now != t->hook) {
            write_slot(o, slot, t->hook);
            n_slots++;
            *patched = 1;
        }
    }
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    pass_t *pass = data;
    if (skip_object(info->dlpi_name)) {
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

/* Objects are identified by load address and the loader's count of loads: a
 * pass does nothing when nothing was loaded since the last one. */
static unsigned long long seen_adds = (unsigned long long)-1;

static int adds_of(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)size;
    *(unsigned long long *)data = info->dlpi_adds;
    return 1;
}

static void patch_all(void)
{
    /* any thread (dlopen's hook): serialize passes; mt_guard, because the
     * loader's functions may allocate */
    mt_guard++;
    pthread_mutex_lock(&patch_lock);
    unsigned long long adds = 0;
    dl_iterate_phdr(adds_of, &adds);
    if (adds != seen_adds) {
        pass_t pass = {0};
        dl_iterate_phdr(patch_object, &pass);
        seen_adds = adds;
    }
    pthread_mutex_unlock(&patch_lock);
    mt_guard--;
}

static void forget_closed(void)
{
    /* an object loaded again after dlclose may get the same count of loads
     * back only if nothing else loads: cheap to just pass again */
    pthread_mutex_lock(&patch_lock);
    seen_adds = (unsigned long long)-1;
    pthread_mutex_unlock(&patch_lock);
}

static void restore_all(void)
{
    mt_guard++;
    pthread_mutex_lock(&patch_lock);
    pass_t pass = {1};
    dl_iterate_phdr(patch_object, &pass);
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
    if (n_installed++ > 0) {
        return 0;
    }
    if (own_name == NULL) {
        Dl_info info;
        if (dladdr((void *)mt_native_install, &info) != 0 && info.dli_fname != NULL) {
            own_name = strdup(info.dli_fname);
        }
    }
    if (targets[0].real == NULL && resolve_reals() < 0) {
        n_installed--;
        PyErr_SetString(PyExc_RuntimeError, "cannot find the C allocator's functions");
        return -1;
    }
    n_objects = n_slots = n_untracked = n_dlopen = 0;
    patching = 1;
    patch_all();
    return 0;
}

void mt_native_uninstall(void)
{
    if (n_installed == 0 || --n_installed > 0) {
        return;
    }
    patching = 0;
    restore_all();
    /* the regions' bytes went with the heap's accounting; forget them too */
    pthread_mutex_lock(&region_lock);
    nregions = 0;
    pthread_mutex_unlock(&region_lock);
}

int mt_native_installed(void)
{
    return n_installed > 0;
}

void mt_native_after_fork(void)
{
    pthread_mutex_t fresh = PTHREAD_MUTEX_INITIALIZER;
    patch_lock = fresh;
    region_lock = fresh;
}

void mt_native_stats(uint64_t out[4])
{
    out[0] = n_objects;
    out[1] = n_slots;
    out[2] = n_untracked;
    out[3] = n_dlopen;
}
