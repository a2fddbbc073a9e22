import Glibc
import TenureCore

/// This process's environment and host name, read through libc: what
/// Foundation's ProcessInfo gave, for modules that do without Foundation
/// (the daemon's binary links none of it; docs/architecture.md).
public enum ProcessEnvironment {
    /// The value of `name`, or nil when it is unset.
    public static func value(_ name: String) -> String? {
        getenv(name).map { String(cString: $0) }
    }

    /// The limit of a host name (HOST_NAME_MAX) plus its terminator.
    static let hostNameCapacity = 256

    /// gethostname(2), or "localhost" if it fails (it cannot with this buffer).
    public static var hostName: String {
        var buffer = [CChar](repeating: 0, count: hostNameCapacity)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// The wall clock, for log lines and people only: every deadline and
/// timeout runs on CLOCK_MONOTONIC (``SystemMonotonicClock`` in TenureIO).
public enum WallClock {
    /// Seconds since 1970 (CLOCK_REALTIME), with the fraction.
    public static var secondsSinceEpoch: Double {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
    }
}

/// This process's standard error.
public enum StandardError {
    /// Writes `text` unbuffered (a short write is retried; a failed one has
    /// nowhere to be reported).
    public static func write(_ text: String) {
        var bytes = Array(text.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return }
            bytes = bytes.dropFirst(n)
        }
    }
}
