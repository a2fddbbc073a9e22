import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureSyscall

/// Where the command's words go: results to stdout, errors and progress to stderr.
enum Terminal {
    static func printError(_ error: TenureError) {
        var text = "tenure: error [\(error.code.rawValue)]: \(error.message)\n"
        if !error.remedy.isEmpty { text += "  \(error.remedy)\n" }
        standardError(text)
    }

    static func warn(_ text: String) {
        standardError("tenure: warning: \(text)\n")
    }

    /// Writes `text` to stderr, unbuffered.
    static func standardError(_ text: String) {
        StandardError.write(text)
    }

    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }

    /// Encodes `value` as one line of JSON with sorted keys.
    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard let data = try? encoder.encode(value) else { preconditionFailure("JSON encoding of a plain value failed") }
        return String(decoding: data, as: UTF8.self)
    }

    /// Left-aligned columns separated by two spaces.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        let all = [header] + rows
        let widths = header.indices.map { c in all.map { $0[c].count }.max() ?? 0 }
        return all.map { row in
            row.indices.map { c in c == row.count - 1 ? row[c] : Format.leftAligned(row[c], widths[c]) }
                .joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// The nearest-rank percentile `p` (0...1) of ascending `sorted`; nil if empty.
/// What `probe` and `bench` report as p50 and p99.
func percentile(_ sorted: [Double], _ p: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    return sorted[min(sorted.count - 1, max(0, Int((Double(sorted.count) * p).rounded(.up)) - 1))]
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
struct ProgressBar {
    let total: Int
    let label: String
    let enabled: Bool
    private static let width = 30

    init(total: Int, label: String, enabled: Bool = Terminal.stderrIsTerminal) {
        self.total = max(total, 1)
        self.label = label
        self.enabled = enabled
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let filled = Self.width * done / total
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: Self.width - filled)
        Terminal.standardError("\r\(label) [\(bar)] \(done)/\(total)")
    }

    func finish() {
        guard enabled else { return }
        Terminal.standardError("\n")
    }
}
