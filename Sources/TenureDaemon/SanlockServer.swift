import CTenureSys
import Glibc
import Dispatch
import Logging
import TenureCore
import TenureIO
import TenureSanlockWire
import TenureSyscall

/// sanlock's socket, served beside Tenure's own, so that libsanlock's
/// clients (python3-sanlock, libvirt's sanlock plugin, lvmlockd) work with
/// this daemon unchanged. Each connection reads sanlock's header and
/// payload, decodes them into a ``SanlockRequest`` and then the one
/// ``Request`` at the edge (``SanlockCodec``), and waits for the daemon's
/// one handler (``Daemon/handle(_:from:socket:)``).
///
/// The run dir's `sanlock.pid` carries the same POSIX lock sanlock's own
/// daemon takes: the two never serve one run dir at once.
final class SanlockServer: @unchecked Sendable {
    let runDir: String
    let listener: FileDescriptor
    let pidFile: FileDescriptor
    let log: Logger
    var socketPath: String { runDir + "/" + SanlockWire.socketName }
    var pidPath: String { runDir + "/sanlock.pid" }

    init(runDir: String, group: gid_t?, log: Logger) throws {
        self.runDir = runDir
        self.log = log
        try DaemonServer.prepareRunDir(runDir)
        pidFile = try Self.lock(runDir + "/sanlock.pid")
        do {
            listener = try DaemonServer.bind(runDir + "/" + SanlockWire.socketName, group: group)
        } catch {
            try? Syscall.close(pidFile, path: runDir + "/sanlock.pid")
            throw error
        }
        log.info("serving sanlock's client protocol on \(runDir)/\(SanlockWire.socketName)")
    }

    /// Takes sanlock.pid's POSIX lock and writes our pid; refuses when a
    /// sanlock daemon (or another Tenure daemon) holds it.
    static func lock(_ path: String) throws -> FileDescriptor {
        let fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("open", path: path)) {
            open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0o644)
        })
        do {
            try Syscall.run(SyscallContext("fcntl(F_SETLK)", path: path)) { tenure_posix_lock_file(fd.rawValue) }
        } catch {
            try? Syscall.close(fd, path: path)
            guard error.errno == EAGAIN || error.errno == EACCES else { throw error }
            let other = ProcFiles.text(path)?.trimmed ?? "?"
            throw TenureError(.alreadyExists, "A sanlock daemon (pid \(other)) serves \(path.dropLast("/sanlock.pid".count)) already.",
                              remedy: "Stop it (systemctl stop sanlock) before Tenure serves its clients, or give --sanlock-run-dir another folder.")
        }
        let text = Array("\(getpid())\n".utf8)
        try Syscall.run(SyscallContext("ftruncate", path: path)) { ftruncate(fd.rawValue, 0) }
        _ = try Syscall.run(SyscallContext("pwrite", path: path, offset: 0, length: text.count)) {
            text.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, 0) }
        }
        return fd
    }

    /// Removes the socket and the pid file (the loop has stopped accepting).
    func close() {
        UnixSocket.shutdown(listener, path: socketPath)
        try? Syscall.close(listener, path: socketPath)
        try? Syscall.removeIfPresent(socketPath)
        try? Syscall.removeIfPresent(pidPath)
        try? Syscall.close(pidFile, path: pidPath)
    }
}
