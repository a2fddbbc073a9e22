import Testing
import TenureCore
import TenureEngine
import TenureFormat
@testable import TenureHost

/// The host core alone: events in, directives out, no I/O and no clock.
@Suite struct HostCoreTests {
    static let ls: LeaseName = "LS"
    static let w: Duration = .seconds(4)

    func at(_ seconds: Double) -> MonotonicInstant { MonotonicInstant(nanoseconds: UInt64(seconds * 1e9) + 1_000_000_000_000) }

    func core(grace: Duration = .seconds(1), bugs: Set<InjectedBug> = []) -> HostCore {
        var c = HostCore(settings: HostCoreSettings(watchdogFire: Self.w, killGrace: grace, injectedBugs: bugs))
        c.lockspaceJoined(Self.ls, expiry: at(16))
        return c
    }

    func spec(_ name: String, shared: Bool = false) throws -> ResourceSpec {
        ResourceSpec(lockspace: Self.ls, name: try LeaseName(name), disks: [try LeaseDisk(path: "/var/tmp/leases", offset: 1_048_576)], shared: shared)
    }

    func lease(_ spec: ResourceSpec, lver: UInt64, shared: Bool = false) -> HeldLease {
        HeldLease(resource: spec, lver: LeaseVersion(lver),
                  leader: LeaderRecord(kind: .paxos, geometry: .standard512, spaceName: Self.ls, resourceName: spec.name),
                  shared: shared, host: LocalHost(id: HostID(1), generation: Generation(1)))
    }

    /// Acquires `name` for `pid` as a driver would: arbitration, the ballot, the hand-over.
    @discardableResult
    func acquire(_ c: inout HostCore, _ name: String, pid: Int32, lver: UInt64, shared: Bool = false, now: Double = 1) throws -> HeldLease {
        let s = try spec(name)
        switch try c.arbitrate(s, for: ProcessID(pid), shared: shared, at: at(now)) {
        case .shareLocalHold(let held):
            return held
        case .ballot:
            guard case .handedOver(let held) = c.ballotEnded(s, for: ProcessID(pid), won: lease(s, lver: lver, shared: shared), at: at(now)) else {
                Issue.record("not handed over")
                return lease(s, lver: lver)
            }
            return held
        }
    }

    func signals(_ d: [HostDirective]) -> [String] {
        d.compactMap {
            switch $0 {
            case .signal(let pid, let s): "\(pid):\(s)"
            case .runKillpath(let pid, _): "\(pid):killpath"
            default: nil
            }
        }
    }

    func releases(_ d: [HostDirective]) -> [String] {
        d.compactMap {
            switch $0 {
            case .writeRelease(let pid, let l): "write \(pid) \(l.resource.name)"
            case .forget(let pid, let l): "forget \(pid) \(l.resource.name)"
            default: nil
            }
        }
    }

    @Test func localArbitrationRefusesASecondExclusiveHolder() throws {
        var c = core()
        try acquire(&c, "R1", pid: 10, lver: 1)
        #expect(throws: TenureError.self) { try c.arbitrate(try spec("R1"), for: ProcessID(11), shared: false, at: at(2)) }
        #expect(throws: TenureError.self) { try c.arbitrate(try spec("R1"), for: ProcessID(11), shared: true, at: at(2)) }
        // A ballot under way for another process is refused too.
        #expect(try { if case .ballot = try c.arbitrate(try spec("R2"), for: ProcessID(12), shared: false, at: at(2)) { true } else { false } }())
        #expect(throws: TenureError.self) { try c.arbitrate(try spec("R2"), for: ProcessID(13), shared: false, at: at(2)) }
    }

    @Test func localSharersShareTheHostsOneHoldAndTheLastOneWritesTheRelease() throws {
        var c = core()
        let first = try acquire(&c, "R1", pid: 10, lver: 3, shared: true)
        let second = try acquire(&c, "R1", pid: 11, lver: 99, shared: true)
        #expect(second.lver == first.lver)
        #expect(releases(try c.release(["R1"], of: ProcessID(10), at: at(2))) == ["forget 10 R1"])
        #expect(releases(try c.release(["R1"], of: ProcessID(11), at: at(2))) == ["write 11 R1"])
    }

