import TenureCore
import TenureEngine

/// The faults a simulation injects, each with its own knob. Probabilities
/// "per I/O" are drawn for every I/O a host issues (by the device's fault
/// source); "per host-second" ones by the chaos loop for each host every
/// simulated second. The fault model of the device itself is written at the
/// top of Sources/TenureTestKit/MemoryDevice.swift.
public struct FaultMix: Sendable, Equatable, CustomStringConvertible {
    /// Per I/O: latency beyond the deadline (the caller times out; a write still lands late).
    public var slowIO = 0.0
    /// Per I/O: fails with EIO at once.
    public var ioError = 0.0
    /// Per I/O: never completes (the caller times out; nothing lands, ever).
    public var hang = 0.0
    /// Per write: times out, then lands after the caller gave up.
    public var lateWrite = 0.0
    /// Per write: only its first sectors land; the caller gets EIO.
    public var tornWrite = 0.0
    /// Per host-second: the host crashes (memory lost, disk kept) and restarts later.
    public var crash = 0.0
    /// Per host-second: the host's daemon dies (SIGKILL, an OOM kill) while
    /// its processes run on, and its supervisor starts it again within W.
    public var daemonRestart = 0.0
    /// Per host-second: the host loses its path to one device for a while.
    public var cutOff = 0.0
    /// Per second: one of a resource's three disks is lost to every host for a while (with `disks: 3`).
    public var diskLoss = 0.0
    /// Per host-second: the host leaves the lockspace cleanly (releases its
    /// leases, then its host id) and joins again within a few seconds; its
    /// slot is free meanwhile, so other hosts' participant views skip it.
    public var leave = 0.0
    /// The last host is configured with the first host's host id.
    public var sharedHostID = false
    /// Every other host (odd indexes) runs with twice the io_timeout, so
    /// hosts judge each other, and wait for each other, by different N.
    public var mixedIOTimeout = false
    /// Clocks run at 1 ± this rate (0.01 = 1 %), drawn per host boot.
    public var clockDrift = 0.0
    /// Per process: it ignores every signal (a process stuck in the kernel):
    /// fencing cannot stop it, so only the watchdog's reset of its host can.
    public var stuckProcess = 0.0

    public init() {}

    public static let none = FaultMix()

    /// A mix that exercises every fault often enough to matter in a short run.
    public static let standard: FaultMix = {
        var m = FaultMix()
        m.slowIO = 0.01
        m.ioError = 0.01
        m.hang = 0.003
        m.lateWrite = 0.005
        m.tornWrite = 0.005
        m.crash = 0.01
        m.daemonRestart = 0.01
        m.cutOff = 0.01
        m.diskLoss = 0.02
        m.leave = 0.01
        m.sharedHostID = false
        m.clockDrift = 0.01
        m.stuckProcess = 0.02
        return m
    }()

    /// The knobs by name, for `--faults name=value,…`.
    // Key paths are immutable values; the array is never changed after init.
    nonisolated(unsafe) public static let knobs: [(String, WritableKeyPath<FaultMix, Double>)] = [
        ("slow", \.slowIO), ("error", \.ioError), ("hang", \.hang), ("late", \.lateWrite), ("torn", \.tornWrite),
        ("crash", \.crash), ("restart", \.daemonRestart), ("cutoff", \.cutOff), ("diskloss", \.diskLoss), ("drift", \.clockDrift), ("leave", \.leave),
        ("stuck", \.stuckProcess),
    ]

    /// Parses `none`, `standard`, or `name=value,…` on top of none (`sameid` is a flag).
    public init(parsing text: String) throws {
        switch text {
        case "none": self = .none
        case "standard": self = .standard
        default:
            self = .none
            for item in text.split(separator: ",") {
                if item == "sameid" { sharedHostID = true; continue }
                if item == "mixedio" { mixedIOTimeout = true; continue }
                let parts = item.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let knob = Self.knobs.first(where: { $0.0 == parts[0] }), let value = Double(parts[1]),
                      value >= 0, value <= 1 else {
                    throw TenureError(.invalidArgument, "\"\(item)\" is not a fault setting.",
                                      remedy: "Write none, standard, or name=probability with names \(Self.knobs.map(\.0).joined(separator: ", ")) (and the flags sameid, mixedio).")
                }
                self[keyPath: knob.1] = value
            }
            guard clockDrift <= Timeouts.maxClockDrift else {
                throw TenureError(.invalidArgument, "drift=\(clockDrift) exceeds \(Timeouts.maxClockDrift), the bound the fencing argument allows.",
                                  remedy: "Use a drift of at most \(Timeouts.maxClockDrift).")
            }
        }
    }

    public var description: String {
        let set = Self.knobs.filter { self[keyPath: $0.1] > 0 }.map { "\($0.0)=\(self[keyPath: $0.1])" } + (sharedHostID ? ["sameid"] : []) + (mixedIOTimeout ? ["mixedio"] : [])
        return set.isEmpty ? "none" : set.joined(separator: ",")
    }

    /// A random mix for swarm runs: each fault on or off, at a random strength.
    public static func random(_ random: inout SimRandom) -> FaultMix {
        var m = FaultMix()
        for (_, path) in knobs where random.chance(0.6) {
            let base = path == \FaultMix.clockDrift ? Timeouts.maxClockDrift : path == \FaultMix.diskLoss ? 0.04 : path == \FaultMix.stuckProcess ? 0.1 : 0.02
            m[keyPath: path] = base * Double(random.below(1000) + 1) / 1000
        }
        m.sharedHostID = random.chance(0.2)
        m.mixedIOTimeout = random.chance(0.3)
        return m
    }
}

