/* See procfs.h. */
#include "procfs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
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
