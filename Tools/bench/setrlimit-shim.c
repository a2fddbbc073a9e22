/* LD_PRELOAD shim for measuring sanlock's daemon in a sandbox: sanlock raises
 * RLIMIT_MEMLOCK (and RLIMIT_RTPRIO) at start and exits if it may not, which
 * containers forbid. Those two limits are left as they are and the call
 * reports success; every other limit goes to the real setrlimit. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/resource.h>

typedef int (*setrlimit_fn)(__rlimit_resource_t, const struct rlimit *);

int setrlimit(__rlimit_resource_t which, const struct rlimit *value)
{
    if (which == RLIMIT_MEMLOCK || which == RLIMIT_RTPRIO)
        return 0;
    setrlimit_fn next = (setrlimit_fn)dlsym(RTLD_NEXT, "setrlimit");
    return next(which, value);
}
