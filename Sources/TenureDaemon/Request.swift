import TenureClient
import TenureCore
import TenureFormat

/// What an acquire asks beyond the lease itself (sanlock's flags, and
/// Tenure's TENURE_ACQUIRE_* beyond shared).
struct LeaseOptions: Sendable, Equatable {
    /// Read the lock value block (SANLK_ACQUIRE_LVB).
    var lvb = false
    /// Keep the lease as an orphan when the process goes (SANLK_RES_PERSISTENT).
    var persistent = false
    /// Adopt an orphan of the resource if there is one (SANLK_ACQUIRE_ORPHAN)…
    var adoptOrphan = false
    /// …and only that (SANLK_ACQUIRE_ORPHAN_ONLY).
    var orphanOnly = false
}

/// One client request, decoded and checked at the edge. The daemon acts only
/// on these values: a malformed field is refused with an error naming it,
/// never replaced by a default (a bad pid is not 0, unknown flag bits are
/// not "exclusive", a convert mode is "shared" or "exclusive" and nothing else).
enum DaemonRequest: Sendable, Equatable {
    /// A pid field: the caller itself (0 or its own pid), or another process.
    typealias TargetPid = Int32

    case register
    case addLockspace(LockspaceSpec, hostName: String?, ioTimeout: IOTimeout?, async: Bool)
    case remLockspace(name: String)
    case acquire(pid: TargetPid, shared: Bool, resources: [ResourceSpec], options: LeaseOptions = LeaseOptions())
    /// Releases orphan leases of a lockspace (names, or `*` for all).
    case releaseOrphans(lockspace: String, names: [String])
    case release(pid: TargetPid, names: [String])
    case inquire(pid: TargetPid)
    case status
    case request(resource: ResourceSpec, force: Bool)
    case shutdown(force: Bool)
    case killpath(program: String, arguments: [String])
    case restrict(flags: UInt32)
    case convert(pid: TargetPid, name: String, shared: Bool)
    case hostStatus(lockspace: String)
    case renewal(lockspace: String)
    case logDump
    /// Sets the lock value block of a lease `pid` holds (acquired with an LVB).
    case setLVB(pid: TargetPid, name: String, bytes: [UInt8])
    /// Reads it.
    case getLVB(pid: TargetPid, name: String)
    /// Sends a host event through our delta lease: to one host, or to
    /// every other (nil); generation 0 is the target's current one.
    case setEvent(lockspace: String, host: UInt64?, event: UInt64, data: UInt64)
    /// The daemon's metrics (Prometheus text).
    case metrics
    /// A resource index: find an entry (by name, by offset, or the first
    /// free area), create a lease in the first free area and list it, or
    /// unlist a lease and clear its area (sanlock's lookup_rindex,
    /// create_resource, delete_resource).
    case index(IndexAction, IndexSpec, name: String, offset: UInt64)

    enum IndexAction: String, Sendable, Equatable, CaseIterable {
        case lookup, create, delete
    }