    /// While a release is being written, no local process may acquire the
    /// resource: the late write would mark released (and strip the shared
    /// mark of) the host's newer hold (seed 20017739).
    /// The daemon's own hold on a lease area (the resource index's work):
    /// never beside a local holder, and no local acquire starts during it.
    @Test func theDaemonsAreaWorkAndLocalProcessesExcludeEachOther() throws {
        var c = core()
        let r = try spec("R")
        try acquire(&c, "R", pid: 10, lver: 1)
        #expect(throws: TenureError.self) { try c.beginAreaWork(r, at: at(1)) }
        _ = try c.release(["R"], of: ProcessID(10), at: at(2))
        c.releaseWritten(lease(r, lver: 1))
        try c.beginAreaWork(r, at: at(2))
        #expect(throws: TenureError.self) { _ = try c.arbitrate(r, for: ProcessID(11), shared: false, at: at(2)) }
        #expect(throws: TenureError.self) { try c.beginAreaWork(r, at: at(2)) }
        c.endAreaWork(r)
        guard case .ballot = try c.arbitrate(r, for: ProcessID(11), shared: false, at: at(3)) else {
            Issue.record("no ballot after the area work ended")
            return
        }
        // Not after the lockspace's expiry either.
        c.endAreaWork(r)
        #expect(throws: TenureError.self) { try c.beginAreaWork(try spec("S"), at: at(17)) }
    }

    /// A forced request for an orphan releases it; a graceful one waits
    /// for whoever adopts it.
    @Test func aForcedRequestReleasesAnOrphanAndAGracefulOneLeavesIt() throws {
        var c = core()
        let r = try spec("R")
        let held = try acquire(&c, "R", pid: 10, lver: 3)
        c.markPersistent(r, of: ProcessID(10), owner: 0)
        _ = c.processExited(ProcessID(10), at: at(1))
        let watched = c.leasesToWatchForRequests
        #expect(watched.count == 1 && watched[0].0 == ProcessID(0), "the orphan is not watched for requests: \(watched)")
        #expect(releases(c.requestSeen(for: held, heldBy: ProcessID(0), force: false, lver: LeaseVersion(4), at: at(2))).isEmpty)
        #expect(c.orphans.count == 1)
        #expect(releases(c.requestSeen(for: held, heldBy: ProcessID(0), force: true, lver: LeaseVersion(4), at: at(2))) == ["write 0 R"])
        #expect(c.orphans.isEmpty)
    }

    @Test func noLocalAcquireWhileAReleaseIsBeingWritten() throws {
        var c = core()
        let held = try acquire(&c, "R1", pid: 10, lver: 1)
        #expect(releases(c.processExited(ProcessID(10), at: at(2))) == ["write 10 R1"])
        #expect(throws: TenureError.self) { try c.arbitrate(try spec("R1"), for: ProcessID(11), shared: false, at: at(2.1)) }
        c.releaseWritten(held)
        try acquire(&c, "R1", pid: 11, lver: 2, now: 2.2)
    }

    @Test func aLeaseWonAfterTheExpiryIsNeitherHandedOverNorWritten() throws {
        var c = core()
        let s = try spec("R1")
        _ = try c.arbitrate(s, for: ProcessID(10), shared: false, at: at(15))
        guard case .refused(let error, let d) = c.ballotEnded(s, for: ProcessID(10), won: lease(s, lver: 1), at: at(16)) else {
            Issue.record("handed over after the expiry")
            return
        }
        #expect(error.code == .lockspaceLost)
        #expect(releases(d) == ["forget 10 R1"])
        #expect(c.leases.isEmpty)
    }

