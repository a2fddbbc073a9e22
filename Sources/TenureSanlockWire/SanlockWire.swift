import Glibc
import TenureCore
import TenureFormat

/// sanlock's client protocol as libsanlock 3.8 speaks it on
/// `$SANLOCK_RUN_DIR/sanlock.sock`: every message is a 32-byte header and
/// then fixed C structures, in the host's byte order (little-endian on
/// every machine Tenure runs on). The sizes and offsets here are checked
/// against sanlock's installed headers by a test (`SanlockWireTests`).
public enum SanlockWire {
    /// The header's magic number.
    public static let magic: UInt32 = 0x0428_2010
    /// The protocol version this daemon speaks and answers with.
    public static let protocolVersion: UInt32 = 0x0000_0001
    /// sanlock's version as `sanlock_version` reports it (major << 24 |
    /// minor << 16 | patch << 8): the release whose protocol this is.
    public static let versionCombined: UInt32 = 3 << 24 | 8 << 16 | 5 << 8
    /// The socket's file name in the run dir.
    public static let socketName = "sanlock.sock"
    /// sanlock's run dir when SANLOCK_RUN_DIR is not set.
    public static let defaultRunDir = "/run/sanlock"

    public static let headerBytes = 32
    /// SANLK_NAME_LEN: lockspace and resource names (no NUL needed).
    public static let nameBytes = 48
    /// SANLK_PATH_LEN: a disk path, NUL included.
    public static let pathBytes = 1024
    /// struct sanlk_disk: path, offset, two pads.
    public static let diskBytes = 1040
    /// struct sanlk_lockspace: name, host_id, flags (padded to 8), disk.
    public static let lockspaceBytes = 1104
    /// struct sanlk_resource without its disks.
    public static let resourceBytes = 128
    /// struct sanlk_options: owner_name, flags, len.
    public static let optionsBytes = 56
    /// struct sanlk_host: host_id, generation, timestamp, io_timeout, flags.
    public static let hostBytes = 32
    /// SANLK_HELPER_PATH_LEN and SANLK_HELPER_ARGS_LEN: a killpath's two fields.
    public static let helperPathBytes = 128
    public static let helperArgsBytes = 128
    /// SANLK_MAX_RESOURCES: resources per acquire or release.
    public static let maxResources = 8
    /// SANLK_MAX_DISKS: disks per resource.
    public static let maxDisks = 4
    /// The largest lock value block: a 4096-byte sector.
    public static let maxLVBBytes = 4096
    /// The largest message this daemon reads (sanlock's MAX_CLIENT_MSG).
    public static let maxMessageBytes = 1 << 20
    /// data2 when a registered process acts for itself.
    public static let selfPid: UInt32 = 0xFFFF_FFFF
}

/// The commands of sanlock's protocol (SM_CMD_*), by number.
public enum SanlockCommand: UInt32, Sendable, CaseIterable {
    case register = 1, addLockspace, remLockspace, shutdown, status, logDump, acquire, release, inquire, restrict
    case request, align, examineLockspace, examineResource, hostStatus, inqLockspace, killpath
    case writeLockspace, writeResource, readLockspace, readResource, getLockspaces, getHosts
    case readResourceOwners, setLVB, getLVB, convert, version, shutdownWait, regEvent, endEvent
    case setEvent, setConfig, renewal, formatRindex, updateRindex, lookupRindex, createResource
    case deleteResource, rebuildRindex

    /// The commands of the resource index.
    public static let resourceIndex: Set<SanlockCommand> = [.formatRindex, .updateRindex, .lookupRindex, .createResource, .deleteResource, .rebuildRindex]
}

