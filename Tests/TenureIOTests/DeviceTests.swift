import Foundation
import Synchronization
import Testing
import TenureTestSupport
import TenureCore
import TenureIO

// The real devices on real storage: files under /var/tmp (tmpfs may refuse
// O_DIRECT) and, as root, loop devices. Every behaviour is checked for both
// engines: libaio with deadlines, and the synchronous fallback.

/// A scratch file of `size` bytes filled with `fill`, removed with the value.
final class ScratchFile {
    let path: String
    init(size: Int, fill: UInt8 = 0, label: String = #function) throws {
        let safe = label.filter { $0.isLetter || $0.isNumber }.prefix(40)
        path = "/var/tmp/tenure-io-test-\(getpid())-\(safe)-\(UInt32.random(in: 0 ... .max)).img"
        try Data(repeating: fill, count: size).write(to: URL(fileURLWithPath: path))
        // Written through the page cache: flush it now. Otherwise the first
        // O_DIRECT write to each range flushes and allocates inside io_submit,
        // which then blocks its caller (the event loop) for as long as a disk
        // that the rest of the suite keeps busy takes.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: path))
        try handle.synchronize()
        try handle.close()
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// The file's bytes, read with ordinary buffered I/O (not the code under test).
    func bytes(at offset: Int, count: Int) throws -> [UInt8] {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(offset))
        return [UInt8](try handle.read(upToCount: count) ?? Data())
    }
}

/// Bytes that differ per sector and per seed, so a misplaced sector shows.
func pattern(_ seed: Int, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: seed &* 131 &+ $0 / 512 &* 17 &+ $0 % 239 &+ 1) }
}

/// The handles under test: libaio reaped by a thread of its own, libaio
/// reaped by an event loop (the daemon's client handles), and the
/// synchronous fallback.
enum DeviceKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case aio, aioOnLoop, sync
    var description: String { rawValue }
}

/// The device tests' own loop: an io_submit that blocks on a busy disk
/// delays these tests, not the event loop's own (EventLoopTests).
let deviceLoop = try! EventLoop()

/// Opens `path`. These tests are not about deadlines (those that are pass
/// their own): the default is one that only a hung device reaches, not a
/// file on a disk that the rest of the suite keeps busy.
func open(_ path: String, _ kind: DeviceKind, timeout: Duration = .seconds(60)) throws -> any MeasuredBlockDevice {
    switch kind {
    case .aio: try openBlockDevice(path: path, engine: .aio, ioTimeout: timeout)
    case .aioOnLoop: try openBlockDevice(path: path, engine: .aio, ioTimeout: timeout, loop: deviceLoop)
    case .sync: try openBlockDevice(path: path, engine: .sync, ioTimeout: timeout)
    }
}

/// Counts down from a start, from any thread.
final class Countdown: Sendable {
    private let left: Mutex<Int>
    init(_ start: Int) { left = Mutex(start) }
    /// True for the call that reaches zero.
    func countDown() -> Bool { left.withLock { $0 -= 1; return $0 == 0 } }
}

/// The `TenureError` that `body` throws, or nil (recording an issue).
func thrown(sourceLocation: SourceLocation = #_sourceLocation, _ body: () async throws -> Void) async -> TenureError? {
    do {
        try await body()
        Issue.record("expected an error", sourceLocation: sourceLocation)
    } catch let error as TenureError {
        return error
    } catch {
        Issue.record("expected a TenureError, got \(error)", sourceLocation: sourceLocation)
    }
    return nil
}

@Suite("O_DIRECT devices on real files", .ownThreads)
struct DeviceTests {
    @Test(arguments: DeviceKind.allCases)
    func aRegularFileHas512ByteSectorsAndItsSize(_ engine: DeviceKind) async throws {
        let file = try ScratchFile(size: 3 << 20)
        let device = try open(file.path, engine)
        #expect(device.sectorSize == .bytes512)
        #expect(device.sizeBytes == 3 << 20)
        #expect(device.path == file.path)
        await device.close()
    }

