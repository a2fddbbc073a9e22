/// The seam for the local processes that hold leases: what the host core
/// asks of them (`HostDirective.signal`, `.runKillpath`) and what it must
/// learn (an exit). The daemon's implementation names each process by a
/// pidfd (TenureIO's `PidfdProcesses`), so a signal never reaches a later
/// process that reuses the number; the simulator's machines have
/// TenureTestKit's `SimulatedProcesses`.
public protocol LocalProcesses: AnyObject, Sendable {
    /// Sends `signal`; false when the process is gone or not known.
    @discardableResult
    func signal(_ pid: ProcessID, _ signal: StopSignal) -> Bool
    /// Starts the killpath `argv` for `pid`, as that process's own user,
    /// with its pid in the environment; false when it could not start.
    func runKillpath(_ argv: [String], for pid: ProcessID) -> Bool
    /// Whether the process has exited (a zombie has: it holds nothing).
    func hasExited(_ pid: ProcessID) -> Bool
}

/// A local process, by its number. The shell names each one by a pidfd, so
/// a signal never reaches a later process that reuses the number; the core
/// only ever sees the number.
public struct ProcessID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }
    public init(_ rawValue: Int32) { self.rawValue = rawValue }
    public static func < (a: ProcessID, b: ProcessID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// The two signals fencing sends.
public enum StopSignal: Sendable, Equatable, CustomStringConvertible {
    /// SIGTERM: asks.
    case terminate
    /// SIGKILL: cannot be caught.
    case kill

    public var description: String { self == .kill ? "SIGKILL" : "SIGTERM" }
}