/// One simulation's settings.
public struct SimConfig: Sendable {
    public var seed: UInt64
    /// Simulated hosts (host ids 1...hosts, one per host unless `sharedHostID`).
    public var hosts = 6
    public var resources = 3
    /// Disks per resource lease: 1, or 3 (a majority of them per phase).
    public var disks = 1
    /// Scheduler steps (jobs run) in the fault phase.
    public var steps: UInt64 = 50_000
    public var faults = FaultMix.standard
    public var injectedBugs: Set<InjectedBug> = []
    /// Run the liveness phase after the fault phase (every host must then
    /// hold every resource within a bound). Off for scale runs, where
    /// thousands of hosts taking turns would take hours of simulated time.
    public var liveness = true
    /// Hosts boot at random within this long after the start (their first
    /// joins spread over it).
    public var bootSpread: Duration = .seconds(2)
    /// io_timeout N of every host.
    public var ioTimeout = IOTimeout(seconds: 1)
    /// The watchdog fire time W of every host.
    public var watchdogFire: Duration = .seconds(4)
    /// Normal I/O latency range.
    public var normalLatency: ClosedRange<Duration> = .microseconds(50) ... .milliseconds(5)

    /// The most hosts one simulation runs.
    public static let maxHosts = 2000
    public static let maxResources = 64

    public init(seed: UInt64) { self.seed = seed }

    /// The timeouts of the slowest host (the longest io_timeout): what the
    /// simulation's own bounds are computed from.
    public var timeouts: Timeouts { Timeouts(largestIOTimeout, watchdogFire: watchdogFire) }

    /// The io_timeout host `index` runs with.
    public func ioTimeout(ofHost index: Int) -> IOTimeout {
        faults.mixedIOTimeout && index % 2 == 1 ? IOTimeout(seconds: ioTimeout.rawValue * 2) : ioTimeout
    }

    public var largestIOTimeout: IOTimeout { faults.mixedIOTimeout ? IOTimeout(seconds: ioTimeout.rawValue * 2) : ioTimeout }

    /// A host's holders are gone within this long after its lockspace
    /// expires, by its own clock: the core's kill, or the watchdog's reset.
    /// It is the fire time each simulated host arms its watchdog with (and
    /// gives its core): half the W every host assumes of the others when it
    /// waits 8N + W, so that the other half is margin for clock drift. The
    /// watchdog is petted only while the lockspace is valid, so it fires by
    /// the expiry plus this.
    public var fenceWindow: Duration { watchdogFire / 2 }

    /// The latest a write may land after it was issued: a slow I/O takes up
    /// to 4N, a late write lands up to 4N after its deadline.
    public var maxWriteLateness: Duration { timeouts.ioTimeout * 5 }

    /// The shortest reboot: longer than any write may stay in flight, so a
    /// host's writes from before a crash never land after it restarted.
    public var minimumDowntime: Duration { maxWriteLateness + timeouts.ioTimeout }

    /// How long the liveness phase may take for every host to hold every
    /// resource once: a join, one host-dead wait for owners left over from
    /// the fault phase, then per hold a hold time, a back-off and a ballot's
    /// I/O, for every host on every resource.
    public var livenessBound: Duration {
        let t = timeouts
        let perHold = Duration.milliseconds(100) + t.ballotBackoffMax * 2 + t.ioTimeout * 8
        return t.joinSettle + t.hostDead + t.livenessPoll * 4 + perHold * (hosts * resources)
    }

    /// The configuration of swarm run `seed`: a random fault mix, 2 to
    /// `maxHosts` hosts, 1 to `maxResources` resources, one or three disks,
    /// otherwise `base`. The same seed gives the same configuration.
    public static func swarm(seed: UInt64, base: SimConfig, maxHosts: Int, maxResources: Int) -> SimConfig {
        var r = SimRandom(seed: seed ^ 0x5157_4152_4D00_0000)
        var config = base
        config.seed = seed
        config.faults = FaultMix.random(&r)
        config.hosts = 2 + r.below(max(maxHosts - 1, 1))
        config.resources = 1 + r.below(max(maxResources, 1))
        config.disks = r.chance(0.3) ? 3 : 1
        return config
    }

    func validate() throws {
        guard (1...Self.maxHosts).contains(hosts) else {
            throw TenureError(.invalidArgument, "--hosts \(hosts) is outside 1...\(Self.maxHosts).", remedy: "Simulate between 1 and \(Self.maxHosts) hosts.")
        }
        guard (1...Self.maxResources).contains(resources) else {
            throw TenureError(.invalidArgument, "--resources \(resources) is outside 1...\(Self.maxResources).", remedy: "Use 1 to \(Self.maxResources) resources.")
        }
        guard disks == 1 || disks == 3 else {
            throw TenureError(.invalidArgument, "--disks \(disks): a simulated lease lives on 1 or 3 disks.", remedy: "Use 1 or 3.")
        }
        guard faults.clockDrift <= Timeouts.maxClockDrift else {
            throw TenureError(.invalidArgument, "clock drift \(faults.clockDrift) exceeds \(Timeouts.maxClockDrift).", remedy: "Lower it.")
        }
    }
}
