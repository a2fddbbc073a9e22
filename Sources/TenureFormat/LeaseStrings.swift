import TenureCore

/// Where one lease area lives: a path and a byte offset on it.
public struct LeaseDisk: Hashable, Sendable, CustomStringConvertible {
    /// sanlock's SANLK_PATH_LEN - 1.
    public static let maxPathBytes = 1023

    public var path: String
    public var offset: UInt64

    public init(path: String, offset: UInt64) throws {
        guard !path.isEmpty else {
            throw TenureError(.invalidArgument, "The lease path is empty.", remedy: "Give the path of the file or device holding the leases.")
        }
        guard path.utf8.count <= Self.maxPathBytes else {
            throw TenureError(.invalidArgument, "The lease path is \(path.utf8.count) bytes long; at most \(Self.maxPathBytes) are allowed.",
                              remedy: "Use a shorter path, e.g. a symlink under /dev/disk/by-id or /var/lib.")
        }
        self.path = path
        self.offset = offset
    }

    public var description: String { "\(LeaseStringSyntax.escape(path)):\(offset)" }
}

/// A lockspace as users write it: `NAME:HOST_ID:PATH:OFFSET`.
/// Host id 0 means "no host" (what `init` takes).
public struct LockspaceSpec: Hashable, Sendable, CustomStringConvertible {
    public var name: LeaseName
    public var hostID: HostID
    public var disk: LeaseDisk

    public init(name: LeaseName, hostID: HostID, disk: LeaseDisk) {
        self.name = name
        self.hostID = hostID
        self.disk = disk
    }

    public init(parsing text: String) throws {
        let fields = try LeaseStringSyntax.split(text)
        guard fields.count == 4 else {
            throw TenureError(
                .invalidArgument,
                "The lockspace \"\(text)\" has \(fields.count) field\(fields.count == 1 ? "" : "s"); expected NAME:HOST_ID:PATH:OFFSET.",
                remedy: "Write it as e.g. LS:1:/var/lib/tenure/leases:0 (escape ':' and ' ' in paths with a backslash).")
        }
        name = try LeaseName(fields[0], what: "lockspace name")
        guard !name.isEmpty else {
            throw TenureError(.invalidArgument, "The lockspace \"\(text)\" has an empty name.", remedy: "Give the lockspace a name.")
        }
        guard let id = UInt64(fields[1]) else {
            throw TenureError(.invalidArgument, "The host id \"\(fields[1])\" in \"\(text)\" is not a whole number.",
                              remedy: "Use a host id from 1 to 2000 (0 when initialising).")
        }
        hostID = HostID(id)
        disk = try LeaseDisk(path: fields[2], offset: LeaseStringSyntax.offset(fields[3], in: text))
    }

    public var description: String { "\(LeaseStringSyntax.escape(name.description)):\(hostID):\(disk)" }
}

/// A resource index as users write it: `LOCKSPACE:PATH:OFFSET` (sanlock's
/// `-x`), the index area's place.
public struct IndexSpec: Hashable, Sendable, CustomStringConvertible {
    public var lockspace: LeaseName
    public var disk: LeaseDisk

    public init(lockspace: LeaseName, disk: LeaseDisk) {
        self.lockspace = lockspace
        self.disk = disk
    }

    public init(parsing text: String) throws {
        let fields = try LeaseStringSyntax.split(text)
        guard fields.count == 3 else {
            throw TenureError(.invalidArgument, "The resource index \"\(text)\" has \(fields.count) field\(fields.count == 1 ? "" : "s"); expected LOCKSPACE:PATH:OFFSET.",
                              remedy: "Write it as e.g. LS:/dev/mapper/leases:3M (escape ':' and ' ' in paths with a backslash).")
        }
        lockspace = try LeaseName(fields[0], what: "lockspace name")
        guard !lockspace.isEmpty else {
            throw TenureError(.invalidArgument, "The resource index \"\(text)\" has an empty lockspace name.", remedy: "Give its lockspace's name.")
        }
        disk = try LeaseDisk(path: fields[1], offset: LeaseStringSyntax.offset(fields[2], in: text))
    }

    public var description: String { "\(LeaseStringSyntax.escape(lockspace.description)):\(disk)" }
}

/// A resource as users write it:
/// `LOCKSPACE:NAME:PATH:OFFSET[:PATH:OFFSET...][:LVER | :SH]`.
public struct ResourceSpec: Hashable, Sendable, CustomStringConvertible {
    /// A lease may be replicated on up to this many disks (majority rule per phase).
    public static let maxDisks = 4

    public var lockspace: LeaseName
    public var name: LeaseName
    public var disks: [LeaseDisk]
    /// A required lease version (handover), when the string ends in a number.
    public var lver: LeaseVersion?
    /// The string ends in `SH`: a shared lease.
    public var shared: Bool

