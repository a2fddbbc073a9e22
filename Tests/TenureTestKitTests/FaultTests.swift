import Testing
import TenureCore
@testable import TenureTestKit

#if canImport(Glibc)
import Glibc
#endif

/// Each fault does what the fault model at the top of MemoryDevice.swift says:
/// what the caller sees, when, and what lands.
@Suite("MemoryDevice faults", .timeLimit(.minutes(1)))
struct FaultTests {
    static let old = filled(0x11, count: 1024)
    static let new = pattern(5, count: 1024)
    static let ioTimeout = Duration.seconds(10)

    /// A device with `old` in sectors 2 and 3.
    static func device(clock: ManualClock? = nil) async throws -> MemoryDevice {
        let device = MemoryDevice(sizeBytes: 1 << 16, clock: clock, ioTimeout: ioTimeout)
        try await device.write(old, at: 1024)
        device.resetStatistics()
        return device
    }

    static func area(_ device: MemoryDevice) -> [UInt8] { device.storage.snapshot(1024..<2048) }

    // MARK: Write ordering

    @Test("A write waits for the handle's earlier write to the same sectors that has not landed")
    func writesLandInIssueOrder() async throws {
        let clock = ManualClock(autoAdvance: true)
        let device = try await Self.device(clock: clock)
        let start = clock.now()
        // The first write is slow past its deadline: the caller gives up at
        // +10 s, and the write lands at +15 s.
        device.inject(.latency(.seconds(15)), on: .writes, count: .once)
        #expect(await errorCode { try await device.write(filled(0xAA, count: 512), at: 1024) } == .ioTimeout)
        // The next write to that sector waits for it, then lands over it: the
        // newer bytes stay (without the rule the stale ones would win at +15 s).
        try await device.write(filled(0xBB, count: 512), at: 1024)
        #expect(clock.now() >= start + .seconds(15))
        #expect(device.storage.snapshot(1024..<1536) == filled(0xBB, count: 512))
        // A write whose deadline comes before the blocker lands times out without landing.
        device.inject(.latency(.seconds(25)), on: .writes, count: .once)
        #expect(await errorCode { try await device.write(filled(0xCC, count: 512), at: 1024) } == .ioTimeout)
        #expect(await errorCode { try await device.write(filled(0xDD, count: 512), at: 1024) } == .ioTimeout)
        // Another sector is never blocked.
        try await device.write(filled(0xEE, count: 512), at: 4096)
    }

    @Test("A hung write blocks its sectors for that handle only")
    func hungWriteBlocksItsSectorsForThatHandle() async throws {
        let clock = ManualClock(autoAdvance: true)
        let device = try await Self.device(clock: clock)
        device.inject(.hang, on: .writes, count: .once)
        #expect(await errorCode { try await device.write(filled(0xAA, count: 512), at: 1024) } == .ioTimeout)
        #expect(await errorCode { try await device.write(filled(0xBB, count: 512), at: 1024) } == .ioTimeout)
        let other = MemoryDevice(storage: device.storage, path: "other", clock: clock, ioTimeout: Self.ioTimeout)
        try await other.write(filled(0xEE, count: 512), at: 1024)
        #expect(device.storage.snapshot(1024..<1536) == filled(0xEE, count: 512))
    }

    // MARK: Errors

    @Test("error(errno) throws .ioFailed with that errno and touches nothing")
    func injectedError() async throws {
        let device = try await Self.device()
        device.inject(.error(ENOSPC), on: .writes, count: .once)
        do {
            try await device.write(Self.new, at: 1024)
            Issue.record("the write should have failed")
        } catch let error as TenureError {
            #expect(error.code == .ioFailed)
            #expect(error.errno == ENOSPC)
            #expect(error.message.contains("mem"))
        }
        #expect(Self.area(device).summary == Self.old.summary)
        // Once means once.
        try await device.write(Self.new, at: 1024)
        #expect(Self.area(device).summary == Self.new.summary)
        #expect(device.faultRules.isEmpty)
    }

    @Test("An error on reads leaves writes alone, and the other way round")
    func kindFilter() async throws {
        let device = try await Self.device()
        device.inject(.error(EIO), on: .reads)
        try await device.write(Self.new, at: 1024)
        #expect(await errorCode { try await device.read(at: 1024, length: 1024) } == .ioFailed)
        #expect(await errorCode { try await device.read(at: 1024, length: 1024) } == .ioFailed)

        device.clearFaults()
        device.inject(.error(EIO), on: .writes)
        #expect(try await device.read(at: 1024, length: 1024).summary == Self.new.summary)
        #expect(await errorCode { try await device.write(Self.old, at: 1024) } == .ioFailed)
    }

