import TenureCore
import TenureEngine
import TenureFormat
import TenureIO

/// `sanlock direct dump` and `direct read_leader`, printing exactly what
/// sanlock prints, for the scripts that parse it.
enum SanlockDump {
    /// `PATH[:OFFSET[:SIZE]]`, offsets and sizes in bytes or with an M suffix.
    static func parseTarget(_ text: String) throws -> (path: String, offset: UInt64, size: UInt64?) {
        let parts = try LeaseStringSyntax.split(text)
        func bytes(_ s: String) throws -> UInt64 {
            let mib = s.hasSuffix("M")
            guard let n = UInt64(mib ? String(s.dropLast()) : s) else {
                throw TenureError(.invalidArgument, "\(s) in \(text) is not a byte count (N, or NM for mebibytes).")
            }
            return mib ? n << 20 : n
        }
        guard let path = parts.first, !path.isEmpty, parts.count <= 3 else {
            throw TenureError(.invalidArgument, "direct dump takes PATH[:OFFSET[:SIZE]], not \(text).")
        }
        return (path, parts.count > 1 ? try bytes(parts[1]) : 0, parts.count > 2 ? try bytes(parts[2]) : nil)
    }

    static func right(_ text: String, _ width: Int) -> String {
        text.count >= width ? text : String(repeating: " ", count: width - text.count) + text
    }

    static func zeros(_ value: UInt64, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }

    static let header = "  offset \(right("lockspace", 36)) \(right("resource", 48)) \(right("timestamp", 10))  own  gen lver"

    static func row(_ offset: UInt64, _ leader: LeaderRecord) -> String {
        "\(zeros(offset, 8)) \(right(leader.spaceName.description, 36)) \(right(leader.resourceName.description, 48)) "
            + "\(zeros(leader.timestamp.rawValue, 10)) \(zeros(leader.ownerID.rawValue, 4)) \(zeros(leader.ownerGeneration.rawValue, 4))"
    }

    /// `direct dump PATH[:OFFSET[:SIZE]] [-f 1|2]`: every lease area's
    /// leader, as sanlock prints it. `detail` (sanlock's -f) adds each
    /// host's bitmap, each resource's request record and the index's
    /// entries; 2 adds the dblocks in use.
    static func dump(_ target: String, detail: Int = 0) async throws {
        let (path, start, size) = try parseTarget(target)
        if start % (1 << 20) != 0 { print("WARNING: dump offset should be a multiple of 1048576 bytes.") }
        try await Devices.with(path) { device in
            let end = size.map { min(start + $0, device.sizeBytes) } ?? device.sizeBytes
            print(header + (detail > 0 ? "/req/mode" : ""))
            var at = start
            while at < end {
                let leader = try await LeaseAreas.readLeader(on: device, at: at)
                let geometry = leader.validKind == nil ? nil : try? LeaseGeometry.declared(by: leader, at: "\(path):\(at)")
                var step = geometry?.alignment.bytes
                switch leader.validKind {
                case .delta?:
                    try await dumpLockspace(device, at: at, detail: detail)
                case .paxos?:
                    try await dumpResource(device, at: at, leader: leader, detail: detail)
                case nil:
                    if let index = try? await ResourceIndexArea.readHeader(on: device, at: at, lockspace: nil) {
                        try await dumpIndex(device, index, detail: detail)
                        step = index.geometry.alignment.bytes
                    }
                }
                at += UInt64(step ?? LeaseAreas.scanStep)
            }
        }
    }

    static func dumpLockspace(_ device: any BlockDevice, at offset: UInt64, detail: Int) async throws {
        guard let ls = try? await LeaseAreas.readLockspace(on: device, at: offset, name: nil) else { return }
        for slot in ls.slots where slot.problem == nil && (!slot.leader.ownerID.isNone || slot.leader.ownerGeneration.rawValue != 0) {
            let bits = detail > 0 ? slot.bitmap.members.filter { $0.rawValue <= UInt64(ls.geometry.maxHosts) }.map { " \($0.rawValue)" }.joined() : ""
            print(row(offset + UInt64(Int(slot.hostID.rawValue - 1) * ls.geometry.sectorSize.bytes), slot.leader) + bits)
        }
    }

    static func dumpResource(_ device: any BlockDevice, at offset: UInt64, leader: LeaderRecord, detail: Int) async throws {
        let r = try? await LeaseAreas.readResource(on: device, at: offset, lockspace: nil, name: nil)
        let request = detail > 0 ? r.map { "/\($0.request.lver.rawValue)/\($0.request.forceModeRaw)" } ?? "/0/0" : ""
        print(row(offset, leader) + " \(leader.lver.rawValue)" + request)
        for d in r?.dblocks ?? [] {
            let b = d.dblock
            if detail > 1, b.mbal != 0 || !b.inp.isNone || b.lver != .zero {
                print("dblock[\(zeros(d.hostID.rawValue - 1, 4))] mbal \(b.mbal) bal \(b.bal) inp \(b.inp.rawValue) inp2 \(b.inp2.rawValue) "
                      + "inp3 \(b.inp3.rawValue) lver \(b.lver.rawValue) sum \(String(b.checksum, radix: 16))")
            }
            if d.mode.isShared {
                print(String(repeating: " ", count: 106) + "\(zeros(d.hostID.rawValue, 4)) \(zeros(d.mode.generation.rawValue, 4)) SH")
            }
        }
    }

