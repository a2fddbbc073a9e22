import Testing
import TenureTestSupport
import TenureCore
import TenureEngine
import TenureFormat

/// The frozen-clock check on its own: what counts as evidence, and what
/// does not.
@Suite(.cpuBound) struct FrozenClockCheckTests {
    /// Host 2's record at `timestamp` in generation `generation`.
    func peer(_ timestamp: UInt64, generation: UInt64 = 1, incarnation: UInt64 = 7) -> [(HostID, LeaderRecord)] {
        var record = LeaderRecord(kind: .delta, geometry: .standard512, spaceName: "LS", resourceName: "peer")
        record.ownerID = HostID(2)
        record.ownerGeneration = Generation(generation)
        record.joinIncarnation = incarnation
        record.ioTimeout = IOTimeout(seconds: 1)
        record.timestamp = DiskTimestamp(timestamp)
        return [(HostID(2), record)]
    }

    func at(_ seconds: Int) -> MonotonicInstant { MonotonicInstant(nanoseconds: UInt64(seconds) * 1_000_000_000) }

    /// Looks at host 2 every 2 s of our clock while it renews every 2 s of
    /// its own, from t = 100 (ours) and timestamp 500 (its).
    func steady(_ check: inout FrozenClockCheck, looks: Int) {
        for i in 0..<looks { check.look(at: peer(500 + 2 * UInt64(i)), at: at(100 + 2 * i), fallback: IOTimeout(seconds: 1)) }
    }

    @Test func aPeerThatRanWhileOurClockStoodStillShowsTheTimeMissed() {
        var check = FrozenClockCheck(ownID: HostID(1))
        steady(&check, looks: 4)            // last look: ours 106, its 506
        #expect(check.unseen == .zero)
        // Our clock moves 2 s; its timestamp 30 s.
        check.look(at: peer(536), at: at(108), fallback: IOTimeout(seconds: 1))
        // (536 − 506)·0.98 − 1 − 1 − (108 − 104) = 23.4 s at least.
        #expect(check.unseen >= .seconds(23) && check.unseen <= .seconds(24), "\(check.unseen)")
        #expect(check.evidence?.host == HostID(2))
        check.renewed()
        #expect(check.unseen == .zero && check.evidence == nil)
    }

    @Test func aRejoinedPeerIsNoEvidence() {
        var check = FrozenClockCheck(ownID: HostID(1))
        steady(&check, looks: 4)
        // The same jump, but host 2 joined again meanwhile: a new generation.
        check.look(at: peer(536, generation: 2), at: at(108), fallback: IOTimeout(seconds: 1))
        #expect(check.unseen == .zero)
        // Nor another join of the same generation (a second daemon, a clone).
        var other = FrozenClockCheck(ownID: HostID(1))
        steady(&other, looks: 4)
        other.look(at: peer(536, incarnation: 8), at: at(108), fallback: IOTimeout(seconds: 1))
        #expect(other.unseen == .zero)
    }

    @Test func aTimestampThatGoesBackOrIsFirstSeenIsNoEvidence() {
        var check = FrozenClockCheck(ownID: HostID(1))
        // One look only: nothing to compare with.
        check.look(at: peer(900), at: at(100), fallback: IOTimeout(seconds: 1))
        #expect(check.unseen == .zero)
        // A second look far ahead, but no earlier change seen to date it from.
        check.look(at: peer(990), at: at(102), fallback: IOTimeout(seconds: 1))
        #expect(check.unseen == .zero)
        // Backwards: ignored.
        check.look(at: peer(100), at: at(104), fallback: IOTimeout(seconds: 1))
        #expect(check.unseen == .zero)
    }

    @Test func theSlotsReadReachPastTheHighestJoinedHostAndNoFurtherThanTheLayout() {
        var check = FrozenClockCheck(ownID: HostID(5))
        #expect(check.slotsToRead(maxHosts: 2000) == 5 + FrozenClockCheck.slotsBeyondHighest)
        var record = peer(10)[0].1
        record.ownerID = HostID(100)
        check.look(at: [(HostID(100), record)], at: at(1), fallback: IOTimeout(seconds: 1))
        #expect(check.slotsToRead(maxHosts: 2000) == 100 + FrozenClockCheck.slotsBeyondHighest)
        #expect(check.slotsToRead(maxHosts: 120) == 120)
    }
}
