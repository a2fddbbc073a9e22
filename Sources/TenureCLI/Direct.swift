import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureCore
import TenureEngine
import TenureFormat

/// `tenure direct …`: work on lease areas straight on the device, with no
/// daemon. The syntax follows `sanlock direct`, so a sanlock user is at home.
struct Direct: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Lay out, read and dump lease areas directly on a device (no daemon).",
        discussion: """
        Lockspaces are written LOCKSPACE:HOST_ID:PATH:OFFSET and resources \
        LOCKSPACE:NAME:PATH:OFFSET[:LVER|:SH], as for sanlock. Escape ':' and ' ' \
        in paths with a backslash. Offsets are bytes (1M = 1048576 is accepted).

        Typical first steps on a new shared device:
          tenure direct format --lockspace LS --path /dev/mapper/leases --resources 16
          tenure direct dump /dev/mapper/leases
        """,
        subcommands: [Init.self, Format.self, Read.self, Dump.self, Probe.self, AcquireID.self, ReleaseID.self, RenewID.self, Acquire.self, Release.self, Request.self]
    )
}

// MARK: - init

extension Direct {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Initialise one lockspace or one resource lease area.",
            discussion: """
            -s writes a lockspace: a free delta lease in every host slot; the first \
            sector is written last, so a torn init never looks like a lockspace. \
            -r writes a free resource lease (lver 0).

            Refuses to overwrite an area whose leases are held (hosts joined, a \
            resource owned) unless --force is given: overwriting a live lease \
            breaks mutual exclusion for whoever holds it.

            Examples:
              tenure direct init -s LS:0:/var/lib/tenure/leases:0
              tenure direct init -r LS:vm1:/var/lib/tenure/leases:1M --max-hosts 64
            """
        )

        @Option(name: .customShort("s"), help: ArgumentHelp("Lockspace to initialise, NAME:0:PATH:OFFSET.", valueName: "LOCKSPACE"))
        var lockspace: String?

        @Option(name: .customShort("r"), help: ArgumentHelp("Resource to initialise, LOCKSPACE:NAME:PATH:OFFSET.", valueName: "RESOURCE"))
        var resource: String?

        @OptionGroup var layout: LayoutOptions

        @Flag(help: "Overwrite the area even if its leases look held.")
        var force = false

        func validate() throws {
            guard (lockspace == nil) != (resource == nil) else {
                throw ValidationError("Give exactly one of -s LOCKSPACE or -r RESOURCE.")
            }
        }

        func run() async throws {
            try await reportingErrors {
                if let lockspace { try await initLockspace(try LockspaceSpec(parsing: lockspace)) }
                if let resource { try await initResource(try ResourceSpec(parsing: resource)) }
            }
        }

        private func initLockspace(_ spec: LockspaceSpec) async throws {
            if let maxHosts = layout.maxHosts {
                throw TenureError(.invalidArgument, "--max-hosts \(maxHosts) applies to resource leases (-r); a lockspace has a slot for every host id its layout allows.",
                                  remedy: "Leave --max-hosts out with -s; to limit host ids, choose the layout (--sector-size, --align).")
            }
            let ioTimeout = try layout.parsedIOTimeout()
            try await Devices.with(spec.disk.path) { device in
                let geometry = try layout.geometry(for: device)
                try geometry.validate(areaOffset: spec.disk.offset, deviceSize: device.sizeBytes, path: device.path)
                try await refuseIfHeld(device, offset: spec.disk.offset, length: geometry.alignment.bytes, force: force)
                try await LeaseAreas.initialiseLockspace(on: device, at: spec.disk.offset, name: spec.name, geometry: geometry, ioTimeout: ioTimeout)
                print("Initialised lockspace \(spec.name) at \(spec.disk): \(geometry) layout, host ids 1...\(geometry.maxHosts), io_timeout \(ioTimeout.seconds)s.")
            }
        }

        private func initResource(_ spec: ResourceSpec) async throws {
            guard spec.lver == nil, !spec.shared else {
                throw TenureError(.invalidArgument, "init takes a resource without :LVER or :SH (got \"\(spec)\").",
                                  remedy: "Drop the suffix; a new lease starts at lver 0 and is taken shared or exclusive when acquired.")
            }
            for disk in spec.disks {
                try await Devices.with(disk.path) { device in
                    let geometry = try layout.geometry(for: device)
                    let numHosts = layout.numHosts(for: geometry)
                    try LeaseAreas.validate(numHosts: numHosts, geometry: geometry)
                    try geometry.validate(areaOffset: disk.offset, deviceSize: device.sizeBytes, path: device.path)
                    try await refuseIfHeld(device, offset: disk.offset, length: geometry.alignment.bytes, force: force)
                    try await LeaseAreas.initialiseResource(on: device, at: disk.offset, lockspace: spec.lockspace, name: spec.name,
                                                            geometry: geometry, numHosts: numHosts)
                    print("Initialised resource \(spec.name) of lockspace \(spec.lockspace) at \(disk): \(geometry) layout, \(numHosts) host slots.")
                }
            }
        }
    }
}

