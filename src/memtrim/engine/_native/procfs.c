/* See procfs.h. */
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

ssize_t mt_proc_read(const char *path, char *out, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    size_t got = 0;
    while (got + 1 < size) {
        ssize_t n = read(fd, out + got, size - 1 - got);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    out[got] = '\0';
    return (ssize_t)got;
}

int64_t mt_proc_rss(pid_t pid)
{
    static long page; /* racy first write of the same value: harmless */
    char path[64], text[256];
    if (pid == 0) {
        snprintf(path, sizeof path, "/proc/self/statm");
    }
    else {
        snprintf(path, sizeof path, "/proc/%d/statm", (int)pid);
    }
    if (mt_proc_read(path, text, sizeof text) <= 0) {
        return -1;
    }
    char *p = text;
    strtoll(p, &p, 10); /* total size; the resident set comes second */
    char *end;
    long long pages = strtoll(p, &end, 10);
    if (end == p) {
        return -1;
    }
    if (page <= 0) {
        page = sysconf(_SC_PAGESIZE);
    }
    return pages >= 0 && page > 0 ? (int64_t)pages * page : -1;
}

size_t mt_resident(uintptr_t start, size_t size)
{
    unsigned char vec[512];
    long got = sysconf(_SC_PAGESIZE);
    size_t page = got > 0 ? (size_t)got : 4096;
    uintptr_t a = start & ~(uintptr_t)(page - 1);
    uintptr_t end = start + size;
    size_t total = 0;
    while (a < end) {
        size_t pages = (end - a + page - 1) / page;
        if (pages > sizeof(vec)) {
            pages = sizeof(vec);
        }
        if (mincore((void *)a, pages * page, vec) == 0) {
            for (size_t i = 0; i < pages; i++) {
                total += (vec[i] & 1) ? page : 0;
            }
        }
        a += pages * page;
    }
    return total;
}