    /// A resource index: its header, and with detail its entries in use.
    static func dumpIndex(_ device: any BlockDevice, _ header: ResourceIndexHeader, detail: Int) async throws {
        let flags = ResourceIndexHeader.alignFlag(header.geometry.alignment)
        print("\(zeros(header.offset, 8)) \(right(header.lockspace.description, 36)) rindex_header 0x\(String(flags, radix: 16)) "
              + "\(header.geometry.sectorSize.bytes) \(header.maxResources) \(header.offset)")
        guard detail > 0 else { return }
        let layout = ResourceIndexLayout(header)
        let area = try await ResourceIndexArea.readArea(on: device, header)
        // Every entry the area holds, as sanlock reads it: past max_resources too.
        let capacity = (area.count - layout.entryOffset(0)) / ResourceIndexEntry.encodedBytes
        for i in 0..<capacity {
            let at = layout.entryOffset(i)
            let entry = ResourceIndexEntry(decoding: area[at..<(at + ResourceIndexEntry.encodedBytes)])
            guard !entry.isFree else { continue }
            print("\(zeros(header.offset + UInt64(at), 8)) \(right(header.lockspace.description, 36)) rentry \(entry.name) \(entry.resourceOffset)")
        }
    }

    /// `direct next_free PATH[:OFFSET]`: the first area after OFFSET (as an
    /// offset from it) that holds no lockspace, resource or index, in steps
    /// of the areas' size (-A/-Z, else what the area at OFFSET declares).
    static func nextFree(_ target: String, sectorSize: SectorSize?, alignment: Alignment?) async throws {
        let (path, start, _) = try parseTarget(target)
        try await Devices.with(path, access: .readOnly) { device in
            var step = alignment?.bytes
            if step == nil {
                let leader = try await LeaseAreas.readLeader(on: device, at: start)
                if leader.validKind != nil {
                    step = try LeaseGeometry.declared(by: leader, at: "\(path):\(start)").alignment.bytes
                } else if let index = try? await ResourceIndexArea.readHeader(on: device, at: start, lockspace: nil) {
                    step = index.geometry.alignment.bytes
                }
            }
            guard let step else {
                throw TenureError(.invalidGeometry, "No lease area at \(path):\(start) to take the area size from.", remedy: "Give it with -A 1M|2M|4M|8M (and -Z).")
            }
            var at = start
            while at + UInt64(device.sectorSize.bytes) <= device.sizeBytes {
                let magic = ByteReader(try await device.read(at: at, length: device.sectorSize.bytes)).u32(at: 0)
                if ![Magic.deltaLease, Magic.paxosLease, Magic.resourceIndex].contains(magic) {
                    print(at - start)
                    return
                }
                at += UInt64(step)
            }
            throw TenureError(.outOfBounds, "Every area from \(path):\(start) to its end holds a lease.", remedy: "Grow the device, or free an area.")
        }
    }

    static func readLeader(lockspace: String?, resource: String?) async throws {
        let offset: UInt64, path: String, isLockspace: Bool
        if let lockspace {
            let spec = try LockspaceSpec(parsing: lockspace)
            path = spec.disk.path
            isLockspace = true
            offset = spec.disk.offset
            try await Devices.with(path) { device in
                let first = try await LeaseAreas.readLeader(on: device, at: offset)
                let sector = UInt64(first.sectorSize == 0 ? UInt32(device.sectorSize.bytes) : first.sectorSize)
                let slot = offset + (spec.hostID.isNone ? 0 : (spec.hostID.rawValue - 1) * sector)
                printLeader(try await LeaseAreas.readLeader(on: device, at: slot), isLockspace: isLockspace)
            }
        } else if let resource {
            let spec = try ResourceSpec(parsing: resource)
            path = spec.disks[0].path
            offset = spec.disks[0].offset
            try await Devices.with(path) { device in
                printLeader(try await LeaseAreas.readLeader(on: device, at: offset), isLockspace: false)
            }
        } else {
            throw TenureError(.invalidArgument, "direct read_leader needs -s LOCKSPACE or -r RESOURCE.")
        }
    }

    static func printLeader(_ l: LeaderRecord, isLockspace: Bool) {
        print("read_leader done 0")
        print("magic 0x\(String(l.magic, radix: 16))")
        print("version 0x\(String(l.version, radix: 16))")
        print("flags 0x\(String(l.flags, radix: 16))")
        print("sector_size \(l.sectorSize)")
        print("num_hosts \(l.numHosts)")
        print("max_hosts \(l.maxHosts)")
        print("owner_id \(l.ownerID.rawValue)")
        print("owner_generation \(l.ownerGeneration.rawValue)")
        print("lver \(l.lver.rawValue)")
        print("space_name \(l.spaceName)")
        print("resource_name \(l.resourceName)")
        print("timestamp \(l.timestamp.rawValue)")
        print("checksum 0x\(String(l.checksum, radix: 16))")
        print("io_timeout \(l.ioTimeout.seconds)")
        let names = isLockspace ? ["extra1", "extra2", "extra3"] : ["write_id", "write_generation", "write_timestamp"]
        print("\(names[0]) \(l.writeID.rawValue)")
        print("\(names[1]) \(l.writeGeneration.rawValue)")
        print("\(names[2]) \(l.writeTimestamp.rawValue)")
    }
}
