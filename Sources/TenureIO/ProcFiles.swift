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

    /// The number of a `Field:  123 kB` line of /proc/self/status (VmRSS, VmLck, …).
    public static func selfStatusKiB(_ field: String) -> Int? {
        guard let line = text("/proc/self/status")?.split(separator: "\n").first(where: { $0.hasPrefix(field + ":") }) else { return nil }
        return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first.flatMap { Int($0) }
    }
}