    @Test func aLeaseWonForAProcessThatExitedIsReleased() throws {
        var c = core()
        let s = try spec("R1")
        _ = try c.arbitrate(s, for: ProcessID(10), shared: false, at: at(1))
        _ = c.processExited(ProcessID(10), at: at(1.5))
        guard case .refused(_, let d) = c.ballotEnded(s, for: ProcessID(10), won: lease(s, lver: 1), at: at(2)) else {
            Issue.record("handed over to a process that exited")
            return
        }
        #expect(releases(d) == ["write 10 R1"])
    }

    @Test func aLostLockspaceStopsEveryHolderAndKeepsTheirLeasesUntilTheyAreGone() throws {
        var c = core(grace: .seconds(1))
        try acquire(&c, "R1", pid: 10, lver: 1)
        try acquire(&c, "R2", pid: 11, lver: 1)
        c.setKillpath(["/usr/bin/kp"], for: ProcessID(11))
        let d = c.lockspaceLost(Self.ls, why: "expired.", at: at(16))
        #expect(signals(d) == ["10:SIGTERM", "11:killpath"])
        // Not petted from the loss on, holders or not gone.
        #expect(!c.mayPet(at: at(16)))
        // SIGKILL after the grace (1 s), the killpath's after W/2 (2 s); again every second.
        #expect(signals(c.tick(at: at(16.5))) == [])
        #expect(signals(c.tick(at: at(17))) == ["10:SIGKILL"])
        #expect(signals(c.tick(at: at(17.5))) == [])
        #expect(signals(c.tick(at: at(18))) == ["10:SIGKILL", "11:SIGKILL"])
        #expect(c.leaseCount == 2)
        // Gone: nothing is written for a lost lockspace.
        #expect(releases(c.processExited(ProcessID(10), at: at(18.1))) == ["forget 10 R1"])
        #expect(!c.mayPet(at: at(18.2)))
        #expect(releases(c.processExited(ProcessID(11), at: at(18.2))) == ["forget 11 R2"])
        #expect(c.mayPet(at: at(18.3)))
        #expect(c.fencedProcesses.isEmpty)
    }

    @Test func restrictionsChooseTheSignal() throws {
        var c = core(grace: .zero)
        try acquire(&c, "R1", pid: 10, lver: 1)
        try acquire(&c, "R2", pid: 11, lver: 1)
        try c.restrict(ProcessID(10), sigkillOnly: true, sigtermOnly: false)
        try c.restrict(ProcessID(11), sigkillOnly: false, sigtermOnly: true)
        #expect(throws: TenureError.self) { try c.restrict(ProcessID(11), sigkillOnly: true, sigtermOnly: false) }
        let d = c.lockspaceLost(Self.ls, why: "expired.", at: at(16))
        #expect(signals(d) == ["10:SIGKILL", "11:SIGTERM"])
        #expect(signals(c.tick(at: at(17))) == ["10:SIGKILL", "11:SIGTERM"])
    }

    @Test func aForcedRequestKillsAndThenReleasesOnDisk() throws {
        var c = core()
        try acquire(&c, "R1", pid: 10, lver: 4)
        #expect(c.leasesToWatchForRequests.count == 1)
        let d = c.requestSeen(for: "R1", heldBy: ProcessID(10), force: true, lver: LeaseVersion(5), at: at(2))
        #expect(signals(d) == ["10:SIGKILL"])
        #expect(c.leasesToWatchForRequests.isEmpty)
        // Seen again before it is gone: no second stop.
        #expect(signals(c.requestSeen(for: "R1", heldBy: ProcessID(10), force: true, lver: LeaseVersion(5), at: at(2.5))) == [])
        #expect(releases(c.processExited(ProcessID(10), at: at(2.6))) == ["write 10 R1"])
    }

    @Test func aHolderThatGivesTheLeaseUpIsSpared() throws {
        var c = core(grace: .seconds(5))
        try acquire(&c, "R1", pid: 10, lver: 4)
        try acquire(&c, "R2", pid: 10, lver: 4)
        _ = c.requestSeen(for: "R1", heldBy: ProcessID(10), force: false, lver: LeaseVersion(5), at: at(2))
        #expect(releases(try c.release(["R1"], of: ProcessID(10), at: at(3))) == ["write 10 R1"])
        _ = c.tick(at: at(3.1))
        #expect(c.fencedProcesses.isEmpty)
        #expect(signals(c.tick(at: at(8))) == [])
    }

