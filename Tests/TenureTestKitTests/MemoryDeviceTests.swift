import Testing
import TenureCore
@testable import TenureTestKit

#if canImport(Glibc)
import Glibc
#endif

/// The BlockDevice contract, statistics and shared storage, without faults.
@Suite("MemoryDevice", .timeLimit(.minutes(1)))
struct MemoryDeviceTests {
    // MARK: Contract

    struct Refused: Sendable, CustomStringConvertible {
        var sectorSize: SectorSize
        var offset: UInt64
        var length: Int
        var code: TenureError.Code
        var description: String { "\(length)@\(offset) on \(sectorSize)-byte sectors → \(code)" }
    }

    static let refused: [Refused] = [
        Refused(sectorSize: .bytes512, offset: 1, length: 512, code: .misaligned),
        Refused(sectorSize: .bytes512, offset: 512, length: 100, code: .misaligned),
        Refused(sectorSize: .bytes512, offset: 0, length: 0, code: .misaligned),
        Refused(sectorSize: .bytes512, offset: 0, length: -512, code: .misaligned),
        Refused(sectorSize: .bytes4096, offset: 512, length: 4096, code: .misaligned),
        Refused(sectorSize: .bytes4096, offset: 0, length: 512, code: .misaligned),
        Refused(sectorSize: .bytes512, offset: 16_384, length: 512, code: .outOfBounds),
        Refused(sectorSize: .bytes512, offset: 15_872, length: 1024, code: .outOfBounds),
        Refused(sectorSize: .bytes512, offset: 1 << 40, length: 512, code: .outOfBounds),
        Refused(sectorSize: .bytes4096, offset: 12_288, length: 8192, code: .outOfBounds),
    ]

    @Test("Misaligned and out-of-bounds I/O is refused before it is issued", arguments: refused)
    func refusedBeforeIssue(_ c: Refused) async throws {
        let device = MemoryDevice(sectorSize: c.sectorSize, sizeBytes: 16_384)
        // A fault waiting for the next I/O must not be consumed, nor hide the
        // validation error, even the fault that fails everything.
        device.inject(.detached, on: .any, count: .once)

        #expect(await errorCode { try await device.read(at: c.offset, length: c.length) } == c.code)
        if c.length >= 0 {
            let bytes = filled(0xAB, count: c.length)
            #expect(await errorCode { try await device.write(bytes, at: c.offset) } == c.code)
        }

        let stats = device.statistics
        #expect(stats.ios == 0)
        #expect(stats.recent.isEmpty)
        #expect(device.faultRules.count == 1)
        #expect(device.storage.writtenRanges().isEmpty)
    }

    @Test("The last sector and the whole device are in bounds")
    func edgesAreInBounds() async throws {
        let device = MemoryDevice(sectorSize: .bytes4096, sizeBytes: 16_384)
        try await device.write(pattern(1, count: 4096), at: 12_288)
        #expect(try await device.read(at: 12_288, length: 4096).summary == pattern(1, count: 4096).summary)
        let all = try await device.read(at: 0, length: 16_384)
        #expect(all.count == 16_384)
        #expect(Array(all[12_288...]).summary == pattern(1, count: 4096).summary)
        #expect(all[..<12_288].allSatisfy { $0 == 0 })
    }

    @Test("Never-written sectors read as zeros")
    func unwrittenReadsZero() async throws {
        let device = MemoryDevice(sizeBytes: 1 << 30)   // sparse: costs nothing
        #expect(try await device.read(at: (1 << 30) - 8192, length: 8192).summary == filled(0, count: 8192).summary)
    }

    @Test("A multi-sector write is fully visible once it returns, sector by sector and whole")
    func readAfterWrite() async throws {
        let device = MemoryDevice(sizeBytes: 64 * 512)
        let data = pattern(7, count: 16 * 512)
        try await device.write(data, at: 8 * 512)
        #expect(try await device.read(at: 8 * 512, length: data.count).summary == data.summary)
        for sector in 0..<16 {
            let expected = Array(data[(sector * 512)..<((sector + 1) * 512)])
            #expect(try await device.read(at: UInt64((8 + sector) * 512), length: 512).summary == expected.summary)
        }
        #expect(try await device.read(at: 7 * 512, length: 512).summary == filled(0, count: 512).summary)
        #expect(try await device.read(at: 24 * 512, length: 512).summary == filled(0, count: 512).summary)

        // Overwriting part of it replaces exactly those sectors.
        try await device.write(filled(0xEE, count: 1024), at: 10 * 512)
        var expected = data
        expected.replaceSubrange(1024..<2048, with: filled(0xEE, count: 1024))
        #expect(try await device.read(at: 8 * 512, length: data.count).summary == expected.summary)
    }

