import Glibc

/// Small text files (under /proc, pid files), read without Foundation.
public enum ProcFiles {
    /// The first `limit` bytes of `path`, or nil when it cannot be read.
    public static func text(_ path: String, limit: Int = 8192) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [UInt8](repeating: 0, count: limit)
        let count = fread(&buffer, 1, limit, file)
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// What /proc/PID/stat says of a process: its name (comm), its state
    /// letter and its start time (field 22, clock ticks since boot), which
    /// with the pid names one process and not a later one that reuses it.
    public struct ProcessStat: Sendable {
        public let name: String
        public let state: Character
        public let startTime: UInt64
        /// A zombie (or a dead task) runs no more.
        public var hasExited: Bool { state == "Z" || state == "X" }
    }

    /// /proc/PID/stat of `pid`, or nil when it cannot be read (gone).
    public static func stat(of pid: Int32) -> ProcessStat? {
        guard let text = text("/proc/\(pid)/stat"),
              let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")") else { return nil }
        // After ") ": state (field 3), …, starttime (field 22). The name may hold spaces and parentheses.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let state = fields[0].first, let start = UInt64(fields[19]) else { return nil }
        return ProcessStat(name: String(text[text.index(after: open) ..< close]), state: state, startTime: start)
    }

    /// The number of a `Field:  123 kB` line of /proc/self/status (VmRSS, VmLck, …).
    public static func selfStatusKiB(_ field: String) -> Int? {
        guard let line = text("/proc/self/status")?.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) }
    }
}