/// Refuses to overwrite held leases anywhere in the area, unless forced.
func refuseIfHeld(_ device: any BlockDevice, offset: UInt64, length: Int, force: Bool) async throws {
    guard force else {
        try await LeaseAreas.refuseToOverwriteHeld(
            on: device, at: offset, length: length,
            remedy: "Stop the hosts and processes using them (or wait for them to release), or pass --force if you are sure nobody does.")
        return
    }
    for h in try await LeaseAreas.occupants(on: device, at: offset, length: length) {
        Terminal.warn("overwriting a held lease (--force): \(h)")
    }
}

// MARK: - format

extension Direct {
    struct Format: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Lay out a lockspace and a set of resource leases on a device in one go.",
            discussion: """
            The lockspace goes at --offset (default 0) and resource i at \
            offset + (i + 1) × align. Prints the layout when done (--json for \
            scripts); shows progress on a terminal.

            Example, a local lease file for trying Tenure out:
              tenure direct format --lockspace demo --path /var/tmp/demo.leases --create 16M --resources 8
            """
        )

        @Option(help: ArgumentHelp("Lockspace name (at most 48 bytes).", valueName: "NAME"))
        var lockspace: String

        @Option(help: ArgumentHelp("File or block device to write.", valueName: "PATH"))
        var path: String

        @Option(parsing: .unconditional, help: ArgumentHelp("Number of resource leases, named R0, R1, …", valueName: "N"))
        var resources: Int?

        @Option(help: ArgumentHelp("Comma-separated resource names, instead of --resources.", valueName: "NAMES"))
        var names: String?

        @Option(help: ArgumentHelp("Byte offset of the lockspace (a multiple of align).", valueName: "OFFSET"))
        var offset: String = "0"

        @Option(help: ArgumentHelp("Create PATH as a regular file of this size if it does not exist (e.g. 64M).", valueName: "SIZE"))
        var create: String?

        @OptionGroup var layout: LayoutOptions

        @Flag(help: "Overwrite areas even if their leases look held.")
        var force = false

        @Flag(help: "Print the layout as JSON.")
        var json = false

        /// A sanity limit on one format run (the 8 GiB of 1M areas it would take is far past any real layout).
        static let maxResources = 8192

        func validate() throws {
            guard (resources == nil) != (names == nil) else {
                throw ValidationError("Give exactly one of --resources N or --names A,B,C.")
            }
        }

        func run() async throws {
            try await reportingErrors { try await format() }
        }

        private func resourceNames() throws -> [LeaseName] {
            let list: [String]
            if let names {
                list = names.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
            } else {
                let count = resources ?? 0
                guard (1...Self.maxResources).contains(count) else {
                    throw TenureError(.invalidArgument, "--resources \(count): format lays out 1...\(Self.maxResources) resource leases.",
                                      remedy: "Give --resources between 1 and \(Self.maxResources).")
                }
                list = (0..<count).map { "R\($0)" }
            }
            guard !list.isEmpty, list.count <= Self.maxResources else {
                throw TenureError(.invalidArgument, "Asked for \(list.count) resource leases; format lays out 1...\(Self.maxResources).",
                                  remedy: "Give --resources between 1 and \(Self.maxResources).")
            }
            let parsed = try list.map { name -> LeaseName in
                let n = try LeaseName(name, what: "resource name")
                guard !n.isEmpty else {
                    throw TenureError(.invalidArgument, "--names has an empty name in \"\(names ?? "")\".", remedy: "Separate names with single commas.")
                }
                return n
            }
            if let dup = Dictionary(grouping: parsed, by: { $0 }).first(where: { $0.value.count > 1 })?.key {
                throw TenureError(.invalidArgument, "The resource name \"\(dup)\" appears twice.", remedy: "Give each resource a distinct name.")
            }
            return parsed
        }

        private func format() async throws {
            let name = try LeaseName(lockspace, what: "lockspace name")
            guard !name.isEmpty else { throw TenureError(.invalidArgument, "--lockspace is empty.", remedy: "Name the lockspace.") }
            let names = try resourceNames()
            let ioTimeout = try layout.parsedIOTimeout()
            let base = try LeaseStringSyntax.offset(offset, in: "--offset \(offset)")
            try createIfAsked()
            try await Devices.with(path) { device in
                let geometry = try layout.geometry(for: device)
                let numHosts = layout.numHosts(for: geometry)
                try LeaseAreas.validate(numHosts: numHosts, geometry: geometry)
                let align = UInt64(geometry.alignment.bytes)
                let offsets = (0...names.count).map { base + UInt64($0) * align }
                // Check the whole layout before writing anything.
                for o in offsets { try geometry.validate(areaOffset: o, deviceSize: device.sizeBytes, path: device.path) }
                try await refuseIfHeld(device, offset: base, length: offsets.count * geometry.alignment.bytes, force: force)

                let progress = ProgressBar(total: offsets.count, label: "formatting")
                try await LeaseAreas.initialiseLockspace(on: device, at: base, name: name, geometry: geometry, ioTimeout: ioTimeout)
                progress.update(1)
                for (i, resource) in names.enumerated() {
                    try await LeaseAreas.initialiseResource(on: device, at: offsets[i + 1], lockspace: name, name: resource,
                                                            geometry: geometry, numHosts: numHosts)
                    progress.update(i + 2)
                }
                progress.finish()
                let summary = FormatSummary(
                    path: device.path, lockspace: name.description, lockspaceOffset: base,
                    sectorSize: geometry.sectorSize.bytes, align: geometry.alignment.bytes, maxHosts: geometry.maxHosts,
                    numHosts: numHosts, ioTimeout: ioTimeout.seconds,
                    resources: names.enumerated().map { FormatSummary.Area(name: $1.description, offset: offsets[$0 + 1]) })
                print(json ? Terminal.json(summary) : summary.text)
            }
        }

        private func createIfAsked() throws {
            guard let create else { return }
            guard let size = LeaseStringSyntax.parseSize(create), size > 0 else {
                throw TenureError(.invalidArgument, "--create \(create) is not a size.", remedy: "Write a size in bytes, e.g. 64M or 1G.")
            }
            guard !FileManager.default.fileExists(atPath: path) else { return }
            guard FileManager.default.createFile(atPath: path, contents: nil), truncate(path, off_t(size)) == 0 else {
                throw TenureError(.permissionDenied, "Could not create \(path) with \(size) bytes: \(String(cString: strerror(errno))).",
                                  remedy: "Check that the folder exists and is writable.", errno: errno)
            }
        }
    }
}

/// What `format` reports.
struct FormatSummary: Encodable {
    struct Area: Encodable {
        let name: String
        let offset: UInt64
    }
    let path: String
    let lockspace: String
    let lockspaceOffset: UInt64
    let sectorSize: Int
    let align: Int
    let maxHosts: Int
    let numHosts: Int
    let ioTimeout: Int
    let resources: [Area]

    var text: String {
        var lines = [
            "Formatted \(path): lockspace \(lockspace) and \(resources.count) resource lease\(resources.count == 1 ? "" : "s").",
            "Layout \(sectorSize)/\(align >> 20)M, host ids 1...\(maxHosts), \(numHosts) host slots per resource, io_timeout \(ioTimeout)s.",
            "",
        ]
        let rows = [["lockspace", lockspace, String(lockspaceOffset), "\(lockspace):HOST_ID:\(LeaseStringSyntax.escape(path)):\(lockspaceOffset)"]]
            + resources.map { ["resource", $0.name, String($0.offset), "\(lockspace):\($0.name):\(LeaseStringSyntax.escape(path)):\($0.offset)"] }
        lines.append(Terminal.table(["kind", "name", "offset", "string"], rows))
        return lines.joined(separator: "\n")
    }
}