    @Test func aFencedProcessKeepsItsLeasesWhenItDisconnects() throws {
        var c = core()
        try acquire(&c, "R1", pid: 10, lver: 1)
        _ = c.lockspaceLost(Self.ls, why: "expired.", at: at(16))
        #expect(releases(c.disconnected(ProcessID(10), stillRunning: true, at: at(16.1))) == [])
        #expect(c.leaseCount == 1)
        #expect(releases(c.disconnected(ProcessID(10), stillRunning: false, at: at(16.2))) == ["forget 10 R1"])
    }

    @Test func petsOnlyWhileEveryLockspaceWithHoldersIsValid() throws {
        var c = core()
        #expect(c.petIfDue(at: at(1)).contains { if case .pet = $0 { true } else { false } })
        // Not again before the pet interval (W/4 = 1 s).
        #expect(!c.petIfDue(at: at(1.5)).contains { if case .pet = $0 { true } else { false } })
        try acquire(&c, "R1", pid: 10, lver: 1)
        #expect(c.mayPet(at: at(15.9)))
        #expect(!c.mayPet(at: at(16)))
        #expect(!c.petIfDue(at: at(16)).contains { if case .pet = $0 { true } else { false } })
    }

    @Test func injectedBugsBreakWhatTheyName() throws {
        var petting = core(bugs: [.keepPettingAfterLoss])
        try acquire(&petting, "R1", pid: 10, lver: 1)
        _ = petting.lockspaceLost(Self.ls, why: "expired.", at: at(16))
        #expect(petting.mayPet(at: at(17)))

        var skipping = core(bugs: [.fenceSkipsAHolder])
        try acquire(&skipping, "R1", pid: 10, lver: 1)
        try acquire(&skipping, "R2", pid: 11, lver: 1)
        let d = skipping.lockspaceLost(Self.ls, why: "expired.", at: at(16))
        #expect(signals(d) == ["11:SIGTERM"])
        #expect(skipping.holders == [ProcessID(11)])
    }

    /// A restart that finds an earlier incarnation's holders running:
    /// SIGKILL at once and again each second, no pet until every one is
    /// gone, and after W the start is given up with one critical line.
    @Test func anEarlierIncarnationsHoldersAreKilledBeforeAnyPet() throws {
        var c = HostCore(settings: HostCoreSettings(watchdogFire: Self.w, killGrace: .seconds(1)))
        let d = c.earlierIncarnationLeft([(ProcessID(20), "qemu"), (ProcessID(21), "sleep")], at: at(0))
        #expect(signals(d) == ["20:SIGKILL", "21:SIGKILL"])
        #expect(d.contains { if case .log(.warning, let t) = $0 { t.contains("20 (qemu), 21 (sleep)") } else { false } })
        #expect(!c.mayPet(at: at(0)) && c.petIfDue(at: at(0.1)).allSatisfy { if case .pet = $0 { false } else { true } })
        #expect(signals(c.tick(at: at(0.5))).isEmpty, "SIGKILL is not repeated within a second")
        #expect(signals(c.tick(at: at(1))) == ["20:SIGKILL", "21:SIGKILL"])
        _ = c.processExited(ProcessID(20), at: at(1.2))
        #expect(c.inheritedHolders == [ProcessID(21)] && !c.mayPet(at: at(1.2)))
        #expect(!c.earlierHoldersSurviveKill)
        let late = c.tick(at: at(4))
        #expect(c.earlierHoldersSurviveKill)
        #expect(late.contains { if case .log(.critical, let t) = $0 { t.contains("left unpetted on purpose") && t.contains("21 (sleep)") } else { false } })
        #expect(!c.tick(at: at(5)).contains { if case .log(.critical, _) = $0 { true } else { false } }, "said once")
        _ = c.processExited(ProcessID(21), at: at(5.5))
        #expect(c.mayPet(at: at(5.5)))

        var none = HostCore(settings: HostCoreSettings(watchdogFire: Self.w, killGrace: .seconds(1)))
        #expect(none.earlierIncarnationLeft([], at: at(0)).isEmpty && none.mayPet(at: at(0)), "a clean stop leaves nothing to fence")

        var buggy = HostCore(settings: HostCoreSettings(watchdogFire: Self.w, killGrace: .seconds(1), injectedBugs: [.rearmAfterRestart]))
        #expect(signals(buggy.earlierIncarnationLeft([(ProcessID(20), "qemu")], at: at(0))).isEmpty)
        #expect(buggy.mayPet(at: at(0)), "the injected bug pets at once")
    }

