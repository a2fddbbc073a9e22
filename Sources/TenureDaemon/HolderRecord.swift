import Glibc
import Logging
import TenureCore
import TenureHost
import TenureIO
import TenureSyscall

/// The lease holders of this daemon's incarnation, kept in the run dir so
/// that the next incarnation — after a crash, a SIGKILL, an OOM kill —
/// finds the holders this one left running and fences them before it pets
/// the watchdog (docs/safety.md, "A daemon that restarts"). The run dir is
/// on tmpfs (/run/tenure): the record outlives the daemon, not the host,
/// and a host that restarted has no holder left to fence.
///
/// A table of fixed slots, one per holder: `PID START NAME`, padded to
/// ``slotBytes``; a free slot is all zero. START is the process's start time
/// (field 22 of /proc/PID/stat, clock ticks since boot): with the pid it
/// names one process, never a later one that reuses the pid. The file is
/// allocated whole when the daemon starts (one slot per lease it may hold:
/// every holder holds one at least), so a run dir that fills up later cannot
/// make a holder go unrecorded: a full run dir stops the start instead. A
/// slot is written with one pwrite(2), which a crash of the daemon does not
/// tear. The daemon writes a holder's slot when the core hands it its first
/// lease, before the acquire's reply: a process never uses a lease that the
/// record does not name.
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

        /// The slot's bytes: the text, padded with zeros.
        var slot: [UInt8] {
            var bytes = Array("\(pid) \(start) \(name.prefix(16))\n".utf8.prefix(HolderRecord.slotBytes))
            bytes += [UInt8](repeating: 0, count: HolderRecord.slotBytes - bytes.count)
            return bytes
        }
    }

    static let fileName = "holders"
    /// One slot: room for a pid, a start time and a 15-byte name.
    static let slotBytes = 64

    let path: String
    private let fd: FileDescriptor
    private var freeSlots: [Int]
    private(set) var live: [Int32: (holder: Holder, slot: Int)] = [:]

    /// Creates the record of `runDir`, empty, with room for `capacity`
    /// holders allocated now. Call it once the earlier incarnation's holders
    /// are fenced (``EarlierIncarnation``).
    init(runDir: String, capacity: Int) throws(TenureError) {
        path = runDir + "/" + Self.fileName
        let path = path
        fd = FileDescriptor(rawValue: try Syscall.run(SyscallContext("open", path: path)) {
            open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o600)
        })
        let bytes = capacity * Self.slotBytes
        let rc = posix_fallocate(fd.rawValue, 0, off_t(bytes))
        guard rc == 0 else {
            try? Syscall.close(fd, path: path)
            try? Syscall.removeIfPresent(path)
            throw TenureError(.ioFailed, "Cannot allocate the lease holders' record \(path) (\(bytes) bytes): \(Errno(rawValue: rc)).",
                              remedy: "Free space on the run dir's filesystem (df -h \(runDir)), or lower max-leases.", errno: rc)
        }
        freeSlots = Array((0 ..< capacity).reversed())
    }

    /// Notes that `pid` holds leases now (when it did not).
    mutating func added(_ pid: Int32) {
        guard live[pid] == nil else { return }
        // A process that is gone already holds nothing worth fencing later.
        guard let holder = Self.identify(pid) else { return }
        guard let slot = freeSlots.popLast() else {
            // More holders than leases: the core's limit makes this our bug.
            StandardError.write("tenure: no free slot in \(path) for process \(pid)\n")
            return
        }
        live[pid] = (holder, slot)
        write(holder.slot, at: slot)
    }

    /// Notes that `pid` holds nothing now.
    mutating func removed(_ pid: Int32) {
        guard let (_, slot) = live.removeValue(forKey: pid) else { return }
        write([UInt8](repeating: 0, count: Self.slotBytes), at: slot)
        freeSlots.append(slot)
    }

    /// Makes the record name exactly the core's holders, `leases`' keys.
    /// Runs at every change of the core: the common case (no holder came
    /// or went) compares counts and allocates nothing.
    mutating func match<Leases>(_ leases: [ProcessID: Leases]) {
        for pid in live.keys where leases[ProcessID(pid)] == nil { removed(pid) }
        guard leases.count != live.count else { return }
        for pid in leases.keys where live[pid.rawValue] == nil { added(pid.rawValue) }
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

    private func write(_ bytes: [UInt8], at slot: Int) {
        let offset = slot * Self.slotBytes
        do throws(TenureError) {
            let written = try Syscall.run(SyscallContext("pwrite", path: path, offset: UInt64(offset), length: bytes.count)) {
                bytes.withUnsafeBytes { pwrite(fd.rawValue, $0.baseAddress, $0.count, off_t(offset)) }
            }
            guard written == bytes.count else { throw TenureError(.shortIO, "pwrite of \(bytes.count) bytes on \(path) wrote \(written).") }
        } catch {
            // The space was allocated at start: only a failing tmpfs gets here.
            StandardError.write("tenure: cannot record a lease holder in \(path): \(error.message)\n")
        }
    }

    // MARK: Reading what an earlier incarnation left

    /// The holders a record names, slot by slot.
    static func read(runDir: String) -> [Holder] {
        let path = runDir + "/" + fileName
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var holders: [Holder] = []
        var slot = [UInt8](repeating: 0, count: slotBytes)
        while fread(&slot, 1, slotBytes, file) == slotBytes {
            guard slot[0] != 0 else { continue }
            let text = String(decoding: slot.prefix { $0 != 0 && $0 != 10 }, as: UTF8.self)
            let words = text.split(separator: " ", maxSplits: 2)
            guard words.count >= 2, let pid = Int32(words[0]), let start = UInt64(words[1]) else { continue }
            let holder = Holder(pid: pid, start: start, name: words.count > 2 ? String(words[2]) : "")
            if !holders.contains(holder) { holders.append(holder) }
        }
        return holders
    }

    /// `pid` as it runs now (its start time and name), or nil when it is gone.
    static func identify(_ pid: Int32) -> Holder? {
        guard let stat = ProcFiles.stat(of: pid), !stat.hasExited else { return nil }
        return Holder(pid: pid, start: stat.startTime, name: stat.name.filter { $0 != " " })
    }
}

