import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureEngine
import TenureFormat

/// Every field of a leader record, for `read` output.
struct LeaderView: Encodable {
    let magic: String
    let version: String
    let flags: String
    let sectorSize: UInt32
    let numHosts: UInt64
    let maxHosts: UInt64
    let ownerId: UInt64
    let ownerGeneration: UInt64
    let lver: UInt64
    let spaceName: String
    let resourceName: String
    let timestamp: UInt64
    let checksum: String
    let ioTimeout: UInt16
    let writeId: UInt64
    let writeGeneration: UInt64
    let writeTimestamp: UInt64

    init(_ l: LeaderRecord) {
        magic = hex(l.magic)
        version = hex(l.version)
        flags = hex(l.flags)
        sectorSize = l.sectorSize
        numHosts = l.numHosts
        maxHosts = l.maxHosts
        ownerId = l.ownerID.rawValue
        ownerGeneration = l.ownerGeneration.rawValue
        lver = l.lver.rawValue
        spaceName = l.spaceName.description
        resourceName = l.resourceName.description
        timestamp = l.timestamp.rawValue
        checksum = hex(l.checksum)
        ioTimeout = l.ioTimeout.rawValue
        writeId = l.writeID.rawValue
        writeGeneration = l.writeGeneration.rawValue
        writeTimestamp = l.writeTimestamp.rawValue
    }

    /// One "name value" line per field, in on-disk order (as `sanlock direct read_leader`).
    var text: String {
        [("magic", magic), ("version", version), ("flags", flags), ("sector_size", "\(sectorSize)"),
         ("num_hosts", "\(numHosts)"), ("max_hosts", "\(maxHosts)"), ("owner_id", "\(ownerId)"),
         ("owner_generation", "\(ownerGeneration)"), ("lver", "\(lver)"), ("space_name", spaceName),
         ("resource_name", resourceName), ("timestamp", "\(timestamp)"), ("checksum", checksum),
         ("io_timeout", "\(ioTimeout)"), ("write_id", "\(writeId)"), ("write_generation", "\(writeGeneration)"),
         ("write_timestamp", "\(writeTimestamp)")]
            .map { "\($0.0) \($0.1)" }.joined(separator: "\n")
    }
}

func hex<T: BinaryInteger>(_ v: T) -> String { "0x" + String(v, radix: 16) }

/// `read -s` output.
struct LockspaceView: Encodable {
    struct Host: Encodable {
        let hostId: UInt64
        let hostName: String
        let generation: UInt64
        let timestamp: UInt64
        let ioTimeout: UInt16
        let held: Bool
        let bitmap: [UInt64]
    }
    let kind = "lockspace"
    let name: String
    let path: String
    let offset: UInt64
    let sectorSize: Int
    let align: Int
    let maxHosts: Int
    let hosts: [Host]
    /// The delta lease of the host asked for, when one was.
    let leader: LeaderView?

    init(_ s: LockspaceSnapshot, host: HostID) {
        name = s.name.description
        path = s.disk.path
        offset = s.disk.offset
        sectorSize = s.geometry.sectorSize.bytes
        align = s.geometry.alignment.bytes
        maxHosts = s.geometry.maxHosts
        hosts = s.inUse.map {
            Host(hostId: $0.hostID.rawValue, hostName: $0.leader.resourceName.description,
                 generation: $0.leader.ownerGeneration.rawValue, timestamp: $0.leader.timestamp.rawValue,
                 ioTimeout: $0.leader.ioTimeout.rawValue, held: $0.isHeld, bitmap: $0.bitmap.members.map(\.rawValue))
        }
        leader = host.isNone ? nil : LeaderView(s.slots[Int(host.rawValue) - 1].leader)
    }

    var text: String {
        var out = "lockspace \(name) at \(path):\(offset), \(sectorSize)/\(align >> 20)M, host ids 1...\(maxHosts)\n"
        if hosts.isEmpty {
            out += "no host has joined"
        } else {
            out += Terminal.table(["host", "name", "generation", "timestamp", "io_timeout", "state", "bitmap"], hosts.map {
                ["\($0.hostId)", $0.hostName, "\($0.generation)", "\($0.timestamp)", "\($0.ioTimeout)",
                 $0.held ? "held" : "free", $0.bitmap.map(String.init).joined(separator: ",")]
            })
        }
        if let leader { out += "\n\n" + leader.text }
        return out
    }
}

