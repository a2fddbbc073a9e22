import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureEngine
import TenureFormat

// MARK: - read

extension Direct {
    struct Read: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a lockspace or resource lease as it is on disk.",
            discussion: """
            -s prints the lockspace's layout and every host slot in use; with a \
            host id other than 0, that host's delta lease in full. -r prints the \
            resource's leader, its request record and every dblock in use.

            Examples:
              tenure direct read -s LS:1:/var/lib/tenure/leases:0
              tenure direct read -r LS:vm1:/var/lib/tenure/leases:1M --json
            """
        )

        @Option(name: .customShort("s"), help: ArgumentHelp("Lockspace, NAME:HOST_ID:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String?

        @Option(name: .customShort("r"), help: ArgumentHelp("Resource, LOCKSPACE:NAME:PATH:OFFSET.", valueName: "RESOURCE"))
        var resource: String?

        @Flag(help: "Print JSON instead of text.")
        var json = false

        func validate() throws {
            guard (lockspace == nil) != (resource == nil) else {
                throw ValidationError("Give exactly one of -s LOCKSPACE or -r RESOURCE.")
            }
        }

        func run() async throws {
            try await reportingErrors {
                if let lockspace { try await readLockspace(try LockspaceSpec(parsing: lockspace)) }
                if let resource { try await readResource(try ResourceSpec(parsing: resource)) }
            }
        }

        private func readLockspace(_ spec: LockspaceSpec) async throws {
            try await Devices.with(spec.disk.path, access: .readOnly) { device in
                let snapshot = try await LeaseAreas.readLockspace(on: device, at: spec.disk.offset, name: spec.name)
                if !spec.hostID.isNone { try snapshot.geometry.validate(hostID: spec.hostID) }
                let view = LockspaceView(snapshot, host: spec.hostID)
                print(json ? Terminal.json(view) : view.text)
            }
        }

        private func readResource(_ spec: ResourceSpec) async throws {
            var views: [ResourceView] = []
            for disk in spec.disks {
                try await Devices.with(disk.path, access: .readOnly) { device in
                    let snapshot = try await LeaseAreas.readResource(on: device, at: disk.offset, lockspace: spec.lockspace, name: spec.name)
                    views.append(ResourceView(snapshot))
                }
            }
            if json {
                print(views.count == 1 ? Terminal.json(views[0]) : Terminal.json(views))
            } else {
                print(views.map(\.text).joined(separator: "\n\n"))
            }
        }
    }
}

// MARK: - dump

extension Direct {
    struct Dump: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List every lease found on a device, like `sanlock direct dump`.",
            discussion: """
            Scans PATH from OFFSET (default 0) for SIZE bytes (default: to the end), \
            one lease area at a time, and prints a row per host slot in use and per \
            resource lease.

            Example:
              tenure direct dump /var/lib/tenure/leases:0:64M
            """
        )

        @Argument(help: ArgumentHelp("What to scan: PATH[:OFFSET[:SIZE]].", valueName: "PATH[:OFFSET[:SIZE]]"))
        var target: String

        @Flag(help: "Print JSON instead of a table.")
        var json = false

        func run() async throws {
            try await reportingErrors { try await dump() }
        }

        private func dump() async throws {
            let fields = try LeaseStringSyntax.split(target)
            guard fields.count <= 3, !fields[0].isEmpty else {
                throw TenureError(.invalidArgument, "\"\(target)\" is not PATH[:OFFSET[:SIZE]].", remedy: "Escape ':' in the path with a backslash.")
            }
            let start = fields.count > 1 ? try LeaseStringSyntax.offset(fields[1], in: target) : 0
            let requested = fields.count > 2 ? try LeaseStringSyntax.offset(fields[2], in: target) : nil
            try await Devices.with(fields[0], access: .readOnly) { device in
                guard start % UInt64(device.sectorSize.bytes) == 0, start < device.sizeBytes else {
                    throw TenureError(.misaligned, "Offset \(start) is not a sector-aligned offset inside \(device.path) (\(device.sizeBytes) bytes).",
                                      remedy: "Use a multiple of \(device.sectorSize) below the device size.")
                }
                let end = min(device.sizeBytes, requested.map { start + $0 } ?? device.sizeBytes)
                let rows = try await scan(device, from: start, to: end)
                if json {
                    print(Terminal.json(DumpView(path: device.path, leases: rows)))
                } else {
                    print(Terminal.table(DumpRow.header, rows.map(\.cells)))
                }
            }
        }

        private func scan(_ device: any BlockDevice, from start: UInt64, to end: UInt64) async throws -> [DumpRow] {
            var rows: [DumpRow] = []
            var at = start
            let progress = ProgressBar(total: Int((end - start) >> 20), label: "scanning", enabled: Terminal.stderrIsTerminal && end - start > 256 << 20)
            while at < end {
                let leader = try await LeaseAreas.readLeader(on: device, at: at)
                var step = UInt64(LeaseAreas.scanStep)
                switch leader.validKind {
                case .delta?:
                    if let ls = try? await LeaseAreas.readLockspace(on: device, at: at, name: nil) {
                        rows += ls.inUse.map { DumpRow(slot: $0, areaOffset: at, geometry: ls.geometry) }
                        step = UInt64(ls.geometry.alignment.bytes)
                    } else {
                        rows.append(DumpRow(leader: leader, offset: at, note: "lockspace area does not fit the device"))
                    }
                case .paxos?:
                    if let r = try? await LeaseAreas.readResource(on: device, at: at, lockspace: nil, name: nil) {
                        rows.append(DumpRow(resource: r, offset: at))
                        step = UInt64(r.geometry.alignment.bytes)
                    } else {
                        rows.append(DumpRow(leader: leader, offset: at, note: "resource area does not fit the device"))
                    }
                case nil:
                    if leader.magic == Magic.deltaLease || leader.magic == Magic.paxosLease {
                        rows.append(DumpRow(leader: leader, offset: at, note: "damaged: bad checksum or version"))
                    }
                }
                at += step
                progress.update(Int((at - start) >> 20))
            }
            progress.finish()
            return rows
        }
    }
}
