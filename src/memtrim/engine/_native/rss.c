/* The facts of the RSS breakdown, read in C: the kernel's mappings
 * (/proc/self/smaps), pymalloc's statistics and arenas, glibc's mallinfo2 and
 * the hooks' counters, as plain numbers.
 *
 * Why C: the breakdown "at the peak" is read when the heap reaches a new
 * high, from inside the allocation hook that made it (the call tree's
 * on_new_peak), where Python objects must not be made: they would be counted
 * and move the very peak being described.  So this reads into a fixed struct
 * with no allocation of its own (a static buffer for smaps; stdio's buffer
 * for pymalloc's statistics is malloc's, under mt_guard, uncounted).  The
 * sums are plain; what they mean is model/rss.py's business.
 *
 * GIL held (pymalloc's statistics and arenas need it). */
#include "compat.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "heap.h"
#include "native.h"
#include "rss.h"

static PyObject *facts_dict(const mt_rss_facts_t *f);

/* ---------------------------------------------------------------- smaps */

typedef struct {
    uintptr_t start, end;
    int guard;    /* ---p, anonymous */
    int kind;     /* where its Rss goes */
} mapping_t;

enum { K_NONE, K_ANON, K_HEAP, K_STACK, K_LIBRARY, K_FILE };

static char exe_path[4096];

static int classify(const char *name, size_t len, const char *perms, int *guard)
{
    *guard = 0;
    if (len == 0 || (len >= 5 && strncmp(name, "[anon", 5) == 0)) {
        *guard = strncmp(perms, "---", 3) == 0;
        return K_ANON;
    }
    if (len == 6 && strncmp(name, "[heap]", 6) == 0) {
        return K_HEAP;
    }
    if (len == 7 && strncmp(name, "[stack]", 7) == 0) {
        return K_STACK;
    }
    if (name[0] == '/' && strncmp(name, "/dev/zero", 9) != 0) {
        const char *base = name + len;
        while (base > name && base[-1] != '/') {
            base--;
        }
        size_t blen = len - (size_t)(base - name);
        for (size_t i = 0; i + 3 <= blen; i++) {
            if (strncmp(base + i, ".so", 3) == 0) {
                return K_LIBRARY;
            }
        }
        if (exe_path[0] && strlen(exe_path) == len && strncmp(exe_path, name, len) == 0) {
            return K_LIBRARY;
        }
        return K_FILE;
    }
    return K_FILE; /* [vdso], [vvar], shared memory... */
}

static void add_mapping(mt_rss_facts_t *f, const mapping_t *m, const mapping_t *prev,
                        int64_t rss)
{
    f->rss += rss;
    switch (m->kind) {
    case K_STACK:
        f->stacks += rss;
        break;
    case K_LIBRARY:
        f->libraries += rss;
        break;
    case K_FILE:
        f->files += rss;
        break;
    case K_HEAP:
        f->heap += rss;
        f->heap_size += (int64_t)(m->end - m->start);
        f->anonymous += rss;
        break;
    case K_ANON:
        /* a thread's stack: right after its guard page(s) */
        if (prev != NULL && prev->guard && prev->end == m->start &&
            prev->end - prev->start <= 65536) {
            f->stacks += rss;
        }
        else {
            f->anonymous += rss;
        }
        break;
    default:
        break;
    }
}

static int64_t parse_kb(const char *p)
{
    while (*p == ' ' || *p == '\t') {
        p++;
    }
    return strtoll(p, NULL, 10) * 1024;
}

/* One line of smaps: a mapping's header or one of its fields. */
static void smaps_line(mt_rss_facts_t *f, const char *line, size_t len, mapping_t *cur,
                       mapping_t *prev, int64_t *rss, int *have)
{
    if (len > 4 && strncmp(line, "Rss:", 4) == 0) {
        *rss = parse_kb(line + 4);
        return;
    }
    /* a header: "start-end perms offset dev inode [name]" */
    const char *dash = memchr(line, '-', len);
    if (dash == NULL || dash == line || !((line[0] >= '0' && line[0] <= '9') ||
                                          (line[0] >= 'a' && line[0] <= 'f'))) {
        return;
    }
    char *end = NULL;
    uintptr_t start = (uintptr_t)strtoull(line, &end, 16);
    if (end != dash) {
        return;
    }
    uintptr_t stop = (uintptr_t)strtoull(dash + 1, &end, 16);
    if (end == NULL || *end != ' ') {
        return;
    }
    const char *perms = end + 1;
    /* skip perms, offset, dev, inode */
    const char *p = perms;
    const char *limit = line + len;
    for (int field = 0; field < 4 && p < limit; field++) {
        while (p < limit && *p != ' ') {
            p++;
        }
        while (p < limit && *p == ' ') {
            p++;
        }
    }
    size_t name_len = (size_t)(limit - p);
    while (name_len > 0 && (p[name_len - 1] == ' ' || p[name_len - 1] == '\n')) {
        name_len--;
    }
    if (*have) {
        add_mapping(f, cur, prev, *rss);
        *prev = *cur;
    }
    cur->start = start;
    cur->end = stop;
    cur->kind = classify(p, name_len, perms, &cur->guard);
    *rss = 0;
    *have = 1;
}