/// `read -r` output.
struct ResourceView: Encodable {
    struct Dblock: Encodable {
        let hostId: UInt64
        let mbal: UInt64
        let bal: UInt64
        let inp: UInt64
        let inp2: UInt64
        let inp3: UInt64
        let lver: UInt64
        let released: Bool
        let valid: Bool
        let shared: Bool
        let sharedGeneration: UInt64
    }
    struct Request: Encodable {
        let valid: Bool
        let lver: UInt64
        let forceMode: UInt32
    }
    let kind = "resource"
    let path: String
    let offset: UInt64
    let state: String
    let leader: LeaderView
    let request: Request
    let dblocks: [Dblock]

    init(_ r: ResourceSnapshot) {
        path = r.disk.path
        offset = r.disk.offset
        let shared = r.sharedHolders.count
        state = r.isHeld ? "held by host \(r.leader.ownerID)" : (shared > 0 ? "shared by \(shared) host\(shared == 1 ? "" : "s")" : "free")
        leader = LeaderView(r.leader)
        request = Request(valid: r.request.isValid, lver: r.request.lver.rawValue, forceMode: r.request.forceModeRaw)
        dblocks = r.dblocks.filter(\.isInUse).map {
            Dblock(hostId: $0.hostID.rawValue, mbal: $0.dblock.mbal, bal: $0.dblock.bal, inp: $0.dblock.inp.rawValue,
                   inp2: $0.dblock.inp2.rawValue, inp3: $0.dblock.inp3.rawValue, lver: $0.dblock.lver.rawValue,
                   released: $0.dblock.isReleased, valid: $0.dblock.isValid, shared: $0.mode.isShared,
                   sharedGeneration: $0.mode.generation.rawValue)
        }
    }

    var text: String {
        var out = "resource \(leader.resourceName) of lockspace \(leader.spaceName) at \(path):\(offset): \(state), lver \(leader.lver)\n\n"
        out += leader.text + "\n\n"
        out += "request lver \(request.lver) force_mode \(request.forceMode)\(request.valid ? "" : " (no valid request record)")\n"
        if dblocks.isEmpty {
            out += "no dblock written"
        } else {
            out += "\n" + Terminal.table(["host", "mbal", "bal", "inp", "inp2", "inp3", "lver", "flags", "mode"], dblocks.map {
                ["\($0.hostId)", "\($0.mbal)", "\($0.bal)", "\($0.inp)", "\($0.inp2)", "\($0.inp3)", "\($0.lver)",
                 ($0.released ? "released" : "-") + ($0.valid ? "" : ",bad-checksum"),
                 $0.shared ? "shared(gen \($0.sharedGeneration))" : "-"]
            })
        }
        return out
    }
}

/// One row of `dump`.
struct DumpRow: Encodable {
    let offset: UInt64
    let kind: String
    let lockspace: String
    let resource: String
    let timestamp: UInt64
    let owner: UInt64
    let generation: UInt64
    let lver: UInt64?
    let note: String

    static let header = ["offset", "kind", "lockspace", "resource", "timestamp", "own", "gen", "lver", "note"]

    init(slot: HostSlot, areaOffset: UInt64, geometry: LeaseGeometry) {
        offset = areaOffset + UInt64(geometry.deltaLeaseOffset(of: slot.hostID))
        kind = "host"
        lockspace = slot.leader.spaceName.description
        resource = slot.leader.resourceName.description
        timestamp = slot.leader.timestamp.rawValue
        owner = slot.leader.ownerID.rawValue
        generation = slot.leader.ownerGeneration.rawValue
        lver = nil
        note = slot.isHeld ? "" : "released"
    }

    init(resource r: ResourceSnapshot, offset: UInt64) {
        self.offset = offset
        kind = "resource"
        lockspace = r.leader.spaceName.description
        resource = r.leader.resourceName.description
        timestamp = r.leader.timestamp.rawValue
        owner = r.leader.ownerID.rawValue
        generation = r.leader.ownerGeneration.rawValue
        lver = r.leader.lver.rawValue
        let shared = r.sharedHolders.map { "\($0.hostID)" }
        note = shared.isEmpty ? "" : "shared by \(shared.joined(separator: ","))"
    }

    init(leader: LeaderRecord, offset: UInt64, note: String) {
        self.offset = offset
        kind = leader.magic == Magic.deltaLease ? "host" : "resource"
        lockspace = leader.spaceName.description
        resource = leader.resourceName.description
        timestamp = leader.timestamp.rawValue
        owner = leader.ownerID.rawValue
        generation = leader.ownerGeneration.rawValue
        lver = leader.magic == Magic.paxosLease ? leader.lver.rawValue : nil
        self.note = note
    }

    var cells: [String] {
        [String(offset).leftPadded(8), kind, lockspace, resource, "\(timestamp)", "\(owner)", "\(generation)", lver.map(String.init) ?? "-", note]
    }
}

struct DumpView: Encodable {
    let path: String
    let leases: [DumpRow]
}

extension String {
    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: "0", count: width - count) + self }
}
