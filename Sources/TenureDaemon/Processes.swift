import CTenureSys
import Glibc
import TenureCore

/// A local process the daemon deals with, named by a pidfd: a signal, or a
/// check that it still runs, reaches this process and never a later one
/// that happens to reuse its pid.
///
/// The pidfd comes from the connection (SO_PEERPIDFD: the process that
/// connected, Linux 6.5+) or from pidfd_open(2) when a privileged client
/// acquires for another pid.
final class LocalProcess: @unchecked Sendable {
    let pid: Int32
    /// The credentials a killpath runs with: those of the process that set it.
    let uid: UInt32
    let gid: UInt32
    private let pidfd: Int32

    /// Takes ownership of `pidfd`.
    init(pid: Int32, pidfd: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.pidfd = pidfd
        self.uid = uid
        self.gid = gid
    }

    /// Names process `pid` as it is now; throws when it does not exist.
    static func open(pid: Int32, uid: UInt32, gid: UInt32) throws -> LocalProcess {
        let fd = tenure_pidfd_open(pid)
        guard fd >= 0 else {
            let e = errno
            throw TenureError(e == ESRCH ? .invalidArgument : .ioFailed,
                              e == ESRCH ? "Process \(pid) does not exist." : "Cannot watch process \(pid): \(String(cString: strerror(e))).",
                              errno: e)
        }
        return LocalProcess(pid: pid, pidfd: fd, uid: uid, gid: gid)
    }

    deinit { Glibc.close(pidfd) }

    /// Whether the process has exited (a zombie has: it holds nothing).
    var exited: Bool { tenure_pidfd_exited(pidfd) != 0 }

    /// Sends `signal`; false once the process is gone.
    @discardableResult
    func signal(_ signal: Int32) -> Bool {
        tenure_pidfd_send_signal(pidfd, signal) == 0
    }
}

/// The owner and group of a process, from /proc (for a process a privileged
/// client acquires for, which never connected itself).
func processCredentials(_ pid: Int32) -> (uid: UInt32, gid: UInt32)? {
    var info = stat()
    guard stat("/proc/\(pid)", &info) == 0 else { return nil }
    return (info.st_uid, info.st_gid)
}
