import TenureCore
import TenureFormat

/// One sanlock client request, decoded and checked at the edge: the
/// daemon acts on these values only. A field that cannot be read is
/// refused with an error naming it, never defaulted.
public enum SanlockRequest: Sendable, Equatable {
    /// Whom a lease command is for: the registered caller itself (data2 =
    /// -1, on its registration connection) or another registered process.
    public enum Target: Sendable, Equatable {
        case caller
        case pid(Int32)
    }

    case register
    case addLockspace(SanlockLockspace, async: Bool, ioTimeoutSeconds: UInt32)
    case remLockspace(SanlockLockspace, async: Bool)
    case inqLockspace(SanlockLockspace, wait: Bool)
    case getLockspaces
    case getHosts(lockspace: String, hostID: UInt64)
    case acquire(Target, [SanlockResource], flags: UInt32, ownerName: String)
    case release(Target, [SanlockResource], flags: UInt32)
    case inquire(Target)
    case convert(Target, SanlockResource)
    case request(SanlockResource, forceMode: UInt32)
    case killpath(program: String, arguments: String, flags: UInt32)
    case restrict(flags: UInt32)
    case version
    case shutdown(force: Bool)
    /// The daemon's state, down to `depth` (SANLK_STATE_*; 0 for everything).
    case status(depth: UInt32)
    /// The hosts of one lockspace, as status records.
    case hostStatus(lockspace: String)
    /// A lockspace's renewal history, as status records.
    case renewal(lockspace: String)
    /// The daemon's recent log.
    case logDump
    /// Marks a lockspace used (or unused) by something outside the daemon.
    case setConfig(lockspace: String, command: UInt32)
    /// Looks at the request records of held leases now.
    case examine
    /// Makes this connection a listener for the lockspace's host events.
    case regEvent(lockspace: String)
    /// Sends a host event to another host through our delta lease.
    case setEvent(lockspace: String, SanlockHostEvent, flags: UInt32)
    /// A listener was closed (its connection ends on its own).
    case endEvent(lockspace: String)
    /// Lays out a lockspace area (flags: align and sector size; 0: the device's).
    case writeLockspace(SanlockLockspace, maxHosts: UInt32, ioTimeoutSeconds: UInt32, flags: UInt32)
    /// Lays out a resource area.
    case writeResource(SanlockResource, maxHosts: UInt32, numHosts: UInt32, flags: UInt32)
    /// Reads a lockspace area's name and io_timeout.
    case readLockspace(SanlockLockspace, flags: UInt32)
    /// Reads a resource area's names and lver.
    case readResource(SanlockResource, flags: UInt32)
    /// Who holds a resource, read from its area.
    case readResourceOwners(SanlockResource, flags: UInt32)
    /// The area size a disk's sector size implies.
    case align(SanlockDisk)
    /// Sets the lock value block of a lease held here.
    case setLVB(SanlockResource, bytes: [UInt8])
    /// Reads it (`length` bytes; 0: the whole sector).
    case getLVB(SanlockResource, length: UInt32)
    /// Lays out a resource index and the lease that guards it.
    case formatIndex(SanlockRindex)
    /// Writes the index again from the leases found after it.
    case rebuildIndex(SanlockRindex, flags: UInt32)
    /// Finds an entry by name, by offset, or the first free one.
    case lookupIndex(SanlockRindex, SanlockRentry, flags: UInt32)
    /// Adds or removes one entry (SANLK_RXUP_ADD or _REM).
    case updateIndex(SanlockRindex, SanlockRentry, flags: UInt32)
    /// Lays out a new lease in the first free area and lists it.
    case createResource(SanlockRindex, SanlockRentry, numHosts: UInt32)
    /// Unlists a lease and clears its area.
    case deleteResource(SanlockRindex, SanlockRentry)

