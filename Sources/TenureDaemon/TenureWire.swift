import TenureClient
import TenureCore
import TenureFormat
import TenureHost

/// Tenure's own protocol at the edge (docs/protocol.md): a message decoded
/// into the one ``Request``, and a ``Reply`` or a ``TenureError`` encoded
/// back. Nothing past this file sees a field as text.
enum TenureWire {
    /// What a pid field says: 0 the caller, else that process.
    static func subject(_ pid: Int32) -> Subject {
        pid == 0 ? .caller : .process(ProcessID(pid))
    }

    /// Decodes `message`, or throws an `invalidArgument` / `protocolError`
    /// that names the bad field.
    static func decode(_ message: Message) throws(TenureError) -> Request {
        guard let command = Command(rawValue: message.command) else {
            throw TenureError(.protocolError, "Unknown command \(message.command).", remedy: "Use a client of the same Tenure release.")
        }
        let f = Fields(message: message, command: command)
        switch command {
        case .register:
            try f.count(0...0)
            return .register
        case .addLockspace:
            try f.count(1...4)
            let io = try f.optionalNumber(2, "io_timeout", in: 0...Int(UInt16.max))
            let mode = try f.optionalText(3, "join mode")
            guard mode == nil || mode == "async" else {
                throw f.bad(3, "join mode", "is \"\(mode!)\"", allowed: "\"async\" or nothing")
            }
            let ioTimeout = try io.map { (seconds) throws(TenureError) in try IOTimeout.requested(seconds, what: "The io_timeout of an add-lockspace request") } ?? nil
            return .addLockspace(try f.lockspace(0), hostName: try f.optionalText(1, "host name"), ioTimeout: ioTimeout, async: mode != nil)
        case .remLockspace:
            try f.count(1...1)
            return .remLockspace(name: try f.name(0, "lockspace name"))
        case .acquire:
            try f.count(3...(2 + Wire.maxResourcesPerRequest))
            let flags = try f.number(1, "acquire flags", in: 0...Int(UInt32.max))
            let bits = UInt32(flags)
            guard bits & ~Wire.acquireAllFlags == 0 else {
                throw f.bad(1, "acquire flags", "are 0x\(String(flags, radix: 16))", allowed: "a combination of TENURE_ACQUIRE_* (0x\(String(Wire.acquireAllFlags, radix: 16)))")
            }
            let options = LeaseOptions(lvb: bits & Wire.acquireLVB != 0, persistent: bits & Wire.acquirePersistent != 0,
                                       adoptOrphan: bits & (Wire.acquireOrphan | Wire.acquireOrphanOnly) != 0, orphanOnly: bits & Wire.acquireOrphanOnly != 0)
            return .acquire(try f.subject(0), shared: bits & Wire.acquireShared != 0, resources: try f.resources(from: 2), options: options)
        case .release:
            try f.count(1...(1 + Wire.maxResourcesPerRequest))
            return .release(try f.subject(0), names: try f.texts(from: 1, "resource name"))
        case .inquire:
            try f.count(1...1)
            return .inquire(try f.subject(0))
        case .status:
            try f.count(0...0)
            return .status(.summary)
        case .request:
            try f.count(2...2)
            let mode = try f.text(1, "request mode")
            guard mode == "1" || mode == "2" else { throw f.bad(1, "request mode", "is \"\(mode)\"", allowed: "1 (force) or 2 (graceful)") }
            return .request(resource: try f.resource(0), force: mode == "1")
        case .shutdown:
            try f.count(0...1)
            let force = try f.optionalText(0, "force flag") ?? "0"
            guard force == "0" || force == "1" else { throw f.bad(0, "force flag", "is \"\(force)\"", allowed: "0 or 1") }
            return .shutdown(force: force == "1")
        case .killpath:
            try f.count(1...Wire.maxFields)
            return .killpath(program: try f.text(0, "killpath program"), arguments: try f.texts(from: 1, "killpath argument", allowEmpty: true))
        case .restrict:
            try f.count(1...1)
            let flags = UInt32(try f.number(0, "restrict flags", in: 0...Int(UInt32.max)))
            let known = Wire.restrictAll | Wire.restrictSigkill | Wire.restrictSigterm
            guard flags & ~known == 0 else {
                throw f.bad(0, "restrict flags", "are 0x\(String(flags, radix: 16))", allowed: "a combination of \(Wire.restrictAll) (all), \(Wire.restrictSigkill) (sigkill) and \(Wire.restrictSigterm) (sigterm)")
            }
            guard flags & Wire.restrictSigkill == 0 || flags & Wire.restrictSigterm == 0 else {
                throw f.bad(0, "restrict flags", "ask for both SIGKILL only and SIGTERM only", allowed: "at most one of sigkill and sigterm")
            }
            var options: RestrictOptions = []
            if flags & Wire.restrictAll != 0 { options.insert(.all) }
            if flags & Wire.restrictSigkill != 0 { options.insert(.sigkillOnly) }
            if flags & Wire.restrictSigterm != 0 { options.insert(.sigtermOnly) }
            return .restrict(options)
        case .convert:
            try f.count(3...3)
            let mode = try f.text(2, "convert mode")
            guard mode == "shared" || mode == "exclusive" else {
                throw f.bad(2, "convert mode", "is \"\(mode)\"", allowed: "\"shared\" or \"exclusive\"")
            }
            return .convert(try f.subject(0), name: try f.text(1, "resource name"), shared: mode == "shared")
        case .hostStatus:
            try f.count(1...1)
            return .hosts(lockspace: try f.name(0, "lockspace name"), only: nil)
        case .renewal:
            try f.count(1...1)
            return .renewal(lockspace: try f.name(0, "lockspace name"))
        case .logDump:
            try f.count(0...0)
            return .logDump
        case .setLVB:
            try f.count(3...3)
            let hex = try f.optionalText(2, "lock value block") ?? ""
            guard let bytes = Hex.decode(hex), bytes.count <= Request.maxLVBBytes else {
                throw f.bad(2, "lock value block", "is not hex of at most \(Request.maxLVBBytes) bytes", allowed: "an even number of hex digits")
            }
            return .setLVB(.heldBy(try f.subject(0), name: try f.text(1, "resource name")), bytes: bytes)
        case .getLVB:
            try f.count(2...2)
            return .getLVB(.heldBy(try f.subject(0), name: try f.text(1, "resource name")), length: 0)
        case .releaseOrphans:
            try f.count(2...(1 + Wire.maxResourcesPerRequest))
            return .releaseOrphans(lockspace: try f.name(0, "lockspace name"), names: try f.texts(from: 1, "resource name"))
        case .metrics:
            try f.count(0...0)
            return .metrics
        case .index:
            return .index(try indexRequest(f))
        case .setEvent:
            try f.count(4...4)
            let host = try f.text(1, "host id")
            let id = host == "all" ? nil : UInt64(host)
            guard host == "all" || (id ?? 0) >= 1 else { throw f.bad(1, "host id", "is \"\(host)\"", allowed: "a host id from 1, or \"all\"") }
            guard let event = UInt64(try f.text(2, "event")), event != 0, let data = UInt64(try f.text(3, "event data")) else {
                throw f.bad(2, "event", "or its data is not a number", allowed: "an event from 1 and data from 0, decimal")
            }
            var options: EventOptions = [.currentGeneration, .replace]
            if id == nil { options.insert(.allHosts) }
            return .setEvent(lockspace: try f.name(0, "lockspace name"),
                             HostEventRequest(to: HostID(id ?? 1), generation: .zero, event: event, data: data), options)
        }
    }

