/*
 * What the lock-driver harnesses share: libvirt's plugin interface as the
 * harness sees it, the ok/FAIL reporting, the error helper the plugin finds
 * with dlsym (the programs are built with -rdynamic, as libvirtd exports
 * it), and a stand-in for QEMU registered as libvirt's forked child would be.
 */
#ifndef LOCK_DRIVER_HARNESS_H
#define LOCK_DRIVER_HARNESS_H
#include <dlfcn.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct _virLockManager { void *driver; void *privateData; } virLockManager;
typedef struct {
    int type;
    const char *key;
    union { int iv; long long l; unsigned int ui; unsigned long long ul; double d; char *str; const char *cstr; unsigned char uuid[16]; } value;
} virLockManagerParam;
typedef struct {
    unsigned int version, flags;
    int (*drvInit)(unsigned int, const char *, unsigned int);
    int (*drvDeinit)(void);
    int (*drvNew)(virLockManager *, unsigned int, size_t, virLockManagerParam *, unsigned int);
    void (*drvFree)(virLockManager *);
    int (*drvAddResource)(virLockManager *, unsigned int, const char *, size_t, virLockManagerParam *, unsigned int);
    int (*drvAcquire)(virLockManager *, const char *, unsigned int, int, int *);
    int (*drvRelease)(virLockManager *, char **, unsigned int);
    int (*drvInquire)(virLockManager *, char **, unsigned int);
} virLockDriver;

static int failures = 0;
static char last_error[1024];
static int last_error_code = 0;
#define CHECK(cond, ...) do { if (cond) printf("ok   "); else { printf("FAIL "); failures++; } printf(__VA_ARGS__); printf("\n"); fflush(stdout); } while (0)

/* libvirt's error helper, found by the plugin with dlsym. */
void virReportErrorHelper(int domcode, int errcode, const char *filename, const char *funcname, size_t linenr, const char *fmt, ...) {
    (void)domcode; (void)filename; (void)funcname; (void)linenr;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof(last_error), fmt, ap);
    va_end(ap);
    last_error_code = errcode;
}

static virLockDriver *driver;

/* drvNew for a domain named `name` whose QEMU is `pid`, as libvirt calls it. */
static int new_domain(virLockManager *man, const char *name, pid_t pid) {
    memset(man, 0, sizeof(*man));
    man->driver = driver;
    virLockManagerParam params[3] = {0};
    params[0].type = 7; params[0].key = "uuid";
    params[1].type = 0; params[1].key = "name"; params[1].value.str = (char *)name;
    params[2].type = 4; params[2].key = "pid"; params[2].value.ui = (unsigned)pid;
    return driver->drvNew(man, 0, 3, params, 0);
}

/* Opens a domain for `pid` with the resources a harness gives it. */
typedef int (*open_domain_fn)(virLockManager *man, pid_t pid, const void *arg);

/* Forks "QEMU": in the child, before exec, the REGISTER_ONLY|RESTRICT call
 * with `open`'s resources; the child then execs sleep with the registration
 * fd, which the plugin must leave open across exec as libvirt expects. */
static pid_t start_registered(open_domain_fn open, const void *arg) {
    int ready[2];
    if (pipe(ready) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        virLockManager man;
        int fd = -1;
        if (open(&man, getpid(), arg) != 0 || driver->drvAcquire(&man, NULL, 1 | 2, 0, &fd) != 0 || fd < 0) _exit(3);
        driver->drvFree(&man);
        if (fcntl(fd, F_GETFD) & FD_CLOEXEC) _exit(6);
        if (write(ready[1], "r", 1) != 1) _exit(4);
        close(ready[1]);
        execl("/bin/sleep", "sleep", "300", (char *)NULL);
        _exit(5);
    }
    close(ready[1]);
    char c;
    ssize_t n = read(ready[0], &c, 1);
    close(ready[0]);
    return n == 1 ? pid : -1;
}

#endif
