import Foundation
import Testing
import TenureTestSupport

/// A cgroup-v1 blkio group that throttles reads of one block device, so I/O
/// on a real loop device really is slower than its deadline (device-mapper's
/// dm-delay is not available here). Removed when dropped.
final class ThrottledGroup {
    static let root = "/sys/fs/cgroup/blkio"
    static var available: Bool {
        Harness.canUseLoopDevices && FileManager.default.isWritableFile(atPath: root)
            && FileManager.default.fileExists(atPath: "\(root)/blkio.throttle.read_iops_device")
    }

    let path: String
    let deviceNumbers: String

    /// A group for `device`, throttled to `readsPerSecond` (nil: not yet).
    init(device: String, readsPerSecond: Int?) throws {
        var info = stat()
        guard stat(device, &info) == 0 else { throw HarnessError("cannot stat \(device)") }
        let rdev = UInt64(info.st_rdev)
        let major = (rdev >> 8) & 0xFFF, minor = (rdev & 0xFF) | ((rdev >> 12) & 0xFFF00)
        deviceNumbers = "\(major):\(minor)"
        path = "\(Self.root)/tenure-test-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try throttle(readsPerSecond: readsPerSecond, writesPerSecond: nil)
    }

    /// Sets (or, with nil, lifts) the read and write limits, in I/Os per second.
    func throttle(readsPerSecond: Int?, writesPerSecond: Int?) throws {
        try "\(deviceNumbers) \(readsPerSecond ?? 0)\n".write(toFile: "\(path)/blkio.throttle.read_iops_device", atomically: false, encoding: .utf8)
        try "\(deviceNumbers) \(writesPerSecond ?? 0)\n".write(toFile: "\(path)/blkio.throttle.write_iops_device", atomically: false, encoding: .utf8)
    }

    /// Runs `tenure ARGS` as a member of the group.
    func tenure(_ arguments: [String]) throws -> Outcome {
        let quoted = ([Harness.tenurePath] + arguments).map { "'\($0)'" }.joined(separator: " ")
        return try Harness.run("/bin/sh", ["-c", "echo $$ > \(path)/cgroup.procs && exec \(quoted)"])
    }

    deinit {
        // The member process has exited; an empty group can be removed.
        for _ in 0..<50 where rmdir(path) != 0 { usleep(100_000) }
    }
}

@Suite("tenure direct probe: a device's latency against a deadline", .ownThreads)
struct ProbeTests {
    @Test func aHealthyFileMeetsTheDeadline() throws {
        let scratch = try Scratch()
        let file = try scratch.file("p.img", size: 4 << 20)
        let outcome = try Harness.tenureOK(["direct", "probe", file, "--reads", "50", "--deadline-ms", "5000", "--json"])
        let report = try Harness.json(outcome.stdout)
        #expect(report["reads"] as? Int == 50)
        #expect(report["completed"] as? Int == 50)
        #expect(report["timeouts"] as? Int == 0)
        #expect(report["sector_size"] as? Int == 512)
        #expect(report["size_bytes"] as? Int == 4 << 20)
        #expect((report["p50_ms"] as? Double).map { $0 > 0 } == true)
    }

    @Test func badArgumentsAreRefused() throws {
        let scratch = try Scratch()
        let file = try scratch.file("p.img", size: 1 << 20)
        let reads = try Harness.tenure(["direct", "probe", file, "--reads", "0"])
        #expect(reads.status == 1 && reads.stderr.contains("--reads 0 is outside"), "\(reads)")
        let engine = try Harness.tenure(["direct", "probe", file, "--engine", "uring"])
        #expect(engine.status == 1 && engine.stderr.contains("Use aio or sync"), "\(engine)")
    }

    /// Reads throttled to 2 per second on a real loop device miss a 200 ms
    /// deadline: each fails with the distinct io-timeout error naming the
    /// path and offset, and the process still ends cleanly with status 1
    /// while the kernel still owns some of the abandoned reads.
    @Test(.enabled(if: ThrottledGroup.available, "needs root, loop devices and a writable cgroup-v1 blkio hierarchy"))
    func slowStorageFailsWithATimeoutError() throws {
        let scratch = try Scratch()
        let loop = try LoopDevice(in: scratch, size: 8 << 20, sectorSize: 512)
        let group = try ThrottledGroup(device: loop.device, readsPerSecond: 2)
        let slow = try group.tenure(["direct", "probe", loop.device, "--reads", "6", "--deadline-ms", "200", "--json"])
        #expect(slow.status == 1, "\(slow)")
        #expect(slow.stderr.contains("error [io-timeout]"), "\(slow.stderr)")
        #expect(slow.stderr.contains("on \(loop.device) did not complete within 0.2s"), "\(slow.stderr)")
        let report = try Harness.json(slow.stdout)
        #expect((report["timeouts"] as? Int ?? 0) >= 1, "\(report)")
        // Reads the kernel had not returned by the time close() stopped waiting
        // are left to it with their buffers (never freed under it).
        #expect((report["abandoned_in_flight"] as? Int ?? 99) <= (report["timeouts"] as? Int ?? 0), "\(report)")

        // The same device unthrottled meets the deadline.
        let fast = try Harness.tenureOK(["direct", "probe", loop.device, "--reads", "6", "--deadline-ms", "200", "--json"])
        #expect(try Harness.json(fast.stdout)["timeouts"] as? Int == 0)
    }
}
