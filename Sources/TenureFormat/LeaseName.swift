import TenureCore

/// A lockspace, resource or host name as stored on disk: at most 48 bytes of
/// UTF-8, NUL-padded, with no terminating NUL required.
public struct LeaseName: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    /// The on-disk field width (sanlock's NAME_ID_SIZE).
    public static let maxBytes = 48

    public let utf8: [UInt8]

    /// Checks the length and refuses NUL bytes, which would truncate the name on disk.
    public init(_ text: String, what: String = "name") throws {
        let bytes = Array(text.utf8)
        guard !bytes.contains(0) else {
            throw TenureError(.invalidArgument, "The \(what) \"\(text)\" contains a NUL byte.",
                              remedy: "Use printable characters only.")
        }
        guard bytes.count <= Self.maxBytes else {
            throw TenureError(
                .nameTooLong,
                "The \(what) \"\(text)\" is \(bytes.count) bytes long; the on-disk field holds at most \(Self.maxBytes).",
                remedy: "Choose a \(what) of at most \(Self.maxBytes) bytes.")
        }
        self.utf8 = bytes
    }

    /// A name read from disk (already bounded by the field width).
    package init(diskBytes: [UInt8]) {
        precondition(diskBytes.count <= Self.maxBytes)
        self.utf8 = diskBytes
    }

    /// For literals in code and tests; a literal over 48 bytes is a programmer error.
    public init(stringLiteral value: String) {
        precondition(value.utf8.count <= Self.maxBytes, "name literal over \(Self.maxBytes) bytes")
        precondition(!value.utf8.contains(0), "name literal with a NUL byte")
        self.utf8 = Array(value.utf8)
    }

    public static let empty = LeaseName(diskBytes: [])
    public var isEmpty: Bool { utf8.isEmpty }
    public var description: String { String(decoding: utf8, as: UTF8.self) }
}
