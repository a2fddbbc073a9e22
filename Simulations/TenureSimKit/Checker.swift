import TenureCore

/// The last lines of what happened, and a hash of every line, so two runs
/// of one seed can be compared byte for byte.
public final class Trace: @unchecked Sendable {
    public static let keptLines = 400
    private var ring: [String] = []
    private var head = 0
    /// FNV-1a over every line ever recorded.
    public private(set) var hash: UInt64 = 0xCBF2_9CE4_8422_2325
    public private(set) var lines: UInt64 = 0

    /// Called with every line as it is recorded (`tenure-sim --print-trace`).
    public var live: ((String) -> Void)?

    func record(_ line: String) {
        live?(line)
        for byte in line.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01B3 }
        hash = (hash ^ 0x0A) &* 0x100_0000_01B3
        lines += 1
        if ring.count < Self.keptLines { ring.append(line) } else {
            ring[head] = line
            head = (head + 1) % Self.keptLines
        }
    }

    /// The kept lines, oldest first.
    public var recent: [String] { Array(ring[head...] + ring[..<head]) }
}

/// Safety, checked at every step against what the simulated hosts believe
/// (the processes that hold leases), never against the engine's own state:
///
/// 1. never two holders of a resource at once unless both hold it shared;
/// 2. every exclusive acquisition's lver is greater than every lver handed
///    out before for that resource, and a shared one's greater than every
///    exclusive one's (the fencing token only grows) — except a process that
///    joins its own host's shared hold, which gets that hold's lver;
/// 3. no process holds a lease after its host's lockspace expired plus W
///    (its holders must have died, or the watchdog reset the host, by then);
/// 4. an orphan is adopted only where it is kept, and once: a process may
///    take over a lease at the lver it already has (no new acquisition)
///    only from a persistent holder of its host that ended, and only one
///    process per such ending.
///
/// A holding begins when the host core hands a lease to a simulated process
/// and ends when that process releases it, dies, or its host is reset —
/// never when the core merely decides to stop it.
public final class Checker: @unchecked Sendable {
    public struct Holding: Sendable, CustomStringConvertible {
        public let host: Int
        public let incarnation: Int
        /// The simulated process holding it, on that host.
        public let process: Int32
        public let hostID: HostID
        public let lver: LeaseVersion
        public var shared: Bool
        public var description: String { "h\(host)#\(incarnation) pid \(process) (host id \(hostID), lver \(lver)\(shared ? ", shared" : ""))" }
        func isSame(host: Int, process: Int32) -> Bool { self.host == host && self.process == process }
    }

    private(set) var holders: [Int: [Holding]] = [:]
    private(set) var maxLver: [Int: LeaseVersion] = [:]
    private(set) var maxExclusiveLver: [Int: LeaseVersion] = [:]
    /// resource → host → the lver of the host's latest shared hold (an
    /// acquisition shared, or a convert to shared): what a local process
    /// joining the host's hold gets.
    private(set) var sharedHold: [Int: [Int: LeaseVersion]] = [:]
    /// resource → the orphans hosts may keep of it: the persistent holders
    /// that ended without releasing, by host, lver and mode.
    private(set) var orphans: [Int: [(host: Int, lver: LeaseVersion, shared: Bool)]] = [:]
    public private(set) var violations: [String] = []
    public private(set) var acquisitions = 0

    func violation(_ text: String, trace: Trace, at time: String) {
        violations.append("\(time) \(text)")
        trace.record("\(time) VIOLATION \(text)")
    }

