// _GNU_SOURCE before any system header, for O_DIRECT and pthread_setname_np.
#define _GNU_SOURCE
#include "CTenureSys.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/vfs.h>
#include <sys/epoll.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <grp.h>
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>
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

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

int tenure_pidfd_open(int32_t pid) {
    return (int)syscall(SYS_pidfd_open, (pid_t)pid, 0);
}

int tenure_peer_pidfd(int fd) {
    int pidfd = -1;
    socklen_t len = sizeof(pidfd);
    int rc = getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &pidfd, &len);
    return rc == 0 ? pidfd : -1;
}

int tenure_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int tenure_pidfd_exited(int pidfd) {
    struct pollfd p = { .fd = pidfd, .events = POLLIN, .revents = 0 };
    int rc = poll(&p, 1, 0);
    if (rc < 0) return -1;
    return (p.revents & (POLLIN | POLLHUP)) ? 1 : 0;
}

int32_t tenure_spawn_as(const char *path, char *const argv[], char *const envp[], uint32_t uid, uint32_t gid) {
    pid_t child = fork();
    if (child != 0) return child;
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
    }
    int null = open("/dev/null", O_RDWR);
    if (null < 0) _exit(127);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    syscall(SYS_close_range, 3, ~0U, 0);
    if (setgroups(0, NULL) != 0 && getuid() == 0) _exit(127);
    if (setgid((gid_t)gid) != 0) _exit(127);
    if (setuid((uid_t)uid) != 0) _exit(127);
    execve(path, argv, envp);
    _exit(127);
}

int tenure_exec_holding(const char *file, char *const argv[], int keep_fd) {
    int flags = fcntl(keep_fd, F_GETFD);
    if (flags < 0 || fcntl(keep_fd, F_SETFD, flags & ~FD_CLOEXEC) < 0) return -1;
    for (int s = 1; s < NSIG; s++) {
        if (s != SIGKILL && s != SIGSTOP) signal(s, SIG_DFL);
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    pthread_sigmask(SIG_SETMASK, &none, NULL);
    execvp(file, argv);
    return -1;
}

int tenure_set_realtime_current_thread(int priority) {
    struct sched_param param = { .sched_priority = priority };
    return sched_setscheduler(0, SCHED_RR, &param);
}

int tenure_posix_lock_file(int fd) {
    struct flock lock = { .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0 };
    return fcntl(fd, F_SETLK, &lock);
}

int32_t tenure_current_tid(void) {
    return (int32_t)syscall(SYS_gettid);
}

int tenure_thread_policy(int32_t tid) {
    return sched_getscheduler((pid_t)tid);
}

int tenure_epoll_create(void) {
    return epoll_create1(EPOLL_CLOEXEC);
}

int tenure_epoll_watch(int epfd, int fd, uint32_t events, uint64_t token, int modify) {
    struct epoll_event event = { .events = events, .data.u64 = token };
    return epoll_ctl(epfd, modify ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &event);
}

int tenure_epoll_unwatch(int epfd, int fd) {
    struct epoll_event unused = { 0 };
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &unused);
}

int tenure_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms) {
    struct epoll_event ready[64];
    if (max > 64) max = 64;
    int n = epoll_wait(epfd, ready, max, timeout_ms);
    for (int i = 0; i < n; i++) {
        tokens[i] = ready[i].data.u64;
        events[i] = ready[i].events;
    }
    return n;
}

int tenure_eventfd(void) {
    return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
}

const uint32_t tenure_EPOLLIN = EPOLLIN, tenure_EPOLLOUT = EPOLLOUT, tenure_EPOLLERR = EPOLLERR,
               tenure_EPOLLHUP = EPOLLHUP, tenure_EPOLLRDHUP = EPOLLRDHUP, tenure_EPOLLET = EPOLLET;

int tenure_set_default_thread_stack(size_t bytes) {
    pthread_attr_t attributes;
    int rc = pthread_attr_init(&attributes);
    if (rc != 0) return rc;
    rc = pthread_attr_setstacksize(&attributes, bytes);
    if (rc == 0) rc = pthread_setattr_default_np(&attributes);
    pthread_attr_destroy(&attributes);
    return rc;
}

int tenure_start_thread(size_t bytes, void *(*start)(void *), void *argument) {
    pthread_attr_t attributes;
    int rc = pthread_attr_init(&attributes);
    if (rc != 0) return rc;
    rc = pthread_attr_setstacksize(&attributes, bytes);
    if (rc == 0) rc = pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    if (rc == 0) rc = pthread_create(&thread, &attributes, start, argument);
    pthread_attr_destroy(&attributes);
    return rc;
}

int tenure_spawn_actions_close_from(void *actions, int low_fd) {
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, low_fd);
}

int tenure_spawn_attributes_new_session(void *attributes) {
    return posix_spawnattr_setflags((posix_spawnattr_t *)attributes, POSIX_SPAWN_SETSID);
}