/// Flag bits the commands Tenure serves look at (sanlock.h, sanlock_admin.h, sanlock_resource.h).
public enum SanlockFlags {
    /// add_lockspace: return at once; inq_lockspace says EINPROGRESS until joined.
    public static let addAsync: UInt32 = 0x1
    /// rem_lockspace: return at once.
    public static let remAsync: UInt32 = 0x1
    /// rem_lockspace: only if no lease is held in it (Tenure always asks that).
    public static let remUnused: UInt32 = 0x2
    /// inq_lockspace: wait while joining or leaving.
    public static let inqWait: UInt32 = 0x1
    /// sanlk_resource.flags
    public static let resLver: UInt32 = 0x1
    public static let resNumHosts: UInt32 = 0x2
    public static let resShared: UInt32 = 0x4
    public static let resPersistent: UInt32 = 0x8
    /// acquire flags
    public static let acquireLVB: UInt32 = 0x1
    public static let acquireOrphan: UInt32 = 0x2
    public static let acquireOrphanOnly: UInt32 = 0x4
    public static let acquireOwnerNoWait: UInt32 = 0x8
    /// release flags
    public static let releaseAll: UInt32 = 0x1
    public static let releaseRename: UInt32 = 0x2
    public static let releaseOrphan: UInt32 = 0x4
    /// request force modes (the header's data)
    public static let requestForce: UInt32 = 0x1
    public static let requestGraceful: UInt32 = 0x2
    /// restrict flags
    public static let restrictAll: UInt32 = 0x1
    public static let restrictSIGKILL: UInt32 = 0x2
    public static let restrictSIGTERM: UInt32 = 0x4
    /// set_config commands (the header's data).
    public static let configUsed: UInt32 = 0x1
    public static let configUnused: UInt32 = 0x2
    public static let configUsedByOrphans: UInt32 = 0x4
    public static let configUnusedByOrphans: UInt32 = 0x8
    /// write_resource: the area reads as cleared afterwards (not served).
    public static let writeClear: UInt32 = 0x1
    /// Align and sector-size bits of lockspace and resource flags (SANLK_LSF_*, SANLK_RES_*).
    public static let align1M: UInt32 = 0x10
    public static let align2M: UInt32 = 0x20
    public static let align4M: UInt32 = 0x40
    public static let align8M: UInt32 = 0x80
    public static let sector512: UInt32 = 0x100
    public static let sector4K: UInt32 = 0x200
    /// Resource index commands: work without joining the index's lockspace
    /// (lookup, update, rebuild; rebuild then takes no index lease either).
    public static let indexNoLockspace: UInt32 = 0x1
    /// update_rindex: add the entry, or remove it.
    public static let indexUpdateAdd: UInt32 = 0x1_0000
    public static let indexUpdateRemove: UInt32 = 0x2_0000
    /// sanlk_host.flags: the host's state
    public static let hostUnknown: UInt32 = 0x1
    public static let hostFree: UInt32 = 0x2
    public static let hostLive: UInt32 = 0x3
    public static let hostFail: UInt32 = 0x4
    public static let hostDead: UInt32 = 0x5
}

/// The result codes libsanlock's callers look at: negated errnos and
/// sanlock's own (sanlock_rv.h).
public enum SanlockResult {
    public static let ok: Int32 = 0
    public static let aioTimeout: Int32 = -202
    public static let leaderMagic: Int32 = -223
    public static let leaderLockspace: Int32 = -226
    public static let leaderResource: Int32 = -227
    public static let leaderChecksum: Int32 = -229
    public static let acquireLver: Int32 = -240
    public static let acquireLockspace: Int32 = -241
    public static let acquireIDLive: Int32 = -243
    public static let acquireOwned: Int32 = -244
    public static let acquireOther: Int32 = -245
    public static let hostIDBusy: Int32 = -262
    /// The resource index: no index at that place, a newer version, another
    /// lockspace's, recorded at another offset, or naming another resource.
    public static let rindexMagic: Int32 = -274
    public static let rindexVersion: Int32 = -275
    public static let rindexLockspace: Int32 = -276
    public static let rindexOffset: Int32 = -277
    public static let rindexDiff: Int32 = -278
}

