import CTenureProto
import TenureCore
import TenureSyscall

/// The client protocol's limits and constants, from the one C header
/// (Sources/CTenureProto/include/tenure_proto.h) that libtenure shares.
public enum Wire {
    public static let magic = UInt32(TENURE_MAGIC)
    public static let version = UInt16(TENURE_PROTO_VERSION)
    public static let headerBytes = Int(TENURE_HEADER_BYTES)
    public static let maxPayloadBytes = Int(TENURE_MAX_PAYLOAD_BYTES)
    public static let maxFields = Int(TENURE_MAX_FIELDS)
    public static let maxResourcesPerRequest = Int(TENURE_MAX_RESOURCES_PER_REQUEST)
    public static let replyFlag = UInt16(TENURE_REPLY)
    public static let socketName = TENURE_SOCKET_NAME
    public static let defaultRunDir = TENURE_DEFAULT_RUN_DIR
    public static let runDirEnvironment = TENURE_RUN_DIR_ENV
    public static let acquireShared = UInt32(TENURE_ACQUIRE_SHARED)
    public static let acquireLVB = UInt32(TENURE_ACQUIRE_LVB)
    public static let acquirePersistent = UInt32(TENURE_ACQUIRE_PERSISTENT)
    public static let acquireOrphan = UInt32(TENURE_ACQUIRE_ORPHAN)
    public static let acquireOrphanOnly = UInt32(TENURE_ACQUIRE_ORPHAN_ONLY)
    public static let acquireAllFlags = UInt32(TENURE_ACQUIRE_ALL_FLAGS)
    public static let restrictAll = UInt32(TENURE_RESTRICT_ALL)
    public static let restrictSigkill = UInt32(TENURE_RESTRICT_SIGKILL)
    public static let restrictSigterm = UInt32(TENURE_RESTRICT_SIGTERM)
    public static let killPidEnvironment = TENURE_KILL_PID_ENV

    /// The run dir every client and the daemon use: TENURE_RUN_DIR, else /run/tenure.
    public static var runDir: String {
        ProcessEnvironment.value(runDirEnvironment).flatMap { $0.isEmpty ? nil : $0 } ?? defaultRunDir
    }
}

/// The commands of the protocol; `WireTests` checks each against the header.
public enum Command: UInt16, Sendable, CaseIterable {
    case register = 1, addLockspace, remLockspace, acquire, release, inquire, status, request, shutdown
    case killpath, restrict, convert, hostStatus, renewal, logDump
    case setLVB, getLVB, releaseOrphans, setEvent, metrics
    case index
}

/// Result codes, grouped by kind, never a raw -errno (see the header).
public enum ResultCode: Int32, Sendable, CaseIterable {
    case ok = 0
    case badMessage = 100, unknownCommand, tooLarge, badArgument, notRegistered, permission
    case held = 200, inUse, lverMismatch, notOwner, noLockspace, lockspaceLost, exists
    case io = 300, ioTimeout, badRecord
    case shuttingDown = 400, limit

    /// The code a `TenureError` travels as.
    public init(_ code: TenureError.Code) {
        switch code {
        case .invalidArgument, .nameTooLong, .invalidGeometry, .misaligned, .outOfBounds, .nameMismatch: self = .badArgument
        case .notFound, .directIOUnsupported, .ioFailed, .shortIO, .deviceClosed, .daemonUnavailable: self = .io
        case .permissionDenied: self = .permission
        case .ioTimeout: self = .ioTimeout
        case .badMagic, .unsupportedVersion, .checksumMismatch, .badRecord: self = .badRecord
        case .leaseInUse, .hostIDBusy: self = .inUse
        case .heldByLiveHost, .ballotAborted: self = .held
        case .lverMismatch: self = .lverMismatch
        case .notOwner: self = .notOwner
        case .lockspaceLost: self = .lockspaceLost
        case .cancelled, .shuttingDown: self = .shuttingDown
        case .protocolError: self = .badMessage
        case .notRegistered: self = .notRegistered
        case .noLockspace: self = .noLockspace
        case .alreadyExists: self = .exists
        case .limitReached: self = .limit
        }
    }

    /// The error a client raises for a failed reply.
    public var errorCode: TenureError.Code {
        switch self {
        case .ok: preconditionFailure("ok is not an error")
        case .badMessage, .unknownCommand, .tooLarge: .protocolError
        case .badArgument: .invalidArgument
        case .notRegistered: .notRegistered
        case .permission: .permissionDenied
        case .held: .heldByLiveHost
        case .inUse: .leaseInUse
        case .lverMismatch: .lverMismatch
        case .notOwner: .notOwner
        case .noLockspace: .noLockspace
        case .lockspaceLost: .lockspaceLost
        case .exists: .alreadyExists
        case .io: .ioFailed
        case .ioTimeout: .ioTimeout
        case .badRecord: .badRecord
        case .shuttingDown: .shuttingDown
        case .limit: .limitReached
        }
    }
}

/// One message: a command (with the reply flag in replies), a sequence
/// number and its fields.
public struct Message: Sendable, Equatable {
    public var command: UInt16
    public var seq: UInt32
    public var fields: [[UInt8]]

