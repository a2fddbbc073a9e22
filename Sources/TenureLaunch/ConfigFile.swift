import Glibc
import TenureCore

/// KEY=VALUE lines; # starts a comment.
public struct ConfigFile {
    public var values: [String: String] = [:]
    public var path = ""

    /// Reads `path`; with `known`, a key that is not one of them is refused
    /// at once, naming the nearest (a misspelled key would otherwise do
    /// nothing, silently: `io_timout=3`), and so is a key given twice.
    public static func load(_ path: String, required: Bool, known: [String]? = nil) throws -> ConfigFile {
        guard access(path, F_OK) == 0 else {
            if required { throw TenureError(.notFound, "The config file \(path) does not exist.") }
            return ConfigFile(path: path)
        }
        // Read with read(2): String(contentsOfFile:) refuses /dev/null and pipes.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw TenureError(.permissionDenied, "The config file \(path) cannot be opened for reading.",
                              remedy: "Check its permissions, or name another file with --config.")
        }
        defer { close(fd) }
        var bytes: [UInt8] = [], chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            bytes += chunk[..<n]
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw TenureError(.invalidArgument, "The config file \(path) could not be read as UTF-8 text.",
                              remedy: "Write it as KEY=VALUE lines of text, or name another file with --config.")
        }
        var file = ConfigFile(path: path)
        var firstLine: [String: Int] = [:]
        for (n, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
            let trimmed = line.trimmed
            guard !trimmed.isEmpty else { continue }
            let parts = trimmed.split(separator: "=", maxSplits: 1).map(\.trimmed)
            guard parts.count == 2, !parts[0].isEmpty else {
                throw TenureError(.invalidArgument, "\(path):\(n + 1): \"\(trimmed)\" is not KEY=VALUE.", remedy: "Write one setting per line, e.g. io-timeout=10.")
            }
            let key = parts[0].replacing("_", with: "-")
            if let known, !known.contains(key) {
                let nearest = Spelling.nearest(key, in: known).map { "Did you mean \($0)? " } ?? ""
                throw TenureError(.invalidArgument, "\(path):\(n + 1): \(parts[0]) is not a setting.",
                                  remedy: "\(nearest)The settings are: \(known.joined(separator: ", ")).")
            }
            // Twice is a mistake (an edit that left the old line): which one
            // was meant is not ours to guess. (Only for Tenure's own file,
            // the one read with `known`: sanlock.conf keeps sanlock's rule.)
            if known != nil, let first = firstLine[key] {
                throw TenureError(.invalidArgument, "\(path):\(n + 1): \(key) is set again; line \(first) set it already.",
                                  remedy: "Keep one of the two lines.")
            }
            firstLine[key] = n + 1
            file.values[key] = parts[1]
        }
        return file
    }

    public subscript(key: String) -> String? { values[key] }

    public func int(_ key: String) throws -> Int? {
        guard let text = values[key] else { return nil }
        guard let v = Int(text) else { throw TenureError(.invalidArgument, "\(path): \(key)=\(text) is not a number.") }
        return v
    }
}
