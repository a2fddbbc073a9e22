import CTenureSys
import Glibc
import TenureCore
import TenureSyscall

/// What keeps the daemon from being starved on a busy host, as sanlock
/// does: its memory locked, so no page of the renewal path waits on a page
/// fault under memory pressure, the OOM killer told to spare it, and the
/// renewal path (``RenewalThread`` and its device's reaper) scheduled
/// round-robin at a real-time priority, so CPU-bound processes never delay
/// a renewal.
public enum Starvation {
    /// The SCHED_RR priority of the renewal path: above every ordinary
    /// process, far below the kernel's own real-time threads (99).
    public static let realtimePriority: Int32 = 10

    /// Locks the daemon's memory: everything mapped now is faulted in and
    /// locked (the binary, its libraries, the heap so far), and every page
    /// mapped later is locked once touched (MCL_ONFAULT). Plain MCL_FUTURE
    /// would fault in and lock each whole reservation at once — 8 MiB per
    /// thread stack, 64 MiB per malloc arena — most never used: 134 MB
    /// resident with one lockspace, where the daemon touches 18 MB.
    public static func lockMemory() throws(TenureError) {
        try Syscall.run(SyscallContext("mlockall", path: "/proc/self")) { mlockall(MCL_CURRENT) }
        try Syscall.run(SyscallContext("mlockall", path: "/proc/self")) { mlockall(MCL_CURRENT | MCL_FUTURE | Self.lockOnFault) }
    }

    /// MCL_ONFAULT (Linux 4.4), which Glibc's module does not export.
    static let lockOnFault: Int32 = 4

    /// The kernel's OOM killer never picks this process (oom_score_adj
    /// -1000): a daemon killed for memory could not fence its holders.
    public static func shieldFromOOMKiller() throws(TenureError) {
        let path = "/proc/self/oom_score_adj"
        let fd = try Syscall.run(SyscallContext("open", path: path)) { open(path, O_WRONLY | O_CLOEXEC) }
        defer { try? Syscall.close(FileDescriptor(rawValue: fd), path: path) }
        let text = Array("-1000".utf8)
        try Syscall.run(SyscallContext("write", path: path, length: text.count)) { text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }

    /// This process's oom_score_adj, for status.
    public static func oomScoreAdjustment() -> Int? {
        ProcFiles.text("/proc/self/oom_score_adj")?.split(whereSeparator: \.isWhitespace).first.flatMap { Int($0) }
    }

    /// Whether the calling thread runs at a real-time policy (for status).
    public static var callerIsRealtime: Bool {
        let policy = tenure_thread_policy(0)
        return policy == SCHED_RR || policy == SCHED_FIFO
    }

    /// Locked memory of this process in KiB (VmLck), for status.
    public static func lockedKiB() -> Int? { ProcFiles.selfStatusKiB("VmLck") }
}