    public init(command: UInt16, seq: UInt32, fields: [[UInt8]]) {
        self.command = command
        self.seq = seq
        self.fields = fields
    }

    public init(_ command: Command, seq: UInt32, _ fields: [String]) {
        self.init(command: command.rawValue, seq: seq, fields: fields.map { Array($0.utf8) })
    }

    /// A reply: the result code first, then the fields.
    public static func reply(to request: Message, _ result: ResultCode, _ fields: [String]) -> Message {
        Message(command: request.command | Wire.replyFlag, seq: request.seq,
                fields: ([String(result.rawValue)] + fields).map { Array($0.utf8) })
    }

    /// A failed reply carrying the error's message and remedy.
    public static func reply(to request: Message, error: TenureError) -> Message {
        reply(to: request, ResultCode(error.code), [error.code.rawValue, error.message, error.remedy])
    }

    public func text(_ i: Int) -> String? {
        i < fields.count ? String(decoding: fields[i], as: UTF8.self) : nil
    }

    /// Header and payload, little-endian.
    public func encoded() throws(TenureError) -> [UInt8] {
        guard fields.count <= Wire.maxFields else {
            throw TenureError(.protocolError, "A message of \(fields.count) fields exceeds the limit of \(Wire.maxFields).")
        }
        var payload: [UInt8] = []
        for field in fields {
            guard field.count <= Int(UInt16.max) else {
                throw TenureError(.protocolError, "A field of \(field.count) bytes exceeds the limit of \(UInt16.max).")
            }
            payload += le(UInt16(field.count)) + field
        }
        guard payload.count <= Wire.maxPayloadBytes else {
            throw TenureError(.protocolError, "A message of \(payload.count) bytes exceeds the limit of \(Wire.maxPayloadBytes).")
        }
        return le(Wire.magic) + le(Wire.version) + le(command) + le(UInt32(payload.count)) + le(seq) + payload
    }

    /// The header's fields, checked: magic, version and the payload limit.
    public struct Header: Sendable, Equatable {
        public var command: UInt16
        public var length: Int
        public var seq: UInt32
    }

    public static func decodeHeader(_ bytes: [UInt8]) throws(TenureError) -> Header {
        guard bytes.count == Wire.headerBytes else {
            throw TenureError(.protocolError, "A header is \(Wire.headerBytes) bytes, not \(bytes.count).")
        }
        let magic = readLE32(bytes, 0), version = readLE16(bytes, 4)
        guard magic == Wire.magic else {
            throw TenureError(.protocolError, "Bad magic 0x\(String(magic, radix: 16)): not a Tenure client message.")
        }
        guard version == Wire.version else {
            throw TenureError(.protocolError, "Protocol version \(version) is not supported (this side speaks \(Wire.version)).",
                              remedy: "Use a client and daemon of the same Tenure release.")
        }
        let length = Int(readLE32(bytes, 8))
        guard length <= Wire.maxPayloadBytes else {
            throw TenureError(.protocolError, "A payload of \(length) bytes exceeds the limit of \(Wire.maxPayloadBytes).")
        }
        return Header(command: readLE16(bytes, 6), length: length, seq: readLE32(bytes, 12))
    }

    public static func decodeFields(_ payload: [UInt8]) throws(TenureError) -> [[UInt8]] {
        var fields: [[UInt8]] = []
        var at = 0
        while at < payload.count {
            guard fields.count < Wire.maxFields else {
                throw TenureError(.protocolError, "More than \(Wire.maxFields) fields.")
            }
            guard at + 2 <= payload.count else { throw TenureError(.protocolError, "A field length is cut off at byte \(at).") }
            let length = Int(readLE16(payload, at))
            at += 2
            guard at + length <= payload.count else {
                throw TenureError(.protocolError, "A field of \(length) bytes runs past the payload's end.")
            }
            fields.append(Array(payload[at..<(at + length)]))
            at += length
        }
        return fields
    }
}

func le(_ v: UInt16) -> [UInt8] { [UInt8(truncatingIfNeeded: v), UInt8(truncatingIfNeeded: v >> 8)] }
func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
func readLE16(_ b: [UInt8], _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
func readLE32(_ b: [UInt8], _ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(b[at + $1]) << (8 * UInt32($1)) } }

/// Lowercase hex, for binary values (lock value blocks) in text fields.
public enum Hex {
    public static func encode(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count * 2)
        for b in bytes { out += [digits[Int(b >> 4)], digits[Int(b & 0xF)]] }
        return String(decoding: out, as: UTF8.self)
    }

    /// nil for an odd length or a character that is not a hex digit.
    public static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        guard utf8.count % 2 == 0 else { return nil }
        func nibble(_ c: UInt8) -> UInt8? {
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): c - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): c - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): c - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var out: [UInt8] = []
        var i = 0
        while i < utf8.count {
            guard let hi = nibble(utf8[i]), let lo = nibble(utf8[i + 1]) else { return nil }
            out.append(hi << 4 | lo)
            i += 2
        }
        return out
    }
}