    @Test("A range filter hits exactly the I/Os that overlap it")
    func rangeFilter() async throws {
        let device = try await Self.device()
        device.inject(.error(EIO), on: .any(overlapping: 1536..<2048))   // sector 3
        #expect(try await device.read(at: 1024, length: 512).summary == Array(Self.old[..<512]).summary)
        _ = try await device.read(at: 2048, length: 512)
        #expect(await errorCode { try await device.read(at: 1536, length: 512) } == .ioFailed)
        #expect(await errorCode { try await device.read(at: 0, length: 4096) } == .ioFailed)
        #expect(await errorCode { try await device.write(Self.new, at: 1024) } == .ioFailed)
        try await device.write(filled(3, count: 512), at: 1024)
        #expect(Array(Self.area(device)[..<512]).summary == filled(3, count: 512).summary)
    }

    @Test("times(n) fires n times, then the rule is gone")
    func countedRule() async throws {
        let device = try await Self.device()
        let id = device.inject(.error(EIO), on: .reads, count: .times(2))
        #expect(device.faultRules.map(\.remaining) == [.times(2)])
        #expect(await errorCode { try await device.read(at: 0, length: 512) } == .ioFailed)
        #expect(device.faultRules.map(\.id) == [id])
        #expect(device.faultRules.map(\.remaining) == [.times(1)])
        #expect(await errorCode { try await device.read(at: 0, length: 512) } == .ioFailed)
        _ = try await device.read(at: 0, length: 512)
        #expect(device.faultRules.isEmpty)
        #expect(device.statistics.faulted == 2)
    }

    @Test("The newest matching rule wins; remove takes one rule away")
    func newestRuleWins() async throws {
        let device = try await Self.device()
        let always = device.inject(.error(EIO), on: .any)
        device.inject(.error(ENOSPC), on: .writes, count: .once)
        let first = await thrownError { try await device.write(Self.new, at: 1024) } as? TenureError
        let second = await thrownError { try await device.write(Self.new, at: 1024) } as? TenureError
        #expect(first?.errno == ENOSPC)
        #expect(second?.errno == EIO)
        device.remove(always)
        try await device.write(Self.new, at: 1024)
        #expect(Self.area(device).summary == Self.new.summary)
    }

    @Test("detached fails every I/O of one handle with EIO; other handles carry on")
    func detachedHandle() async throws {
        let storage = MemoryStorage(sizeBytes: 1 << 16)
        let cutOff = MemoryDevice(storage: storage, path: "host-1")
        let healthy = MemoryDevice(storage: storage, path: "host-2")
        try await cutOff.write(Self.old, at: 1024)
        cutOff.inject(.detached)

        let readError = await thrownError { try await cutOff.read(at: 1024, length: 1024) } as? TenureError
        #expect(readError?.code == .ioFailed)
        #expect(readError?.errno == EIO)
        #expect(await errorCode { try await cutOff.write(Self.new, at: 1024) } == .ioFailed)
        #expect(await errorCode { try await cutOff.write(Self.new, at: 8192) } == .ioFailed)
        #expect(storage.snapshot(1024..<2048).summary == Self.old.summary)
        #expect(storage.snapshot(8192..<9216).summary == filled(0, count: 1024).summary)

        try await healthy.write(Self.new, at: 1024)
        #expect(try await healthy.read(at: 1024, length: 1024).summary == Self.new.summary)

        cutOff.clearFaults()
        #expect(try await cutOff.read(at: 1024, length: 1024).summary == Self.new.summary)
        #expect(cutOff.statistics.failed == 3)
        #expect(healthy.statistics.failed == 0)
    }

    @Test("tornWrite lands its first sectors only, fails with EIO, and never matches a read")
    func tornWrite() async throws {
        let device = MemoryDevice(sizeBytes: 1 << 16)
        let old = filled(0x11, count: 2048)
        let new = pattern(9, count: 2048)
        try await device.write(old, at: 0)
        device.storage.resetWriteTracking()
        device.inject(.tornWrite(landedSectors: 1), on: .any, count: .once)

        // A read passes the rule by without consuming it.
        #expect(try await device.read(at: 0, length: 2048).summary == old.summary)
        #expect(device.faultRules.count == 1)

        let error = await thrownError { try await device.write(new, at: 0) } as? TenureError
        #expect(error?.code == .ioFailed)
        #expect(error?.errno == EIO)
        #expect(device.storage.snapshot(0..<512).summary == Array(new[..<512]).summary)
        #expect(device.storage.snapshot(512..<2048).summary == Array(old[512...]).summary)
        #expect(device.storage.writtenRanges() == [0..<512])
        #expect(device.faultRules.isEmpty)

        // More sectors than the write has: all of it lands, and the caller is still told EIO.
        device.inject(.tornWrite(landedSectors: 9), on: .writes, count: .once)
        #expect(await errorCode { try await device.write(filled(4, count: 1024), at: 0) } == .ioFailed)
        #expect(device.storage.snapshot(0..<1024).summary == filled(4, count: 1024).summary)
    }

