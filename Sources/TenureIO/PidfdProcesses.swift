import CTenureSys
import Glibc
import Synchronization
import TenureCore
import TenureSyscall

/// A local process the daemon deals with, named by a pidfd: a signal, or a
/// check that it still runs, reaches this process and never a later one
/// that happens to reuse its pid.
///
/// The pidfd comes from the connection (SO_PEERPIDFD: the process that
/// connected, Linux 6.5+) or from pidfd_open(2) when a privileged client
/// acquires for another pid.
public final class LocalProcess: @unchecked Sendable {
    public let pid: Int32
    /// The credentials a killpath runs with: those of the process that set it.
    public let uid: UInt32
    public let gid: UInt32
    private let pidfd: Int32

    /// Takes ownership of `pidfd`.
    public init(pid: Int32, pidfd: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.pidfd = pidfd
        self.uid = uid
        self.gid = gid
    }

    /// Names process `pid` as it is now; throws when it does not exist.
    public static func open(pid: Int32, uid: UInt32, gid: UInt32) throws -> LocalProcess {
        let fd: Int32
        do {
            fd = try Syscall.run(SyscallContext("pidfd_open", path: "/proc/\(pid)")) { tenure_pidfd_open(pid) }
        } catch {
            guard error.errno == ESRCH else { throw error }
            throw TenureError(.invalidArgument, "Process \(pid) does not exist.", errno: ESRCH)
        }
        return LocalProcess(pid: pid, pidfd: fd, uid: uid, gid: gid)
    }

    deinit { try? Syscall.close(FileDescriptor(rawValue: pidfd), path: "the pidfd of process \(pid)") }

    /// Whether the process has exited (a zombie has: it holds nothing). A
    /// pidfd that cannot be polled says "still running": fencing goes on
    /// rather than give a lease up for a process that may still use it.
    public var exited: Bool {
        ((try? Syscall.run(SyscallContext("poll", path: "the pidfd of process \(pid)")) { tenure_pidfd_exited(pidfd) }) ?? 0) == 1
    }

    /// Sends `signal`; false once the process is gone (ESRCH). Any other
    /// refusal (EPERM) is not "gone": it counts as sent, and the fence
    /// loop keeps watching and escalating.
    @discardableResult
    public func signal(_ signal: Int32) -> Bool {
        do {
            try Syscall.run(SyscallContext("pidfd_send_signal", path: "the pidfd of process \(pid)")) { tenure_pidfd_send_signal(pidfd, signal) }
            return true
        } catch {
            return error.errno != ESRCH
        }
    }
}

/// The owner and group of a process, from /proc (for a process a privileged
/// client acquires for, which never connected itself).
public func processCredentials(_ pid: Int32) -> (uid: UInt32, gid: UInt32)? {
    var info = stat()
    guard stat("/proc/\(pid)", &info) == 0 else { return nil }
    return (info.st_uid, info.st_gid)
}

/// The daemon's ``LocalProcesses``: every process it deals with (connected,
/// or holding leases), each named by a pidfd.
public final class PidfdProcesses: LocalProcesses, Sendable {
    private let table = Mutex<[Int32: LocalProcess]>([:])
    /// Killpath programs still running, by pid, each named by a pidfd:
    /// reaped by ``reapChildren()`` once their pidfd says they exited.
    private let children = Mutex<[Int32: LocalProcess]>([:])
    /// The environment variable a killpath finds the holder's pid in.
    public let killPidVariable: String

    public init(killPidVariable: String) {
        self.killPidVariable = killPidVariable
    }

    /// The process `pid` as named now, if it is tracked and has not exited.
    public func live(_ pid: Int32) -> LocalProcess? {
        table.withLock { $0[pid] }.flatMap { $0.exited ? nil : $0 }
    }

    public func isTracked(_ pid: Int32) -> Bool { table.withLock { $0[pid] != nil } }

    /// Names `pid` by `process` (a record of an earlier process with this
    /// number is replaced).
    public func track(_ process: LocalProcess) { table.withLock { $0[process.pid] = process } }

    public func forget(_ pid: Int32) { table.withLock { $0[pid] = nil } }

    @discardableResult
    public func signal(_ pid: ProcessID, _ signal: StopSignal) -> Bool {
        guard let process = table.withLock({ $0[pid.rawValue] }) else { return false }
        return process.signal(signal == .kill ? SIGKILL : SIGTERM)
    }

    public func runKillpath(_ argv: [String], for pid: ProcessID) -> Bool {
        guard let process = table.withLock({ $0[pid.rawValue] }), let program = argv.first else { return false }
        let environment = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin", "\(killPidVariable)=\(pid)"]
        let child = Self.spawn(program, argv, environment: environment, uid: process.uid, gid: process.gid)
        guard child > 0 else { return false }
        // Named by a pidfd (our child: its pid cannot be reused before we
        // reap it) and reaped once it exited, by the fence loop's
        // ``reapChildren()``: nothing waits for it, nothing blocks. A pidfd
        // that cannot be opened leaves a zombie until the daemon exits,
        // which is untidy, not unsafe.
        if let named = try? LocalProcess.open(pid: child, uid: process.uid, gid: process.gid) {
            children.withLock { $0[child] = named }
        }
        return true
    }

    /// Reaps the killpath programs that exited (waitpid without waiting);
    /// the fence loop calls it every tick. Returns how many it reaped.
    @discardableResult
    public func reapChildren() -> Int {
        let exited = children.withLock { table in table.filter { $0.value.exited }.map(\.key) }
        for pid in exited {
            var status: Int32 = 0
            _ = try? Syscall.run(SyscallContext("waitpid", path: "killpath process \(pid)")) { waitpid(pid, &status, WNOHANG) }
            children.withLock { $0[pid] = nil }
        }
        return exited.count
    }

    /// The killpath programs not yet reaped, by pid.
    public var unreapedChildren: [Int32] { children.withLock { $0.keys.sorted() } }

    public func hasExited(_ pid: ProcessID) -> Bool {
        guard let process = table.withLock({ $0[pid.rawValue] }) else { return !Self.alive(pid.rawValue) }
        return process.exited
    }

    /// fork + exec of `argv` as `uid`/`gid` (CTenureSys does the child's side in C).
    static func spawn(_ path: String, _ argv: [String], environment: [String], uid: UInt32, gid: UInt32) -> Int32 {
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        var cEnv: [UnsafeMutablePointer<CChar>?] = environment.map { strdup($0) } + [nil]
        defer {
            for p in cArgs { free(p) }
            for p in cEnv { free(p) }
        }
        return tenure_spawn_as(path, &cArgs, &cEnv, uid, gid)
    }

    /// Whether `pid` still runs (a zombie counts as gone), for a process not
    /// tracked by a pidfd.
    public static func alive(_ pid: Int32) -> Bool {
        do {
            try Syscall.run(SyscallContext("kill(0)", path: "/proc/\(pid)")) { Glibc.kill(pid, 0) }
        } catch {
            return error.errno != ESRCH
        }
        // Unreadable: say "still running", as a pidfd that cannot be polled does.
        guard let stat = ProcFiles.stat(of: pid) else { return true }
        return !stat.hasExited
    }
}