static int read_smaps(mt_rss_facts_t *f)
{
    static char buf[65536];
    int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    mapping_t cur = {0}, prev = {0};
    int64_t rss = 0;
    int have = 0;
    size_t kept = 0;
    for (;;) {
        ssize_t n = read(fd, buf + kept, sizeof(buf) - 1 - kept);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        size_t used = kept + (size_t)n;
        size_t from = 0;
        for (size_t i = 0; i < used; i++) {
            if (buf[i] == '\n') {
                smaps_line(f, buf + from, i - from, &cur, &prev, &rss, &have);
                from = i + 1;
            }
        }
        kept = used - from;
        if (kept == sizeof(buf) - 1) { /* a line longer than the buffer: drop it */
            kept = 0;
        }
        memmove(buf, buf + from, kept);
    }
    close(fd);
    if (have) {
        add_mapping(f, &cur, &prev, rss);
    }
    return 0;
}

/* -------------------------------------------------------------- mallinfo2 */

typedef struct {
    size_t arena, ordblks, smblks, hblks, hblkhd, usmblks, fsmblks, uordblks, fordblks, keepcost;
} mallinfo2_t;

static int read_malloc(mt_rss_facts_t *f)
{
    static mallinfo2_t (*fn)(void);
    static int looked;
    if (!looked) {
        fn = (mallinfo2_t(*)(void))dlsym(RTLD_DEFAULT, "mallinfo2"); /* glibc 2.33+ */
        looked = 1;
    }
    if (fn == NULL) {
        return -1;
    }
    mallinfo2_t m = fn();
    f->malloc_arena = (int64_t)m.arena;
    f->malloc_mmapped = (int64_t)m.hblkhd;
    f->malloc_in_use = (int64_t)m.uordblks;
    f->malloc_free = (int64_t)m.fordblks;
    f->malloc_releasable = (int64_t)m.keepcost;
    return 0;
}

/* --------------------------------------------------------------- pymalloc */

static long long number_after(const char *line, char sep)
{
    const char *p = strrchr(line, sep);
    if (p == NULL) {
        return -1;
    }
    long long value = 0;
    int digits = 0;
    for (p++; *p; p++) {
        if (*p >= '0' && *p <= '9') {
            value = value * 10 + (*p - '0');
            digits++;
        }
        else if (*p != ',' && *p != ' ' && *p != '\n') {
            break;
        }
    }
    return digits ? value : -1;
}

static void pymalloc_line(mt_rss_facts_t *f, char *line)
{
    if (strncmp(line, "# arenas allocated current", 26) == 0) {
        f->pymalloc_arenas = number_after(line, '=');
    }
    else if (strncmp(line, "# bytes in allocated blocks", 27) == 0) {
        f->pymalloc_allocated = number_after(line, '=');
    }
    else if (line[0] == ' ' || (line[0] >= '0' && line[0] <= '9')) {
        /* a size class: "class size pools in-use free" */
        long long v[5];
        if (sscanf(line, "%lld %lld %lld", &v[0], &v[1], &v[2]) == 3) {
            f->pymalloc_pools += v[2];
        }
    }
}

static int read_pymalloc(mt_rss_facts_t *f)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (out == NULL) {
        return -1;
    }
    mt_pymalloc_print(out);
    fclose(out);
    f->pymalloc_arenas = -1;
    for (char *line = text; line != NULL && *line;) {
        char *next = strchr(line, '\n');
        if (next != NULL) {
            *next = '\0';
        }
        pymalloc_line(f, line);
        line = next ? next + 1 : NULL;
    }
    free(text);
    return f->pymalloc_arenas >= 0 ? 0 : -1;
}

/* ------------------------------------------------------------------ read */

/* The MT_RSS_LIBS libraries with the most live native bytes. */
static void top_libraries(mt_rss_facts_t *f)
{
    static int64_t by_lib[MT_MAX_LIBS];
    mt_heap_native_by_lib(by_lib);
    for (int i = 0; i < MT_MAX_LIBS; i++) {
        int64_t bytes = by_lib[i];
        if (bytes <= 0) {
            continue;
        }
        int at = MT_RSS_LIBS;
        while (at > 0 && (f->lib_bytes[at - 1] < bytes)) {
            at--;
        }
        if (at < MT_RSS_LIBS) {
            for (int j = MT_RSS_LIBS - 1; j > at; j--) {
                f->lib_bytes[j] = f->lib_bytes[j - 1];
                f->lib_index[j] = f->lib_index[j - 1];
            }
            f->lib_bytes[at] = bytes;
            f->lib_index[at] = i;
        }
    }
}

