// _GNU_SOURCE before any system header, for O_DIRECT and pthread_setname_np.
#define _GNU_SOURCE
#include "CTenureSys.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <linux/fs.h>
#include <linux/watchdog.h>

const int tenure_O_DIRECT = O_DIRECT;

int tenure_blk_logical_sector_size(int fd, int *sector_size) {
    return ioctl(fd, BLKSSZGET, sector_size);
}

int tenure_blk_size_bytes(int fd, uint64_t *size_bytes) {
    return ioctl(fd, BLKGETSIZE64, size_bytes);
}

int tenure_statfs_type(const char *path, int64_t *fs_type) {
    struct statfs s;
    int rc = statfs(path, &s);
    if (rc == 0) {
        *fs_type = (int64_t)s.f_type;
    }
    return rc;
}

int tenure_name_current_thread(const char *name) {
    return pthread_setname_np(pthread_self(), name);
}

int tenure_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
    if (rc == 0) {
        *pid = cred.pid;
        *uid = cred.uid;
        *gid = cred.gid;
    }
    return rc;
}

int tenure_watchdog_set_timeout(int fd, int *seconds) {
    return ioctl(fd, WDIOC_SETTIMEOUT, seconds);
}

int tenure_watchdog_keepalive(int fd) {
    int dummy = 0;
    return ioctl(fd, WDIOC_KEEPALIVE, &dummy);
}
