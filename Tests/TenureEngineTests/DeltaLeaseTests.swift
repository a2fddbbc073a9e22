import Testing
import TenureTestSupport
import TenureCore
import TenureEngine
import TenureFormat
import TenureTestKit

@Suite(.cpuBound) struct DeltaLeaseTests {
    @Test func joinFreeSlotWritesOurRecordAndWaitsTheSettleTime() async throws {
        let c = try await Cluster()
        let start = c.clock.now()
        let dev = c.device("h3")
        let hold = try await DeltaLease.acquire(try c.slot(3, device: dev), name: "node-three", ioTimeout: c.ioTimeout, context: c.context)
        #expect(hold.host.id == HostID(3))
        #expect(hold.host.generation == Generation(1))
        #expect(c.clock.now() - start >= c.timeouts.joinSettle)
        // The record on disk, decoded independently of the engine's hold.
        let onDisk = LeaderRecord(decoding: c.storage.snapshot(2 * 512..<3 * 512))
        #expect(onDisk.ownerID == HostID(3))
        #expect(onDisk.ownerGeneration == Generation(1))
        #expect(onDisk.resourceName.description == "node-three")
        #expect(onDisk.ioTimeout == c.ioTimeout)
        #expect(!onDisk.timestamp.isFree)
        #expect(onDisk.checksum == onDisk.computedChecksum)
        // read, write, read: nothing else.
        let stats = dev.statistics
        #expect(stats.reads == 2 && stats.writes == 1)
        #expect(stats.sectorsWritten == 1)
    }

    @Test func rejoinAfterReleaseBumpsGeneration() async throws {
        let c = try await Cluster()
        let first = try await c.join(1)
        try await DeltaLease.release(try c.slot(1), hold: first, context: c.context)
        #expect(LeaderRecord(decoding: c.storage.snapshot(0..<512)).timestamp.isFree)
        let second = try await c.join(1)
        #expect(second.host.generation == Generation(2))
    }

    @Test func joinOverDeadHolderWaitsHostDeadThenTakesIt() async throws {
        let c = try await Cluster()
        _ = try await c.join(2, name: "old")      // never renewed again: dead after 8N + W
        let before = c.clock.now()
        let hold = try await c.join(2, name: "new")
        #expect(c.clock.now() - before >= c.timeouts.hostDead + c.timeouts.joinSettle)
        #expect(hold.host.generation == Generation(2))
        #expect(c.events.count(.joinWaiting) == 1)
    }

    @Test func joinOverLiveHolderFailsWithHostIDBusy() async throws {
        let c = try await Cluster(autoAdvance: false)
        // Host "A" holds id 2 and keeps renewing; "B" tries the same id.
        async let joinedA = c.join(2, name: "A")
        try await c.clock.waitForSleepers(1)
        c.clock.advance(by: c.timeouts.joinSettle)
        var a = try await joinedA
        let b = Task { try await c.join(2, name: "B") }
        try await c.clock.waitForSleepers(1)
        a = try await DeltaLease.renew(try c.slot(2), hold: a, context: c.context)
        c.clock.advance(by: .seconds(1))
        await expectTenureError(.hostIDBusy) { _ = try await b.value }
        // A still holds it, untouched by B.
        #expect(LeaderRecord(decoding: c.storage.snapshot(512..<1024)) == a.written)
    }

