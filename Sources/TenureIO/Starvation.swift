import CTenureSys
import Glibc
import TenureCore

extension String {
    fileprivate func trimmingCharacters(in set: String) -> Substring {
        let drop = Set(set)
        return self.drop(while: { drop.contains($0) }).reversed().drop(while: { drop.contains($0) }).reversed().reduce(into: Substring()) { $0.append($1) }
    }
}

/// What keeps the daemon from being starved on a busy host, as sanlock
/// does: its memory locked, so no page of the renewal path waits on a page
/// fault under memory pressure, and its threads scheduled round-robin at a
/// real-time priority, so CPU-bound processes never delay a renewal. Both
/// are on by default; test setups turn them off (`--lock-memory off`,
/// `--realtime off`).
public enum Starvation {
    /// The SCHED_RR priority of the daemon's threads: above every ordinary
    /// process, far below the kernel's own real-time threads (99).
    public static let realtimePriority: Int32 = 10

    /// mlockall(MCL_CURRENT | MCL_FUTURE).
    public static func lockMemory() throws(TenureError) {
        try Syscall.run(SyscallContext("mlockall", path: "/proc/self")) { mlockall(MCL_CURRENT | MCL_FUTURE) }
    }

    /// The kernel's OOM killer never picks this process (oom_score_adj
    /// -1000): a daemon killed for memory could not fence its holders.
    public static func shieldFromOOMKiller() throws(TenureError) {
        let path = "/proc/self/oom_score_adj"
        let fd = try Syscall.run(SyscallContext("open", path: path)) { open(path, O_WRONLY | O_CLOEXEC) }
        defer { _ = Glibc.close(fd) }
        let text = Array("-1000".utf8)
        try Syscall.run(SyscallContext("write", path: path, length: text.count)) { text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) } }
    }

    /// This process's oom_score_adj, for status.
    public static func oomScoreAdjustment() -> Int? {
        guard let file = fopen("/proc/self/oom_score_adj", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 32)
        guard fgets(&line, Int32(line.count), file) != nil else { return nil }
        return Int(String(cString: line).trimmingCharacters(in: " \n"))
    }

    /// Every thread of this process (and every one it starts later) at
    /// SCHED_RR `priority`. Returns how many threads were set.
    @discardableResult
    public static func useRealtimeScheduling(priority: Int32 = realtimePriority) throws(TenureError) -> Int {
        Int(try Syscall.run(SyscallContext("sched_setscheduler", path: "/proc/self/task")) { tenure_set_realtime_all_threads(priority) })
    }

    /// Whether the calling thread runs at a real-time policy (for status).
    public static var callerIsRealtime: Bool {
        let policy = tenure_thread_policy(0)
        return policy == SCHED_RR || policy == SCHED_FIFO
    }

    /// Locked memory of this process in KiB (VmLck), for status.
    public static func lockedKiB() -> Int? {
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(cString: line)
            if text.hasPrefix("VmLck:") {
                return text.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Int($0) }
            }
        }
        return nil
    }
}
