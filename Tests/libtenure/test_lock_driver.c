/*
 * Replays libvirt's lock-driver call sequences against the built plugin
 * (dlopen, virLockDriverImpl) and real Tenure daemons:
 *
 *   test_lock_driver PLUGIN CONF_A CONF_B LOCKSPACE KEY PATH OFFSET
 *
 * CONF_A and CONF_B are qemu-tenure.conf files whose run_dir points at two
 * daemons (two hosts) joined to LOCKSPACE. Prints "ok"/"FAIL" per step and
 * exits 0 only if all held. Built with -rdynamic so the plugin finds this
 * program's virReportErrorHelper, as it finds libvirtd's.
 */
#include "lock_driver_harness.h"

static const char *lockspace, *key, *path;
static unsigned long long offset;

/* New + AddResource(lease) for a domain whose QEMU is `pid`. */
static int open_domain(virLockManager *man, const char *name, pid_t pid, int with_lease) {
    if (new_domain(man, name, pid) != 0) return -1;
    if (!with_lease) return 0;
    virLockManagerParam lease[3] = {0};
    lease[0].type = 0; lease[0].key = "path"; lease[0].value.str = (char *)path;
    lease[1].type = 5; lease[1].key = "offset"; lease[1].value.ul = offset;
    lease[2].type = 0; lease[2].key = "lockspace"; lease[2].value.str = (char *)lockspace;
    if (driver->drvAddResource(man, 1, key, 3, lease, 0) != 0) return -1;
    /* A writable disk too: libvirt adds disks after leases. */
    return driver->drvAddResource(man, 0, "/var/lib/libvirt/images/disk.img", 0, NULL, 0);
}

/* Forks "QEMU": in the child, before exec, the REGISTER_ONLY|RESTRICT call;
 * the child then execs sleep with the registration fd kept open. */
static int open_with_lease(virLockManager *man, pid_t pid, const void *name) {
    return open_domain(man, name, pid, 1);
}

static pid_t start_qemu(const char *name) { return start_registered(open_with_lease, name); }

static char *inquire(pid_t pid) {
    virLockManager man;
    char *state = NULL;
    if (open_domain(&man, "inq", pid, 1) == 0) driver->drvInquire(&man, &state, 0);
    driver->drvFree(&man);
    return state;
}