    @Test func twoHostsWithTheSameIDExactlyOneKeepsIt() async throws {
        let c = try await Cluster(autoAdvance: false)
        // Both read the slot free before either write lands: writes take 0.5 s.
        let devA = c.device("A"), devB = c.device("B")
        devA.inject(.latency(.milliseconds(500)), on: .writes)
        devB.inject(.latency(.milliseconds(400)), on: .writes)
        let a = Task { try await DeltaLease.acquire(try c.slot(4, device: devA), name: "A", ioTimeout: c.ioTimeout, context: c.context) }
        let b = Task { try await DeltaLease.acquire(try c.slot(4, device: devB), name: "B", ioTimeout: c.ioTimeout, context: c.context) }
        try await c.clock.waitForSleepers(2)      // both writes in flight
        c.clock.advance(by: .milliseconds(500))   // B's lands, then A's
        try await c.clock.waitForSleepers(2)      // both settling
        c.clock.advance(by: c.timeouts.joinSettle)
        let results = [await a.result, await b.result]
        let winners = results.compactMap { try? $0.get() }
        #expect(winners.count == 1)
        #expect(winners.first?.host.name.description == "A")   // the last write stands
        for r in results {
            if case .failure(let e) = r { #expect((e as? TenureError)?.code == .hostIDBusy) }
        }
        let onDisk = LeaderRecord(decoding: c.storage.snapshot(3 * 512..<4 * 512))
        #expect(onDisk.resourceName == winners.first?.host.name)
    }

    @Test func renewalWritesNewTimestampAndDetectsTakeover() async throws {
        let c = try await Cluster()
        var hold = try await c.join(1)
        let t0 = hold.written.timestamp
        try await c.clock.sleep(for: c.timeouts.renewalInterval)
        hold = try await DeltaLease.renew(try c.slot(1), hold: hold, context: c.context)
        #expect(hold.written.timestamp > t0)
        #expect(LeaderRecord(decoding: c.storage.snapshot(0..<512)) == hold.written)
        // Another host overwrites the slot (an operator mistake): the next renewal notices.
        var intruder = hold.written
        intruder.resourceName = "intruder"
        intruder.ownerGeneration = try intruder.ownerGeneration.next()
        c.storage.poke(intruder.encodedSector(.bytes512), at: 0)
        let stale = hold
        await expectTenureError(.lockspaceLost) { _ = try await DeltaLease.renew(try c.slot(1), hold: stale, context: c.context) }
        // …and did not write over the intruder.
        #expect(LeaderRecord(decoding: c.storage.snapshot(0..<512)).resourceName.description == "intruder")
    }

    @Test func releaseLeavesATakenOverSlotAlone() async throws {
        let c = try await Cluster()
        let hold = try await c.join(1)
        var other = hold.written
        other.ownerGeneration = Generation(9)
        c.storage.poke(other.encodedSector(.bytes512), at: 0)
        await expectTenureError(.lockspaceLost) { try await DeltaLease.release(try c.slot(1), hold: hold, context: c.context) }
        #expect(LeaderRecord(decoding: c.storage.snapshot(0..<512)).ownerGeneration == Generation(9))
    }

    @Test func joinRefusesAnUninitialisedArea() async throws {
        let c = try await Cluster()
        let wrong = try DeltaLeaseSlot(device: c.device(), areaOffset: 6 * Cluster.mib, geometry: .standard512, lockspace: "LS", hostID: HostID(1))
        let e = await expectTenureError(.badMagic) { _ = try await DeltaLease.acquire(wrong, name: "x", ioTimeout: c.ioTimeout, context: c.context) }
        #expect(e?.message.contains("never initialised") == true)
    }

    @Test func hostIDOutsideTheLayoutIsRefused() async throws {
        let c = try await Cluster()
        #expect(throws: TenureError.self) { _ = try c.slot(2001) }
        #expect(throws: TenureError.self) { _ = try c.slot(0) }
    }
}

@Suite(.cpuBound) struct LockspaceTests {
    @Test func expiryIsEightIOTimeoutsAfterTheLastRenewalStarted() async throws {
        let c = try await Cluster()
        let dev = c.device("renewal")
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(1), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: dev, observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        _ = try await ls.join(name: "n1")
        let joinedStart = try #require(await ls.hold?.lastRenewalStart)
        #expect(await ls.expiry == joinedStart + c.timeouts.renewalFailure)
        // Storage fails under this host: renewals fail, the deadline does not move.
        dev.inject(.error(5), on: .any)
        try await c.clock.sleep(for: c.timeouts.renewalInterval)
        await expectTenureError(.ioFailed) { try await ls.renew() }
        #expect(await ls.isValid(at: c.clock.now()))
        c.clock.advance(to: joinedStart + c.timeouts.renewalFailure)
        #expect(await ls.checkExpiry()?.code == .lockspaceLost)
        #expect(!(await ls.isValid(at: c.clock.now())))
        // Storage back: a renewal cannot revive a lost lockspace.
        dev.clearFaults()
        await expectTenureError(.lockspaceLost) { try await ls.renew() }
        #expect(c.events.count(.lockspaceLost) == 1)
    }

