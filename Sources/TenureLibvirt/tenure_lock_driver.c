/*
 * The libvirt lock-driver plugin for Tenure: libvirtd loads it as
 * lock_manager = "tenure" (qemu.conf) from
 * /usr/lib/x86_64-linux-gnu/libvirt/lock-driver/tenure.so.
 *
 * Plain C on top of libtenure: the start-time call runs in a child forked
 * from the multi-threaded libvirtd, between fork and exec, so nothing here
 * starts threads, takes locks or needs a language runtime. libvirt's
 * lock_driver.h is internal to libvirt, so the layout is declared here from
 * ../shared/reference/libvirt-lock-driver.md (libvirt 9.0, x86_64).
 *
 * Config (/etc/libvirt/qemu-tenure.conf), meaning what it means for the
 * sanlock plugin: auto_disk_leases, disk_lease_dir, host_id,
 * require_lease_for_disks, io_timeout; plus run_dir (Tenure's daemon).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tenure.h"

/* ---- libvirt's interface (lock_driver.h, libvirt 9.0) ---- */

#define VIR_LOCK_MANAGER_VERSION 1000000
#define VIR_LOCK_MANAGER_USES_STATE 1
enum { VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN = 0 };
enum { VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK = 0, VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE = 1 };
enum { VIR_LOCK_MANAGER_RESOURCE_READONLY = 1, VIR_LOCK_MANAGER_RESOURCE_SHARED = 2 };
enum { VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY = 1, VIR_LOCK_MANAGER_ACQUIRE_RESTRICT = 2 };
enum { VIR_LOCK_MANAGER_PARAM_TYPE_STRING = 0, VIR_LOCK_MANAGER_PARAM_TYPE_CSTRING = 1, VIR_LOCK_MANAGER_PARAM_TYPE_INT = 2,
       VIR_LOCK_MANAGER_PARAM_TYPE_LONG = 3, VIR_LOCK_MANAGER_PARAM_TYPE_UINT = 4, VIR_LOCK_MANAGER_PARAM_TYPE_ULONG = 5,
       VIR_LOCK_MANAGER_PARAM_TYPE_DOUBLE = 6, VIR_LOCK_MANAGER_PARAM_TYPE_UUID = 7 };
enum { VIR_DOMAIN_LOCK_FAILURE_DEFAULT = 0, VIR_DOMAIN_LOCK_FAILURE_POWEROFF = 1, VIR_DOMAIN_LOCK_FAILURE_RESTART = 2,
       VIR_DOMAIN_LOCK_FAILURE_PAUSE = 3, VIR_DOMAIN_LOCK_FAILURE_IGNORE = 4 };
#define VIR_FROM_LOCKING 42
#define VIR_ERR_INTERNAL_ERROR 1
#define VIR_ERR_RESOURCE_BUSY 87
#define VIR_ERR_CONFIG_UNSUPPORTED 67

typedef struct _virLockManager virLockManager;
typedef struct _virLockDriver virLockDriver;

typedef struct {
    int type;
    const char *key;
    union {
        int iv;
        long long l;
        unsigned int ui;
        unsigned long long ul;
        double d;
        char *str;
        const char *cstr;
        unsigned char uuid[16];
    } value;
} virLockManagerParam;

struct _virLockManager {
    virLockDriver *driver;
    void *privateData;
};

struct _virLockDriver {
    unsigned int version;
    unsigned int flags;
    int (*drvInit)(unsigned int version, const char *configFile, unsigned int flags);
    int (*drvDeinit)(void);
    int (*drvNew)(virLockManager *man, unsigned int type, size_t nparams, virLockManagerParam *params, unsigned int flags);
    void (*drvFree)(virLockManager *man);
    int (*drvAddResource)(virLockManager *man, unsigned int type, const char *name, size_t nparams,
                          virLockManagerParam *params, unsigned int flags);
    int (*drvAcquire)(virLockManager *man, const char *state, unsigned int flags, int action, int *fd);
    int (*drvRelease)(virLockManager *man, char **state, unsigned int flags);
    int (*drvInquire)(virLockManager *man, char **state, unsigned int flags);
};

/* ---- settings, read once by drvInit in libvirtd (never in a forked child) ---- */