int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: %s PLUGIN CONF_A CONF_B LOCKSPACE KEY PATH OFFSET\n", argv[0]); return 2; }
    void *plugin = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    CHECK(plugin != NULL, "dlopen %s %s", argv[1], plugin ? "" : dlerror());
    if (!plugin) return 1;
    driver = dlsym(plugin, "virLockDriverImpl");
    CHECK(driver && driver->version == 1000000 && driver->flags == 1, "virLockDriverImpl: version 1000000, USES_STATE");
    lockspace = argv[4]; key = argv[5]; path = argv[6]; offset = strtoull(argv[7], NULL, 10);

    CHECK(driver->drvInit(999, argv[2], 0) != 0, "a wrong interface version is refused");
    CHECK(driver->drvInit(1000000, argv[2], 0) == 0, "init with host A's config");
    CHECK(driver->drvInit(1000000, argv[2], 0) == 0, "init again (another libvirt driver) is harmless");

    /* virsh start: register in the child, the real acquire from libvirtd. */
    pid_t qemu = start_qemu("vm1");
    CHECK(qemu > 0, "QEMU registered before exec (pid %d)", qemu);
    virLockManager man;
    open_domain(&man, "vm1", qemu, 1);
    int rc = driver->drvAcquire(&man, NULL, 0, 0, NULL);
    CHECK(rc == 0, "libvirtd acquires for QEMU's pid: %s", rc ? last_error : "");
    driver->drvFree(&man);
    char *state = inquire(qemu);
    char expected[600];
    snprintf(expected, sizeof(expected), "%s:%s:%s:%llu:1", lockspace, key, path, offset);
    CHECK(state && strcmp(state, expected) == 0, "inquire: %s", state ? state : "(none)");
    free(state);

    /* A second domain on the same lease is refused, with a message libvirt shows. */
    pid_t qemu2 = start_qemu("vm2");
    open_domain(&man, "vm2", qemu2, 1);
    last_error[0] = 0;
    rc = driver->drvAcquire(&man, NULL, 0, 0, NULL);
    driver->drvFree(&man);
    CHECK(rc != 0 && last_error_code == 87 && strstr(last_error, key) && strstr(last_error, "held by"),
          "second domain refused (code %d): %s", last_error_code, last_error);
    kill(qemu2, SIGKILL);
    waitpid(qemu2, NULL, 0);

    /* Zero resources (a media change) acquire and release nothing. */
    open_domain(&man, "vm1", qemu, 0);
    CHECK(driver->drvAcquire(&man, NULL, 0, 0, NULL) == 0, "acquire with zero resources");
    CHECK(driver->drvRelease(&man, NULL, 0) == 0, "release with zero resources");
    driver->drvFree(&man);
    state = inquire(qemu);
    CHECK(state && strcmp(state, expected) == 0, "still held after the media change");
    free(state);

    /* virsh suspend: two releases with state; the second is harmless. */
    char *saved = NULL, *second = NULL;
    open_domain(&man, "vm1", qemu, 1);
    CHECK(driver->drvRelease(&man, &saved, 0) == 0 && saved && strcmp(saved, expected) == 0, "suspend: released, state %s", saved ? saved : "(none)");
    CHECK(driver->drvRelease(&man, &second, 0) == 0 && second == NULL, "suspend's second release is harmless");
    driver->drvFree(&man);

    /* virsh resume: acquire with the saved state (same lver required). */
    open_domain(&man, "vm1", qemu, 1);
    rc = driver->drvAcquire(&man, saved, 0, 0, NULL);
    driver->drvFree(&man);
    snprintf(expected, sizeof(expected), "%s:%s:%s:%llu:2", lockspace, key, path, offset);
    state = inquire(qemu);
    CHECK(rc == 0 && state && strcmp(state, expected) == 0, "resume with state: %s %s", state ? state : "(none)", rc ? last_error : "");
    free(saved);

    /* Migration: the source inquires and releases; host B acquires with the state. */
    open_domain(&man, "vm1", qemu, 1);
    char *cookie = NULL;
    CHECK(driver->drvRelease(&man, &cookie, 0) == 0 && cookie, "source releases, state %s", cookie ? cookie : "(none)");
    driver->drvFree(&man);
    driver->drvDeinit();
    CHECK(driver->drvInit(1000000, argv[3], 0) == 0, "init with host B's config");
    pid_t dest = start_qemu("vm1");
    open_domain(&man, "vm1", dest, 1);
    rc = driver->drvAcquire(&man, cookie, 0, 0, NULL);
    driver->drvFree(&man);
    snprintf(expected, sizeof(expected), "%s:%s:%s:%llu:3", lockspace, key, path, offset);
    state = inquire(dest);
    CHECK(rc == 0 && state && strcmp(state, expected) == 0, "destination on host B holds it: %s %s", state ? state : "(none)", rc ? last_error : "");
    free(state);
    /* A stale cookie (the lease moved on) is refused. */
    open_domain(&man, "vm1", dest, 1);
    CHECK(driver->drvAcquire(&man, cookie, 0, 0, NULL) != 0, "the same state string cannot be used twice: %s", last_error);
    driver->drvFree(&man);
    free(cookie);

    /* QEMU dies with no plugin call: the daemon releases its leases. */
    kill(dest, SIGKILL);
    waitpid(dest, NULL, 0);
    pid_t next = start_qemu("vm3");
    int released = 0;
    for (int i = 0; i < 50 && !released; i++) {
        open_domain(&man, "vm3", next, 1);
        released = driver->drvAcquire(&man, NULL, 0, 0, NULL) == 0;
        driver->drvFree(&man);
        if (!released) usleep(100000);
    }
    CHECK(released, "QEMU's death released its lease: another domain on host B takes it");
    kill(next, SIGKILL);
    waitpid(next, NULL, 0);
    kill(qemu, SIGKILL);
    waitpid(qemu, NULL, 0);
    printf("%d failures\n", failures);
    return failures ? 1 : 0;
}