    /// Tenure's SAN load per renewal: one read of the host slots from host 1
    /// to a window past the highest joined (for the frozen-clock check) and
    /// one write of its own sector. sanlock reads the whole 1 MiB host area.
    @Test func aRenewalReadsTheSlotsUpToPastTheHighestJoinedAndWritesOnlyItsOwn() async throws {
        let c = try await Cluster()
        let renewalDevice = c.device("renewal")
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(5), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: renewalDevice, observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        _ = try await ls.join(name: "n5")
        let window = 5 + FrozenClockCheck.slotsBeyondHighest
        for _ in 0..<3 {
            renewalDevice.resetStatistics()
            try await ls.renew()
            let s = renewalDevice.statistics
            #expect(s.reads == 1 && s.writes == 1, "\(s)")
            #expect(s.sectorsRead == window && s.sectorsWritten == 1)
            // The read starts at host 1's slot; the write is host 5's, sector 4.
            #expect(s.recent.contains { $0.offset == 0 && $0.length == window * 512 }, "\(s.recent)")
            #expect(s.recent.contains { $0.offset == 4 * 512 && $0.length == 512 }, "\(s.recent)")
        }
    }

    /// Host 1's clock stands still (a paused VM) while host 2 keeps renewing
    /// on a clock of its own: host 1's first renewal afterwards sees host 2's
    /// timestamp far ahead of what its own clock allows and loses the
    /// lockspace at once, although its own clock says 2N have passed.
    @Test func aFrozenClockIsCaughtByTheFirstRenewalAfterTheResume() async throws {
        let c = try await Cluster()
        let (ls, other) = try await twoHostsRenewing(c, rounds: 4)
        #expect(await ls.clockCheck.unseen == .zero)
        // Host 1 is frozen for 8N + W + 4 s of real time: host 2 renews
        // throughout, host 1's clock does not move.
        for _ in 0..<8 { try await other.renew(by: .seconds(2)) }
        c.clock.advance(by: c.timeouts.renewalInterval)
        let error = await expectTenureError(.lockspaceLost) { try await ls.renew() }
        #expect(error?.message.contains("stood still") == true, "\(String(describing: error))")
        #expect(await !ls.isValid(at: c.clock.now()))
    }

    /// The daemon reads the other hosts' slots every second while it holds
    /// leases; handed to the lockspace, that read catches the frozen clock
    /// a second after the resume, long before the next renewal is due.
    @Test func aFrozenClockIsCaughtByTheNextLookAtThePeersWithinASecond() async throws {
        let c = try await Cluster()
        let (ls, other) = try await twoHostsRenewing(c, rounds: 4)
        let observer = ls.observer
        // Steady: host 2 renews every 2N, a look every second finds nothing.
        for second in 0..<6 {
            if second % 2 == 0 { try await other.renew(by: c.timeouts.renewalInterval) }
            c.clock.advance(by: .seconds(1))
            _ = try await observer.observeRange(upTo: HostID(2))
            #expect(await ls.lookAtPeers(await observer.takeRecentReads()) == nil)
        }
        try await ls.renew()
        #expect(await ls.clockCheck.unseen == .zero)
        // Frozen for 8N + W + 4 s of real time; one second after the resume the poll looks.
        for _ in 0..<8 { try await other.renew(by: .seconds(2)) }
        c.clock.advance(by: .seconds(1))
        _ = try await observer.observeRange(upTo: HostID(2))
        let lost = await ls.lookAtPeers(await observer.takeRecentReads())
        #expect(lost?.code == .lockspaceLost && lost?.message.contains("stood still") == true, "\(String(describing: lost))")
        #expect(await !ls.isValid(at: c.clock.now()))
        #expect(await ls.nextRenewalDue! > c.clock.now(), "caught before the next renewal was due")
    }