/// A message's header (struct sm_header).
public struct SanlockHeader: Sendable, Equatable {
    public var magic: UInt32
    public var version: UInt32
    public var command: UInt32
    public var flags: UInt32
    /// The whole message, header included.
    public var length: UInt32
    public var seq: UInt32
    public var data: UInt32
    public var data2: UInt32

    public init(command: UInt32, flags: UInt32 = 0, length: UInt32 = UInt32(SanlockWire.headerBytes), seq: UInt32 = 0,
                data: UInt32 = 0, data2: UInt32 = 0, version: UInt32 = SanlockWire.protocolVersion) {
        self.magic = SanlockWire.magic
        self.version = version
        self.command = command
        self.flags = flags
        self.length = length
        self.seq = seq
        self.data = data
        self.data2 = data2
    }

    /// Decodes and checks a header: its magic, and a length that covers
    /// the header and stays within ``SanlockWire/maxMessageBytes``.
    public init(decoding bytes: [UInt8]) throws(TenureError) {
        guard bytes.count == SanlockWire.headerBytes else {
            throw TenureError(.protocolError, "A sanlock message header is \(SanlockWire.headerBytes) bytes; got \(bytes.count).")
        }
        let r = ByteReader(bytes)
        magic = r.u32(at: 0)
        version = r.u32(at: 4)
        command = r.u32(at: 8)
        flags = r.u32(at: 12)
        length = r.u32(at: 16)
        seq = r.u32(at: 20)
        data = r.u32(at: 24)
        data2 = r.u32(at: 28)
        guard magic == SanlockWire.magic else {
            throw TenureError(.protocolError, "The message's magic is 0x\(String(magic, radix: 16)), not sanlock's 0x\(String(SanlockWire.magic, radix: 16)).",
                              remedy: "Connect to this socket with libsanlock (or python3-sanlock) only.")
        }
        guard Int(length) >= SanlockWire.headerBytes, Int(length) <= SanlockWire.maxMessageBytes else {
            throw TenureError(.protocolError, "The message's length \(length) is outside \(SanlockWire.headerBytes)...\(SanlockWire.maxMessageBytes) bytes.")
        }
    }

    /// The bytes after the header that `length` counts.
    public var payloadBytes: Int { Int(length) - SanlockWire.headerBytes }

    /// The bytes that follow the header: what `length` counts, except for
    /// host_status and renewal, whose lockspace libsanlock sends after a
    /// header that counts only itself.
    public var bytesToRead: Int {
        let uncounted: Set<UInt32> = [SanlockCommand.hostStatus.rawValue, SanlockCommand.renewal.rawValue]
        if payloadBytes == 0 && uncounted.contains(command) { return SanlockWire.lockspaceBytes }
        // libsanlock's lookup counts a struct sanlk_resource but sends a
        // struct sanlk_rentry after the index.
        if command == SanlockCommand.lookupRindex.rawValue { return SanlockRindex.bytes + SanlockRentry.bytes }
        return payloadBytes
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: SanlockWire.headerBytes)
        for (i, value) in [magic, version, command, flags, length, seq, data, data2].enumerated() { w.put(value, at: 4 * i) }
        return w.bytes
    }

    /// The reply to this header: the same command and seq, `result` in data.
    public func reply(result: Int32, data2: UInt32 = 0, payloadBytes: Int = 0) -> SanlockHeader {
        SanlockHeader(command: command, flags: flags, length: UInt32(SanlockWire.headerBytes + payloadBytes), seq: seq,
                      data: UInt32(bitPattern: result), data2: data2)
    }
}

/// A disk (struct sanlk_disk).
public struct SanlockDisk: Sendable, Equatable {
    public var path: String
    public var offset: UInt64

    public init(path: String, offset: UInt64) {
        self.path = path
        self.offset = offset
    }

