#ifndef CTENURESYS_H
#define CTENURESYS_H
// This header deliberately does NOT define _GNU_SOURCE. Swift's Glibc module is
// built without it; if this module parsed the same glibc headers with it
// (libaio.h pulls in <sys/types.h> and <sys/select.h>), every Swift file that
// imports both Glibc (or Foundation) and CTenureSys fails with "'fd_set' ...
// is not present in definition ... in module 'SwiftGlibc'". The GNU-only
// names Tenure needs (O_DIRECT, pthread_setname_np) come through shim.c,
// which is compiled with _GNU_SOURCE.
#include <stddef.h>
#include <stdint.h>
#include <libaio.h>
#include <linux/magic.h>

// C shims for what Swift cannot reach directly: GNU-only flags, variadic
// ioctl(2) with function-like request macros, statfs(2)'s f_type. No logic
// here: each function is one system call and keeps its -1/errno (or returned
// errno) convention, so the Swift side (TenureIO's Syscall) applies its EINTR
// and errno policy.

/// open(2)'s O_DIRECT, whose value differs between architectures.
extern const int tenure_O_DIRECT;

/// ioctl(fd, BLKSSZGET): the block device's logical sector size.
/// Returns 0, or -1 with errno set.
int tenure_blk_logical_sector_size(int fd, int *sector_size);

/// ioctl(fd, BLKGETSIZE64): the block device's size in bytes.
/// Returns 0, or -1 with errno set.
int tenure_blk_size_bytes(int fd, uint64_t *size_bytes);

/// statfs(path).f_type: the magic number of the filesystem holding `path`
/// (compare with TMPFS_MAGIC from <linux/magic.h>). Returns 0, or -1 with errno set.
int tenure_statfs_type(const char *path, int64_t *fs_type);

/// pthread_setname_np(pthread_self(), name): names the calling thread for
/// ps/top/gdb (at most 15 bytes). Returns 0 or an errno value.
int tenure_name_current_thread(const char *name);

/// getsockopt(fd, SO_PEERCRED): the pid, uid and gid of the process at the
/// other end of a Unix socket. Returns 0, or -1 with errno set.
int tenure_peer_credentials(int fd, int32_t *pid, uint32_t *uid, uint32_t *gid);

/// ioctl(fd, WDIOC_SETTIMEOUT, &seconds): sets a watchdog's fire time; the
/// driver may round it and writes back what it set. Returns 0, or -1 with errno set.
int tenure_watchdog_set_timeout(int fd, int *seconds);

/// ioctl(fd, WDIOC_KEEPALIVE): pets a watchdog. Returns 0, or -1 with errno set.
int tenure_watchdog_keepalive(int fd);

/// pidfd_open(pid, 0): a descriptor that names one process, never a later
/// one that reuses its pid. Returns the descriptor, or -1 with errno set.
int tenure_pidfd_open(int32_t pid);

/// getsockopt(fd, SO_PEERPIDFD): a pidfd of the process at the other end of
/// a Unix socket, taken when it connected (Linux 6.5+). Returns the
/// descriptor, or -1 with errno set (ENOPROTOOPT on older kernels).
int tenure_peer_pidfd(int fd);

/// pidfd_send_signal(pidfd, signal, NULL, 0). Returns 0, or -1 with errno set
/// (ESRCH once the process has exited).
int tenure_pidfd_send_signal(int pidfd, int signal);

/// poll(pidfd, POLLIN, 0): 1 once the process has exited (a zombie counts),
/// 0 while it runs, -1 with errno set.
int tenure_pidfd_exited(int pidfd);

/// fork, then in the child: a clean signal mask and default dispositions,
/// stdin/stdout/stderr on /dev/null, every other descriptor closed,
/// setgroups(0)/setgid(gid)/setuid(uid), execve(path, argv, envp); the child
/// exits 127 if any step fails. Only async-signal-safe calls run between fork
/// and exec. Returns the child's pid, or -1 with errno set (fork failed).
int32_t tenure_spawn_as(const char *path, char *const argv[], char *const envp[], uint32_t uid, uint32_t gid);

/// Becomes `file` (searched on PATH like execvp) with `argv`, keeping
/// `keep_fd` open across the exec (it carries a lease registration), with an
/// empty signal mask and every signal at its default disposition, so the
/// program can be stopped like any other. Returns only on failure: -1 with errno set.
int tenure_exec_holding(const char *file, char *const argv[], int keep_fd);

/// sched_setscheduler(0, SCHED_RR, priority): the calling thread only
/// (threads it creates later inherit it). 0, or -1 with errno set.
int tenure_set_realtime_current_thread(int priority);

/// A POSIX write lock on the whole of `fd` (fcntl F_SETLK), as sanlock's
/// daemon takes on its sanlock.pid: 0, or -1 with errno (EAGAIN/EACCES: held).
int tenure_posix_lock_file(int fd);

/// The calling thread's kernel id (gettid).
int32_t tenure_current_tid(void);

/// The scheduling policy of thread `tid` (0: the caller), or -1 with errno set.
int tenure_thread_policy(int32_t tid);

/// pthread_setattr_default_np with a stack of `bytes`: threads created
/// afterwards without a stack size of their own (the Swift runtime's pool,
/// Dispatch's workers) get this one. Returns 0 or an errno value.
int tenure_set_default_thread_stack(size_t bytes);

/// pthread_create of a detached thread with a stack of `bytes`, running
/// `start(argument)`. Returns 0 or an errno value.
int tenure_start_thread(size_t bytes, void *(*start)(void *), void *argument);

/// posix_spawn_file_actions_addclosefrom_np(actions, low_fd): the child
/// closes every descriptor from `low_fd` up (after the earlier actions), so
/// it inherits none it should not hold. `actions` is a
/// posix_spawn_file_actions_t *. Returns 0 or an errno value.
int tenure_spawn_actions_close_from(void *actions, int low_fd);

/// posix_spawnattr_setflags(attributes, POSIX_SPAWN_SETSID): the child
/// starts a session of its own (a detached daemon). `attributes` is a
/// posix_spawnattr_t *. Returns 0 or an errno value.
int tenure_spawn_attributes_new_session(void *attributes);

/// epoll_create1(EPOLL_CLOEXEC). The descriptor, or -1 with errno set.
int tenure_epoll_create(void);

/// epoll_ctl(epfd, EPOLL_CTL_ADD or, with `modify`, EPOLL_CTL_MOD, fd) with
/// `events` (EPOLLIN 0x1, EPOLLOUT 0x4, EPOLLET 1<<31) and `token` as the
/// event's data. 0, or -1 with errno set.
int tenure_epoll_watch(int epfd, int fd, uint32_t events, uint64_t token, int modify);

/// epoll_ctl(epfd, EPOLL_CTL_DEL, fd). 0, or -1 with errno set.
int tenure_epoll_unwatch(int epfd, int fd);

/// epoll_wait(epfd, …, max, timeout_ms), its packed events unpacked into
/// `tokens` and `events` (each `max` long). The count, or -1 with errno set.
int tenure_epoll_wait(int epfd, uint64_t *tokens, uint32_t *events, int max, int timeout_ms);

/// eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK). The descriptor, or -1 with errno set.
int tenure_eventfd(void);

/// The epoll event bits the loop uses, as epoll.h defines them.
extern const uint32_t tenure_EPOLLIN, tenure_EPOLLOUT, tenure_EPOLLERR, tenure_EPOLLHUP, tenure_EPOLLRDHUP, tenure_EPOLLET;

#endif
