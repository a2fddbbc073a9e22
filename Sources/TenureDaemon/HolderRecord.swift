import Glibc
import Logging
import TenureCore
import TenureIO
import TenureSyscall

/// The lease holders of this daemon's incarnation, kept in the run dir so
/// that the next incarnation — after a crash, a SIGKILL, an OOM kill —
/// finds the holders this one left running and fences them before it pets
/// the watchdog (docs/safety.md, "A daemon that restarts"). The run dir is
/// on tmpfs (/run/tenure): the record outlives the daemon, not the host,
/// and a host that restarted has no holder left to fence.
///
/// An append-only file of lines `+ PID START NAME` (the process became a
/// holder) and `- PID START` (it holds nothing any more). START is the
/// process's start time (field 22 of /proc/PID/stat, clock ticks since
/// boot): with the pid it names one process, never a later one that
/// reuses the pid. Each line is one write(2) with O_APPEND, so a crash
/// leaves whole lines. The daemon writes a holder's line when the core
/// hands it its first lease, before the acquire's reply: a process never
/// uses a lease that the record does not name.
struct HolderRecord {
    /// One holder: a process named by its pid and start time.
    struct Holder: Hashable, Sendable {
        let pid: Int32
        let start: UInt64
        var name: String = ""

        static func == (a: Holder, b: Holder) -> Bool { a.pid == b.pid && a.start == b.start }
        func hash(into hasher: inout Hasher) {
            hasher.combine(pid)
            hasher.combine(start)
        }
    }

    static let fileName = "holders"
    /// Lines past which the file is rewritten with only the live holders.
    static let compactAfterLines = 4096

    let path: String
    private let fd: FileDescriptor
    private var lines = 0
    private(set) var live: [Int32: Holder] = [:]

    /// Opens (creating, empty) the record of `runDir`. Call it once the
    /// earlier incarnation's holders are fenced (``EarlierIncarnation``).
    init(runDir: String) throws(TenureError) {
        path = runDir + "/" + Self.fileName
        let path = path
        fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("open", path: path)) {
            open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0o600)
        })
    }

    /// Notes that `pid` holds leases now (when it did not).
    mutating func added(_ pid: Int32) {
        guard live[pid] == nil else { return }
        // A process that is gone already holds nothing worth fencing later.
        guard let holder = Self.identify(pid) else { return }
        live[pid] = holder
        append("+ \(holder.pid) \(holder.start) \(holder.name)\n")
    }

    /// Notes that `pid` holds nothing now.
    mutating func removed(_ pid: Int32) {
        guard let holder = live.removeValue(forKey: pid) else { return }
        if live.isEmpty {
            // Nothing held: an empty file says so, and keeps it small.
            lines = 0
            _ = try? Syscall.run(SyscallContext("ftruncate", path: path)) { ftruncate(fd.rawValue, 0) }
            return
        }
        append("- \(holder.pid) \(holder.start)\n")
        if lines > Self.compactAfterLines { compact() }
    }

    /// Makes the record name exactly `pids` (the core's holders).
    mutating func match(_ pids: Set<Int32>) {
        for pid in live.keys where !pids.contains(pid) { removed(pid) }
        for pid in pids where live[pid] == nil { added(pid) }
    }

    /// Closes the record, removing it: a daemon that stops holds nothing.
    func remove() {
        close()
        try? Syscall.removeIfPresent(path)
    }

    /// Closes the record and leaves it for the next incarnation.
    func close() {
        try? Syscall.close(fd, path: path)
    }

    private mutating func append(_ line: String) {
        lines += 1
        let bytes = Array(line.utf8)
        do {
            _ = try Syscall.run(SyscallContext("write", path: path, length: bytes.count)) {
                bytes.withUnsafeBytes { write(fd.rawValue, $0.baseAddress, $0.count) }
            }
        } catch {
            // The record is how a restart finds holders: losing a line is worth a loud word.
            StandardError.write("tenure: cannot record a lease holder in \(path): \(error.message)\n")
        }
    }

    /// Rewrites the file with the live holders only.
    private mutating func compact() {
        lines = 0
        _ = try? Syscall.run(SyscallContext("ftruncate", path: path)) { ftruncate(fd.rawValue, 0) }
        for holder in live.values.sorted(by: { $0.pid < $1.pid }) {
            append("+ \(holder.pid) \(holder.start) \(holder.name)\n")
        }
    }

    // MARK: Reading what an earlier incarnation left

    /// The holders a record names as live, in the order they came.
    static func read(runDir: String) -> [Holder] {
        guard let text = ProcFiles.text(runDir + "/" + fileName, limit: 1 << 22) else { return [] }
        var live: [Holder] = []
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ", maxSplits: 3)
            guard words.count >= 3, let pid = Int32(words[1]), let start = UInt64(words[2]) else { continue }
            let holder = Holder(pid: pid, start: start, name: words.count > 3 ? String(words[3]) : "")
            if words[0] == "+" {
                if !live.contains(holder) { live.append(holder) }
            } else if words[0] == "-" {
                live.removeAll { $0 == holder }
            }
        }
        return live
    }

    /// `pid` as it runs now (its start time and name), or nil when it is gone.
    static func identify(_ pid: Int32) -> Holder? {
        guard let stat = ProcFiles.text("/proc/\(pid)/stat"),
              let open = stat.firstIndex(of: "("), let close = stat.lastIndex(of: ")") else { return nil }
        let name = String(stat[stat.index(after: open) ..< close])
        // After ") ": state (field 3), …, starttime (field 22).
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let start = UInt64(fields[19]) else { return nil }
        let state = fields[0]
        guard state != "Z" && state != "X" else { return nil }
        return Holder(pid: pid, start: start, name: name.filter { $0 != " " })
    }
}