static struct {
    int initialized;
    int auto_disk_leases;
    int require_lease_for_disks;
    int host_id;
    int io_timeout;
    char disk_lease_dir[512];
    char run_dir[512];
    char lockfailure_helper[512];
    char tenure_binary[512];
} config;

/* The lockspace of automatic disk leases, as the sanlock plugin names it. */
#define DISK_LOCKSPACE "__LIBVIRT__DISKS__"
/* One lease area per file: 1 MiB at offset 0, 512-byte sectors. */
#define DISK_LEASE_BYTES (1 << 20)

/* Reports through libvirt's error helper when libvirtd provides it. */
static void report(int code, const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    typedef void (*helper_fn)(int, int, const char *, const char *, size_t, const char *, ...);
    helper_fn helper = (helper_fn)dlsym(RTLD_DEFAULT, "virReportErrorHelper");
    if (helper) {
        helper(VIR_FROM_LOCKING, code, __FILE__, __func__, __LINE__, "%s", message);
    } else {
        fprintf(stderr, "tenure lock driver: %s\n", message);
    }
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\n' || end[-1] == '\r')) *--end = 0;
    return s;
}

static int read_config(const char *path) {
    FILE *f = path ? fopen(path, "r") : NULL;
    if (!f) return 0; /* no file: defaults */
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof(line), f)) {
        n++;
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            report(VIR_ERR_INTERNAL_ERROR, "%s:%d: \"%s\" is not key = value", path, n, s);
            fclose(f);
            return -1;
        }
        *eq = 0;
        char *key = trim(s), *value = trim(eq + 1);
        size_t vlen = strlen(value);
        if (vlen >= 2 && value[0] == '"' && value[vlen - 1] == '"') { value[vlen - 1] = 0; value++; }
        if (!strcmp(key, "auto_disk_leases")) config.auto_disk_leases = atoi(value);
        else if (!strcmp(key, "require_lease_for_disks")) config.require_lease_for_disks = atoi(value);
        else if (!strcmp(key, "host_id")) config.host_id = atoi(value);
        else if (!strcmp(key, "io_timeout")) config.io_timeout = atoi(value);
        else if (!strcmp(key, "disk_lease_dir")) snprintf(config.disk_lease_dir, sizeof(config.disk_lease_dir), "%s", value);
        else if (!strcmp(key, "run_dir")) snprintf(config.run_dir, sizeof(config.run_dir), "%s", value);
        else if (!strcmp(key, "lockfailure_helper")) snprintf(config.lockfailure_helper, sizeof(config.lockfailure_helper), "%s", value);
        else if (!strcmp(key, "tenure_binary")) snprintf(config.tenure_binary, sizeof(config.tenure_binary), "%s", value);
        else if (!strcmp(key, "user") || !strcmp(key, "group")) { /* sanlock plugin keys, not needed by Tenure */ }
        else {
            report(VIR_ERR_INTERNAL_ERROR, "%s:%d: unknown setting \"%s\"", path, n, key);
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return 0;
}

static const char *run_dir(void) { return config.run_dir[0] ? config.run_dir : NULL; }

/* ---- automatic disk leases ---- */

/* Runs `tenure ARGS...` (in libvirtd, never in a forked child); 0 on success. */
static int run_tenure(const char *const *args) {
    const char *argv[16];
    int n = 0;
    argv[n++] = config.tenure_binary;
    for (; args[n - 1] && n < 15; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) { dup2(null, 1); }
        execv(config.tenure_binary, (char *const *)argv);
        _exit(127);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* Creates a 1 MiB lease file and lays `init_args` out in it, unless it exists. */
static int ensure_lease_file(const char *path, const char *const *init_args) {
    if (access(path, F_OK) == 0) return 0;
    int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0) return errno == EEXIST ? 0 : -1;
    int rc = ftruncate(fd, DISK_LEASE_BYTES);
    close(fd);
    if (rc != 0 || run_tenure(init_args) != 0) {
        unlink(path);
        return -1;
    }
    return 0;
}

/* drvInit with auto_disk_leases: the lockspace file in disk_lease_dir, and
 * this host joining it with host_id (asynchronously: libvirtd goes on starting). */