    // MARK: Time

    @Test("latency completes a write after the delay on the clock; it lands then")
    func writeLatency() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        let start = clock.now()
        device.inject(.latency(.seconds(3)), on: .writes, count: .once)

        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        #expect(clock.nextDeadline == start + .seconds(3))
        #expect(Self.area(device).summary == Self.old.summary)

        clock.advance(by: .seconds(2))
        #expect(clock.sleeperCount == 1)
        #expect(Self.area(device).summary == Self.old.summary)

        clock.advance(by: .seconds(1))
        try await write.value
        #expect(Self.area(device).summary == Self.new.summary)
        #expect(device.statistics.recent.last?.outcome == .completed)
        #expect(device.statistics.recent.last?.issuedAt == start)
    }

    @Test("latency on a read returns the bytes as they are when it completes")
    func readLatency() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        device.inject(.latency(.milliseconds(500)), on: .reads, count: .once)
        let read = Task { try await device.read(at: 1024, length: 1024) }
        try await clock.waitForSleepers(1)
        device.storage.poke(Self.new, at: 1024)
        clock.advance(by: .milliseconds(500))
        #expect(try await read.value.summary == Self.new.summary)
    }

    @Test("latency beyond ioTimeout: the caller times out at the deadline, the write lands later")
    func latencyPastDeadline() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        let start = clock.now()
        device.inject(.latency(.seconds(15)), on: .writes, count: .once)

        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        #expect(clock.nextDeadline == start + Self.ioTimeout)
        clock.advance(by: Self.ioTimeout)
        #expect(await errorCode { try await write.value } == .ioTimeout)
        #expect(Self.area(device).summary == Self.old.summary)
        #expect(device.storage.pendingWriteCount == 1)

        clock.advance(by: .seconds(5))
        #expect(Self.area(device).summary == Self.new.summary)
        #expect(device.storage.pendingWriteCount == 0)
        #expect(device.statistics.timedOut == 1)
    }

    @Test("timeoutAfterWrite: the write lands at once, the caller gets .ioTimeout at the deadline")
    func timeoutAfterWrite() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        let start = clock.now()
        device.inject(.timeoutAfterWrite, on: .writes, count: .once)

        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        #expect(Self.area(device).summary == Self.new.summary)
        #expect(clock.nextDeadline == start + Self.ioTimeout)
        clock.advance(by: Self.ioTimeout - .nanoseconds(1))
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .nanoseconds(1))
        #expect(await errorCode { try await write.value } == .ioTimeout)
        #expect(device.statistics.recent.last?.outcome == .timedOut)
    }

    @Test("timeoutAfterWrite on an auto-advancing clock: time moves by ioTimeout")
    func timeoutAfterWriteAutoAdvance() async throws {
        let clock = ManualClock(autoAdvance: true)
        let device = try await Self.device(clock: clock)
        let start = clock.now()
        device.inject(.timeoutAfterWrite, on: .writes, count: .once)
        #expect(await errorCode { try await device.write(Self.new, at: 1024) } == .ioTimeout)
        #expect(clock.now() == start + Self.ioTimeout)
        #expect(Self.area(device).summary == Self.new.summary)
    }

    @Test("Timeouts without a clock throw at once")
    func timeoutsWithoutClock() async throws {
        let device = try await Self.device()
        device.inject(.timeoutAfterWrite, on: .writes, count: .once)
        #expect(await errorCode { try await device.write(Self.new, at: 1024) } == .ioTimeout)
        #expect(Self.area(device).summary == Self.new.summary)

        device.inject(.timeoutWithoutWrite, on: .writes, count: .once)
        #expect(await errorCode { try await device.write(Self.old, at: 1024) } == .ioTimeout)
        #expect(Self.area(device).summary == Self.new.summary)

        device.inject(.timeoutAfterWrite, on: .reads, count: .once)
        #expect(await errorCode { try await device.read(at: 1024, length: 512) } == .ioTimeout)
    }

    @Test("timeoutWithoutWrite: the caller gets .ioTimeout at the deadline, nothing lands")
    func timeoutWithoutWrite() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        device.inject(.timeoutWithoutWrite, on: .writes, count: .once)
        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        clock.advance(by: Self.ioTimeout)
        #expect(await errorCode { try await write.value } == .ioTimeout)
        clock.advance(by: .seconds(3600))
        #expect(Self.area(device).summary == Self.old.summary)
        #expect(device.storage.pendingWriteCount == 0)
    }

    @Test("hang: the caller waits exactly ioTimeout, then gets .ioTimeout; nothing lands, ever")
    func hang() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        device.inject(.hang)

        let read = Task { try await device.read(at: 1024, length: 1024) }
        try await clock.waitForSleepers(1)
        clock.advance(by: Self.ioTimeout - .nanoseconds(1))
        #expect(clock.sleeperCount == 1)
        clock.advance(by: .nanoseconds(1))
        #expect(await errorCode { try await read.value } == .ioTimeout)

        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        clock.advance(by: Self.ioTimeout)
        #expect(await errorCode { try await write.value } == .ioTimeout)
        clock.advance(by: .seconds(86_400))
        #expect(Self.area(device).summary == Self.old.summary)
        #expect(device.statistics.timedOut == 2)
    }

    @Test("lateWrite: .ioTimeout at the deadline, the bytes land `after` past it, before later writes")
    func lateWrite() async throws {
        let clock = ManualClock()
        let storage = MemoryStorage(sizeBytes: 1 << 16)
        let slow = MemoryDevice(storage: storage, path: "slow", clock: clock, ioTimeout: Self.ioTimeout)
        let other = MemoryDevice(storage: storage, path: "other", clock: clock, ioTimeout: Self.ioTimeout)
        let start = clock.now()
        let late = pattern(1, count: 512)
        let early = pattern(2, count: 512)
        let final = pattern(3, count: 512)
        slow.inject(.lateWrite(after: .seconds(5)), on: .writes, count: .once)

        let write = Task { try await slow.write(late, at: 0) }
        try await clock.waitForSleepers(1)
        clock.advance(by: Self.ioTimeout)
        #expect(await errorCode { try await write.value } == .ioTimeout)
        #expect(storage.snapshot(0..<512).summary == filled(0, count: 512).summary)

        // Another host writes the sector after the deadline but before the late write lands...
        clock.advance(to: start + .seconds(12))
        try await other.write(early, at: 0)
        #expect(try await other.read(at: 0, length: 512).summary == early.summary)
        // ...and the late write lands over it at deadline + 5 s.
        clock.advance(to: start + .seconds(15))
        #expect(try await other.read(at: 0, length: 512).summary == late.summary)
        #expect(storage.writtenRanges() == [0..<512])

        // Landing is lazy but ordered: a write issued after the landing time,
        // with nobody looking in between, still wins.
        slow.inject(.lateWrite(after: .seconds(5)), on: .writes, count: .once)
        let again = Task { try await slow.write(late, at: 0) }
        try await clock.waitForSleepers(1)
        clock.advance(by: Self.ioTimeout)
        _ = await thrownError { try await again.value }
        clock.advance(by: .seconds(20))
        try await other.write(final, at: 0)
        #expect(storage.snapshot(0..<512).summary == final.summary)
    }

    @Test("A cancelled caller stops waiting at once; its write still lands at its time")
    func cancelledWhileWaiting() async throws {
        let clock = ManualClock()
        let device = try await Self.device(clock: clock)
        device.inject(.latency(.seconds(3)), on: .writes, count: .once)
        let write = Task { try await device.write(Self.new, at: 1024) }
        try await clock.waitForSleepers(1)
        let before = clock.now()
        write.cancel()
        #expect(await thrownError { try await write.value } is CancellationError)
        #expect(clock.now() == before)
        #expect(clock.sleeperCount == 0)
        #expect(device.statistics.recent.last?.outcome == .cancelled)
        #expect(device.statistics.cancelled == 1)
        #expect(Self.area(device).summary == Self.old.summary)
        clock.advance(by: .seconds(3))
        #expect(Self.area(device).summary == Self.new.summary)
    }

    @Test("Faults of one handle do not reach another handle with its own clock")
    func independentClocksAndRules() async throws {
        let storage = MemoryStorage(sizeBytes: 1 << 16)
        let clockA = ManualClock()
        let a = MemoryDevice(storage: storage, path: "a", clock: clockA)
        let b = MemoryDevice(storage: storage, path: "b", clock: ManualClock(autoAdvance: true))
        a.inject(.hang)
        let stuck = Task { try await a.read(at: 0, length: 512) }
        try await clockA.waitForSleepers(1)
        try await b.write(Self.new, at: 1024)
        #expect(try await b.read(at: 1024, length: 1024).summary == Self.new.summary)
        stuck.cancel()
        #expect(await thrownError { try await stuck.value } is CancellationError)
    }
}
