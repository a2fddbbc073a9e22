import Glibc
import Logging

/// The daemon's log to syslog (journald reads it there): what a detached
/// daemon uses unless --log-file names a file. Tagged "tenure" with the pid,
/// facility daemon, each level at its syslog priority.
public struct SyslogLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    /// openlog keeps the pointer: the tag lives as long as the process.
    nonisolated(unsafe) static let tag = strdup("tenure")

    public init(label: String) {
        openlog(Self.tag, LOG_PID | LOG_NDELAY, LOG_DAEMON)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let text = strdup("\(event.message)")
        defer { free(text) }
        withVaList([text!]) { vsyslog(Self.priority(event.level), "%s", $0) }
    }

    static func priority(_ level: Logger.Level) -> Int32 {
        switch level {
        case .trace, .debug: LOG_DEBUG
        case .info: LOG_INFO
        case .notice: LOG_NOTICE
        case .warning: LOG_WARNING
        case .error: LOG_ERR
        case .critical: LOG_CRIT
        }
    }
}