    init(decoding r: ByteReader, at base: Int, what: String) throws(TenureError) {
        let raw = r.slice(at: base, count: SanlockWire.pathBytes)
        guard let end = raw.firstIndex(of: 0) else {
            throw TenureError(.invalidArgument, "The path of \(what) is not NUL-terminated within \(SanlockWire.pathBytes) bytes.")
        }
        path = String(decoding: raw[raw.startIndex..<end], as: UTF8.self)
        offset = r.u64(at: base + SanlockWire.pathBytes)
    }

    /// The struct sanlk_disk alone (align's payload).
    public var encoded: [UInt8] {
        var w = ByteWriter(count: SanlockWire.diskBytes)
        encode(into: &w, at: 0)
        return w.bytes
    }

    func encode(into w: inout ByteWriter, at base: Int) {
        let utf8 = Array(path.utf8.prefix(SanlockWire.pathBytes - 1))
        for (i, byte) in utf8.enumerated() { w.bytes[base + i] = byte }
        w.put(offset, at: base + SanlockWire.pathBytes)
    }
}

/// Names in sanlock's structs: up to 48 bytes, NUL-terminated only when shorter.
enum SanlockName {
    static func decode(_ r: ByteReader, at offset: Int) -> String {
        String(decoding: r.nameBytes(at: offset, width: SanlockWire.nameBytes), as: UTF8.self)
    }

    static func encode(_ text: String, into w: inout ByteWriter, at offset: Int) {
        for (i, byte) in text.utf8.prefix(SanlockWire.nameBytes).enumerated() { w.bytes[offset + i] = byte }
    }
}

/// A lockspace (struct sanlk_lockspace).
public struct SanlockLockspace: Sendable, Equatable {
    public var name: String
    public var hostID: UInt64
    public var flags: UInt32
    public var disk: SanlockDisk

    public init(name: String, hostID: UInt64, flags: UInt32 = 0, disk: SanlockDisk) {
        self.name = name
        self.hostID = hostID
        self.flags = flags
        self.disk = disk
    }

    public init(decoding bytes: ArraySlice<UInt8>) throws(TenureError) {
        guard bytes.count == SanlockWire.lockspaceBytes else {
            throw TenureError(.protocolError, "A sanlock lockspace is \(SanlockWire.lockspaceBytes) bytes; got \(bytes.count).")
        }
        let r = ByteReader(bytes)
        name = SanlockName.decode(r, at: 0)
        hostID = r.u64(at: 48)
        flags = r.u32(at: 56)
        disk = try SanlockDisk(decoding: r, at: 64, what: "lockspace \(name)")
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: SanlockWire.lockspaceBytes)
        SanlockName.encode(name, into: &w, at: 0)
        w.put(hostID, at: 48)
        w.put(flags, at: 56)
        disk.encode(into: &w, at: 64)
        return w.bytes
    }
}

/// A resource (struct sanlk_resource and its disks).
public struct SanlockResource: Sendable, Equatable {
    public var lockspace: String
    public var name: String
    public var lver: UInt64
    public var data64: UInt64
    public var data32: UInt32
    public var flags: UInt32
    public var disks: [SanlockDisk]

    public init(lockspace: String, name: String, lver: UInt64 = 0, flags: UInt32 = 0, disks: [SanlockDisk]) {
        self.lockspace = lockspace
        self.name = name
        self.lver = lver
        self.data64 = 0
        self.data32 = 0
        self.flags = flags
        self.disks = disks
    }

    public var isShared: Bool { flags & SanlockFlags.resShared != 0 }

