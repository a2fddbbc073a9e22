/*
 * Automatic disk leases (auto_disk_leases = 1) through the built plugin:
 *
 *   test_auto_disk_leases PLUGIN CONF DISK_LEASE_DIR
 *
 * CONF sets auto_disk_leases = 1, host_id, disk_lease_dir, run_dir and
 * tenure_binary. Prints "ok"/"FAIL" per step; exits 0 only if all held.
 */
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

/* New + AddResource(disk) for a domain whose QEMU is `pid`. */
static int open_domain(virLockManager *man, const char *name, pid_t pid, const char *disk, unsigned disk_flags) {
    memset(man, 0, sizeof(*man));
    man->driver = driver;
    virLockManagerParam params[3] = {0};
    params[0].type = 7; params[0].key = "uuid";
    params[1].type = 0; params[1].key = "name"; params[1].value.str = (char *)name;
    params[2].type = 4; params[2].key = "pid"; params[2].value.ui = (unsigned)pid;
    if (driver->drvNew(man, 0, 3, params, 0) != 0) return -1;
    return driver->drvAddResource(man, 0, disk, 0, NULL, disk_flags);
}

/* A process standing in for QEMU, registered as libvirt's child would be. */
static pid_t start_qemu(const char *name, const char *disk, unsigned disk_flags) {
    int ready[2];
    if (pipe(ready) != 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        virLockManager man;
        int fd = -1;
        if (open_domain(&man, name, getpid(), disk, disk_flags) != 0 || driver->drvAcquire(&man, NULL, 1 | 2, 0, &fd) != 0) _exit(3);
        driver->drvFree(&man);
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

static int acquire(const char *name, pid_t pid, const char *disk, unsigned disk_flags) {
    virLockManager man;
    if (open_domain(&man, name, pid, disk, disk_flags) != 0) return -1;
    last_error[0] = 0;
    int rc = driver->drvAcquire(&man, NULL, 0, 0, NULL);
    driver->drvFree(&man);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4) { fprintf(stderr, "usage: %s PLUGIN CONF DISK_LEASE_DIR\n", argv[0]); return 2; }
    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!plugin) { printf("FAIL dlopen %s\n", dlerror()); return 1; }
    driver = dlsym(plugin, "virLockDriverImpl");
    int rc = driver->drvInit(1000000, argv[2], 0);
    CHECK(rc == 0, "init with auto_disk_leases = 1: %s", rc ? last_error : "");
    char path[1024];
    snprintf(path, sizeof(path), "%s/__LIBVIRT__DISKS__", argv[3]);
    CHECK(access(path, F_OK) == 0, "the disk lockspace file %s was laid out", path);

    pid_t vm1 = start_qemu("vm1", "/images/a.img", 0);
    CHECK(vm1 > 0, "vm1 registered");
    /* The join goes on asynchronously (2 x io_timeout): retry until joined. */
    for (int i = 0; i < 100; i++) {
        rc = acquire("vm1", vm1, "/images/a.img", 0);
        if (rc == 0 || !strstr(last_error, "not joined")) break;
        usleep(100000);
    }
    CHECK(rc == 0, "vm1 takes the automatic lease of its disk: %s", rc ? last_error : "");

    pid_t vm2 = start_qemu("vm2", "/images/a.img", 0);
    rc = acquire("vm2", vm2, "/images/a.img", 0);
    CHECK(rc != 0 && last_error_code == 87, "vm2 on the same disk is refused: %s", last_error);
    rc = acquire("vm2", vm2, "/images/a.img", 1 /* READONLY */);
    CHECK(rc == 0, "the same disk read-only needs no lease");
    rc = acquire("vm2", vm2, "/images/b.img", 0);
    CHECK(rc == 0, "another disk has a lease of its own: %s", rc ? last_error : "");

    pid_t vm3 = start_qemu("vm3", "/images/shared.img", 2);
    pid_t vm4 = start_qemu("vm4", "/images/shared.img", 2);
    CHECK(acquire("vm3", vm3, "/images/shared.img", 2 /* SHARED */) == 0, "a shareable disk: vm3 shares its lease");
    CHECK(acquire("vm4", vm4, "/images/shared.img", 2) == 0, "a shareable disk: vm4 shares it too: %s", last_error);

    int files = 0;
    for (const char *disk = "/images/a.img"; disk; disk = strcmp(disk, "/images/a.img") == 0 ? "/images/b.img" : NULL) {
        uint64_t h = 0xcbf29ce484222325ull;
        for (const unsigned char *c = (const unsigned char *)disk; *c; c++) { h ^= *c; h *= 0x100000001b3ull; }
        snprintf(path, sizeof(path), "%s/%016llx", argv[3], (unsigned long long)h);
        files += access(path, F_OK) == 0;
    }
    CHECK(files == 2, "each disk's lease lives in its own file in disk_lease_dir");

    pid_t all[4] = { vm1, vm2, vm3, vm4 };
    for (int i = 0; i < 4; i++) { kill(all[i], SIGKILL); waitpid(all[i], NULL, 0); }
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