    /// The index actions of Tenure's protocol.
    enum IndexAction: String, CaseIterable {
        case lookup, create, delete
    }

    private static func indexRequest(_ f: Fields) throws(TenureError) -> IndexRequest {
        try f.count(4...4)
        let word = try f.text(0, "index action")
        guard let action = IndexAction(rawValue: word) else {
            throw f.bad(0, "index action", "is \"\(word)\"", allowed: IndexAction.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))
        }
        let index = try f.index(1)
        let name = try f.optionalName(2, "resource name") ?? .empty
        let offset = try f.optionalText(3, "resource offset").map { (text) throws(TenureError) -> UInt64 in
            guard let value = UInt64(text) else { throw f.bad(3, "resource offset", "is \"\(text)\"", allowed: "a byte offset, decimal") }
            return value
        } ?? 0
        switch action {
        case .lookup: return .lookup(index, name: name, offset: offset, useLockspace: true)
        case .create: return .create(index, name: name, numHosts: 0)
        case .delete: return .delete(index, name: name, offset: offset)
        }
    }

    // MARK: Replies

    /// The reply to `message`: the fields `reply` encodes to, or, where a
    /// reply says the request failed, that error.
    static func encode(_ reply: Reply, to message: Message) -> Message {
        switch reply {
        case .done, .version, .lockspaceState, .lockspaces, .records, .lockspaceArea, .resourceArea, .owners, .alignment:
            return .reply(to: message, .ok, [])
        case .fields(let fields):
            return .reply(to: message, .ok, fields)
        case .joining:
            return .reply(to: message, .ok, ["joining"])
        case .hosts(let hosts):
            return .reply(to: message, .ok, [hostsJSON(hosts, message: message)])
        case .renewals(let renewals):
            return .reply(to: message, .ok, [renewals.map(\.sanlockText).joined(separator: "\n")])
        case .held(let leases):
            return .reply(to: message, .ok, [leases.map(\.stateString).sorted().joined(separator: " ")])
        case .log(let text):
            // The newest part that fits in one reply field.
            return .reply(to: message, .ok, [String(decoding: Array(text.utf8.suffix(logDumpReplyBytes)), as: UTF8.self)])
        case .lvb(let bytes):
            return .reply(to: message, .ok, [Hex.encode(bytes)])
        case .indexEntry(let name, let offset, let exact):
            guard exact else {
                return .reply(to: message, error: TenureError(.nameMismatch, "The index lists \(name.isEmpty ? "no resource" : name.description) at \(offset), not the name asked.",
                                                              remedy: "Look it up by name alone, or by offset alone."))
            }
            return .reply(to: message, .ok, [name.description, String(offset)])
        }
    }

    /// The most of the debug ring one `log-dump` reply carries (a field's
    /// limit, less room for the rest).
    static let logDumpReplyBytes = 60 * 1024

    /// host-status: the hosts as JSON, this host marked "self".
    private static func hostsJSON(_ hosts: [HostView], message: Message) -> String {
        let lockspace = message.fields.first.map { String(decoding: $0, as: UTF8.self) } ?? ""
        let list: [[String: Any]] = hosts.map { host in
            ["host_id": Int(host.id.rawValue), "generation": Int(host.record.ownerGeneration.rawValue), "name": host.record.resourceName.description,
             "timestamp": Int(host.record.timestamp.rawValue), "io_timeout": Int(host.record.ioTimeout.seconds),
             "state": host.isSelf ? "self" : (host.state?.description ?? "unknown")]
        }
        return JSON.text(["lockspace": lockspace, "hosts": list] as [String: Any])
    }
}

/// The fields of one message, read with checks that name the field.
struct Fields {
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

    /// Field `i` as a pid: 0 the caller, else that process.
    func subject(_ i: Int) throws(TenureError) -> Subject {
        TenureWire.subject(Int32(try number(i, "pid", in: 0...Int(Int32.max))))
    }

    /// Field `i` as a lockspace or resource name (at most 48 bytes).
    func name(_ i: Int, _ what: String) throws(TenureError) -> LeaseName {
        let text = try text(i, what)
        return try typed { try LeaseName(text, what: what) }
    }

    func optionalName(_ i: Int, _ what: String) throws(TenureError) -> LeaseName? {
        guard let text = try optionalText(i, what) else { return nil }
        return try typed { try LeaseName(text, what: what) }
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