    @Test(arguments: DeviceKind.allCases)
    func writesLandWhereAskedAndReadBack(_ engine: DeviceKind) async throws {
        let file = try ScratchFile(size: 2 << 20, fill: 0xEE)
        let device = try open(file.path, engine)
        let writes: [(UInt64, [UInt8])] = [(0, pattern(1, count: 512)), (4096, pattern(2, count: 8192)), ((2 << 20) - 512, pattern(3, count: 512))]
        for (offset, bytes) in writes { try await device.write(bytes, at: offset) }
        for (offset, bytes) in writes {
            #expect(try await device.read(at: offset, length: bytes.count) == bytes)
            // An independent reader sees the same bytes on disk.
            #expect(try file.bytes(at: Int(offset), count: bytes.count) == bytes)
        }
        // Bytes between the writes are untouched.
        #expect(try file.bytes(at: 512, count: 3584) == [UInt8](repeating: 0xEE, count: 3584))
        let statistics = device.statistics
        #expect(statistics.writes == 3 && statistics.reads == 3)
        #expect(statistics.bytesWritten == 9216 && statistics.bytesRead == 9216)
        #expect(statistics.timeouts == 0 && statistics.failures == 0)
        await device.close()
    }

    @Test(arguments: DeviceKind.allCases)
    func manyConcurrentIOsAllLand(_ engine: DeviceKind) async throws {
        let count = 200 // more than DirectDevice.maxInFlight: some wait for a slot
        let file = try ScratchFile(size: count * 4096)
        let device = try open(file.path, engine)
        try await withThrowingTaskGroup(of: Void.self) { group in
            for i in 0..<count {
                group.addTask { try await device.write(pattern(i, count: 4096), at: UInt64(i * 4096)) }
            }
            try await group.waitForAll()
        }
        let results = try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for i in 0..<count {
                group.addTask { (i, try await device.read(at: UInt64(i * 4096), length: 4096)) }
            }
            return try await group.reduce(into: [Int: [UInt8]]()) { $0[$1.0] = $1.1 }
        }
        for i in 0..<count { #expect(results[i] == pattern(i, count: 4096), "block \(i)") }
        #expect(device.statistics.writes == UInt64(count))

        await device.close()
    }

