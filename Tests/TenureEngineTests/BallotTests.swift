import Testing
import TenureTestSupport
@testable import TenureEngine
import TenureCore
import TenureFormat
import TenureTestKit

@Suite(.cpuBound) struct BallotTests {
    func slot(_ id: UInt64, _ d: PaxosDblock) -> DblockSlot { DblockSlot(hostID: HostID(id), dblock: d.sealed, mode: .exclusive) }

    func ballot(_ c: Cluster, mbal: UInt64) async throws -> Ballot {
        Ballot(resource: try await c.resource(0), host: LocalHost(id: HostID(1), generation: Generation(4)), lver: LeaseVersion(3),
               mbal: mbal, mode: .exclusive, context: c.context, proposal: DiskTimestamp(77))
    }

    @Test func abortsOnAHigherBallotForTheSameVersion() async throws {
        let b = try await ballot(try await Cluster(), mbal: 2001)
        let ours = PaxosDblock(mbal: 2001, lver: LeaseVersion(3))
        #expect(throws: BallotAbort.self) { try b.checkForAbort([[slot(2, PaxosDblock(mbal: 2002, lver: LeaseVersion(3)))]], ours: ours, phase: 1) }
        #expect(throws: Never.self) { try b.checkForAbort([[slot(2, PaxosDblock(mbal: 2000, lver: LeaseVersion(3)))]], ours: ours, phase: 1) }
    }

    @Test func abortsOnALaterVersionIgnoresOlderOnesAndBadChecksums() async throws {
        let b = try await ballot(try await Cluster(), mbal: 1)
        let ours = PaxosDblock(mbal: 1, lver: LeaseVersion(3))
        #expect(throws: BallotAbort.self) { try b.checkForAbort([[slot(2, PaxosDblock(mbal: 1, lver: LeaseVersion(4)))]], ours: ours, phase: 2) }
        // An older version, however high its ballot, does not matter.
        #expect(throws: Never.self) { try b.checkForAbort([[slot(2, PaxosDblock(mbal: 99_999, lver: LeaseVersion(2)))]], ours: ours, phase: 1) }
        // A block whose checksum is wrong is ignored.
        var garbage = PaxosDblock(mbal: 99_999, lver: LeaseVersion(3)).sealed
        garbage.checksum ^= 1
        #expect(throws: Never.self) { try b.checkForAbort([[DblockSlot(hostID: HostID(2), dblock: garbage, mode: .exclusive)]], ours: ours, phase: 1) }
    }

    @Test func choosesTheInputOfTheHighestVotedBallotElseOurOwn() async throws {
        let c = try await Cluster()
        let b = try await ballot(c, mbal: 6001)
        let ours = PaxosDblock(mbal: 6001, lver: LeaseVersion(3))
        let own = b.choose(ours, seen: [[slot(2, PaxosDblock(mbal: 4002, lver: LeaseVersion(3)))]])   // started, never voted
        #expect(own.inp == HostID(1) && own.inp2 == Generation(4) && own.bal == 6001 && !own.inp3.isFree)
        let seen = [[slot(2, PaxosDblock(mbal: 4002, bal: 4002, inp: HostID(2), inp2: Generation(9), inp3: DiskTimestamp(50), lver: LeaseVersion(3))),
                     slot(5, PaxosDblock(mbal: 2005, bal: 2005, inp: HostID(5), inp2: Generation(1), inp3: DiskTimestamp(40), lver: LeaseVersion(3))),
                     slot(7, PaxosDblock(mbal: 9007, bal: 9007, inp: HostID(7), inp2: Generation(1), inp3: DiskTimestamp(60), lver: LeaseVersion(2)))]]
        let adopted = b.choose(ours, seen: seen)
        #expect(adopted.inp == HostID(2) && adopted.inp2 == Generation(9) && adopted.inp3 == DiskTimestamp(50) && adopted.bal == 6001)
    }

    /// Ballot numbers come from disk: one near 2^64 is a bad record, not a
    /// crash (a checksum-valid dblock with mbal 2^64 − 1 trapped the daemon).
    @Test func aBallotNumberNear2To64IsABadRecordNotATrap() {
        for maxSeen in [UInt64.max, UInt64.max - 1000, UInt64.max - 1609] {
            #expect(throws: TenureError.self) { try Ballot.firstBallot(host: HostID(7), maxSeen: maxSeen, stride: 2000) }
        }
        #expect(throws: TenureError.self) { try Ballot.nextBallot(after: UInt64.max - 10, stride: 2000) }
        #expect((try? Ballot.nextBallot(after: 7, stride: 2000)) == 2007)
        #expect(throws: TenureError.self) { try LeaseVersion(.max).next() }
        #expect(throws: TenureError.self) { try Generation(.max).next() }
        #expect((try? LeaseVersion(41).next()) == LeaseVersion(42))
    }

    @Test func ballotNumbersAreDisjointPerHostLikeSanlocks() throws {
        #expect(try Ballot.firstBallot(host: HostID(7), maxSeen: 0, stride: 2000) == 7)
        #expect(try Ballot.firstBallot(host: HostID(7), maxSeen: 2003, stride: 2000) == 4007)
        #expect(try Ballot.firstBallot(host: HostID(2000), maxSeen: 4000, stride: 2000) == 8000)
        // Every ballot host h ever uses is ≡ h (mod stride): no two hosts share one.
        var used: [UInt64: UInt64] = [:]
        for h in UInt64(1)...50 {
            var m = try Ballot.firstBallot(host: HostID(h), maxSeen: h * 977, stride: 2000)
            for _ in 0..<20 {
                #expect(used[m] == nil, "ballot \(m) used by hosts \(used[m] ?? 0) and \(h)")
                used[m] = h
                m += 2000
            }
        }
    }
}