    /// Decodes the request `header` introduces from its `payload`.
    public static func decode(_ header: SanlockHeader, payload: [UInt8]) throws(TenureError) -> SanlockRequest {
        guard let command = SanlockCommand(rawValue: header.command) else {
            throw TenureError(.protocolError, "Unknown sanlock command \(header.command).",
                              remedy: "Use libsanlock 3.8 or older; newer commands are not served.")
        }
        var body = Payload(bytes: payload[...], command: command)
        let request: SanlockRequest
        switch command {
        case .register:
            request = .register
        case .addLockspace:
            request = .addLockspace(try body.lockspace(), async: header.flags & SanlockFlags.addAsync != 0, ioTimeoutSeconds: header.data)
        case .remLockspace:
            request = .remLockspace(try body.lockspace(), async: header.flags & SanlockFlags.remAsync != 0)
        case .inqLockspace:
            request = .inqLockspace(try body.lockspace(), wait: header.flags & SanlockFlags.inqWait != 0)
        case .getLockspaces:
            request = .getLockspaces
        case .getHosts:
            let lockspace = try body.lockspace()
            request = .getHosts(lockspace: lockspace.name, hostID: lockspace.hostID)
        case .acquire:
            let resources = try body.resources(count: header.data, withDisks: true)
            let options = try body.options()
            request = .acquire(try target(header), resources, flags: header.flags, ownerName: options)
        case .release:
            let all = header.flags & SanlockFlags.releaseAll != 0
            let resources = all && header.data == 0 ? [] : try body.resources(count: header.data, withDisks: false)
            request = .release(try target(header), resources, flags: header.flags)
        case .inquire:
            request = .inquire(try target(header))
        case .convert:
            request = .convert(try target(header), try body.resources(count: 1, withDisks: false)[0])
        case .request:
            request = .request(try body.resources(count: 1, withDisks: true)[0], forceMode: header.data)
        case .killpath:
            let program = try body.text(SanlockWire.helperPathBytes, "killpath program")
            let arguments = try body.text(SanlockWire.helperArgsBytes, "killpath arguments")
            request = .killpath(program: program, arguments: arguments, flags: header.flags)
        case .restrict:
            request = .restrict(flags: header.flags)
        case .version:
            request = .version
        case .shutdown, .shutdownWait:
            // The plain form's caller does not read the reply; the waiting one does.
            request = .shutdown(force: header.data != 0)
        case .status:
            request = .status(depth: header.data)
        case .hostStatus:
            request = .hostStatus(lockspace: try body.lockspace().name)
        case .renewal:
            request = .renewal(lockspace: try body.lockspace().name)
        case .logDump:
            request = .logDump
        case .setConfig:
            request = .setConfig(lockspace: try body.lockspace().name, command: header.data)
        case .regEvent:
            let lockspace = try body.lockspace()
            _ = try body.take(SanlockHostEvent.bytes, "event")   // unused by sanlock too
            request = .regEvent(lockspace: lockspace.name)
        case .setEvent:
            let lockspace = try body.lockspace()
            request = .setEvent(lockspace: lockspace.name, SanlockHostEvent(decoding: try body.take(SanlockHostEvent.bytes, "event")), flags: header.flags)
        case .endEvent:
            request = .endEvent(lockspace: try body.lockspace().name)
        case .examineLockspace:
            _ = try body.lockspace()
            request = .examine
        case .examineResource:
            _ = try body.resources(count: 1, withDisks: false)
            request = .examine
        case .writeLockspace:
            request = .writeLockspace(try body.lockspace(), maxHosts: header.data, ioTimeoutSeconds: header.data2, flags: header.flags)
        case .writeResource:
            request = .writeResource(try body.resources(count: 1, withDisks: true)[0], maxHosts: header.data, numHosts: header.data2, flags: header.flags)
        case .readLockspace:
            request = .readLockspace(try body.lockspace(), flags: header.flags)
        case .readResource:
            request = .readResource(try body.resources(count: 1, withDisks: true)[0], flags: header.flags)
        case .readResourceOwners:
            request = .readResourceOwners(try body.resources(count: 1, withDisks: true)[0], flags: header.flags)
        case .setLVB:
            let resource = try body.resources(count: 1, withDisks: false)[0]
            guard body.bytes.count <= SanlockWire.maxLVBBytes else {
                throw TenureError(.invalidArgument, "An LVB of \(body.bytes.count) bytes is over a sector (\(SanlockWire.maxLVBBytes) at most).")
            }
            request = .setLVB(resource, bytes: Array(try body.take(body.bytes.count, "lock value block")))
        case .getLVB:
            request = .getLVB(try body.resources(count: 1, withDisks: false)[0], length: header.data2)
        case .formatRindex:
            request = .formatIndex(try body.index())
        case .rebuildRindex:
            request = .rebuildIndex(try body.index(), flags: header.flags)
        case .lookupRindex:
            request = .lookupIndex(try body.index(), try body.entry(), flags: header.flags)
        case .updateRindex:
            request = .updateIndex(try body.index(), try body.entry(), flags: header.flags)
        case .createResource:
            request = .createResource(try body.index(), try body.entry(), numHosts: header.data2)
        case .deleteResource:
            request = .deleteResource(try body.index(), try body.entry())
        case .align:
            let raw = try body.take(SanlockWire.diskBytes, "disk")
            request = .align(try SanlockDisk(decoding: ByteReader(raw), at: 0, what: "the disk to align"))
        }
        try body.checkConsumed()
        return request
    }

