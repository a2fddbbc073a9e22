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

    static func dump(_ target: String) async throws {
        let (path, start, size) = try parseTarget(target)
        if start % (1 << 20) != 0 { print("WARNING: dump offset should be a multiple of 1048576 bytes.") }
        try await Devices.with(path) { device in
            let end = size.map { min(start + $0, device.sizeBytes) } ?? device.sizeBytes
            print(header)
            var at = start
            while at < end {
                let leader = try await LeaseAreas.readLeader(on: device, at: at)
                let geometry = leader.validKind == nil ? nil : try? LeaseGeometry.declared(by: leader, at: "\(path):\(at)")
                switch leader.validKind {
                case .delta?:
                    if let ls = try? await LeaseAreas.readLockspace(on: device, at: at, name: nil) {
                        for slot in ls.slots where slot.problem == nil && (!slot.leader.ownerID.isNone || slot.leader.ownerGeneration.rawValue != 0) {
                            print(row(at + UInt64(Int(slot.hostID.rawValue - 1) * ls.geometry.sectorSize.bytes), slot.leader))
                        }
                    }
                case .paxos?:
                    print(row(at, leader) + " \(leader.lver.rawValue)")
                    if let r = try? await LeaseAreas.readResource(on: device, at: at, lockspace: nil, name: nil) {
                        for d in r.dblocks where d.mode.isShared {
                            print(String(repeating: " ", count: 106) + "\(zeros(d.hostID.rawValue, 4)) \(zeros(d.mode.generation.rawValue, 4)) SH")
                        }
                    }
                case nil:
                    break
                }
                at += UInt64(geometry?.alignment.bytes ?? LeaseAreas.scanStep)
            }
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
