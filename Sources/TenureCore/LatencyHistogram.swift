/// A latency histogram in Prometheus's shape: cumulative buckets by upper
/// bound in seconds, and the sum and count of what was observed.
public struct LatencyHistogram: Sendable, Equatable {
    /// Upper bounds, seconds: from a fast disk's I/O to the io_timeout range.
    public static let bounds: [Double] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30]

    /// Observations per bucket (not cumulative); the last is over every bound.
    public private(set) var counts = [UInt64](repeating: 0, count: bounds.count + 1)
    public private(set) var sumSeconds = 0.0
    public private(set) var count: UInt64 = 0

    public init() {}

    public mutating func observe(_ duration: Duration) {
        let seconds = Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
        let bucket = Self.bounds.firstIndex { seconds <= $0 } ?? Self.bounds.count
        counts[bucket] += 1
        sumSeconds += seconds
        count += 1
    }

    /// The exposition lines of `name` with `labels` ("" or `key="value",…`).
    public func lines(_ name: String, labels: String = "") -> [String] {
        let prefix = labels.isEmpty ? "" : labels + ","
        var out: [String] = []
        var cumulative: UInt64 = 0
        for (i, bound) in Self.bounds.enumerated() {
            cumulative += counts[i]
            out.append("\(name)_bucket{\(prefix)le=\"\(bound)\"} \(cumulative)")
        }
        out.append("\(name)_bucket{\(prefix)le=\"+Inf\"} \(count)")
        let braces = labels.isEmpty ? "" : "{\(labels)}"
        out.append("\(name)_sum\(braces) \(sumSeconds)")
        out.append("\(name)_count\(braces) \(count)")
        return out
    }
}