    /// The target of a lease command: data2 is -1 for the caller, else a pid.
    static func target(_ header: SanlockHeader) throws(TenureError) -> Target {
        if header.data2 == SanlockWire.selfPid { return .caller }
        let pid = Int32(bitPattern: header.data2)
        guard pid > 0 else {
            throw TenureError(.invalidArgument, "The target pid \(pid) is not a process id.", remedy: "Give the pid of a registered process, or -1 for the caller.")
        }
        return .pid(pid)
    }

    /// Reads a request's payload front to back.
    struct Payload {
        var bytes: ArraySlice<UInt8>
        let command: SanlockCommand

        mutating func take(_ count: Int, _ what: String) throws(TenureError) -> ArraySlice<UInt8> {
            guard bytes.count >= count else {
                throw TenureError(.protocolError, "The \(command) message ends \(count - bytes.count) bytes short of its \(what).")
            }
            defer { bytes = bytes.dropFirst(count) }
            return bytes.prefix(count)
        }

        mutating func lockspace() throws(TenureError) -> SanlockLockspace {
            try SanlockLockspace(decoding: try take(SanlockWire.lockspaceBytes, "lockspace"))
        }

        mutating func resources(count: UInt32, withDisks: Bool) throws(TenureError) -> [SanlockResource] {
            guard count >= 1, count <= SanlockWire.maxResources else {
                throw TenureError(.invalidArgument, "A \(command) names \(count) resources; sanlock allows 1...\(SanlockWire.maxResources).")
            }
            var out: [SanlockResource] = []
            for _ in 0..<count {
                let (resource, size) = try SanlockResource.decode(bytes, withDisks: withDisks)
                bytes = bytes.dropFirst(size)
                out.append(resource)
            }
            return out
        }

        mutating func index() throws(TenureError) -> SanlockRindex {
            try SanlockRindex(decoding: try take(SanlockRindex.bytes, "resource index"))
        }

        mutating func entry() throws(TenureError) -> SanlockRentry {
            try SanlockRentry(decoding: try take(SanlockRentry.bytes, "resource entry"))
        }

        /// struct sanlk_options; only its owner name is used.
        mutating func options() throws(TenureError) -> String {
            let raw = try take(SanlockWire.optionsBytes, "options")
            return String(decoding: raw.prefix(SanlockWire.nameBytes).prefix { $0 != 0 }, as: UTF8.self)
        }

        mutating func text(_ width: Int, _ what: String) throws(TenureError) -> String {
            let raw = try take(width, what)
            return String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }

        /// Anything left over is a malformed message, not something to skip.
        func checkConsumed() throws(TenureError) {
            guard bytes.isEmpty else {
                throw TenureError(.protocolError, "The \(command) message has \(bytes.count) bytes more than its fields.")
            }
        }
    }
}
