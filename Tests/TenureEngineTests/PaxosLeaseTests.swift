import Testing
import TenureTestSupport
import TenureCore
@testable import TenureEngine
import TenureFormat
import TenureTestKit

@Suite(.cpuBound) struct PaxosLeaseTests {
    func host(_ id: UInt64, _ gen: UInt64 = 1) -> LocalHost { LocalHost(id: HostID(id), generation: Generation(gen)) }

    @Test func freeAcquireCommitsLverOneForUsWithinTheIOBudget() async throws {
        let c = try await Cluster(numHosts: 16)
        let dev = c.device("h1")
        let r = try await c.resource(0, device: dev)
        dev.resetStatistics()
        let held = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: c.context)
        #expect(held.lver == LeaseVersion(1))
        let leader = c.leader(0)
        #expect(leader.ownerID == HostID(1) && leader.ownerGeneration == Generation(1) && leader.lver == LeaseVersion(1))
        #expect(!leader.timestamp.isFree)
        #expect(leader.writeID == HostID(1))
        // The budget: at most 6 single-sector I/Os plus reads of num_hosts dblocks.
        let s = dev.statistics
        let single = s.recent.filter { $0.length == 512 }
        let dblockReads = s.recent.filter { $0.kind == .read && $0.length > 512 }
        #expect(s.ios == single.count + dblockReads.count)
        #expect(single.count <= 6)
        #expect(dblockReads.allSatisfy { $0.length <= (16 + 2) * 512 })
        #expect(s.writes == 3)                  // phase 1, phase 2, commit
        #expect(s.sectorsWritten == 3)
        #expect(s.reads == 3)                   // initial, phase 1, phase 2
    }

    /// Two acquisitions of one host generation never propose the same
    /// value, even within one second: the proposal is what tells a win
    /// from a version an earlier acquisition of ours won.
    /// A shared mark's host is gone only by a record of the mark's own
    /// generation (free or dead) or a newer one; an older record, free or
    /// dead, is the slot gone back and proves nothing (seed 63001837).
    @Test func aSharerIsGoneOnlyByItsOwnGenerationOrANewerOne() {
        func record(generation: UInt64, free: Bool) -> LeaderRecord {
            var r = LeaderRecord(kind: .delta, geometry: .standard512, spaceName: "LS", resourceName: "h")
            r.ownerID = HostID(1)
            r.ownerGeneration = Generation(generation)
            r.timestamp = free ? .free : DiskTimestamp(100)
            return r
        }
        let marks = [ModeBlock.shared(Generation(3))]
        #expect(PaxosLease.sharerIsGone(marks: marks, record: record(generation: 4, free: false), state: .live), "rejoined newer")
        #expect(PaxosLease.sharerIsGone(marks: marks, record: record(generation: 3, free: true), state: .free), "left")
        #expect(PaxosLease.sharerIsGone(marks: marks, record: record(generation: 3, free: false), state: .dead), "dead")
        #expect(!PaxosLease.sharerIsGone(marks: marks, record: record(generation: 3, free: false), state: .live), "live")
        #expect(!PaxosLease.sharerIsGone(marks: marks, record: record(generation: 2, free: true), state: .free), "an older free record")
        #expect(!PaxosLease.sharerIsGone(marks: marks, record: record(generation: 1, free: false), state: .dead), "an older dead record")
        // Over several disks the newest mark counts.
        #expect(!PaxosLease.sharerIsGone(marks: [.shared(Generation(2)), .shared(Generation(3))], record: record(generation: 2, free: true), state: .free))
    }

    @Test func proposalStampsAreUniquePerHostGeneration() {
        let clock = ManualClock(autoAdvance: false)
        let context = EngineContext(clock: clock)
        var seen: Set<DiskTimestamp> = []
        for _ in 0..<100 { #expect(seen.insert(context.proposalStamp()).inserted) }
        // Above our own dblock's last vote, which another process may have written.
        #expect(context.proposalStamp(above: DiskTimestamp(1_000_000)) > DiskTimestamp(1_000_000))
    }

    /// The leader went back (a late write), and our released mark never
    /// landed: our dblock holds a plain vote for lver 1, the version we won,
    /// held and released. A new acquisition by the same host generation in
    /// the same second must not adopt that vote and take lver 1 again (the
    /// simulator found this, seed 920305): it starts over above it.
    @Test func anEarlierAcquisitionsVoteIsNeverANewWin() async throws {
        let c = try await Cluster()
        let context = c.context
        let r = try await c.resource(0)
        let before = c.storage.snapshot(Cluster.mib..<Cluster.mib + 512)
        let first = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: context)
        #expect(first.lver == LeaseVersion(1))
        try await PaxosLease.release(r, held: first, context: context)
        // The leader back at lver 0 (free); our dblock's released mark lost.
        c.storage.poke(before, at: Cluster.mib)
        let dblockAt = Cluster.mib + 2 * 512
        var own = PaxosDblock(decoding: c.storage.snapshot(dblockAt..<dblockAt + 512))
        #expect(own.isReleased && own.lver == LeaseVersion(1))
        own.flags &= ~PaxosDblock.releasedFlag
        c.storage.poke(own.encodedSector(.bytes512), at: dblockAt)
        let second = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: context)
        #expect(second.lver == LeaseVersion(2), "lver \(second.lver) handed out twice to one host")
    }

    @Test func releaseFreesTheLeaderAndMarksTheDblockReleased() async throws {
        let c = try await Cluster()
        let r = try await c.resource(0)
        let held = try await PaxosLease.acquire(r, host: host(2), oracle: nil, context: c.context)
        try await PaxosLease.release(r, held: held, context: c.context)
        let leader = c.leader(0)
        #expect(leader.timestamp.isFree)
        #expect(leader.lver == LeaseVersion(1))
        let dblock = PaxosDblock(decoding: c.storage.snapshot(Cluster.mib + 3 * 512..<Cluster.mib + 4 * 512))
        #expect(dblock.isReleased && dblock.isValid)
        // The next acquire, by another host, takes lver 2: lver only grows.
        let next = try await PaxosLease.acquire(r, host: host(3), oracle: nil, context: c.context)
        #expect(next.lver == LeaseVersion(2))
    }

    @Test func heldByAnotherHostWithoutALockspaceCannotBeJudged() async throws {
        let c = try await Cluster()
        let r = try await c.resource(0)
        _ = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: c.context)
        let e = await expectTenureError(.heldByLiveHost) { _ = try await PaxosLease.acquire(r, host: self.host(2), oracle: nil, context: c.context) }
        #expect(e?.message.contains("host 1") == true)
    }

    @Test func liveOwnerFailsFastWhenSeenRenewing() async throws {
        let c = try await Cluster(autoAdvance: false)
        let joining = Task { try await c.join(1) }
        try await c.clock.waitForSleepers(1)
        c.clock.advance(by: c.timeouts.joinSettle)
        var owner = try await joining.value
        let r = try await c.resource(0)
        _ = try await PaxosLease.acquire(r, host: owner.host, oracle: nil, context: c.context)
        let obs = c.observer()
        let attempt = Task { try await PaxosLease.acquire(r, host: self.host(2), oracle: obs, context: c.context) }
        try await c.clock.waitForSleepers(1)     // watching: owner state unknown
        owner = try await DeltaLease.renew(try c.slot(1), hold: owner, context: c.context)
        c.clock.advance(by: .seconds(1))
        let e = await expectTenureError(.heldByLiveHost) { _ = try await attempt.value }
        #expect(e?.message.contains("live host 1") == true)
        #expect(c.leader(0).ownerID == HostID(1))
    }

    @Test func deadOwnerIsTakenOverAfterHostDeadWithAHigherLver() async throws {
        let c = try await Cluster()
        let owner = try await c.join(1)
        let r = try await c.resource(0)
        _ = try await PaxosLease.acquire(r, host: owner.host, oracle: nil, context: c.context)
        let before = c.clock.now()
        let held = try await PaxosLease.acquire(r, host: host(2), oracle: c.observer(), context: c.context)
        #expect(c.clock.now() - before > c.timeouts.hostDead)
        #expect(held.lver == LeaseVersion(2))
        #expect(c.leader(0).ownerID == HostID(2))
    }

    @Test func ownerThatRejoinedOrReleasedItsHostIDIsTakenOverAtOnce() async throws {
        let c = try await Cluster()
        let first = try await c.join(1)
        let r = try await c.resource(0)
        _ = try await PaxosLease.acquire(r, host: first.host, oracle: nil, context: c.context)
        try await DeltaLease.release(try c.slot(1), hold: first, context: c.context)
        let t = c.clock.now()
        let held = try await PaxosLease.acquire(r, host: host(2), oracle: c.observer(), context: c.context)
        #expect(c.clock.now() - t < .seconds(2))
        #expect(held.lver == LeaseVersion(2))
        // Host 2's host id is taken again by a newer generation: the lease of
        // the old generation is free to take at once.
        _ = try await c.join(2)                  // generation 1: the slot was free
        var slot2 = LeaderRecord(decoding: c.storage.snapshot(512..<1024))
        slot2.ownerGeneration = Generation(2)
        c.storage.poke(slot2.encodedSector(.bytes512), at: 512)
        let t2 = c.clock.now()
        let third = try await PaxosLease.acquire(r, host: host(3), oracle: c.observer(), context: c.context)
        #expect(c.clock.now() - t2 < .seconds(2))
        #expect(third.lver == LeaseVersion(3))
    }

    @Test func aBallotAdoptsAValueAnotherHostAlreadyVotedFor() async throws {
        // Host 5 finished phase 2 for lver 1 (voting for itself) and crashed
        // before committing. Disk Paxos obliges the next ballot to commit 5.
        let c = try await Cluster()
        let voted = PaxosDblock(mbal: 5, bal: 5, inp: HostID(5), inp2: Generation(7), inp3: DiskTimestamp(99), lver: LeaseVersion(1))
        c.storage.poke(voted.encodedSector(.bytes512), at: Cluster.mib + 6 * 512)
        let r = try await c.resource(0)
        let e = await expectTenureError(.heldByLiveHost) { _ = try await PaxosLease.acquire(r, host: self.host(1), oracle: nil, context: c.context) }
        #expect(e?.message.contains("acquired by host 5") == true)
        let leader = c.leader(0)
        #expect(leader.lver == LeaseVersion(1) && leader.ownerID == HostID(5) && leader.ownerGeneration == Generation(7))
        #expect(leader.writeID == HostID(1))
    }

    @Test func aHigherBallotSeenInTheInitialReadStartsOursAboveIt() async throws {
        let c = try await Cluster()
        let area = Cluster.mib
        c.storage.poke(PaxosDblock(mbal: 2003, lver: LeaseVersion(1)).encodedSector(.bytes512), at: area + 4 * 512)
        let r = try await c.resource(0)
        let held = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: c.context)
        #expect(held.lver == LeaseVersion(1))
        // stride = the leader's max_hosts (2000): 2003 - 3 + 2000 + 1.
        let ours = PaxosDblock(decoding: c.storage.snapshot(area + 2 * 512..<area + 3 * 512))
        #expect(ours.mbal == 4001 && ours.bal == 4001)
        #expect(c.events.count(.ballotAborted) == 0)
    }

    @Test func racingAcquirersOneWinsTheOtherAbortsThenSeesTheCommit() async throws {
        let c = try await Cluster(autoAdvance: false)
        let area = Cluster.mib
        let dev1 = c.device("h1"), dev2 = c.device("h2")
        // Both read the lease free; host 2's phase-1 write lands first.
        dev1.inject(.latency(.milliseconds(20)), on: .writes(overlapping: area + 2 * 512..<area + 3 * 512), count: .once)
        dev2.inject(.latency(.milliseconds(10)), on: .writes(overlapping: area + 3 * 512..<area + 4 * 512), count: .once)
        let r1 = try await c.resource(0, device: dev1), r2 = try await c.resource(0, device: dev2)
        let a1 = Task { try await PaxosLease.acquire(r1, host: self.host(1), oracle: nil, context: c.context) }
        let a2 = Task { try await PaxosLease.acquire(r2, host: self.host(2), oracle: nil, context: c.context) }
        try await c.clock.waitForSleepers(2)
        c.clock.advance(by: .milliseconds(10))            // host 2 runs its whole ballot and commits
        let won = try await a2.value
        #expect(won.lver == LeaseVersion(1))
        c.clock.advance(by: .milliseconds(10))            // host 1's write lands; it reads mbal 2 > 1
        try await c.clock.waitForSleepers(1)              // backing off
        #expect(c.events.count(.ballotAborted) == 1)
        c.clock.advance(by: .seconds(1))
        let e = await expectTenureError(.heldByLiveHost) { _ = try await a1.value }
        #expect(e?.message.contains("acquired by host 2") == true)
        #expect(c.leader(0).ownerID == HostID(2) && c.leader(0).lver == LeaseVersion(1))
    }

    /// A dblock at lver 9 over a leader at 0 proves (by the ballot rule)
    /// that lver 8 was committed: the leader went back. The acquire
    /// re-decides 9 and takes a version above it — never one at or below
    /// 9, which may have been handed out (docs/safety.md). It used to give
    /// up with bad-record, leaving the lease unusable.
    @Test func aDblockClaimingAFarLaterVersionMovesTheLeasePastIt() async throws {
        let c = try await Cluster()
        let bogus = PaxosDblock(mbal: 3, lver: LeaseVersion(9))
        c.storage.poke(bogus.encodedSector(.bytes512), at: Cluster.mib + 4 * 512)
        let r = try await c.resource(0)
        let held = try await PaxosLease.acquire(r, host: self.host(1), oracle: nil, context: c.context)
        #expect(held.lver == LeaseVersion(10))
        #expect(c.events.all.contains { $0.message.contains("re-deciding lver 9") })
    }

    @Test func requiredLverHandsOverOnlyAnUntouchedLease() async throws {
        let c = try await Cluster()
        let r = try await c.resource(0)
        let held = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: c.context)
        try await PaxosLease.release(r, held: held, context: c.context)
        await expectTenureError(.lverMismatch) {
            _ = try await PaxosLease.acquire(r, host: self.host(2), oracle: nil, options: AcquireOptions(requiredLver: LeaseVersion(7)), context: c.context)
        }
        let handed = try await PaxosLease.acquire(r, host: host(2), oracle: nil, options: AcquireOptions(requiredLver: held.lver), context: c.context)
        #expect(handed.lver == LeaseVersion(2))
    }

    @Test func sharedHoldersExcludeAnExclusiveAcquireUntilTheyLeave() async throws {
        let c = try await Cluster()
        let h1 = try await c.join(1), h2 = try await c.join(2)
        let r = try await c.resource(0)
        let s1 = try await PaxosLease.acquire(r, host: h1.host, oracle: nil, options: AcquireOptions(shared: true), context: c.context)
        let s2 = try await PaxosLease.acquire(r, host: h2.host, oracle: nil, options: AcquireOptions(shared: true), context: c.context)
        #expect(s1.shared && s2.shared)
        #expect(c.leader(0).timestamp.isFree)     // shared holders leave the leader free
        _ = try await c.join(3)
        let obs = c.observer()
        // Hosts 1 and 2 just joined: their state is not dead, so they block.
        let e = await expectTenureError(.leaseInUse) {
            _ = try await PaxosLease.acquire(r, host: LocalHost(id: HostID(3), generation: Generation(1)), oracle: obs, context: c.context)
        }
        #expect(e?.message.contains("shared by host 1") == true)
        #expect(c.leader(0).timestamp.isFree)     // the failed exclusive acquire freed the leader again
        try await PaxosLease.release(r, held: s1, context: c.context)
        try await PaxosLease.release(r, held: s2, context: c.context)
        let ex = try await PaxosLease.acquire(r, host: LocalHost(id: HostID(3), generation: Generation(1)), oracle: obs, context: c.context)
        #expect(!ex.shared && c.leader(0).ownerID == HostID(3))
    }

    @Test func aGoneSharersMarkIsPassedOverNotWritten() async throws {
        let c = try await Cluster()
        let h1 = try await c.join(1)
        let r = try await c.resource(0)
        _ = try await PaxosLease.acquire(r, host: h1.host, oracle: nil, options: AcquireOptions(shared: true), context: c.context)
        try await DeltaLease.release(try c.slot(1), hold: h1, context: c.context)   // host 1 left the lockspace
        let ex = try await PaxosLease.acquire(r, host: host(2), oracle: c.observer(), context: c.context)
        #expect(!ex.shared)
        // A host writes only its own dblock: the gone sharer's sector is
        // left as it was (a clearing write landing late once erased the mark
        // of the same host id rejoined and sharing again, seed 5018305).
        let mode = ModeBlock(decoding: c.storage.snapshot(Cluster.mib + 2 * 512 + 128..<Cluster.mib + 2 * 512 + 144))
        #expect(mode.isShared)
        #expect(c.events.count(.goneSharerPassedOver) == 1)
    }

    @Test func convertBetweenExclusiveAndShared() async throws {
        let c = try await Cluster()
        let h1 = try await c.join(1)
        let r = try await c.resource(0)
        let ex = try await PaxosLease.acquire(r, host: h1.host, oracle: nil, context: c.context)
        let sh = try await PaxosLease.convertToShared(r, held: ex, context: c.context)
        #expect(sh.shared && c.leader(0).timestamp.isFree)
        let back = try await PaxosLease.convertToExclusive(r, held: sh, oracle: c.observer(), context: c.context)
        #expect(!back.shared && back.lver > sh.lver)
        #expect(c.leader(0).ownerID == HostID(1) && !c.leader(0).timestamp.isFree)
        let mode = ModeBlock(decoding: c.storage.snapshot(Cluster.mib + 2 * 512 + 128..<Cluster.mib + 2 * 512 + 144))
        #expect(!mode.isShared)
    }

    /// A convert to shared that failed before its writes landed leaves the
    /// leader naming this host; the host counts the lease shared all the
    /// same (HostCore.prepareConvert). Its release must free that leader, or
    /// no other host could take the lease while this one lives.
    @Test func releasingALeaseWhoseDowngradeFailedFreesTheLeaderStillOurs() async throws {
        let c = try await Cluster()
        let r = try await c.resource(0)
        var held = try await PaxosLease.acquire(r, host: host(2), oracle: nil, context: c.context)
        held.shared = true
        held.leaderMayBeOurs = true
        try await PaxosLease.release(r, held: held, context: c.context)
        #expect(c.leader(0).timestamp.isFree, "the leader still names the host that released")
        let next = try await PaxosLease.acquire(r, host: host(3), oracle: nil, context: c.context)
        #expect(next.lver == LeaseVersion(2))
    }

    @Test func requestsReachTheHolderButNotTheNextOne() async throws {
        let c = try await Cluster()
        let r = try await c.resource(0)
        let held = try await PaxosLease.acquire(r, host: host(1), oracle: nil, context: c.context)
        #expect(try await PaxosLease.pendingRequest(r, held: held) == nil)
        let (_, wanted) = try await PaxosLease.request(r, lver: nil, mode: .force, context: c.context)
        #expect(wanted == LeaseVersion(2))
        let pending = try await PaxosLease.pendingRequest(r, held: held)
        #expect(pending?.forceMode == .force && pending?.lver == LeaseVersion(2))
        try await PaxosLease.release(r, held: held, context: c.context)
        let next = try await PaxosLease.acquire(r, host: host(2), oracle: nil, context: c.context)
        #expect(try await PaxosLease.pendingRequest(r, held: next) == nil)
        await expectTenureError(.lverMismatch) { _ = try await PaxosLease.request(r, lver: LeaseVersion(2), mode: .graceful, context: c.context) }
    }

    @Test func nothingIsWrittenOutsideTheLeaseAreas() async throws {
        let c = try await Cluster(resources: 2)
        let baseline = c.storage.image()
        let h1 = try await c.join(1)
        let r = try await c.resource(1)
        let held = try await PaxosLease.acquire(r, host: h1.host, oracle: nil, context: c.context)
        _ = try await PaxosLease.request(r, lver: nil, mode: .graceful, context: c.context)
        try await PaxosLease.release(r, held: held, context: c.context)
        let allowed: [Range<UInt64>] = [0..<Cluster.mib, 2 * Cluster.mib..<3 * Cluster.mib]
        #expect(c.storage.changedRanges(since: baseline, outside: allowed).isEmpty)
    }
}