    public init(lockspace: LeaseName, name: LeaseName, disks: [LeaseDisk], lver: LeaseVersion? = nil, shared: Bool = false) {
        precondition(!disks.isEmpty && disks.count <= Self.maxDisks)
        self.lockspace = lockspace
        self.name = name
        self.disks = disks
        self.lver = lver
        self.shared = shared
    }

    public init(parsing text: String) throws {
        var fields = try LeaseStringSyntax.split(text)
        let usage = "Write it as LOCKSPACE:NAME:PATH:OFFSET, with more PATH:OFFSET pairs for extra disks and an optional :LVER or :SH at the end."
        guard fields.count >= 4 else {
            throw TenureError(.invalidArgument, "The resource \"\(text)\" has \(fields.count) field\(fields.count == 1 ? "" : "s"); expected at least 4.",
                              remedy: usage)
        }
        lockspace = try LeaseName(fields[0], what: "lockspace name")
        name = try LeaseName(fields[1], what: "resource name")
        guard !lockspace.isEmpty, !name.isEmpty else {
            throw TenureError(.invalidArgument, "The resource \"\(text)\" has an empty lockspace or resource name.", remedy: usage)
        }
        lver = nil
        shared = false
        if fields.count % 2 == 1 {
            let suffix = fields.removeLast()
            if suffix.uppercased() == "SH" {
                shared = true
            } else if let v = UInt64(suffix) {
                lver = LeaseVersion(v)
            } else {
                throw TenureError(.invalidArgument, "The last field \"\(suffix)\" of \"\(text)\" is neither a lease version nor SH.",
                                  remedy: usage)
            }
        }
        let pairs = (fields.count - 2) / 2
        guard pairs <= Self.maxDisks else {
            throw TenureError(.invalidArgument, "The resource \"\(text)\" names \(pairs) disks; at most \(Self.maxDisks) are supported.",
                              remedy: "Replicate a lease on at most \(Self.maxDisks) disks.")
        }
        disks = try (0..<pairs).map { i in
            try LeaseDisk(path: fields[2 + 2 * i], offset: LeaseStringSyntax.offset(fields[3 + 2 * i], in: text))
        }
    }

    /// The string form, with `lver` or `SH` appended when set.
    public var description: String {
        var s = "\(LeaseStringSyntax.escape(lockspace.description)):\(LeaseStringSyntax.escape(name.description))"
        for d in disks { s += ":\(d)" }
        if shared { s += ":SH" } else if let lver { s += ":\(lver)" }
        return s
    }
}

/// The shared rules of the string forms: ':' separates fields; a backslash
/// makes the next character literal (so paths can hold ':' and ' ').
public enum LeaseStringSyntax {
    public static func split(_ text: String) throws -> [String] {
        var fields: [String] = []
        var current = ""
        var escaping = false
        for ch in text {
            if escaping {
                current.append(ch)
                escaping = false
            } else if ch == "\\" {
                escaping = true
            } else if ch == ":" {
                fields.append(current)
                current = ""
            } else {
                current.append(ch)
            }
        }
        guard !escaping else {
            throw TenureError(.invalidArgument, "\"\(text)\" ends in a lone backslash.",
                              remedy: "A backslash escapes the next character; write \\\\ for a backslash itself.")
        }
        fields.append(current)
        return fields
    }

    /// Escapes ':', ' ' and '\' with a backslash.
    public static func escape(_ field: String) -> String {
        var out = ""
        for ch in field {
            if ch == ":" || ch == " " || ch == "\\" { out.append("\\") }
            out.append(ch)
        }
        return out
    }

    /// Parses an offset in bytes: a decimal number, optionally with a binary
    /// suffix K, M or G (1M = 1048576).
    public static func offset(_ field: String, in text: String) throws -> UInt64 {
        if let v = parseSize(field) { return v }
        throw TenureError(.invalidArgument, "The offset \"\(field)\" in \"\(text)\" is not a number of bytes.",
                          remedy: "Write the offset in bytes, e.g. 1048576 or 1M.")
    }

    /// Decimal bytes with an optional K/M/G (binary) suffix; nil when malformed or overflowing.
    public static func parseSize(_ field: String) -> UInt64? {
        let t = field.uppercased()
        var digits = Substring(t)
        var shift: UInt64 = 0
        if let last = t.last, let s = ["K": UInt64(10), "M": 20, "G": 30][String(last)] {
            shift = s
            digits = t.dropLast()
        }
        guard !digits.isEmpty, digits.allSatisfy(\.isASCII), let v = UInt64(digits) else { return nil }
        let r = v.multipliedReportingOverflow(by: 1 << shift)
        return r.overflow ? nil : r.partialValue
    }
}