    /// Decodes one resource at the start of `bytes`, with its disks when
    /// `withDisks` (release and convert send the struct alone); returns it
    /// and the bytes it took.
    public static func decode(_ bytes: ArraySlice<UInt8>, withDisks: Bool) throws(TenureError) -> (SanlockResource, Int) {
        guard bytes.count >= SanlockWire.resourceBytes else {
            throw TenureError(.protocolError, "A sanlock resource is at least \(SanlockWire.resourceBytes) bytes; \(bytes.count) are left in the message.")
        }
        let r = ByteReader(bytes)
        var resource = SanlockResource(lockspace: SanlockName.decode(r, at: 0), name: SanlockName.decode(r, at: 48), lver: r.u64(at: 96),
                                       flags: r.u32(at: 120), disks: [])
        resource.data64 = r.u64(at: 104)
        resource.data32 = r.u32(at: 112)
        let count = Int(r.u32(at: 124))
        guard withDisks else { return (resource, SanlockWire.resourceBytes) }
        guard count <= SanlockWire.maxDisks else {
            throw TenureError(.invalidArgument, "Resource \(resource.name) names \(count) disks; sanlock allows at most \(SanlockWire.maxDisks).")
        }
        let size = SanlockWire.resourceBytes + count * SanlockWire.diskBytes
        guard bytes.count >= size else {
            throw TenureError(.protocolError, "Resource \(resource.name) names \(count) disks, but the message ends before them.")
        }
        for d in 0..<count {
            resource.disks.append(try SanlockDisk(decoding: r, at: SanlockWire.resourceBytes + d * SanlockWire.diskBytes,
                                                  what: "disk \(d + 1) of resource \(resource.name)"))
        }
        return (resource, size)
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: SanlockWire.resourceBytes + disks.count * SanlockWire.diskBytes)
        SanlockName.encode(lockspace, into: &w, at: 0)
        SanlockName.encode(name, into: &w, at: 48)
        w.put(lver, at: 96)
        w.put(data64, at: 104)
        w.put(data32, at: 112)
        w.put(flags, at: 120)
        w.put(UInt32(disks.count), at: 124)
        for (d, disk) in disks.enumerated() { disk.encode(into: &w, at: SanlockWire.resourceBytes + d * SanlockWire.diskBytes) }
        return w.bytes
    }

    /// sanlock's state string for a held lease: `LS:NAME:PATH:OFFSET…:LVER`,
    /// or `…:SH` when shared; ':', ' ' and '\' in paths escaped with '\'.
    public var stateString: String {
        var parts = [lockspace, name]
        for disk in disks { parts += [Self.escape(disk.path), String(disk.offset)] }
        parts.append(isShared ? "SH" : String(lver))
        return parts.joined(separator: ":")
    }

    public static func escape(_ path: String) -> String {
        var out = ""
        for c in path {
            if c == ":" || c == " " || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out
    }
}

/// A host's state (struct sanlk_host), as get_hosts returns it.
public struct SanlockHost: Sendable, Equatable {
    public var hostID: UInt64
    public var generation: UInt64
    public var timestamp: UInt64
    public var ioTimeout: UInt32
    public var flags: UInt32

    public init(decoding bytes: ArraySlice<UInt8>) {
        let r = ByteReader(bytes)
        self.init(hostID: r.u64(at: 0), generation: r.u64(at: 8), timestamp: r.u64(at: 16), ioTimeout: r.u32(at: 24), flags: r.u32(at: 28))
    }

    /// The state in `flags` as sanlock's command line names it.
    public var stateName: String {
        switch flags & 0xF {
        case SanlockFlags.hostFree: "FREE"
        case SanlockFlags.hostLive: "LIVE"
        case SanlockFlags.hostFail: "FAIL"
        case SanlockFlags.hostDead: "DEAD"
        case SanlockFlags.hostUnknown: "UNKNOWN"
        default: "ERROR"
        }
    }

    public init(hostID: UInt64, generation: UInt64, timestamp: UInt64, ioTimeout: UInt32, flags: UInt32) {
        self.hostID = hostID
        self.generation = generation
        self.timestamp = timestamp
        self.ioTimeout = ioTimeout
        self.flags = flags
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: SanlockWire.hostBytes)
        w.put(hostID, at: 0)
        w.put(generation, at: 8)
        w.put(timestamp, at: 16)
        w.put(ioTimeout, at: 24)
        w.put(flags, at: 28)
        return w.bytes
    }
}

