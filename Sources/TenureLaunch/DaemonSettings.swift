import Glibc
import Logging
import TenureClient
import TenureCore
import TenureDaemon
import TenureEngine
import TenureSyscall

/// The daemon's settings: flags over the config file over defaults, checked
/// in one place, by `tenure daemon` before it detaches or hands over to
/// `tenured`, and again by `tenured` itself.
public enum DaemonSettings {
    /// The config file's keys: every flag of the daemon but --config and
    /// --foreground (`tenure.conf(5)` lists them).
    public static let keys = ["run-dir", "host-name", "io-timeout", "watchdog", "watchdog-fire", "kill-grace", "socket-group", "log-level",
                              "max-connections", "max-leases", "log-file", "lock-memory", "realtime", "sanlock-run-dir", "metrics-listen"]

    /// Where the settings are read from unless --config names another file.
    public static let defaultConfigPath = "/etc/tenure/tenure.conf"

    /// The most bytes of the machine's host name the daemon writes into its
    /// delta leases by default (sanlock's field holds 48).
    static let hostNameBytes = 48

    /// `flags` (by key, as given on the command line) over the config file
    /// at `configPath` over the defaults.
    public static func load(flags: [String: String], configPath: String) throws -> (DaemonConfig, Logger.Level) {
        let file = try ConfigFile.load(configPath, required: false, known: keys)
        func value(_ key: String) -> String? { flags[key] ?? file[key] }
        func int(_ key: String) throws -> Int? {
            guard let text = flags[key] else { return try file.int(key) }
            guard let number = Int(text) else {
                throw TenureError(.invalidArgument, "--\(key) \(text) is not a whole number.", remedy: "Give --\(key) a number of \(key == "max-connections" || key == "max-leases" ? "items" : "seconds").")
            }
            return number
        }
        let levelName = value("log-level") ?? "info"
        guard let level = Logger.Level(rawValue: levelName) else {
            throw TenureError(.invalidArgument, "--log-level \(levelName) is not a level.", remedy: "Use trace, debug, info, notice, warning, error or critical.")
        }
        let dir = value("run-dir") ?? Wire.runDir
        if let given = value("host-name"), given.utf8.count > hostNameBytes || given.isEmpty || given.utf8.contains(0) {
            // Checked now, not at the first join: the name goes into every delta lease this host writes.
            throw TenureError(.invalidArgument, "--host-name \"\(given)\" is \(given.utf8.count) bytes; a host name is 1...\(hostNameBytes) bytes of UTF-8 without NUL.",
                              remedy: "Give a shorter --host-name (host-name in tenure.conf), or leave it out to use the machine's name, cut to \(hostNameBytes) bytes.")
        }
        var c = DaemonConfig(runDir: dir, hostName: value("host-name") ?? ProcessEnvironment.hostName.prefixBytes(hostNameBytes))
        c.injectedBugs = try injectedBugsFromEnvironment()
        if let v = try int("io-timeout") { c.ioTimeout = try validIOTimeout(v) }
        let dog = value("watchdog") ?? "/dev/watchdog"
        c.watchdogDevice = dog == "none" ? nil : dog
        if let w = try int("watchdog-fire") {
            guard (1...600).contains(w) else { throw TenureError(.invalidArgument, "--watchdog-fire \(w) is outside 1...600 seconds.") }
            c.watchdogFire = .seconds(w)
        }
        if let g = try int("kill-grace") {
            guard (0...600).contains(g) else { throw TenureError(.invalidArgument, "--kill-grace \(g) is outside 0...600 seconds.") }
            c.killGrace = .seconds(g)
        }
        c.socketGroup = value("socket-group")
        if let n = try int("max-connections") {
            guard (1...65536).contains(n) else { throw TenureError(.invalidArgument, "--max-connections \(n) is outside 1...65536.") }
            c.maxConnections = n
        }
        if let n = try int("max-leases") {
            guard (1...1_000_000).contains(n) else { throw TenureError(.invalidArgument, "--max-leases \(n) is outside 1...1000000.") }
            c.maxLeases = n
        }
        c.lockMemory = try onOff("lock-memory", value("lock-memory"), default: true)
        c.realtime = try onOff("realtime", value("realtime"), default: true)
        c.sanlockRunDir = value("sanlock-run-dir")
        c.logFile = value("log-file")
        c.metricsListen = value("metrics-listen")
        if let address = c.metricsListen { _ = try TCPSocket.address(address) }
        return (c, level)
    }

    /// "on" or "off" for `--NAME`; nil means `default`.
    static func onOff(_ name: String, _ value: String?, default fallback: Bool) throws -> Bool {
        switch value {
        case nil: return fallback
        case "on": return true
        case "off": return false
        case let other?:
            throw TenureError(.invalidArgument, "--\(name) \(other) is neither on nor off.", remedy: "Write --\(name) on or --\(name) off.")
        }
    }
}

/// The environment variable that switches on deliberate safety bugs, for
/// tests that prove their witnesses can fail. Never set it on a real host.
public let injectBugVariable = "TENURE_INJECT_BUG"

/// The bugs named in `TENURE_INJECT_BUG` (comma-separated), announced on stderr.
public func injectedBugsFromEnvironment() throws -> Set<InjectedBug> {
    guard let value = ProcessEnvironment.value(injectBugVariable), !value.isEmpty else { return [] }
    guard InjectedBug.canBeInjected else {
        throw TenureError(.invalidArgument, "\(injectBugVariable) is set, but this is a release build, which has no injectable bugs.",
                          remedy: "Unset \(injectBugVariable); it is for Tenure's own tests, which use a debug build.")
    }
    var bugs = Set<InjectedBug>()
    for name in value.split(separator: ",") {
        guard let bug = InjectedBug(rawValue: String(name)) else {
            throw TenureError(.invalidArgument, "\(injectBugVariable) names \"\(name)\", which is not an injectable bug.",
                              remedy: "Unset \(injectBugVariable); it is for Tenure's own tests (known: \(InjectedBug.allCases.map(\.rawValue).joined(separator: ", "))).")
        }
        bugs.insert(bug)
    }
    StandardError.write("tenure: warning: \(injectBugVariable)=\(value): running with deliberate safety bugs; mutual exclusion is NOT guaranteed\n")
    return bugs
}

/// `--io-timeout` checked: 1 to ``IOTimeout/maxSeconds`` seconds.
public func validIOTimeout(_ seconds: Int) throws -> IOTimeout {
    try IOTimeout(checking: seconds)
}
