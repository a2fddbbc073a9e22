import Foundation
import Testing
import TenureTestSupport

// Helpers for tests that run the real `tenure` command (and Debian's
// `sanlock`, the compatibility oracle) as separate processes on real files
// and loop devices. Nothing here links the code under test: results are read
// back from the processes' output and from the bytes on disk.

/// What a finished process said.
struct Outcome: CustomStringConvertible {
    let status: Int32
    let stdout: String
    let stderr: String
    var description: String { "exit \(status)\nstdout: \(stdout)\nstderr: \(stderr)" }
}

enum Harness {
    /// The `tenure` binary built beside the test bundle.
    static let tenurePath: String = {
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = runner.deletingLastPathComponent()
        // Inside an .xctest bundle directory on some layouts.
        if dir.lastPathComponent.hasSuffix(".xctest") { dir = dir.deletingLastPathComponent() }
        return dir.appendingPathComponent("tenure").path
    }()

    static var isRoot: Bool { getuid() == 0 }

    /// The path of `name` on PATH (or a usual sbin folder), if installed.
    static func which(_ name: String) -> String? {
        let path = (ProcessInfo.processInfo.environment["PATH"] ?? "") + ":/usr/sbin:/sbin:/usr/bin:/bin"
        for dir in path.split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    static let sanlockPath = which("sanlock")
    static var hasSanlock: Bool { sanlockPath != nil }
    static var canUseLoopDevices: Bool { isRoot && which("losetup") != nil && FileManager.default.fileExists(atPath: "/dev/loop-control") }

    /// Runs `executable` with `arguments` and waits for it.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Outcome {
        // It waits for the child: a test that calls it needs the .ownThreads trait.
        expectMayBlock("running \(executable) and waiting for it")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes to the end before waiting, so a chatty child cannot block.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Outcome(status: process.terminationStatus,
                       stdout: String(decoding: outData, as: UTF8.self),
                       stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Runs `tenure ARGS`.
    @discardableResult
    static func tenure(_ arguments: [String], adding extra: [String: String] = [:]) throws -> Outcome {
        guard !extra.isEmpty else { return try run(tenurePath, arguments) }
        return try run(tenurePath, arguments, environment: ProcessInfo.processInfo.environment.merging(extra) { $1 })
    }

    /// Runs `tenure ARGS` and records an issue unless it exits 0.
    @discardableResult
    static func tenureOK(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        let outcome = try tenure(arguments)
        #expect(outcome.status == 0, "tenure \(arguments.joined(separator: " ")) failed:\n\(outcome)", sourceLocation: sourceLocation)
        return outcome
    }

    /// Runs `sanlock ARGS` and records an issue unless it exits 0.
    @discardableResult
    static func sanlock(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> Outcome {
        guard let sanlockPath else { throw HarnessError("sanlock is not installed") }
        let outcome = try run(sanlockPath, arguments)
        #expect(outcome.status == 0, "sanlock \(arguments.joined(separator: " ")) failed:\n\(outcome)", sourceLocation: sourceLocation)
        return outcome
    }

    /// `sanlock direct read_leader` output as a dictionary of its `key value` lines.
    static func sanlockLeader(_ kind: String, _ lease: String, sector: Int, align: String) throws -> [String: String] {
        let outcome = try sanlock(["direct", "read_leader", kind, lease, "-Z", String(sector), "-A", align])
        var fields: [String: String] = [:]
        for line in outcome.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            if parts.count == 2 { fields[String(parts[0])] = String(parts[1]) }
            else if parts.count == 1 { fields[String(parts[0])] = "" }
        }
        return fields
    }

    /// Decodes one JSON object printed by `tenure … --json`.
    static func json(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        guard let dictionary = object as? [String: Any] else { throw HarnessError("not a JSON object: \(text)") }
        return dictionary
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A scratch folder on a disk-backed filesystem (tmpfs may refuse O_DIRECT),
/// removed when the value is dropped.
final class Scratch {
    let path: String

    init(_ label: String = #function) throws {
        let base = ProcessInfo.processInfo.environment["TENURE_TEST_DIR"] ?? "/var/tmp"
        let safe = label.filter { $0.isLetter || $0.isNumber }.prefix(40)
        path = "\(base)/tenure-test-\(getpid())-\(safe)-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }

    /// A new file of `size` bytes filled with `fill` (a guard pattern: any byte
    /// a command writes shows against it).
    func file(_ name: String, size: Int, fill: UInt8 = 0) throws -> String {
        let file = "\(path)/\(name)"
        try Data(repeating: fill, count: size).write(to: URL(fileURLWithPath: file))
        return file
    }
}

/// A loop device over a new file, detached when the value is dropped.
final class LoopDevice {
    let device: String
    let backing: String

    init(in scratch: Scratch, size: Int, sectorSize: Int, fill: UInt8 = 0) throws {
        backing = try scratch.file("loop-\(sectorSize)-\(UInt32.random(in: 0 ... .max)).img", size: size, fill: fill)
        let outcome = try Harness.run(Harness.which("losetup")!, ["-f", "--show", "--sector-size", String(sectorSize), backing])
        guard outcome.status == 0 else { throw HarnessError("losetup failed: \(outcome)") }
        device = outcome.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    deinit { _ = try? Harness.run(Harness.which("losetup")!, ["-d", device]) }
}

/// The five sector/align pairs sanlock 3.x supports, with their host limits.
struct LayoutPair: Sendable, CustomStringConvertible {
    let sector: Int
    let align: String
    let alignBytes: Int
    let maxHosts: Int
    /// sanlock's flag bits for the align (0x10 1M … 0x80 8M).
    let alignFlag: Int
    var description: String { "\(sector)/\(align)" }

    static let all: [LayoutPair] = [
        LayoutPair(sector: 512, align: "1M", alignBytes: 1 << 20, maxHosts: 2000, alignFlag: 0x10),
        LayoutPair(sector: 4096, align: "1M", alignBytes: 1 << 20, maxHosts: 250, alignFlag: 0x10),
        LayoutPair(sector: 4096, align: "2M", alignBytes: 2 << 20, maxHosts: 500, alignFlag: 0x20),
        LayoutPair(sector: 4096, align: "4M", alignBytes: 4 << 20, maxHosts: 1000, alignFlag: 0x40),
        LayoutPair(sector: 4096, align: "8M", alignBytes: 8 << 20, maxHosts: 2000, alignFlag: 0x80),
    ]
}

/// Reads a whole file (or device) with ordinary buffered I/O.
func contents(of path: String, offset: Int = 0, length: Int) throws -> [UInt8] {
    let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: path))
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    return [UInt8](try handle.read(upToCount: length) ?? Data())
}

/// The whole text of a /proc file. Foundation's `String(contentsOfFile:)`
/// reads only the first 4 KiB of a file whose size reads as 0 (every /proc
/// file): a daemon's maps or smaps, or this process's with many threads,
/// would be cut off.
func procText(_ path: String) throws -> String {
    guard let handle = FileHandle(forReadingAtPath: path) else { throw HarnessError("cannot open \(path)") }
    defer { try? handle.close() }
    return String(decoding: handle.readDataToEndOfFile(), as: UTF8.self)
}
