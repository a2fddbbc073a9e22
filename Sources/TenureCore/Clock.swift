/// The time seam. Engine code reads time and sleeps only through this, so
/// the simulator can run it on virtual time.

/// A point on a monotonic clock, in nanoseconds since an arbitrary origin.
public struct MonotonicInstant: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var nanoseconds: UInt64
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// Whole seconds, as written into lease timestamps.
    public var wholeSeconds: UInt64 { nanoseconds / 1_000_000_000 }

    public static func < (a: Self, b: Self) -> Bool { a.nanoseconds < b.nanoseconds }
    public static func + (a: Self, d: Duration) -> Self {
        Self(nanoseconds: a.nanoseconds &+ d.nanosecondsClamped)
    }
    /// Time from `b` to `a`, zero if `a` is earlier.
    public static func - (a: Self, b: Self) -> Duration {
        a >= b ? .nanoseconds(Int64(clamping: a.nanoseconds - b.nanoseconds)) : .zero
    }
    public var description: String {
        let ms = nanoseconds / 1_000_000
        return "\(ms / 1000).\(String(ms % 1000).leftPadded(to: 3))s"
    }
}

extension Duration {
    /// Non-negative nanoseconds, clamped to UInt64.
    public var nanosecondsClamped: UInt64 {
        let (s, atto) = components
        if s < 0 { return 0 }
        let ns = UInt64(s).multipliedReportingOverflow(by: 1_000_000_000)
        if ns.overflow { return .max }
        return ns.partialValue &+ UInt64(atto / 1_000_000_000)
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}

/// A monotonic clock that the engine can read and sleep on.
///
/// Real: `SystemMonotonicClock` (CLOCK_MONOTONIC) in TenureIO.
/// Simulated: `ManualClock` in TenureTestKit; time moves only when the test moves it.
public protocol MonotonicClock: Sendable {
    func now() -> MonotonicInstant
    /// Suspends until `deadline`; throws `CancellationError` if cancelled.
    func sleep(until deadline: MonotonicInstant) async throws
}

extension MonotonicClock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now() + duration)
    }
}