    /// Decodes `message`, or throws an `invalidArgument` / `protocolError`
    /// that names the bad field.
    static func decode(_ message: Message) throws(TenureError) -> (Command, DaemonRequest) {
        guard let command = Command(rawValue: message.command) else {
            throw TenureError(.protocolError, "Unknown command \(message.command).", remedy: "Use a client of the same Tenure release.")
        }
        let f = Fields(message: message, command: command)
        let request: DaemonRequest
        switch command {
        case .register:
            try f.count(0...0)
            request = .register
        case .addLockspace:
            try f.count(1...4)
            let io = try f.optionalNumber(2, "io_timeout", in: 0...Int(UInt16.max))
            let mode = try f.optionalText(3, "join mode")
            guard mode == nil || mode == "async" else {
                throw f.bad(3, "join mode", "is \"\(mode!)\"", allowed: "\"async\" or nothing")
            }
            let ioTimeout = try io.map { (seconds) throws(TenureError) in try IOTimeout.requested(seconds, what: "The io_timeout of an add-lockspace request") } ?? nil
            request = .addLockspace(try f.lockspace(0), hostName: try f.optionalText(1, "host name"),
                                    ioTimeout: ioTimeout, async: mode != nil)
        case .remLockspace:
            try f.count(1...1)
            request = .remLockspace(name: try f.text(0, "lockspace name"))
        case .acquire:
            try f.count(3...(2 + Wire.maxResourcesPerRequest))
            let flags = try f.number(1, "acquire flags", in: 0...Int(UInt32.max))
            let bits = UInt32(flags)
            guard bits & ~Wire.acquireAllFlags == 0 else {
                throw f.bad(1, "acquire flags", "are 0x\(String(flags, radix: 16))", allowed: "a combination of TENURE_ACQUIRE_* (0x\(String(Wire.acquireAllFlags, radix: 16)))")
            }
            let options = LeaseOptions(lvb: bits & Wire.acquireLVB != 0, persistent: bits & Wire.acquirePersistent != 0,
                                       adoptOrphan: bits & (Wire.acquireOrphan | Wire.acquireOrphanOnly) != 0, orphanOnly: bits & Wire.acquireOrphanOnly != 0)
            request = .acquire(pid: try f.pid(0), shared: bits & Wire.acquireShared != 0, resources: try f.resources(from: 2), options: options)
        case .release:
            try f.count(1...(1 + Wire.maxResourcesPerRequest))
            request = .release(pid: try f.pid(0), names: try f.texts(from: 1, "resource name"))
        case .inquire:
            try f.count(1...1)
            request = .inquire(pid: try f.pid(0))
        case .status:
            try f.count(0...0)
            request = .status
        case .request:
            try f.count(2...2)
            let mode = try f.text(1, "request mode")
            guard mode == "1" || mode == "2" else { throw f.bad(1, "request mode", "is \"\(mode)\"", allowed: "1 (force) or 2 (graceful)") }
            request = .request(resource: try f.resource(0), force: mode == "1")
        case .shutdown:
            try f.count(0...1)
            let force = try f.optionalText(0, "force flag") ?? "0"
            guard force == "0" || force == "1" else { throw f.bad(0, "force flag", "is \"\(force)\"", allowed: "0 or 1") }
            request = .shutdown(force: force == "1")
        case .killpath:
            try f.count(1...Wire.maxFields)
            request = .killpath(program: try f.text(0, "killpath program"), arguments: try f.texts(from: 1, "killpath argument", allowEmpty: true))
        case .restrict:
            try f.count(1...1)
            let flags = try f.number(0, "restrict flags", in: 0...Int(UInt32.max))
            let known = Wire.restrictAll | Wire.restrictSigkill | Wire.restrictSigterm
            guard UInt32(flags) & ~known == 0 else {
                throw f.bad(0, "restrict flags", "are 0x\(String(flags, radix: 16))", allowed: "a combination of \(Wire.restrictAll) (all), \(Wire.restrictSigkill) (sigkill) and \(Wire.restrictSigterm) (sigterm)")
            }
            guard UInt32(flags) & Wire.restrictSigkill == 0 || UInt32(flags) & Wire.restrictSigterm == 0 else {
                throw f.bad(0, "restrict flags", "ask for both SIGKILL only and SIGTERM only", allowed: "at most one of sigkill and sigterm")
            }
            request = .restrict(flags: UInt32(flags))
        case .convert:
            try f.count(3...3)
            let mode = try f.text(2, "convert mode")
            guard mode == "shared" || mode == "exclusive" else {
                throw f.bad(2, "convert mode", "is \"\(mode)\"", allowed: "\"shared\" or \"exclusive\"")
            }
            request = .convert(pid: try f.pid(0), name: try f.text(1, "resource name"), shared: mode == "shared")
        case .hostStatus:
            try f.count(1...1)
            request = .hostStatus(lockspace: try f.text(0, "lockspace name"))
        case .renewal:
            try f.count(1...1)
            request = .renewal(lockspace: try f.text(0, "lockspace name"))
        case .logDump:
            try f.count(0...0)
            request = .logDump
        case .setLVB:
            try f.count(3...3)
            let hex = try f.optionalText(2, "lock value block") ?? ""
            guard let bytes = Hex.decode(hex), bytes.count <= Self.maxLVBBytes else {
                throw f.bad(2, "lock value block", "is not hex of at most \(Self.maxLVBBytes) bytes", allowed: "an even number of hex digits")
            }
            request = .setLVB(pid: try f.pid(0), name: try f.text(1, "resource name"), bytes: bytes)
        case .getLVB:
            try f.count(2...2)
            request = .getLVB(pid: try f.pid(0), name: try f.text(1, "resource name"))
        case .releaseOrphans:
            try f.count(2...(1 + Wire.maxResourcesPerRequest))
            request = .releaseOrphans(lockspace: try f.text(0, "lockspace name"), names: try f.texts(from: 1, "resource name"))
        case .metrics:
            try f.count(0...0)
            request = .metrics
        case .index:
            try f.count(4...4)
            let word = try f.text(0, "index action")
            guard let action = IndexAction(rawValue: word) else {
                throw f.bad(0, "index action", "is \"\(word)\"", allowed: IndexAction.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
            }
            let name = try f.optionalText(2, "resource name") ?? ""
            let offset = try f.optionalText(3, "resource offset").map { (text) throws(TenureError) -> UInt64 in
                guard let value = UInt64(text) else { throw f.bad(3, "resource offset", "is \"\(text)\"", allowed: "a byte offset, decimal") }
                return value
            } ?? 0
            request = .index(action, try f.index(1), name: name, offset: offset)
        case .setEvent:
            try f.count(4...4)
            let host = try f.text(1, "host id")
            let id = host == "all" ? nil : UInt64(host)
            guard host == "all" || (id ?? 0) >= 1 else { throw f.bad(1, "host id", "is \"\(host)\"", allowed: "a host id from 1, or \"all\"") }
            guard let event = UInt64(try f.text(2, "event")), event != 0, let data = UInt64(try f.text(3, "event data")) else {
                throw f.bad(2, "event", "or its data is not a number", allowed: "an event from 1 and data from 0, decimal")
            }
            request = .setEvent(lockspace: try f.text(0, "lockspace name"), host: id, event: event, data: data)
        }
        return (command, request)
    }

    /// A lock value block is one sector at most.
    static let maxLVBBytes = 4096
}

/// The fields of one message, read with checks that name the field.
private struct Fields {
    let message: Message
    let command: Command

