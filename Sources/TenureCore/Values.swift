/// Small typed wrappers for the numbers that mean different things on disk.
///
/// A host id is not a generation is not a lease version; the compiler keeps
/// them apart. Each wraps the on-disk width exactly.

/// A host's id in a lockspace: 1...maxHosts. Host N owns sector N-1 of the
/// lockspace area and dblock sector N+1 of every resource area.
public struct HostID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    /// Host id 0 means "no host" on disk (a free lease has owner 0).
    public static let none = HostID(0)
    public var isNone: Bool { rawValue == 0 }
    public static func < (a: HostID, b: HostID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// How many times a host id has been acquired: +1 on every join. A lease
/// owner's generation tells a later incarnation of the same host id apart.
public struct Generation: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static let zero = Generation(0)
    /// The generation after this one; throws at the largest, which only a
    /// damaged (or hostile) record can hold: a generation never wraps to 0.
    public func next() throws(TenureError) -> Generation {
        guard rawValue < UInt64.max else {
            throw TenureError(.badRecord, "A delta lease's generation is \(rawValue), the largest there is: it cannot be joined again.",
                              remedy: "The record is damaged; re-initialise the lockspace once no host uses it.")
        }
        return Generation(rawValue + 1)
    }
    public static func < (a: Generation, b: Generation) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// A resource lease's version (sanlock's lver): +1 on every committed
/// acquisition. Handed to the holder as its fencing token.
public struct LeaseVersion: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static let zero = LeaseVersion(0)
    /// The version after this one; throws at the largest, which only a
    /// damaged (or hostile) record can hold: a fencing token never wraps to 0.
    public func next() throws(TenureError) -> LeaseVersion {
        guard rawValue < UInt64.max else {
            throw TenureError(.badRecord, "A lease is at lver \(rawValue), the largest there is: no later version can be handed out.",
                              remedy: "The record is damaged; re-initialise the lease once no host uses it.")
        }
        return LeaseVersion(rawValue + 1)
    }
    public static func < (a: LeaseVersion, b: LeaseVersion) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// Seconds of a writer's CLOCK_MONOTONIC as stored in lease timestamps.
/// 0 on disk means "free". Only changes of another host's timestamp mean
/// anything; values are never compared across hosts.
public struct DiskTimestamp: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ value: UInt64) { self.rawValue = value }
    public static let free = DiskTimestamp(0)
    public var isFree: Bool { rawValue == 0 }
    public static func < (a: DiskTimestamp, b: DiskTimestamp) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// The logical sector size of a lease area. Only the two sanlock supports.
public enum SectorSize: Int, Sendable, CaseIterable, CustomStringConvertible {
    case bytes512 = 512
    case bytes4096 = 4096

    public var bytes: Int { rawValue }
    public var description: String { String(rawValue) }

    /// Parses "512" or "4096" (also "4k"/"4K").
    public init?(parsing text: String) {
        switch text.lowercased() {
        case "512": self = .bytes512
        case "4096", "4k": self = .bytes4096
        default: return nil
        }
    }
}

/// The size of one lease area (sanlock's align): every lockspace and every
/// resource lease takes exactly one, at an offset that is a multiple of it.
public enum Alignment: Int, Sendable, CaseIterable, CustomStringConvertible {
    case oneMiB = 1_048_576
    case twoMiB = 2_097_152
    case fourMiB = 4_194_304
    case eightMiB = 8_388_608

    public var bytes: Int { rawValue }
    public var description: String { "\(rawValue >> 20)M" }

    /// Parses "1M", "2M", "4M", "8M" (case-insensitive, "MiB" accepted) or a byte count.
    public init?(parsing text: String) {
        let t = text.uppercased()
        let stripped = t.hasSuffix("MIB") ? String(t.dropLast(3)) : (t.hasSuffix("M") ? String(t.dropLast()) : nil)
        if let stripped, let mib = Int(stripped), let a = Alignment(rawValue: mib << 20) {
            self = a
        } else if let bytes = Int(t), let a = Alignment(rawValue: bytes) {
            self = a
        } else {
            return nil
        }
    }
}

/// Seconds a single I/O may take before it counts as failed, as stored in
/// a delta lease (u16). Every other timeout derives from it (see ``Timeouts``).
public struct IOTimeout: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(seconds: UInt16) { self.rawValue = seconds }
    /// sanlock's default.
    public static let standard = IOTimeout(seconds: 10)
    /// The smallest io_timeout the engine uses: a record carrying 0 (or
    /// less) is treated as this. Every host's join waits at least 2 × this.
    public static let minimumSeconds = 1
    /// The largest io_timeout Tenure accepts from a user or a client: longer
    /// would leave a lost host's holders alive for 8 × this.
    public static let maxSeconds = 300
    public var seconds: Int { Int(rawValue) }
    public static func < (a: IOTimeout, b: IOTimeout) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "\(rawValue)s" }

    /// The one range check of an io_timeout a user or a client gives, on
    /// every way in (flags, the config file, both sockets): 1 to
    /// ``maxSeconds``. `what` names it in the message (`--io-timeout`,
    /// "the io_timeout of an add_lockspace request").
    public init(checking seconds: Int, what: String = "--io-timeout") throws(TenureError) {
        guard seconds >= Self.minimumSeconds, seconds <= Self.maxSeconds else {
            throw TenureError(.invalidArgument, "\(what) \(seconds) is outside \(Self.minimumSeconds)...\(Self.maxSeconds) seconds: longer would leave a lost host's holders alive for 8 × it.",
                              remedy: "Use the default of 10 unless your storage needs longer; at most \(Self.maxSeconds).")
        }
        self.init(seconds: UInt16(seconds))
    }

    /// As ``init(checking:what:)``, where 0 asks for the daemon's own: nil.
    public static func requested(_ seconds: Int, what: String) throws(TenureError) -> IOTimeout? {
        seconds == 0 ? nil : try IOTimeout(checking: seconds, what: what)
    }
}