    /// On the loop, the I/Os that requests ask for in one turn go to the
    /// kernel together: one io_submit for all of them, not one each.
    @Test func requestsThatRunTogetherOnTheLoopShareOneSubmit() async throws {
        let count = 8
        let file = try ScratchFile(size: count * 4096)
        let device = try open(file.path, .aioOnLoop)
        let done = await withCheckedContinuation { (finished: CheckedContinuation<Int, Never>) in
            let left = Countdown(count)
            deviceLoop.execute {
                for i in 0 ..< count {
                    Task(executorPreference: deviceLoop) { @Sendable in
                        try? await device.write(pattern(i, count: 4096), at: UInt64(i * 4096))
                        if left.countDown() { finished.resume(returning: count) }
                    }
                }
            }
        }
        let statistics = device.statistics
        #expect(done == count && statistics.writes == UInt64(count))
        #expect(statistics.submitted == UInt64(count))
        #expect(statistics.batches == 1, "\(statistics.batches) io_submit calls for \(count) writes issued in one turn")
        for i in 0 ..< count { #expect(try file.bytes(at: i * 4096, count: 4096) == pattern(i, count: 4096)) }
        await device.close()
    }

    /// Misaligned and out-of-bounds I/O never reaches the kernel.
    @Test(arguments: DeviceKind.allCases)
    func badRequestsAreRefusedBeforeAnySyscall(_ engine: DeviceKind) async throws {
        let file = try ScratchFile(size: 1 << 20)
        let device = try open(file.path, engine)
        let misaligned: [(UInt64, Int)] = [(1, 512), (511, 512), (0, 100), (512, 513), (0, 0)]
        for (offset, length) in misaligned {
            let error = await thrown { _ = try await device.read(at: offset, length: length) }
            #expect(error?.code == .misaligned, "\(length)@\(offset)")
            #expect(error?.message.contains(file.path) == true)
            #expect(error?.message.contains("offset \(offset)") == true)
        }
        let writeError = await thrown { try await device.write([UInt8](repeating: 1, count: 700), at: 0) }
        #expect(writeError?.code == .misaligned)
        let past = await thrown { _ = try await device.read(at: (1 << 20) - 512, length: 1024) }
        #expect(past?.code == .outOfBounds)
        #expect(past?.message.contains("reaches past the end of \(file.path)") == true)
        let far = await thrown { try await device.write([UInt8](repeating: 1, count: 512), at: 1 << 40) }
        #expect(far?.code == .outOfBounds)
        #expect(device.statistics.submitted == 0, "a refused I/O reached the kernel: \(device.statistics)")
        #expect(try file.bytes(at: 0, count: 1024) == [UInt8](repeating: 0, count: 1024))
        await device.close()
    }

    @Test(arguments: DeviceKind.allCases)
    func aClosedDeviceRefusesIO(_ engine: DeviceKind) async throws {
        let file = try ScratchFile(size: 1 << 20)
        let device = try open(file.path, engine)
        await device.close()
        let error = await thrown { _ = try await device.read(at: 0, length: 512) }
        #expect(error?.code == .deviceClosed)
    }

    @Test func openingRefusalsNameThePathAndTheCause() throws {
        let missing = "/var/tmp/tenure-io-test-\(getpid())-missing.img"
        #expect(throws: TenureError.self) { try open(missing, .aio) }
        do { _ = try open(missing, .aio) } catch let error as TenureError {
            #expect(error.code == .notFound)
            #expect(error.message.contains(missing))
        }
        do { _ = try open("/var/tmp", .sync) } catch let error as TenureError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("is a directory"))
        }
        do { _ = try open("/dev/null", .aio) } catch let error as TenureError {
            #expect(error.code == .invalidArgument)
            #expect(error.message.contains("character device"))
        }
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/dev/shm"), "needs /dev/shm"))
    func tmpfsIsRefusedByName() throws {
        let path = "/dev/shm/tenure-io-test-\(getpid()).img"
        try Data(repeating: 0, count: 1 << 20).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try open(path, .aio)
            Issue.record("a file on tmpfs was accepted")
        } catch let error as TenureError {
            #expect(error.code == .directIOUnsupported)
            #expect(error.message.contains("tmpfs"))
        }
    }
}

/// Loop devices: the sector size comes from BLKSSZGET and the size from
/// BLKGETSIZE64; a 4096-byte device refuses 512-byte I/O.
@Suite("O_DIRECT devices on loop devices", .ownThreads,
       .enabled(if: getuid() == 0 && FileManager.default.fileExists(atPath: "/dev/loop-control"), "needs root and loop devices"))
struct LoopDeviceTests {
    static func losetup(_ arguments: [String]) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/sbin/losetup")
        process.arguments = arguments
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { throw CocoaError(.fileWriteUnknown) }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test(arguments: [512, 4096])
    func sectorSizeAndSizeComeFromTheKernel(_ sector: Int) async throws {
        let file = try ScratchFile(size: 6 << 20)
        let loop = try Self.losetup(["-f", "--show", "--sector-size", String(sector), file.path])
        defer { _ = try? Self.losetup(["-d", loop]) }
        for engine in DeviceKind.allCases {
            let device = try open(loop, engine)
            #expect(device.sectorSize.bytes == sector)
            #expect(device.sizeBytes == 6 << 20)
            try await device.write(pattern(7, count: sector), at: UInt64(sector))
            #expect(try await device.read(at: UInt64(sector), length: sector) == pattern(7, count: sector))
            if sector == 4096 {
                let error = await thrown { _ = try await device.read(at: 512, length: 512) }
                #expect(error?.code == .misaligned)
            }
            await device.close()
        }
        // The bytes reached the backing file.
        #expect(try file.bytes(at: sector, count: sector) == pattern(7, count: sector))
    }
}