    func count(_ allowed: ClosedRange<Int>) throws(TenureError) {
        guard allowed.contains(message.fields.count) else {
            throw TenureError(.invalidArgument, "A \(command) request has \(message.fields.count) fields; it takes \(allowed.lowerBound == allowed.upperBound ? "\(allowed.lowerBound)" : "\(allowed.lowerBound)...\(allowed.upperBound)").",
                              remedy: "Use a client of the same Tenure release.")
        }
    }

    func bad(_ i: Int, _ what: String, _ problem: String, allowed: String) -> TenureError {
        TenureError(.invalidArgument, "The \(what) (field \(i) of a \(command) request) \(problem); allowed: \(allowed).",
                    remedy: "Use a client of the same Tenure release, or correct the value.")
    }

    /// Field `i` as text: valid UTF-8 without NUL bytes (a NUL would cut a path short in C).
    func optionalText(_ i: Int, _ what: String) throws(TenureError) -> String? {
        guard i < message.fields.count else { return nil }
        let bytes = message.fields[i]
        guard !bytes.contains(0) else { throw bad(i, what, "contains a NUL byte", allowed: "text without NUL bytes") }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw bad(i, what, "is not UTF-8", allowed: "UTF-8 text") }
        return text.isEmpty ? nil : text
    }

    func text(_ i: Int, _ what: String) throws(TenureError) -> String {
        guard let text = try optionalText(i, what) else {
            throw TenureError(.invalidArgument, "The \(command) request lacks its \(what) (field \(i)).", remedy: "Use a client of the same Tenure release.")
        }
        return text
    }

    func texts(from first: Int, _ what: String, allowEmpty: Bool = false) throws(TenureError) -> [String] {
        var all: [String] = []
        for i in first..<max(first, message.fields.count) {
            all.append(allowEmpty ? (try optionalText(i, what) ?? "") : try text(i, what))
        }
        return all
    }

    func optionalNumber(_ i: Int, _ what: String, in range: ClosedRange<Int>) throws(TenureError) -> Int? {
        guard let text = try optionalText(i, what) else { return nil }
        guard let value = Int(text), range.contains(value) else {
            throw bad(i, what, "is \"\(text)\"", allowed: "a whole number in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    func number(_ i: Int, _ what: String, in range: ClosedRange<Int>) throws(TenureError) -> Int {
        guard let value = try optionalNumber(i, what, in: range) else {
            throw TenureError(.invalidArgument, "The \(command) request lacks its \(what) (field \(i)).", remedy: "Use a client of the same Tenure release.")
        }
        return value
    }

    func pid(_ i: Int) throws(TenureError) -> Int32 {
        Int32(try number(i, "pid", in: 0...Int(Int32.max)))
    }

    /// Field `i` as a lockspace, LOCKSPACE:HOST_ID:PATH:OFFSET: typed here, at the edge.
    func lockspace(_ i: Int) throws(TenureError) -> LockspaceSpec {
        let text = try text(i, "lockspace")
        return try typed { try LockspaceSpec(parsing: text) }
    }

    /// Field `i` as a resource, LOCKSPACE:NAME:PATH:OFFSET[:…][:LVER].
    func resource(_ i: Int) throws(TenureError) -> ResourceSpec {
        let text = try text(i, "resource")
        return try typed { try ResourceSpec(parsing: text) }
    }

    /// Field `i` as a resource index, LOCKSPACE:PATH:OFFSET.
    func index(_ i: Int) throws(TenureError) -> IndexSpec {
        let text = try text(i, "resource index")
        return try typed { try IndexSpec(parsing: text) }
    }

    func resources(from first: Int) throws(TenureError) -> [ResourceSpec] {
        var all: [ResourceSpec] = []
        for i in first..<max(first, message.fields.count) { all.append(try resource(i)) }
        return all
    }

    private func typed<T>(_ parse: () throws -> T) throws(TenureError) -> T {
        do { return try parse() } catch let error as TenureError { throw error } catch {
            throw TenureError(.invalidArgument, "A \(command) request: \(error).")
        }
    }
}