extension SanlockResult {
    /// The result libsanlock's callers expect for `error` answering `command`:
    /// the negated errno or sanlock code their error paths test for.
    public static func code(for error: TenureError, command: SanlockCommand) -> Int32 {
        if SanlockCommand.resourceIndex.contains(command), let code = indexCode(for: error) { return code }
        switch error.code {
        case .noLockspace:
            // sanlock: acquire without the lockspace is ENOSPC, lockspace commands ENOENT.
            return command == .acquire ? -ENOSPC : -ENOENT
        case .alreadyExists:
            return -EEXIST
        case .leaseInUse:
            // rem_lockspace while leases are held, an event still pending;
            // or a resource already held here.
            return [.remLockspace, .writeLockspace, .writeResource, .setEvent].contains(command) ? -EBUSY : -EEXIST
        case .heldByLiveHost:
            return acquireIDLive
        case .lverMismatch:
            return acquireLver
        case .hostIDBusy:
            return hostIDBusy
        case .notOwner:
            return -ENOENT
        case .ioTimeout:
            return aioTimeout
        case .badMagic:
            return leaderMagic
        case .checksumMismatch:
            return leaderChecksum
        case .nameMismatch:
            return command == .addLockspace ? leaderLockspace : leaderResource
        case .permissionDenied:
            return -EPERM
        case .limitReached:
            return -E2BIG
        case .shuttingDown:
            return -ESHUTDOWN
        case .lockspaceLost:
            return -ENOSPC
        case .ballotAborted:
            return -EAGAIN
        case .notFound:
            return -ENOENT
        case .invalidArgument, .nameTooLong, .invalidGeometry, .misaligned, .outOfBounds, .protocolError:
            return -EINVAL
        case .notRegistered:
            return -ESTALE
        case .cancelled:
            return -ECANCELED
        default:
            return -EIO
        }
    }

    /// The resource index's own codes, where sanlock has one.
    static func indexCode(for error: TenureError) -> Int32? {
        switch error.code {
        case .badMagic: rindexMagic
        case .unsupportedVersion: rindexVersion
        case .nameMismatch: rindexLockspace
        case .badRecord, .misaligned: rindexOffset
        case .leaseInUse, .heldByLiveHost: -EBUSY
        case .noLockspace: -ENOENT
        default: nil
        }
    }
}

/// One record of a status stream (struct sanlk_state, then its text, then
/// for a lockspace its sanlk_lockspace, for a resource its sanlk_resource
/// and disks). The stream ends when the daemon closes the connection.
public struct SanlockState: Sendable, Equatable {
    /// SANLK_STATE_*: what the record describes.
    public enum Kind: UInt32, Sendable {
        case daemon = 1, client, lockspace, resource, host, renewal
    }

    /// The fixed part: type, flags, data32, (pad), data64, name, str_len, padded to 8.
    public static let fixedBytes = 80

    public var kind: Kind
    /// A client's or resource holder's pid; a host's id.
    public var data32: UInt32
    /// A lockspace's host id; a resource's lver; a host's timestamp.
    public var data64: UInt64
    public var name: String
    /// `key=value` pairs, shown by `sanlock client status -D`.
    public var text: String
    /// What follows the text (a lockspace, or a resource with its disks).
    public var trailer: [UInt8]

    public init(kind: Kind, data32: UInt32 = 0, data64: UInt64 = 0, name: String, text: String, trailer: [UInt8] = []) {
        self.kind = kind
        self.data32 = data32
        self.data64 = data64
        self.name = name
        self.text = text
        self.trailer = trailer
    }

    public var encoded: [UInt8] {
        let str = Array(text.utf8) + [0]
        var w = ByteWriter(count: Self.fixedBytes)
        w.put(kind.rawValue, at: 0)
        w.put(data32, at: 8)
        w.put(data64, at: 16)
        SanlockName.encode(name, into: &w, at: 24)
        w.put(UInt32(str.count), at: 72)
        return w.bytes + str + trailer
    }
}