    /// No false alarm: host 2 misses renewals for 6N and then renews again,
    /// and its clock runs 2 % fast; host 1's clock is right all along.
    @Test func aPeerThatStallsOrRunsFastIsNotTakenForAFrozenClock() async throws {
        let c = try await Cluster()
        let (ls, other) = try await twoHostsRenewing(c, rounds: 4)
        for round in 0..<40 {
            let stalled = (10..<13).contains(round)
            if !stalled { try await other.renew(by: .milliseconds(2040)) } else { other.clock.advance(by: .milliseconds(2040)) }
            // Half-way, the daemon's poll looks at the peers too.
            c.clock.advance(by: c.timeouts.renewalInterval / 2)
            _ = try await ls.observer.observeRange(upTo: HostID(2))
            #expect(await ls.lookAtPeers(await ls.observer.takeRecentReads()) == nil, "round \(round)")
            c.clock.advance(by: c.timeouts.renewalInterval / 2)
            try await ls.renew()
        }
        #expect(await ls.isValid(at: c.clock.now()))
        #expect(await ls.clockCheck.unseen == .zero)
    }

    /// Host 2 on a clock of its own, renewing its delta lease.
    final class OtherHost: @unchecked Sendable {
        let clock = ManualClock(autoAdvance: true)
        let slot: DeltaLeaseSlot
        var hold: DeltaLeaseHold
        let context: EngineContext

        init(_ c: Cluster) async throws {
            context = EngineContext(clock: clock, random: { _ in 0 }, log: { _ in }, watchdogFire: .seconds(2))
            slot = try c.slot(2)
            hold = try await DeltaLease.acquire(slot, name: "other", ioTimeout: c.ioTimeout, context: context)
        }

        func renew(by step: Duration) async throws {
            clock.advance(by: step)
            hold = try await DeltaLease.renew(slot, hold: hold, context: context)
        }
    }

    /// Host 1 (a Lockspace on the cluster's clock) and host 2 (its own
    /// clock), both renewing every 2N for `rounds` rounds.
    func twoHostsRenewing(_ c: Cluster, rounds: Int) async throws -> (Lockspace, OtherHost) {
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(1), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: c.device("renewal"), observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        _ = try await ls.join(name: "n1")
        let other = try await OtherHost(c)
        for _ in 0..<rounds {
            try await other.renew(by: c.timeouts.renewalInterval)
            c.clock.advance(by: c.timeouts.renewalInterval)
            try await ls.renew()
        }
        return (ls, other)
    }

    /// Machine A joins as host id 1 and holds R0, writing through `leases`.
    func joinAndHoldR0(_ c: Cluster, as name: LeaseName, through leases: MemoryDevice) async throws -> (Lockspace, PaxosResource, HeldLease) {
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(1), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: c.device("\(name)-renewal"), observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        let host = try await ls.join(name: name)
        let r0 = try await PaxosResource.open(try c.resourceSpec(0), devices: [leases])
        return (ls, r0, try await PaxosLease.acquire(r0, host: host, oracle: nil, context: c.context))
    }

    /// Seed 30039321 in small: a write of this host's lands after it left.
    /// Had the slot read free, another machine given host id 1 could have
    /// joined after 2N and had its own dblock overwritten by that write.
    @Test func aLeaveWithAWriteStillInFlightLeavesTheIDToAgeOut() async throws {
        let c = try await Cluster()
        let leases = c.device("A-leases")
        let (ls, r0, held) = try await joinAndHoldR0(c, as: "A", through: leases)
        // The release write times out for its caller and lands 3 s later.
        leases.inject(.lateWrite(after: .seconds(3)), on: .writes, count: .once)
        await expectTenureError(.ioTimeout) { try await PaxosLease.release(r0, held: held, context: c.context) }
        #expect(leases.writesMayStillLand)
        #expect(try await ls.leave(afterWritesThrough: [leases]) == .leftToExpire(path: "A-leases"))
        #expect(c.events.count(.leftToExpire) == 1)
        let slot = LeaderRecord(decoding: c.storage.snapshot(0..<512))
        #expect(!slot.timestamp.isFree && slot.resourceName.description == "A")
        // Another machine given id 1 watches the slot age out (8N + W) before
        // it writes anything; by then A's write has landed.
        let before = c.clock.now()
        let b = try await c.join(1, name: "B")
        #expect(c.clock.now() - before >= c.timeouts.hostDead)
        #expect(!leases.writesMayStillLand)
        #expect(b.host.generation == Generation(2))
    }

