/*
 * Automatic disk leases (auto_disk_leases = 1) through the built plugin:
 *
 *   test_auto_disk_leases PLUGIN CONF DISK_LEASE_DIR
 *
 * CONF sets auto_disk_leases = 1, host_id, disk_lease_dir, run_dir and
 * tenure_binary. Prints "ok"/"FAIL" per step; exits 0 only if all held.
 */
#include "lock_driver_harness.h"

/* New + AddResource(disk) for a domain whose QEMU is `pid`. */
static int open_domain(virLockManager *man, const char *name, pid_t pid, const char *disk, unsigned disk_flags) {
    if (new_domain(man, name, pid) != 0) return -1;
    return driver->drvAddResource(man, 0, disk, 0, NULL, disk_flags);
}

struct disk { const char *name, *path; unsigned flags; };

static int open_with_disk(virLockManager *man, pid_t pid, const void *arg) {
    const struct disk *d = arg;
    return open_domain(man, d->name, pid, d->path, d->flags);
}

static pid_t start_qemu(const char *name, const char *disk, unsigned disk_flags) {
    struct disk d = { name, disk, disk_flags };
    return start_registered(open_with_disk, &d);
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