extension SanlockState {
    /// Decodes a whole status stream (what follows the reply's header).
    public static func decodeStream(_ bytes: ArraySlice<UInt8>) throws(TenureError) -> [SanlockState] {
        var rest = bytes
        var out: [SanlockState] = []
        while !rest.isEmpty {
            guard rest.count >= fixedBytes else { throw TenureError(.protocolError, "A status record is cut short (\(rest.count) bytes).") }
            let r = ByteReader(rest)
            guard let kind = Kind(rawValue: r.u32(at: 0)) else { throw TenureError(.protocolError, "Unknown status record type \(r.u32(at: 0)).") }
            let textBytes = Int(r.u32(at: 72))
            var size = fixedBytes + textBytes
            switch kind {
            case .lockspace:
                size += SanlockWire.lockspaceBytes
            case .resource:
                guard rest.count >= fixedBytes + textBytes + SanlockWire.resourceBytes else { throw TenureError(.protocolError, "A resource record is cut short.") }
                let disks = Int(ByteReader(rest.dropFirst(fixedBytes + textBytes)).u32(at: 124))
                size += SanlockWire.resourceBytes + min(disks, SanlockWire.maxDisks) * SanlockWire.diskBytes
            default:
                break
            }
            guard rest.count >= size else { throw TenureError(.protocolError, "A status record is cut short.") }
            let text = String(decoding: rest.dropFirst(fixedBytes).prefix(textBytes).prefix { $0 != 0 }, as: UTF8.self)
            out.append(SanlockState(kind: kind, data32: r.u32(at: 8), data64: r.u64(at: 16), name: SanlockName.decode(r, at: 24), text: text,
                                    trailer: Array(rest.dropFirst(fixedBytes + textBytes).prefix(size - fixedBytes - textBytes))))
            rest = rest.dropFirst(size)
        }
        return out
    }
}

/// A host event (struct sanlk_host_event): to whom (host id and
/// generation), which event, and its data.
public struct SanlockHostEvent: Sendable, Equatable {
    public static let bytes = 32
    public var hostID: UInt64
    public var generation: UInt64
    public var event: UInt64
    public var data: UInt64

    public init(hostID: UInt64, generation: UInt64, event: UInt64, data: UInt64) {
        self.hostID = hostID
        self.generation = generation
        self.event = event
        self.data = data
    }

    init(decoding bytes: ArraySlice<UInt8>) {
        let r = ByteReader(bytes)
        self.init(hostID: r.u64(at: 0), generation: r.u64(at: 8), event: r.u64(at: 16), data: r.u64(at: 24))
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: Self.bytes)
        w.put(hostID, at: 0)
        w.put(generation, at: 8)
        w.put(event, at: 16)
        w.put(data, at: 24)
        return w.bytes
    }

    /// What the daemon sends on a registered event connection (struct
    /// event_cb): a callback header, the event, and who set it.
    public func callback(fromHost: UInt64, fromGeneration: UInt64) -> [UInt8] {
        let length = SanlockWire.headerBytes + Self.bytes + 16
        let header = SanlockHeader(command: SanlockWire.callbackGetEvent, length: UInt32(length), version: SanlockWire.callbackProtocol)
        var tail = ByteWriter(count: 16)
        tail.put(fromHost, at: 0)
        tail.put(fromGeneration, at: 8)
        return header.encoded + encoded + tail.bytes
    }
}

extension SanlockWire {
    /// The protocol version and command of event callbacks (SM_CB_PROTO, SM_CB_GET_EVENT).
    public static let callbackProtocol: UInt32 = 1
    public static let callbackGetEvent: UInt32 = 1
}