static int setup_disk_lockspace(void) {
    if (config.host_id < 1) {
        report(VIR_ERR_CONFIG_UNSUPPORTED, "auto_disk_leases = 1 needs host_id set to this host's id (1 or more)");
        return -1;
    }
    if (mkdir(config.disk_lease_dir, 0755) != 0 && errno != EEXIST) {
        report(VIR_ERR_INTERNAL_ERROR, "cannot create disk_lease_dir %s: %s", config.disk_lease_dir, strerror(errno));
        return -1;
    }
    char file[700], spec[800];
    snprintf(file, sizeof(file), "%s/%s", config.disk_lease_dir, DISK_LOCKSPACE);
    snprintf(spec, sizeof(spec), "%s:0:%s:0", DISK_LOCKSPACE, file);
    char io[16];
    snprintf(io, sizeof(io), "%d", config.io_timeout > 0 ? config.io_timeout : 10);
    const char *init[] = { "direct", "init", "-s", spec, "--io-timeout", io, NULL };
    if (ensure_lease_file(file, init) != 0) {
        report(VIR_ERR_INTERNAL_ERROR, "cannot lay out the disk lockspace %s with %s", file, config.tenure_binary);
        return -1;
    }
    int conn = tenure_connect(run_dir());
    if (conn < 0) {
        report(VIR_ERR_INTERNAL_ERROR, "cannot reach the Tenure daemon to join %s: %s", DISK_LOCKSPACE, strerror(-conn));
        return -1;
    }
    snprintf(spec, sizeof(spec), "%s:%d:%s:0", DISK_LOCKSPACE, config.host_id, file);
    struct tenure_error err;
    int rc = tenure_add_lockspace(conn, spec, 1, &err);
    close(conn);
    if (rc != 0 && rc != TENURE_E_EXISTS) {
        report(VIR_ERR_INTERNAL_ERROR, "cannot join %s: %s", DISK_LOCKSPACE, rc > 0 ? err.message : strerror(-rc));
        return -1;
    }
    return 0;
}

/* The lease key of a disk: FNV-1a 64 of its path, in hex (fits the 48-byte name). */
static void disk_lease_key(const char *path, char *key, size_t len) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) { h ^= *c; h *= 0x100000001b3ull; }
    snprintf(key, len, "%016llx", (unsigned long long)h);
}

static int tenure_drv_init(unsigned int version, const char *configFile, unsigned int flags) {
    (void)flags;
    if (version != VIR_LOCK_MANAGER_VERSION) {
        report(VIR_ERR_INTERNAL_ERROR, "libvirt lock-driver version %u is not %u", version, VIR_LOCK_MANAGER_VERSION);
        return -1;
    }
    if (config.initialized) return 0; /* another driver in the same libvirtd */
    memset(&config, 0, sizeof(config));
    config.require_lease_for_disks = 1;
    snprintf(config.disk_lease_dir, sizeof(config.disk_lease_dir), "/var/lib/libvirt/tenure");
    snprintf(config.lockfailure_helper, sizeof(config.lockfailure_helper), "/usr/libexec/tenure/tenure-lockfailure");
    snprintf(config.tenure_binary, sizeof(config.tenure_binary), "/usr/sbin/tenure");
    if (read_config(configFile) < 0) return -1;
    if (config.auto_disk_leases && setup_disk_lockspace() < 0) return -1;
    config.initialized = 1;
    return 0;
}

static int tenure_drv_deinit(void) {
    config.initialized = 0;
    return 0;
}

/* ---- one lock manager: a domain and its resources ---- */

#define MAX_RESOURCES 64

struct resource {
    char string[600];   /* LS:NAME:PATH:OFFSET */
    char name[64];
    int shared;
    int automatic;      /* an automatic disk lease, in its own file */
};

struct domain {
    char name[256];
    char uuid[37];
    char uri[256];
    pid_t pid;
    int nresources;
    struct resource resources[MAX_RESOURCES];
    int writable_disks;
};

