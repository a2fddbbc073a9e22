import Synchronization
import Testing
import TenureCore
@testable import TenureTestKit

/// `count` bytes that differ from one sector to the next and from one seed to
/// another, so a misplaced or half-landed sector shows.
func pattern(_ seed: UInt8, count: Int) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: Int(seed) &* 31 &+ $0 / 512 &* 7 &+ $0 % 251 &+ 1) }
}

/// `count` bytes of one value.
func filled(_ value: UInt8, count: Int) -> [UInt8] {
    [UInt8](repeating: value, count: count)
}

/// A thread-safe list for tasks to record what happened in which order.
final class Recorder<T: Sendable>: Sendable {
    private let items = Mutex<[T]>([])
    func append(_ item: T) { items.withLock { $0.append(item) } }
    var all: [T] { items.withLock { $0 } }
}

/// The `TenureError` code `body` throws, or `nil` (and a recorded issue) if it
/// throws something else or nothing.
func errorCode<T>(sourceLocation: SourceLocation = #_sourceLocation,
                  _ body: () async throws -> T) async -> TenureError.Code? {
    do {
        _ = try await body()
        Issue.record("expected a TenureError, got success", sourceLocation: sourceLocation)
        return nil
    } catch let error as TenureError {
        return error.code
    } catch {
        Issue.record("expected a TenureError, got \(error)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The error `body` throws, or `nil` if it succeeds.
func thrownError<T>(_ body: () async throws -> T) async -> (any Error)? {
    do {
        _ = try await body()
        return nil
    } catch {
        return error
    }
}

/// Bytes compared whole but printed short, so a failed expectation names
/// the difference without dumping kilobytes.
struct Bytes: Equatable, CustomStringConvertible {
    let raw: [UInt8]

    var description: String {
        let head = raw.prefix(8).map { String($0, radix: 16) }.joined(separator: " ")
        let distinct = Set(raw).count
        let fnv = raw.reduce(UInt64(0xcbf2_9ce4_8422_2325)) { ($0 ^ UInt64($1)) &* 0x100_0000_01b3 }
        return "\(raw.count) bytes [\(head)\(raw.count > 8 ? " …" : "")], \(distinct) distinct values, fnv \(String(fnv, radix: 16))"
    }
}

extension Array where Element == UInt8 {
    /// For comparing in `#expect` with a short description on failure.
    var summary: Bytes { Bytes(raw: self) }
}