int mt_rss_read(mt_rss_facts_t *f)
{
    memset(f, 0, sizeof(*f));
    mt_guard++; /* stdio's buffers, dlsym: memtrim's, not the program's */
    if (exe_path[0] == '\0') {
        ssize_t n = readlink("/proc/self/exe", exe_path, sizeof(exe_path) - 1);
        exe_path[n > 0 ? n : 0] = '\0';
    }
    f->have_maps = read_smaps(f) == 0;
    f->have_malloc = read_malloc(f) == 0;
    f->have_pymalloc = read_pymalloc(f) == 0;
    f->heap_installed = mt_heap_installed();
    if (f->heap_installed) {
        f->native_installed = mt_native_installed();
        f->level = mt_heap_level();
        f->native = mt_heap_native_level();
        f->python_malloc = mt_heap_python_malloc_level();
        f->untouched = mt_heap_untouched();
        f->own = mt_heap_overhead();
        f->own_resident = mt_heap_overhead_resident();
        top_libraries(f);
        uint64_t mapped, resident;
        mt_native_maps(&mapped, &resident);
        f->native_mapped = (int64_t)mapped;
        f->native_resident = (int64_t)resident;
        mt_arenas_summary(f);
    }
    mt_guard--;
    return 0;
}

PyObject *mt_rss_dict(const mt_rss_facts_t *f)
{
    PyObject *dict = facts_dict(f);
    PyObject *libs = dict ? PyList_New(0) : NULL;
    for (int i = 0; libs != NULL && i < MT_RSS_LIBS && f->lib_bytes[i] > 0; i++) {
        const char *name = mt_native_lib_name((unsigned)f->lib_index[i]);
        PyObject *item = Py_BuildValue("(sL)", name ? name : "?", (long long)f->lib_bytes[i]);
        if (item == NULL || PyList_Append(libs, item) < 0) {
            Py_XDECREF(item);
            Py_CLEAR(libs);
            break;
        }
        Py_DECREF(item);
    }
    if (libs == NULL || PyDict_SetItemString(dict, "native_libraries", libs) < 0) {
        Py_XDECREF(libs);
        Py_XDECREF(dict);
        return NULL;
    }
    Py_DECREF(libs);
    return dict;
}

static PyObject *facts_dict(const mt_rss_facts_t *f)
{
#define ITEM(name) #name, (long long)f->name
    return Py_BuildValue(
        "{sisisi sLsLsLsLsLsLsL sLsLsLsLsL sLsLsL sisisLsLsLsLsLsLsL sLsLsLsLsLsL sLsL}",
        "have_maps", f->have_maps, "have_malloc", f->have_malloc, "have_pymalloc",
        f->have_pymalloc, ITEM(rss), ITEM(libraries), ITEM(files), ITEM(stacks),
        ITEM(anonymous), ITEM(heap), ITEM(heap_size), ITEM(malloc_arena), ITEM(malloc_mmapped),
        ITEM(malloc_in_use), ITEM(malloc_free), ITEM(malloc_releasable), ITEM(pymalloc_arenas),
        ITEM(pymalloc_allocated), ITEM(pymalloc_pools), "heap_installed", f->heap_installed,
        "native_installed", f->native_installed, ITEM(level), ITEM(native), ITEM(python_malloc),
        ITEM(untouched), ITEM(native_mapped), ITEM(native_resident), ITEM(arenas_known),
        ITEM(arenas_resident), ITEM(arenas_live), ITEM(arenas_pools), ITEM(pinned_arenas),
        ITEM(pinned_free), ITEM(pinned_most_blocks), ITEM(own), ITEM(own_resident));
#undef ITEM
}

/* ------------------------------------------------------- at the heap's peak
 *
 * While a watch runs (memtrim run), each new peak of the heap that is `step`
 * (a fraction) above the level of the last reading is read again: the last
 * reading is then within that fraction of the peak.  Geometric steps keep the
 * readings few (about 140 for a heap that grows a thousandfold at 5 %). */
static int watching;
static double watch_step;
static int64_t watch_next, watch_min;
static mt_rss_facts_t at_peak;
static int have_peak;

void mt_rss_watch_start(double step, int64_t min_step)
{
    watching = 1;
    watch_step = step;
    watch_min = min_step;
    watch_next = 0;
    have_peak = 0;
}

/* The last reading, or NULL; the watch stops. */
const mt_rss_facts_t *mt_rss_watch_stop(void)
{
    watching = 0;
    return have_peak ? &at_peak : NULL;
}

/* The call tree's on_new_peak: GIL held, inside an allocation hook. */
void mt_rss_on_peak(void)
{
    if (!watching) {
        return;
    }
    int64_t level = mt_heap_level();
    if (level < watch_next) {
        return;
    }
    mt_rss_read(&at_peak);
    have_peak = 1;
    int64_t step = (int64_t)((double)level * watch_step);
    watch_next = level + (step > watch_min ? step : watch_min);
}