    @Test("Readers concurrent with writes never see a sector half old, half new")
    func sectorsAreAtomic() async throws {
        let device = MemoryDevice(sizeBytes: 8 * 512)
        let sectors = 8
        try await device.write(filled(1, count: sectors * 512), at: 0)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                for round in 0..<300 {
                    try await device.write(filled(UInt8(round % 250 + 2), count: sectors * 512), at: 0)
                }
            }
            for _ in 0..<2 {
                group.addTask {
                    for _ in 0..<300 {
                        let bytes = try await device.read(at: 0, length: sectors * 512)
                        for s in 0..<sectors {
                            let sector = bytes[(s * 512)..<((s + 1) * 512)]
                            #expect(sector.allSatisfy { $0 == sector.first }, "sector \(s) is torn")
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
    }

    @Test("A closed device refuses I/O with .deviceClosed and does not count it")
    func closedDevice() async throws {
        let device = MemoryDevice(sizeBytes: 4096)
        try await device.write(filled(1, count: 512), at: 0)
        await device.close()
        #expect(await errorCode { try await device.read(at: 0, length: 512) } == .deviceClosed)
        #expect(await errorCode { try await device.write(filled(2, count: 512), at: 0) } == .deviceClosed)
        // Validation still comes first.
        #expect(await errorCode { try await device.read(at: 1, length: 512) } == .misaligned)
        #expect(device.statistics.ios == 1)
        #expect(device.storage.snapshot(0..<512).summary == filled(1, count: 512).summary)
    }

    // MARK: Statistics

    @Test("Statistics count issued I/Os, sectors and bytes, and log each one")
    func statisticsCount() async throws {
        let device = MemoryDevice(sectorSize: .bytes4096, sizeBytes: 1 << 20)
        try await device.write(pattern(1, count: 8192), at: 4096)
        _ = try await device.read(at: 0, length: 16_384)
        _ = try await device.read(at: 8192, length: 4096)

        let stats = device.statistics
        #expect(stats.reads == 2)
        #expect(stats.writes == 1)
        #expect(stats.ios == 3)
        #expect(stats.sectorsRead == 5)
        #expect(stats.sectorsWritten == 2)
        #expect(stats.bytesRead == 20_480)
        #expect(stats.bytesWritten == 8192)
        #expect(stats.completed == 3)
        #expect(stats.failed == 0 && stats.timedOut == 0 && stats.cancelled == 0 && stats.faulted == 0)
        #expect(stats.recent.map(\.kind) == [.write, .read, .read])
        #expect(stats.recent.map(\.offset) == [4096, 0, 8192])
        #expect(stats.recent.map(\.length) == [8192, 16_384, 4096])
        #expect(stats.recent.map(\.sequence) == [0, 1, 2])
        #expect(stats.recent.allSatisfy { $0.outcome == .completed && $0.issuedAt == nil && $0.fault == nil })

        device.resetStatistics()
        let reset = device.statistics
        #expect(reset.ios == 0 && reset.bytesRead == 0 && reset.completed == 0)
        #expect(reset.recent.isEmpty)

        _ = try await device.read(at: 0, length: 4096)
        #expect(device.statistics.reads == 1)
        #expect(device.statistics.recent.map(\.sequence) == [3])
    }

    @Test("Failed I/Os are issued: counted, logged with their fault and outcome")
    func faultedIOsAreCounted() async throws {
        let device = MemoryDevice(sizeBytes: 4096)
        device.inject(.error(EIO), on: .writes, count: .once)
        _ = await thrownError { try await device.write(filled(1, count: 512), at: 0) }
        try await device.write(filled(2, count: 512), at: 0)

        let stats = device.statistics
        #expect(stats.writes == 2)
        #expect(stats.sectorsWritten == 2)
        #expect(stats.failed == 1)
        #expect(stats.completed == 1)
        #expect(stats.faulted == 1)
        #expect(stats.recent.map(\.outcome) == [.failed(errno: EIO), .completed])
        #expect(stats.recent.map(\.fault) == [.error(EIO), nil])
    }

    @Test("The log keeps only the last logCapacity I/Os, oldest first")
    func logIsBounded() async throws {
        let device = MemoryDevice(sizeBytes: 4096, logCapacity: 3)
        for sector in 0..<5 {
            _ = try await device.read(at: UInt64(sector * 512), length: 512)
        }
        let stats = device.statistics
        #expect(stats.reads == 5)
        #expect(stats.recent.map(\.sequence) == [2, 3, 4])
        #expect(stats.recent.map(\.offset) == [1024, 1536, 2048])

        let silent = MemoryDevice(sizeBytes: 4096, logCapacity: 0)
        _ = try await silent.read(at: 0, length: 512)
        #expect(silent.statistics.reads == 1)
        #expect(silent.statistics.recent.isEmpty)
    }

    @Test("An I/O in flight is logged as such; one issued before a reset is not counted after it")
    func inFlightAndReset() async throws {
        let clock = ManualClock()
        let device = MemoryDevice(sizeBytes: 4096, clock: clock, ioTimeout: .seconds(10))
        device.inject(.hang, on: .reads, count: .once)
        let read = Task { try await device.read(at: 0, length: 512) }
        try await clock.waitForSleepers(1)
        #expect(device.statistics.recent.map(\.outcome) == [.inFlight])
        #expect(device.statistics.recent.first?.issuedAt == ClockStart.value)

        device.resetStatistics()
        clock.advance(by: .seconds(10))
        #expect(await errorCode { try await read.value } == .ioTimeout)
        let stats = device.statistics
        #expect(stats.timedOut == 0)
        #expect(stats.ios == 0)
    }

    // MARK: Handles and storage

    @Test("Handles onto one storage see each other's writes at once")
    func handlesShareStorage() async throws {
        let storage = MemoryStorage(sizeBytes: 8192)
        let a = MemoryDevice(storage: storage, path: "host-a")
        let b = MemoryDevice(storage: storage, path: "host-b")
        #expect(a.sizeBytes == 8192 && b.sectorSize == .bytes512)
        try await a.write(pattern(3, count: 1024), at: 2048)
        #expect(try await b.read(at: 2048, length: 1024).summary == pattern(3, count: 1024).summary)
        #expect(a.statistics.writes == 1 && a.statistics.reads == 0)
        #expect(b.statistics.reads == 1 && b.statistics.writes == 0)
    }

    @Test("snapshot and poke reach any byte, across sector boundaries, and are not I/O")
    func snapshotAndPoke() async throws {
        let device = MemoryDevice(sizeBytes: 4096)
        device.storage.poke([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], at: 508)
        #expect(device.storage.snapshot(506..<520) == [0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 0])
        let sector1 = try await device.read(at: 512, length: 512)
        #expect(Array(sector1[..<6]) == [5, 6, 7, 8, 9, 10])
        #expect(device.statistics.ios == 1)
        #expect(device.storage.writtenRanges().isEmpty)
    }

    @Test("writtenRanges reports every sector written outside the allowed ranges, even unchanged")
    func writtenRangesGuard() async throws {
        let device = MemoryDevice(sizeBytes: 1 << 20)
        let area = UInt64(2048)..<UInt64(4096)
        try await device.write(pattern(1, count: 1024), at: 2048)
        #expect(device.storage.writtenRanges(outside: [area]).isEmpty)

        // Zeros over zeros change nothing but are still writes.
        try await device.write(filled(0, count: 1024), at: 8192)
        try await device.write(filled(0, count: 512), at: 9216)
        try await device.write(filled(0, count: 512), at: 4096)
        #expect(device.storage.writtenRanges(outside: [area]) == [4096..<4608, 8192..<9728])
        #expect(device.storage.writtenRanges(outside: [area, 4096..<4608, 8192..<10_000]).isEmpty)
        // Covered by two touching ranges together.
        #expect(device.storage.writtenRanges(outside: [0..<4300, 4300..<1_048_576]).isEmpty)
        #expect(device.storage.writtenRanges(outside: [0..<4300]) == [4096..<4608, 8192..<9728])

        device.storage.resetWriteTracking()
        #expect(device.storage.writtenRanges().isEmpty)
        try await device.write(filled(9, count: 512), at: 0)
        #expect(device.storage.writtenRanges(outside: [area]) == [0..<512])
    }

    @Test("changedRanges reports bytes that differ from a baseline, outside the allowed ranges")
    func changedRangesGuard() async throws {
        let device = MemoryDevice(sizeBytes: 1 << 20)
        try await device.write(pattern(1, count: 4096), at: 0)
        let baseline = device.storage.image()

        try await device.write(pattern(2, count: 512), at: 1024)
        device.storage.poke([0xFF, 0xFF], at: 70_000)
        #expect(device.storage.changedRanges(since: baseline, outside: [1024..<1536]) == [70_000..<70_002])
        #expect(device.storage.bytesChanged(outside: [1024..<1536], since: baseline))
        #expect(!device.storage.bytesChanged(outside: [1024..<1536, 70_000..<70_002], since: baseline))
        let all = device.storage.changedRanges(since: baseline)
        #expect(all.last == 70_000..<70_002)
        #expect(all.dropLast().allSatisfy { $0.lowerBound >= 1024 && $0.upperBound <= 1536 })

        // Putting the bytes back makes the images equal again.
        try await device.write(Array(pattern(1, count: 4096)[1024..<1536]), at: 1024)
        device.storage.poke([0, 0], at: 70_000)
        #expect(device.storage.image() == baseline)
        #expect(device.storage.changedRanges(since: baseline).isEmpty)
    }
}

/// The default start of a ManualClock, as tests expect it.
enum ClockStart {
    static let value = MonotonicInstant(nanoseconds: 1_000_000_000_000)
}
