import Testing
import TenureTestSupport
import TenureCore
@testable import TenureEngine
import TenureFormat
import TenureTestKit

/// Ballots read only the dblocks of hosts that can take part. These tests
/// hold the view to its rules: free slots skipped, a joiner seen once the
/// view is no longer fresh, a view stale on arrival never used, and the
/// freshness window shorter than any join's wait.
@Suite(.cpuBound) struct ParticipantViewTests {
    func host(_ id: UInt64, _ gen: UInt64 = 1) -> LocalHost { LocalHost(id: HostID(id), generation: Generation(gen)) }

    /// The window rule in numbers: a joiner stays out of ballots for at
    /// least twice the freshness, at every io_timeout a lockspace allows.
    @Test func theFreshnessWindowIsHalfTheShortestJoinWait() {
        #expect(ParticipantView.freshness * 2 <= ParticipantView.minimumJoinWait)
        for seconds in [IOTimeout.minimumSeconds, 2, 10, 300] {
            #expect(Timeouts(ioTimeout: .seconds(Int64(seconds))).joinSettle >= ParticipantView.minimumJoinWait)
        }
    }

    /// The join itself waits at least the minimum after its write.
    @Test func aJoinWaitsAtLeastTheMinimumJoinWaitAfterItsWrite() async throws {
        let c = try await Cluster()
        let dev = c.device("h1")
        let slot = try c.slot(1, device: dev)
        let started = c.clock.now()
        _ = try await DeltaLease.acquire(slot, name: "h1", ioTimeout: IOTimeout(seconds: 1), context: c.context)
        let write = try #require(dev.statistics.recent.first { $0.kind == .write }?.issuedAt)
        #expect(c.clock.now() - started >= ParticipantView.minimumJoinWait)
        #expect(c.clock.now() - write >= ParticipantView.minimumJoinWait)
    }

    @Test func freeSlotsAreSkippedAndHeldOrDamagedOnesAreNot() async throws {
        let c = try await Cluster()
        _ = try await c.join(1)
        _ = try await c.join(4)
        // A damaged slot (not a valid record) counts as a participant.
        c.storage.poke(Array(repeating: 0xA5, count: 512), at: 6 * 512)
        let view = try #require(try await c.observer().participants(numHosts: 8))
        #expect(view.hosts == [HostID(1), HostID(4), HostID(7)])
        #expect(view.covered == 8)
    }

    @Test func aHostThatJoinsIsSeenOnceTheViewIsNoLongerFresh() async throws {
        let c = try await Cluster(autoAdvance: false)
        let joiner = Task { try await c.join(1) }
        while c.clock.sleeperCount == 0 { await Task.yield() }
        c.clock.advance(by: c.timeouts.joinSettle)
        _ = try await joiner.value
        let observer = c.observer()
        let first = try #require(try await observer.participants(numHosts: 8))
        #expect(first.hosts == [HostID(1)])
        // Host 2 writes its slot (it is inside its join wait, so it cannot ballot yet).
        let slot2 = try c.slot(2)
        _ = try await DeltaLease.writeOwnRecord(slot2, over: try await DeltaLease.read(slot2).leader, name: "h2",
                                                ioTimeout: c.ioTimeout, context: c.context)
        #expect(try await observer.participants(numHosts: 8) == first, "a fresh view is reused")
        c.clock.advance(by: ParticipantView.freshness)
        let second = try #require(try await observer.participants(numHosts: 8))
        #expect(second.hosts == [HostID(1), HostID(2)])
        #expect(await observer.viewReads == 2)
    }

    @Test func aViewThatArrivesStaleIsNotUsedAndEveryDblockIsRead() async throws {
        let c = try await Cluster(numHosts: 64)
        _ = try await c.join(1)
        let lsDevice = MemoryDevice(storage: c.storage, path: "observer", clock: c.clock, ioTimeout: .seconds(5))
        _ = lsDevice.inject(.latency(ParticipantView.freshness + .milliseconds(100)), on: .reads, count: .always)
        let observer = c.observer(lsDevice)
        #expect(try await observer.participants(numHosts: 64) == nil)
        let dev = c.device("h1")
        var r = try await c.resource(0, device: dev)
        r.participants = observer
        dev.resetStatistics()
        _ = try await PaxosLease.acquire(r, host: host(1), oracle: observer, context: c.context)
        let reads = dev.statistics.recent.filter { $0.kind == .read }
        #expect(reads.count == 3)
        #expect(reads.allSatisfy { $0.length >= 64 * 512 }, "every dblock was read: \(reads.map(\.length))")
    }

