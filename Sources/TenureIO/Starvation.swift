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

    /// Locks the daemon's memory. Every file mapped now — the program's
    /// code and data and its libraries', so every path it may take, the
    /// rare ones too — is faulted in whole and locked: none waits on a read
    /// from disk later, when the disk may be the thing that hangs. Every
    /// other page, now and later (heap, thread stacks), is locked once
    /// touched (MCL_ONFAULT); an untouched one is a zero page the kernel
    /// hands out without I/O. Faulting in every reservation whole instead
    /// (MCL_CURRENT, and MCL_FUTURE without MCL_ONFAULT: 512 KiB per thread
    /// stack, 64 MiB per malloc arena) locked memory the daemon never uses.
    public static func lockMemory() throws(TenureError) {
        try Syscall.run(SyscallContext("mlockall", path: "/proc/self")) { mlockall(MCL_CURRENT | MCL_FUTURE | Self.lockOnFault) }
        for mapping in fileMappings() {
            try Syscall.run(SyscallContext("mlock", path: mapping.path, length: mapping.length)) {
                mlock(mapping.start, mapping.length)
            }
        }
    }

    /// A file's mapping in this process.
    struct FileMapping {
        let start: UnsafeRawPointer
        let length: Int
        let path: String
    }

    /// The largest /proc/self/maps read (a daemon's is a few KiB).
    static let mapsLimitBytes = 1 << 20

    /// The accessible mappings of files (not PROT_NONE guards, not
    /// anonymous memory, not the kernel's [vdso]), from /proc/self/maps.
    static func fileMappings() -> [FileMapping] {
        guard let maps = ProcFiles.text("/proc/self/maps", limit: mapsLimitBytes) else { return [] }
        return maps.split(separator: "\n").compactMap { line -> FileMapping? in
            // start-end perms offset dev inode path
            let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
            guard fields.count == 6, fields[4] != "0", !fields[1].hasPrefix("---") else { return nil }
            let path = fields[5].trimmed
            guard path.hasPrefix("/") else { return nil }
            let range = fields[0].split(separator: "-")
            guard range.count == 2, let start = UInt(range[0], radix: 16), let end = UInt(range[1], radix: 16), end > start,
                  let pointer = UnsafeRawPointer(bitPattern: start) else { return nil }
            return FileMapping(start: pointer, length: Int(end - start), path: path)
        }
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