/// What an earlier incarnation of the daemon left: a crash, a SIGKILL or an
/// OOM kill ends the daemon but not the processes it held leases for. Those
/// leases are renewed by nobody from then on: other hosts take them 8N + W
/// after the last renewal. Each holder must be gone before then, and before
/// this host's watchdog is petted again (opening the device pets it), or a
/// holder would run on beside the next one on another host.
enum EarlierIncarnation {
    /// Fences every holder the record names that still runs (SIGKILL
    /// through a pidfd, after checking the pid still names that process)
    /// and waits until they are gone. Throws when one survives SIGKILL
    /// within `wait`: the daemon must not start, so that nothing pets the
    /// watchdog the earlier incarnation left armed, and it resets the host.
    /// Blocks: run it where that may (``ThreadRole``).
    static func fenceHolders(runDir: String, wait: Duration, log: Logger) throws(TenureError) {
        let left = HolderRecord.read(runDir: runDir)
        guard !left.isEmpty else { return }
        ThreadRole.checkMayBlock("waiting for an earlier incarnation's holders to exit")
        var running: [(HolderRecord.Holder, LocalProcess)] = []
        for holder in left {
            // Named by a pidfd first, then checked: a pid reused after the check cannot be hit.
            guard let process = try? LocalProcess.open(pid: holder.pid, uid: 0, gid: 0),
                  let now = HolderRecord.identify(holder.pid), now == holder, !process.exited else { continue }
            // Named as it runs now (a holder may have exec'd since it was recorded).
            running.append((now, process))
        }
        guard !running.isEmpty else {
            log.notice("an earlier incarnation of the daemon recorded \(left.count) lease holder(s); none runs any more")
            return
        }
        let names = running.map { "\($0.0.pid) (\($0.0.name))" }.joined(separator: ", ")
        log.warning("an earlier incarnation of the daemon ended while processes held leases through it: \(names). Nobody renews their lockspaces now; fencing them before the watchdog is petted")
        for (holder, process) in running {
            process.signal(SIGKILL)
            log.warning("fenced process \(holder.pid) (\(holder.name)), a lease holder of an earlier incarnation: SIGKILL")
        }
        let clock = SystemMonotonicClock.shared
        let deadline = clock.now() + wait
        while running.contains(where: { !$0.1.exited }), clock.now() < deadline {
            usleep(UInt32(Timeouts.fencePoll / .microseconds(1)))
        }
        let survivors = running.filter { !$0.1.exited }.map { "\($0.0.pid) (\($0.0.name))" }
        guard survivors.isEmpty else {
            log.critical("the watchdog is left unpetted on purpose: \(survivors.joined(separator: ", ")), holding leases of an earlier incarnation, survived SIGKILL for \(wait). The watchdog that incarnation armed will reset this host.")
            throw TenureError(.lockspaceLost, "Lease holders of an earlier incarnation survive SIGKILL: \(survivors.joined(separator: ", ")).",
                              remedy: "The watchdog resets this host unless they exit; see the log. The daemon starts once they are gone.")
        }
    }
}