/// What an earlier incarnation of the daemon left: a crash, a SIGKILL or an
/// OOM kill ends the daemon but not the processes it held leases for. Those
/// leases are renewed by nobody from then on: other hosts take them 8N + W
/// after the last renewal. Each holder must be gone before then, and before
/// this host's watchdog is petted again (opening the device pets it), or a
/// holder would run on beside the next one on another host.
///
/// This is the shell of that step: it finds the holders (the record, each
/// checked against the process running now through a pidfd) and carries
/// out what the host core decides (`HostCore.earlierIncarnationLeft`) —
/// the same core the simulator runs through daemon crashes and restarts.
enum EarlierIncarnation {
    /// Fences every holder the record names that still runs and waits until
    /// they are gone, as the core directs. Throws when one survives SIGKILL
    /// for W: the daemon must not start, so that nothing pets the watchdog
    /// the earlier incarnation left armed, and it resets the host.
    /// Blocks: run it where that may (``ThreadRole``).
    static func fenceHolders(runDir: String, settings: HostCoreSettings, log: Logger) throws(TenureError) {
        let left = HolderRecord.read(runDir: runDir)
        guard !left.isEmpty else { return }
        ThreadRole.checkMayBlock("waiting for an earlier incarnation's holders to exit")
        var running: [ProcessID: (holder: HolderRecord.Holder, process: LocalProcess)] = [:]
        for holder in left {
            // Named by a pidfd first, then checked: a pid reused after the check cannot be hit.
            guard let process = try? LocalProcess.open(pid: holder.pid, uid: 0, gid: 0),
                  let now = HolderRecord.identify(holder.pid), now == holder, !process.exited else { continue }
            // Named as it runs now (a holder may have exec'd since it was recorded).
            running[ProcessID(holder.pid)] = (now, process)
        }
        guard !running.isEmpty else {
            log.notice("an earlier incarnation of the daemon recorded \(left.count) lease holder(s); none runs any more")
            return
        }
        let clock = SystemMonotonicClock.shared
        var core = HostCore(settings: settings)
        var directives = core.earlierIncarnationLeft(running.sorted { $0.key < $1.key }.map { ($0.key, $0.value.holder.name) }, at: clock.now())
        while true {
            for directive in directives {
                switch directive {
                case .signal(let pid, let stop): running[pid]?.process.signal(stop == .kill ? SIGKILL : SIGTERM)
                case .log(let level, let text): log.log(level: level.logging, "\(text)")
                case .runKillpath, .writeRelease, .forget, .pet: break
                }
            }
            guard !core.mayPet(at: clock.now()) else { return }
            guard !core.earlierHoldersSurviveKill else {
                let survivors = core.inheritedHolders.map { "\($0) (\(running[$0]?.holder.name ?? "?"))" }.joined(separator: ", ")
                throw TenureError(.lockspaceLost, "Lease holders of an earlier incarnation survive SIGKILL: \(survivors).",
                                  remedy: "The watchdog resets this host unless they exit; see the log. The daemon starts once they are gone.")
            }
            usleep(UInt32(Timeouts.fencePoll / .microseconds(1)))
            directives = []
            for pid in core.inheritedHolders where running[pid]?.process.exited ?? true {
                directives += core.processExited(pid, at: clock.now())
            }
            directives += core.tick(at: clock.now())
        }
    }
}