@Suite(.cpuBound) struct MultiDiskTests {
    /// Three disks, each its own storage.
    func threeDisks(_ c: Cluster) async throws -> (ResourceSpec, [MemoryStorage]) {
        let storages = (0..<3).map { _ in MemoryStorage(sectorSize: .bytes512, sizeBytes: 2 * Cluster.mib) }
        for (i, s) in storages.enumerated() {
            try await LeaseAreas.initialiseResource(on: MemoryDevice(storage: s, path: "d\(i)"), at: Cluster.mib, lockspace: "LS", name: "M",
                                                    geometry: .standard512, numHosts: 4)
        }
        let spec = ResourceSpec(lockspace: "LS", name: "M", disks: try (0..<3).map { try LeaseDisk(path: "d\($0)", offset: Cluster.mib) })
        return (spec, storages)
    }

    @Test func aLeaseSurvivesTheLossOfAMinorityOfItsDisks() async throws {
        let c = try await Cluster()
        let (spec, storages) = try await threeDisks(c)
        // Disk 0 lost while host 1 acquires.
        let devs1 = storages.enumerated().map { MemoryDevice(storage: $1, path: "d\($0)", clock: c.clock) }
        devs1[0].inject(.detached)
        let r1 = try await PaxosResource.open(spec, devices: devs1)
        let held = try await PaxosLease.acquire(r1, host: LocalHost(id: HostID(1), generation: Generation(1)), oracle: nil, context: c.context)
        #expect(held.lver == LeaseVersion(1))
        // Disk 0 back, disk 2 lost: host 2 still sees host 1's commit through disk 1.
        let devs2 = storages.enumerated().map { MemoryDevice(storage: $1, path: "d\($0)", clock: c.clock) }
        devs2[2].inject(.detached)
        let r2 = try await PaxosResource.open(spec, devices: devs2)
        let leader = try await r2.readLeader()
        #expect(leader.lver == LeaseVersion(1) && leader.ownerID == HostID(1))
        await expectTenureError(.heldByLiveHost) {
            _ = try await PaxosLease.acquire(r2, host: LocalHost(id: HostID(2), generation: Generation(1)), oracle: nil, context: c.context)
        }
    }

    @Test func losingAMajorityOfDisksFailsTheAcquire() async throws {
        let c = try await Cluster()
        let (spec, storages) = try await threeDisks(c)
        let devs = storages.enumerated().map { MemoryDevice(storage: $1, path: "d\($0)", clock: c.clock) }
        let r = try await PaxosResource.open(spec, devices: devs)
        devs[0].inject(.detached)
        devs[1].inject(.detached)
        await expectTenureError(.ioFailed) {
            _ = try await PaxosLease.acquire(r, host: LocalHost(id: HostID(1), generation: Generation(1)), oracle: nil, context: c.context)
        }
        #expect(LeaderRecord(decoding: storages[2].snapshot(Cluster.mib..<Cluster.mib + 512)).lver == .zero)
    }
}