    /// A host's process now holds `resource` at `lver`.
    func acquired(_ h: Holding, resource: Int, trace: Trace, at time: String) {
        acquisitions += 1
        // Processes of one host are as distinct as hosts: the host core must
        // arbitrate between them.
        let others = holders[resource, default: []].filter { !$0.isSame(host: h.host, process: h.process) }
        if let conflict = others.first(where: { !$0.shared || !h.shared }) {
            violation("R\(resource): \(h) acquired while \(conflict) holds it", trace: trace, at: time)
        }
        // An exclusive holder's lver is above every lver handed out before. A
        // sharer's only above every exclusive one: two shared acquisitions
        // may return in the other order than they committed (both share).
        // A process that joins its own host's shared hold (the host core's
        // local share: one shared mark per host) gets that hold's lver: the
        // token names the host's acquisition, which is not new.
        let joinsHostHold = h.shared && sharedHold[resource]?[h.host] == h.lver
        let bound = h.shared ? maxExclusiveLver[resource] : maxLver[resource]
        if let bound, h.lver <= bound, !joinsHostHold {
            violation("R\(resource): \(h) got lver \(h.lver), not above \(bound) handed out before", trace: trace, at: time)
        }
        maxLver[resource] = Swift.max(maxLver[resource] ?? .zero, h.lver)
        if !h.shared { maxExclusiveLver[resource] = Swift.max(maxExclusiveLver[resource] ?? .zero, h.lver) }
        holders[resource, default: []].removeAll { $0.isSame(host: h.host, process: h.process) }
        holders[resource, default: []].append(h)
        if h.shared { sharedHold[resource, default: [:]][h.host] = h.lver }
    }

    /// A holder converted between shared and exclusive without a new lver.
    func converted(host: Int, process: Int32, resource: Int, shared: Bool, trace: Trace, at time: String) {
        guard let index = holders[resource]?.firstIndex(where: { $0.isSame(host: host, process: process) }) else { return }
        holders[resource]![index].shared = shared
        if shared { sharedHold[resource, default: [:]][host] = holders[resource]![index].lver }
        if !shared, let other = holders[resource]!.first(where: { !$0.isSame(host: host, process: process) }) {
            violation("R\(resource): h\(host) pid \(process) became exclusive while \(other) holds it", trace: trace, at: time)
        }
    }

    /// A host's process stopped holding `resource` (released it, or died);
    /// a `persistent` holder that did not release leaves its host an orphan to keep.
    func released(host: Int, process: Int32, resource: Int, persistent: Bool) {
        if persistent, let h = holders[resource]?.first(where: { $0.isSame(host: host, process: process) }) {
            orphans[resource, default: []].append((host, h.lver, h.shared))
        }
        holders[resource]?.removeAll { $0.isSame(host: host, process: process) }
    }

    /// A host's process took over an orphan of `resource` (rule 4): one
    /// its host keeps, at that orphan's lver; no new acquisition, so the
    /// lver rule does not apply, but rule 1 does.
    func adopted(_ h: Holding, resource: Int, trace: Trace, at time: String) {
        acquisitions += 1
        if let i = orphans[resource]?.firstIndex(where: { $0.host == h.host && $0.lver == h.lver }) {
            orphans[resource]!.remove(at: i)
        } else {
            violation("R\(resource): \(h) adopted an orphan its host does not keep at that lver (adopted already, or never left)", trace: trace, at: time)
        }
        let others = holders[resource, default: []].filter { !$0.isSame(host: h.host, process: h.process) }
        if let conflict = others.first(where: { !$0.shared || !h.shared }) {
            violation("R\(resource): \(h) adopted it while \(conflict) holds it", trace: trace, at: time)
        }
        holders[resource, default: []].removeAll { $0.isSame(host: h.host, process: h.process) }
        holders[resource, default: []].append(h)
        if h.shared { sharedHold[resource, default: [:]][h.host] = h.lver }
    }

    /// The host released the orphans it kept of `resources` (nil: all of
    /// them). Only those: a holder that died a moment ago may not be an
    /// orphan yet (its host's core hears of the exit at its next look), and
    /// stays one to adopt.
    func orphansReleased(host: Int, resources: Set<Int>? = nil) {
        for key in orphans.keys where resources?.contains(key) ?? true { orphans[key]!.removeAll { $0.host == host } }
    }

    /// Every process of `host` is gone (a crash, or a reset by its watchdog).
    func droppedAll(host: Int) {
        for key in holders.keys { holders[key]!.removeAll { $0.host == host } }
        orphansReleased(host: host)
        for key in sharedHold.keys { sharedHold[key]![host] = nil }
    }

    /// Resources `host` holds, per the checker.
    func held(by host: Int) -> [Int] {
        holders.filter { $0.value.contains { $0.host == host } }.map(\.key).sorted()
    }
}