    @Test func leavingIsRefusedWhileHeldOrAcquiring() throws {
        var c = core()
        try acquire(&c, "R1", pid: 10, lver: 1)
        #expect(throws: TenureError.self) { try c.checkMayLeave(Self.ls) }
        _ = try c.release(["*"], of: ProcessID(10), at: at(2))
        try c.checkMayLeave(Self.ls)
        _ = try c.arbitrate(try spec("R2"), for: ProcessID(11), shared: false, at: at(2))
        #expect(throws: TenureError.self) { try c.checkMayLeave(Self.ls) }
    }

    @Test func shutdownIsRefusedWhileHeldUnlessForced() throws {
        var c = core()
        try acquire(&c, "R1", pid: 10, lver: 1)
        #expect(throws: TenureError.self) { try c.shutdown(force: false, at: at(2)) }
        #expect(signals(try c.shutdown(force: true, at: at(2))) == ["10:SIGTERM"])
        #expect(releases(c.processExited(ProcessID(10), at: at(2.5))) == ["write 10 R1"])
    }

    /// Persistent leases (sanlock's SANLK_RES_PERSISTENT): kept by the host
    /// as orphans when their process goes, adopted or released later; a lost
    /// lockspace forgets them (no process to fence, nothing written).
    @Test func aPersistentLeaseBecomesAnOrphanThatIsAdoptedReleasedOrForgotten() throws {
        var c = core()
        try acquire(&c, "R0", pid: 10, lver: 1)
        c.markPersistent(try spec("R0"), of: ProcessID(10), owner: 0)
        try acquire(&c, "R1", pid: 10, lver: 1)
        let exited = c.processExited(ProcessID(10), at: at(2))
        #expect(releases(exited) == ["write 10 R1"], "only the ordinary lease is released: \(exited)")
        #expect(c.orphans.keys.sorted() == ["LS:R0"])
        #expect(throws: TenureError.self) { try c.arbitrate(try spec("R0"), for: ProcessID(11), shared: false, at: at(3)) }
        #expect(throws: TenureError.self) { try c.checkMayLeave(Self.ls) }
        let adopted = try c.adoptOrphan(try spec("R0"), for: ProcessID(11), by: .root, at: at(3))
        #expect(adopted?.lver == LeaseVersion(1) && c.orphans.isEmpty && c.leases[ProcessID(11)]?["R0"] != nil)
        c.markPersistent(try spec("R0"), of: ProcessID(11), owner: 0)
        _ = c.processExited(ProcessID(11), at: at(4))
        #expect(c.orphans.count == 1)
        let released = try c.releaseOrphans(["R0"], in: Self.ls, at: at(5))
        #expect(releases(released) == ["write 0 R0"])
        #expect(c.orphans.isEmpty)
        for case .writeRelease(_, let lease) in released { c.releaseWritten(lease) }
        // Orphaned once more, then the lockspace is lost: forgotten, not written.
        try acquire(&c, "R0", pid: 12, lver: 2, now: 6)
        c.markPersistent(try spec("R0"), of: ProcessID(12), owner: 0)
        _ = c.processExited(ProcessID(12), at: at(7))
        #expect(releases(c.lockspaceLost(Self.ls, why: "test", at: at(8))) == ["forget 0 R0"])
        #expect(c.orphans.isEmpty)
    }
}