    /// The point of it: with two hosts joined in a 2,000-slot layout, an
    /// acquire reads a few sectors, not 1 MiB three times.
    @Test func anAcquireReadsOnlyTheParticipantsDblocks() async throws {
        let c = try await Cluster(numHosts: 2000)
        _ = try await c.join(1)
        _ = try await c.join(2)
        let observer = c.observer()
        let dev = c.device("h2")
        var r = try await c.resource(0, device: dev)
        r.participants = observer
        dev.resetStatistics()
        let held = try await PaxosLease.acquire(r, host: host(2), oracle: observer, context: c.context)
        #expect(held.lver == LeaseVersion(1))
        let s = dev.statistics
        #expect(s.reads == 3 && s.writes == 3)
        // Leader, request and the dblocks of hosts 1 and 2: sectors 0...3, one I/O each time.
        #expect(s.sectorsRead <= 3 * 4, "read \(s.sectorsRead) sectors")
        dev.resetStatistics()
        try await PaxosLease.release(r, held: held, context: c.context)
        #expect(dev.statistics.sectorsRead == 2, "release reads its own dblock and the leader")
        // Another host's later ballot still sees host 2's released dblock.
        var r1 = try await c.resource(0, device: c.device("h1"))
        r1.participants = observer
        let next = try await PaxosLease.acquire(r1, host: host(1), oracle: observer, context: c.context)
        #expect(next.lver == LeaseVersion(2))
    }

    @Test func sectorRunsMergeNearNeighboursOnly() {
        #expect(SectorRuns.coalesce([]) == [])
        #expect(SectorRuns.coalesce([3, 0, 1, 2]) == [0..<4])
        #expect(SectorRuns.coalesce([0, 1, 10], maxGap: 8) == [0..<11])
        #expect(SectorRuns.coalesce([0, 1, 11], maxGap: 8) == [0..<2, 11..<12])
        #expect(SectorRuns.coalesce([5, 5, 5]) == [5..<6])
    }
}

/// A requester signals a holder by setting the holder's bit in its own
/// delta lease; the holder reads only the slots of hosts in its view.
@Suite(.cpuBound) struct RequestSignalTests {
    @Test func aBitSetByAHostInTheViewIsSeenAndNoOtherIs() async throws {
        let c = try await Cluster()
        let holder = try await c.join(1)
        var requester = try await c.join(3)
        _ = holder
        let observer = c.observer()
        #expect(try await observer.isSignalled(HostID(1), hostsUpTo: 8, refreshEvery: .seconds(2)) == false)
        let slot3 = try c.slot(3)
        var bits = HostBitmap()
        bits.insert(HostID(1))
        requester = try await DeltaLease.updateBitmap(slot3, hold: requester, bitmap: bits)
        #expect(try await observer.isSignalled(HostID(1), hostsUpTo: 8, refreshEvery: .seconds(2)))
        #expect(try await observer.isSignalled(HostID(2), hostsUpTo: 8, refreshEvery: .seconds(2)) == false, "only host 1's bit is set")
        // A released slot's stale bits do not count.
        try await DeltaLease.release(slot3, hold: requester, context: c.context)
        c.clock.advance(by: .seconds(3))
        #expect(try await observer.isSignalled(HostID(1), hostsUpTo: 8, refreshEvery: .seconds(2)) == false)
    }
}

/// The relations between Tenure's timeouts that its arguments rely on
/// (docs/timeouts.md), asserted for the simulator's, the tests' and the
/// default settings.
@Suite(.cpuBound) struct TimeoutRelationsTests {
    @Test(arguments: [(1, 2), (1, 4), (10, 60), (10, 30), (3, 10)])
    func theTimeoutsKeepTheirRelations(_ n: Int, _ w: Int) {
        let t = Timeouts(ioTimeout: .seconds(n), watchdogFire: .seconds(w))
        #expect(t.renewalInterval < t.renewalWarning && t.renewalWarning < t.renewalFailure && t.renewalFailure < t.hostDead)
        #expect(t.hostDead == t.renewalFailure + t.watchdogFire, "others take over only after the watchdog had W to fire")
        #expect(t.joinWaitForHeldSlot >= t.hostDead)
        #expect(t.killGrace < t.watchdogFire, "SIGKILL comes before the watchdog fires")
        #expect(max(t.killGrace, t.watchdogFire / 2) <= t.watchdogFire, "a killpath's grace stays within W")
        #expect(Timeouts.petInterval(watchdogFire: t.watchdogFire) * 4 <= t.watchdogFire, "at least four pets per W")
        #expect(t.livenessPoll <= t.ioTimeout && t.livenessPoll <= .seconds(1))
        #expect(t.ballotBackoffMax <= t.ioTimeout)
        #expect(Timeouts.lossCheck <= t.renewalInterval, "an early loss is seen within one renewal interval")
        #expect(Timeouts.fencePoll < Timeouts.fenceResignal && Timeouts.fenceResignal <= Timeouts.fenceWarningEvery)
        #expect(Timeouts.requestPoll <= t.renewalInterval)
    }

    @Test func aViewIsFreshForHalfTheShortestJoin() {
        #expect(Timeouts.viewFreshness * 2 == Timeouts.minimumJoinWait)
        #expect(Timeouts.minimumJoinWait == Timeouts(ioTimeout: .seconds(Int64(IOTimeout.minimumSeconds))).joinSettle)
    }
}
