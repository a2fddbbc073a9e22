import TenureCore
import TenureEngine
import TenureFormat

/// How a process may be stopped: what it set with `killpath` and `restrict`.
public struct ProcessControl: Sendable, Equatable {
    /// Run (as the process's own user) instead of SIGTERM when it must stop.
    public var killpath: [String]?
    /// Never asked first: SIGKILL at once.
    public var sigkillOnly = false
    /// Never SIGKILL: SIGTERM, repeated.
    public var sigtermOnly = false

    public init(killpath: [String]? = nil, sigkillOnly: Bool = false, sigtermOnly: Bool = false) {
        self.killpath = killpath
        self.sigkillOnly = sigkillOnly
        self.sigtermOnly = sigtermOnly
    }
}

/// Why a process is being stopped.
public enum StopReason: Sendable, Equatable, CustomStringConvertible {
    /// Its lockspace can no longer be renewed.
    case lockspaceLost(LeaseName)
    /// Another host asked for this lease (force or graceful).
    case request(String)
    /// The daemon is shutting down with force.
    case shutdown

    public var description: String {
        switch self {
        case .lockspaceLost(let name): "lockspace \(name) lost"
        case .request(let name): "request for \(name)"
        case .shutdown: "daemon shutdown"
        }
    }
}

/// How loud a core log line is.
public enum HostLogLevel: Sendable, Equatable {
    case debug, info, notice, warning, error, critical
}

/// What the core asks its shell to do. The shell carries each out and
/// reports back only what the world answered (an engine result, a process
/// exit), never a decision of its own.
public enum HostDirective: Sendable, CustomStringConvertible {
    /// Signal the process (through its pidfd).
    case signal(ProcessID, StopSignal)
    /// Run the process's killpath, as its own user, with its pid in the environment.
    case runKillpath(ProcessID, [String])
    /// The process no longer holds this lease: give it up on disk (mark our
    /// dblock released, free the leader). The core has dropped it already.
    case writeRelease(ProcessID, HeldLease)
    /// The process no longer holds this lease, and nothing is written:
    /// another local process still shares it, or its lockspace is lost
    /// (another host may own the lease by now, and a late write of ours
    /// could undo its commit).
    case forget(ProcessID, HeldLease)
    /// Pet the watchdog.
    case pet
    /// Say something in the log.
    case log(HostLogLevel, String)

    public var description: String {
        switch self {
        case .signal(let pid, let signal): "signal \(pid) \(signal)"
        case .runKillpath(let pid, let argv): "killpath for \(pid): \(argv.joined(separator: " "))"
        case .writeRelease(let pid, let lease): "release \(lease) of \(pid)"
        case .forget(let pid, let lease): "forget \(lease) of \(pid)"
        case .pet: "pet the watchdog"
        case .log(_, let text): "log: \(text)"
        }
    }
}

/// The core's settings: fencing's times and the known bugs it may be run with.
public struct HostCoreSettings: Sendable {
    /// W: the watchdog resets the host this long after its last pet.
    public var watchdogFire: Duration
    /// Asking a holder to stop (killpath or SIGTERM) to SIGKILL.
    public var killGrace: Duration
    /// How often the watchdog is petted while it may be: well inside W.
    public var petInterval: Duration { Timeouts.petInterval(watchdogFire: watchdogFire) }
    /// The most leases held at once, over all processes.
    public var maxLeases: Int
    /// Known safety bugs to switch on, only to prove the witnesses catch them.
    public var injectedBugs: Set<InjectedBug>

    public init(watchdogFire: Duration, killGrace: Duration, maxLeases: Int = 4096, injectedBugs: Set<InjectedBug> = []) {
        self.watchdogFire = watchdogFire
        self.killGrace = killGrace
        self.maxLeases = maxLeases
        self.injectedBugs = injectedBugs
    }

    /// The grace after asking: a killpath (pausing a VM through libvirt,
    /// say) gets at least W/2, still within the W the fencing rule allows.
    func grace(usingKillpath: Bool) -> Duration {
        usingKillpath ? max(killGrace, watchdogFire / 2) : killGrace
    }
}