    @Test func aLeaveWithNothingInFlightFreesTheID() async throws {
        let c = try await Cluster()
        let leases = c.device("A-leases")
        let (ls, r0, held) = try await joinAndHoldR0(c, as: "A", through: leases)
        try await PaxosLease.release(r0, held: held, context: c.context)
        #expect(!leases.writesMayStillLand)
        #expect(try await ls.leave(afterWritesThrough: [leases]) == .freed)
        #expect(LeaderRecord(decoding: c.storage.snapshot(0..<512)).timestamp.isFree)
        // A second leave has nothing to write.
        #expect(try await ls.leave(afterWritesThrough: [leases]) == .nothingWritten)
    }

    @Test func theRenewalHistoryRecordsEachRenewalAndTheFailuresAfterIt() async throws {
        let c = try await Cluster()
        let dev = c.device("renewal")
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(3), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: dev, observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        _ = try await ls.join(name: "n3")
        dev.inject(.latency(.milliseconds(300)), on: .reads, count: .once)
        try await ls.renew()
        try await ls.renew()
        dev.inject(.error(5), on: .any, count: .once)
        await expectTenureError(.ioFailed) { try await ls.renew() }
        let history = await ls.renewalHistory
        #expect(history.count == 2)
        #expect(history[0].readTime >= .milliseconds(300), "\(history)")
        #expect(history[0].errorsAfter == 0 && history[1].errorsAfter == 1 && history[1].timeoutsAfter == 0)
        #expect(history[0].sanlockText.hasPrefix("timestamp=\(history[0].timestamp.rawValue) read_ms=3"), "\(history[0].sanlockText)")
    }

    @Test func renewalsKeepTheLockspaceValid() async throws {
        let c = try await Cluster(autoAdvance: false)
        let ls = try Lockspace(spec: LockspaceSpec(name: "LS", hostID: HostID(2), disk: try LeaseDisk(path: "disk", offset: 0)),
                               renewalDevice: c.device("renewal"), observer: c.observer(), ioTimeout: c.ioTimeout, context: c.context)
        let joining = Task { try await ls.join(name: "n2") }
        try await c.clock.waitForSleepers(1)
        c.clock.advance(by: c.timeouts.joinSettle)
        _ = try await joining.value
        let loop = Task { await ls.runRenewals() }
        for _ in 0..<10 {
            try await c.clock.waitForSleepers(1)
            c.clock.advance(by: c.timeouts.renewalInterval)
        }
        try await c.clock.waitForSleepers(1)
        #expect(await ls.renewals >= 9)
        #expect(await ls.isValid(at: c.clock.now()))
        loop.cancel()
        _ = await loop.value
    }
}

@Suite(.cpuBound) struct HostLivenessTests {
    @Test func statesFollowTheTimelineOfTheObserversClock() async throws {
        let c = try await Cluster(autoAdvance: false)
        let joining = Task { try await c.join(5) }
        try await c.clock.waitForSleepers(1)
        c.clock.advance(by: c.timeouts.joinSettle)
        var hold = try await joining.value
        let obs = c.observer()
        #expect(try await obs.observe(HostID(5)).state == .unknown)
        #expect(try await obs.observe(HostID(6)).state == .free)
        c.clock.advance(by: c.timeouts.renewalInterval)
        hold = try await DeltaLease.renew(try c.slot(5), hold: hold, context: c.context)
        #expect(try await obs.observe(HostID(5)).state == .live)
        // It stops renewing.
        c.clock.advance(by: c.timeouts.renewalFailure + .milliseconds(1))
        #expect(try await obs.observe(HostID(5)).state == .failing)
        c.clock.advance(by: c.timeouts.watchdogFire)
        #expect(try await obs.observe(HostID(5)).state == .dead)
        // It releases: free at once.
        try await DeltaLease.release(try c.slot(5), hold: hold, context: c.context)
        #expect(try await obs.observe(HostID(5)).state == .free)
    }

    @Test func anObserverThatStartsLateNeverCallsALiveHostDead() async throws {
        // The observer's first read starts its own count, whatever the timestamp says.
        let c = try await Cluster()
        _ = try await c.join(1)
        c.clock.advance(by: .seconds(3600))
        let obs = c.observer()
        #expect(try await obs.observe(HostID(1)).state == .unknown)
        c.clock.advance(by: c.timeouts.renewalFailure)
        #expect(try await obs.observe(HostID(1)).state == .unknown)
        c.clock.advance(by: .milliseconds(1))
        #expect(try await obs.observe(HostID(1)).state == .failing)
    }
}
