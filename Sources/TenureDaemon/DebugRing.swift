import Glibc
import Dispatch
import Logging
import Synchronization
import TenureCore
import TenureSyscall

/// The daemon's recent log, debug lines included, kept in memory for
/// `sanlock client log_dump`: what happened just before a problem, even
/// when the log file shows only info and above.
public final class DebugRing: Sendable {
    /// The most text kept; the oldest lines go first.
    public static let capacityBytes = 512 * 1024
    /// One ring per daemon process.
    public static let shared = DebugRing()

    private struct State {
        var lines: [String] = []
        var first = 0
        var bytes = 0
    }
    private let state = Mutex(State())

    public init() {}

    public func append(_ line: String) {
        state.withLock { s in
            s.lines.append(line)
            s.bytes += line.utf8.count + 1
            while s.bytes > Self.capacityBytes, s.first < s.lines.count {
                s.bytes -= s.lines[s.first].utf8.count + 1
                s.first += 1
            }
            // Compact now and then, so the array does not grow without bound.
            if s.first > 4096 {
                s.lines.removeFirst(s.first)
                s.first = 0
            }
        }
    }

    /// Everything kept, oldest first, a line each.
    public var text: String {
        state.withLock { s in s.lines[s.first...].joined(separator: "\n") }
    }
}

/// A log handler that writes every line, from debug up, into ``DebugRing``.
public struct RingLogHandler: LogHandler {
    public var logLevel: Logger.Level = .debug
    public var metadata: Logger.Metadata = [:]
    let ring: DebugRing
    let label: String

    public init(label: String, ring: DebugRing = .shared) {
        self.label = label
        self.ring = ring
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let seconds = WallClock.secondsSinceEpoch
        ring.append(Format.fixed(seconds, 3) + " \(event.level) \(event.message)")
    }
}