static int tenure_drv_new(virLockManager *man, unsigned int type, size_t nparams, virLockManagerParam *params, unsigned int flags) {
    (void)flags;
    if (type != VIR_LOCK_MANAGER_OBJECT_TYPE_DOMAIN) {
        report(VIR_ERR_INTERNAL_ERROR, "the Tenure lock driver only locks domains (object type %u)", type);
        return -1;
    }
    struct domain *d = calloc(1, sizeof(*d));
    if (!d) return -1;
    for (size_t i = 0; i < nparams; i++) {
        if (!params[i].key) continue;
        if (!strcmp(params[i].key, "pid")) d->pid = (pid_t)params[i].value.ui;
        else if (!strcmp(params[i].key, "uri") && params[i].value.cstr) snprintf(d->uri, sizeof(d->uri), "%s", params[i].value.cstr);
        else if (!strcmp(params[i].key, "uuid")) {
            const unsigned char *u = params[i].value.uuid;
            snprintf(d->uuid, sizeof(d->uuid), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
                     u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
        }
        else if (!strcmp(params[i].key, "name") && params[i].value.str) snprintf(d->name, sizeof(d->name), "%s", params[i].value.str);
    }
    man->privateData = d;
    return 0;
}

static void tenure_drv_free(virLockManager *man) {
    free(man->privateData);
    man->privateData = NULL;
}

static int tenure_drv_add_resource(virLockManager *man, unsigned int type, const char *name, size_t nparams,
                                   virLockManagerParam *params, unsigned int flags) {
    struct domain *d = man->privateData;
    if (flags & VIR_LOCK_MANAGER_RESOURCE_READONLY) return 0;
    if (type == VIR_LOCK_MANAGER_RESOURCE_TYPE_DISK) {
        d->writable_disks++;
        if (!config.auto_disk_leases) return 0; /* guarded by the domain's <lease>s */
        if (d->nresources >= MAX_RESOURCES) {
            report(VIR_ERR_INTERNAL_ERROR, "domain %s has more than %d leases", d->name, MAX_RESOURCES);
            return -1;
        }
        /* An automatic lease in its own file; created when first acquired. */
        struct resource *r = &d->resources[d->nresources];
        char file[700];
        disk_lease_key(name, r->name, sizeof(r->name));
        snprintf(file, sizeof(file), "%s/%s", config.disk_lease_dir, r->name);
        if (tenure_resource_string(r->string, sizeof(r->string), DISK_LOCKSPACE, r->name, file, 0, 0) < 0) {
            report(VIR_ERR_INTERNAL_ERROR, "disk lease path %s is too long", file);
            return -1;
        }
        r->shared = (flags & VIR_LOCK_MANAGER_RESOURCE_SHARED) != 0;
        r->automatic = 1;
        d->nresources++;
        return 0;
    }
    if (type != VIR_LOCK_MANAGER_RESOURCE_TYPE_LEASE) {
        report(VIR_ERR_INTERNAL_ERROR, "unknown resource type %u for %s", type, name);
        return -1;
    }
    const char *path = NULL, *lockspace = NULL;
    unsigned long long offset = 0;
    for (size_t i = 0; i < nparams; i++) {
        if (!params[i].key) continue;
        if (!strcmp(params[i].key, "path")) path = params[i].value.str;
        else if (!strcmp(params[i].key, "lockspace")) lockspace = params[i].value.str;
        else if (!strcmp(params[i].key, "offset")) offset = params[i].value.ul;
    }
    if (!path || !lockspace) {
        report(VIR_ERR_INTERNAL_ERROR, "lease %s lacks its lockspace or target path", name);
        return -1;
    }
    if (d->nresources >= MAX_RESOURCES) {
        report(VIR_ERR_INTERNAL_ERROR, "domain %s has more than %d leases", d->name, MAX_RESOURCES);
        return -1;
    }
    struct resource *r = &d->resources[d->nresources];
    if (tenure_resource_string(r->string, sizeof(r->string), lockspace, name, path, offset, 0) < 0) {
        report(VIR_ERR_INTERNAL_ERROR, "lease %s: its lockspace, key and path are too long", name);
        return -1;
    }
    snprintf(r->name, sizeof(r->name), "%s", name);
    r->shared = (flags & VIR_LOCK_MANAGER_RESOURCE_SHARED) != 0;
    d->nresources++;
    return 0;
}

static void report_refusal(struct domain *d, const char *what, int rc, const struct tenure_error *err) {
    if (rc > 0) {
        report(rc == TENURE_E_HELD || rc == TENURE_E_IN_USE ? VIR_ERR_RESOURCE_BUSY : VIR_ERR_INTERNAL_ERROR,
               "Failed to %s lease for domain %s: %s", what, d->name, err->message[0] ? err->message : tenure_strerror(rc));
    } else {
        report(VIR_ERR_INTERNAL_ERROR, "Failed to %s lease for domain %s: cannot reach the Tenure daemon (%s)",
               what, d->name, strerror(-rc));
    }
}

/* Acquires `strings` (all shared or all exclusive) for the domain's pid. */
static int acquire_group(int fd, struct domain *d, unsigned flags, int n, const char *const *strings) {
    if (n == 0) return 0;
    struct tenure_error err;
    int rc = tenure_acquire(fd, d->pid, flags, n, strings, NULL, 0, &err);
    if (rc != 0) report_refusal(d, "acquire", rc, &err);
    return rc;
}

static int tenure_drv_acquire(virLockManager *man, const char *state, unsigned int flags, int action, int *fd) {
    struct domain *d = man->privateData;
    if (flags & VIR_LOCK_MANAGER_ACQUIRE_REGISTER_ONLY) {
        /* In the forked child, as QEMU-to-be: the connection is the
         * registration, and QEMU keeps it (libvirt hands the fd over). */
        int conn = tenure_register(run_dir());
        if (conn < 0) {
            report(VIR_ERR_INTERNAL_ERROR, "Failed to register domain %s with the Tenure daemon: %s", d->name, strerror(-conn));
            return -1;
        }
        /* The registration must survive QEMU's exec: libvirt leaves the fd open. */
        int fdflags = fcntl(conn, F_GETFD);
        if (fdflags >= 0) fcntl(conn, F_SETFD, fdflags & ~FD_CLOEXEC);
        if ((action == VIR_DOMAIN_LOCK_FAILURE_POWEROFF || action == VIR_DOMAIN_LOCK_FAILURE_PAUSE) && d->uri[0] && d->uuid[0]) {
            /* <on_lockfailure>: the daemon runs the helper instead of SIGTERM;
             * it powers the domain off or pauses it through libvirt. */
            const char *args[3] = { d->uri, d->uuid, action == VIR_DOMAIN_LOCK_FAILURE_POWEROFF ? "poweroff" : "pause" };
            struct tenure_error err;
            int rc = access(config.lockfailure_helper, X_OK) == 0
                ? tenure_killpath(conn, config.lockfailure_helper, 3, args, &err) : -ENOENT;
            if (rc != 0) {
                if (rc > 0) report_refusal(d, "set the lock-failure action of", rc, &err);
                else report(VIR_ERR_INTERNAL_ERROR, "the lock-failure helper %s is not executable", config.lockfailure_helper);
                close(conn);
                return -1;
            }
        }
        if (flags & VIR_LOCK_MANAGER_ACQUIRE_RESTRICT) {
            struct tenure_error err;
            int rc = tenure_restrict(conn, TENURE_RESTRICT_ALL, &err);
            if (rc != 0) {
                report_refusal(d, "restrict", rc, &err);
                close(conn);
                return -1;
            }
        }
        if (fd) *fd = conn;
        return 0;
    }
    if (d->nresources == 0 && !(state && *state)) {
        if (config.require_lease_for_disks && d->writable_disks > 0) {
            report(VIR_ERR_RESOURCE_BUSY, "domain %s has writable disks but no <lease>, and require_lease_for_disks is set", d->name);
            return -1;
        }
        return 0;
    }
    int conn = tenure_connect(run_dir());
    if (conn < 0) {
        report(VIR_ERR_INTERNAL_ERROR, "Failed to acquire leases for domain %s: cannot reach the Tenure daemon (%s)", d->name, strerror(-conn));
        return -1;
    }
    const char *exclusive[MAX_RESOURCES], *shared[MAX_RESOURCES];
    int ne = 0, ns = 0;
    char copy[4096];
    if (state && *state) {
        /* Resume or migration: the saved state strings, each with its lver. */
        snprintf(copy, sizeof(copy), "%s", state);
        for (char *save = NULL, *tok = strtok_r(copy, " ", &save); tok && ne < MAX_RESOURCES; tok = strtok_r(NULL, " ", &save))
            exclusive[ne++] = tok;
    } else {
        for (int i = 0; i < d->nresources; i++) {
            struct resource *r = &d->resources[i];
            if (r->automatic) {
                char file[700];
                snprintf(file, sizeof(file), "%s/%s", config.disk_lease_dir, r->name);
                const char *init[] = { "direct", "init", "-r", r->string, NULL };
                if (ensure_lease_file(file, init) != 0) {
                    report(VIR_ERR_INTERNAL_ERROR, "cannot create the disk lease %s with %s", file, config.tenure_binary);
                    close(conn);
                    return -1;
                }
            }
            if (r->shared) shared[ns++] = r->string;
            else exclusive[ne++] = r->string;
        }
    }
    int rc = 0;
    for (int at = 0; rc == 0 && at < ne; at += TENURE_MAX_RESOURCES_PER_REQUEST) {
        int n = ne - at < TENURE_MAX_RESOURCES_PER_REQUEST ? ne - at : TENURE_MAX_RESOURCES_PER_REQUEST;
        rc = acquire_group(conn, d, 0, n, exclusive + at);
    }
    for (int at = 0; rc == 0 && at < ns; at += TENURE_MAX_RESOURCES_PER_REQUEST) {
        int n = ns - at < TENURE_MAX_RESOURCES_PER_REQUEST ? ns - at : TENURE_MAX_RESOURCES_PER_REQUEST;
        rc = acquire_group(conn, d, TENURE_ACQUIRE_SHARED, n, shared + at);
    }
    if (rc != 0) {
        /* All or nothing for the domain. */
        struct tenure_error ignored;
        tenure_release(conn, d->pid, 0, NULL, &ignored);
    }
    close(conn);
    return rc == 0 ? 0 : -1;
}

static int tenure_drv_release(virLockManager *man, char **state, unsigned int flags) {
    (void)flags;
    struct domain *d = man->privateData;
    if (state) *state = NULL;
    if (d->nresources == 0 && !state) return 0; /* a media change: nothing of ours */
    int conn = tenure_connect(run_dir());
    if (conn < 0) {
        report(VIR_ERR_INTERNAL_ERROR, "Failed to release leases of domain %s: cannot reach the Tenure daemon (%s)", d->name, strerror(-conn));
        return -1;
    }
    struct tenure_error err;
    int rc = 0;
    if (state) {
        char held[4096];
        rc = tenure_inquire(conn, d->pid, held, sizeof(held), &err);
        if (rc == 0 && held[0]) *state = strdup(held);
    }
    if (rc == 0) {
        const char *names[MAX_RESOURCES];
        for (int i = 0; i < d->nresources; i++) names[i] = d->resources[i].name;
        /* With no resources named (suspend), everything the domain holds. */
        rc = tenure_release(conn, d->pid, d->nresources, names, &err);
        /* A second release (libvirt sends two on suspend) finds nothing: fine. */
        if (rc == TENURE_E_NOT_OWNER) rc = 0;
    }
    close(conn);
    if (rc != 0) {
        report_refusal(d, "release", rc, &err);
        return -1;
    }
    return 0;
}

static int tenure_drv_inquire(virLockManager *man, char **state, unsigned int flags) {
    (void)flags;
    struct domain *d = man->privateData;
    if (!state) return 0;
    *state = NULL;
    int conn = tenure_connect(run_dir());
    if (conn < 0) {
        report(VIR_ERR_INTERNAL_ERROR, "Failed to inquire leases of domain %s: cannot reach the Tenure daemon (%s)", d->name, strerror(-conn));
        return -1;
    }
    char held[4096];
    struct tenure_error err;
    int rc = tenure_inquire(conn, d->pid, held, sizeof(held), &err);
    close(conn);
    if (rc != 0) {
        report_refusal(d, "inquire", rc, &err);
        return -1;
    }
    if (held[0]) *state = strdup(held);
    return 0;
}

/* The one symbol libvirtd looks up; everything else stays hidden. */
__attribute__((visibility("default"))) virLockDriver virLockDriverImpl = {
    .version = VIR_LOCK_MANAGER_VERSION,
    .flags = VIR_LOCK_MANAGER_USES_STATE,
    .drvInit = tenure_drv_init,
    .drvDeinit = tenure_drv_deinit,
    .drvNew = tenure_drv_new,
    .drvFree = tenure_drv_free,
    .drvAddResource = tenure_drv_add_resource,
    .drvAcquire = tenure_drv_acquire,
    .drvRelease = tenure_drv_release,
    .drvInquire = tenure_drv_inquire,
};