extension SanlockFlags {
    /// set_event flags (SANLK_SETEV_*).
    public static let setEventCurrentGeneration: UInt32 = 0x1
    public static let setEventClearHost: UInt32 = 0x2
    public static let setEventClearEvent: UInt32 = 0x4
    public static let setEventReplace: UInt32 = 0x8
    public static let setEventAllHosts: UInt32 = 0x10
}

// MARK: From Tenure's own values

extension SanlockDisk {
    public init(_ disk: LeaseDisk) {
        self.init(path: disk.path, offset: disk.offset)
    }
}

extension SanlockLockspace {
    public init(_ spec: LockspaceSpec, flags: UInt32 = 0) {
        self.init(name: spec.name.description, hostID: spec.hostID.rawValue, flags: flags, disk: SanlockDisk(spec.disk))
    }

    /// Only a name, for the requests that look a lockspace up by it
    /// (host_status, renewal, set_config).
    public init(named name: String) {
        self.init(name: name, hostID: 0, disk: SanlockDisk(path: "", offset: 0))
    }
}

extension SanlockResource {
    /// A resource as its string names it: a required lver sets
    /// SANLK_RES_LVER, `:SH` sets SANLK_RES_SHARED.
    public init(_ spec: ResourceSpec) {
        var flags: UInt32 = spec.shared ? SanlockFlags.resShared : 0
        if spec.lver != nil { flags |= SanlockFlags.resLver }
        self.init(lockspace: spec.lockspace.description, name: spec.name.description, lver: spec.lver?.rawValue ?? 0,
                  flags: flags, disks: spec.disks.map(SanlockDisk.init))
    }
}

/// A resource index's place (struct sanlk_rindex): its flags (SANLK_RIF_*:
/// sector and align, for format), the entries to use, its lockspace and disk.
public struct SanlockRindex: Sendable, Equatable {
    public static let bytes = 1104
    public var flags: UInt32
    public var maxResources: UInt32
    public var lockspace: String
    public var disk: SanlockDisk

    public init(flags: UInt32 = 0, maxResources: UInt32 = 0, lockspace: String, disk: SanlockDisk) {
        self.flags = flags
        self.maxResources = maxResources
        self.lockspace = lockspace
        self.disk = disk
    }

    public init(decoding bytes: ArraySlice<UInt8>) throws(TenureError) {
        guard bytes.count == Self.bytes else {
            throw TenureError(.protocolError, "A sanlock resource index is \(Self.bytes) bytes; got \(bytes.count).")
        }
        let r = ByteReader(bytes)
        flags = r.u32(at: 0)
        maxResources = r.u32(at: 4)
        lockspace = SanlockName.decode(r, at: 16)
        disk = try SanlockDisk(decoding: r, at: 64, what: "the resource index of \(lockspace)")
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: Self.bytes)
        w.put(flags, at: 0)
        w.put(maxResources, at: 4)
        SanlockName.encode(lockspace, into: &w, at: 16)
        disk.encode(into: &w, at: 64)
        return w.bytes
    }
}

/// One entry asked for or answered (struct sanlk_rentry): a resource name
/// and the offset of its lease.
public struct SanlockRentry: Sendable, Equatable {
    public static let bytes = 64
    public var name: String
    public var offset: UInt64

    public init(name: String = "", offset: UInt64 = 0) {
        self.name = name
        self.offset = offset
    }

    public init(decoding bytes: ArraySlice<UInt8>) throws(TenureError) {
        guard bytes.count == Self.bytes else {
            throw TenureError(.protocolError, "A sanlock resource entry is \(Self.bytes) bytes; got \(bytes.count).")
        }
        let r = ByteReader(bytes)
        name = SanlockName.decode(r, at: 0)
        offset = r.u64(at: 48)
    }

    public var encoded: [UInt8] {
        var w = ByteWriter(count: Self.bytes)
        SanlockName.encode(name, into: &w, at: 0)
        w.put(offset, at: 48)
        return w.bytes
    }
}
