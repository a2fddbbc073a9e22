import TenureCore
import TenureEngine
import TenureFormat
import TenureIO
import TenureSanlockWire

/// sanlock's resource index on its command line: `client format|rebuild|
/// create|delete|lookup|update -x RINDEX [-e NAME[:OFFSET]]` through the
/// daemon, and `direct format|rebuild|lookup|update` on the disk without
/// one (no lockspace, no lease: the caller makes sure no one else changes
/// the index meanwhile). Each prints what sanlock's prints.
enum SanlockIndexCLI {
    static let clientActions: Set<String> = ["format", "rebuild", "create", "delete", "lookup", "update"]
    static let directActions: Set<String> = ["format", "rebuild", "lookup", "update"]

    /// `-x LOCKSPACE:PATH:OFFSET` (`\:` escapes a colon in the path; an M
    /// suffix counts mebibytes), with -Z and -A for format.
    static func index(_ o: SanlockCLI.Options) throws -> SanlockRindex {
        let text = try o.required("x", "LOCKSPACE:PATH:OFFSET (the resource index)")
        let parts = try LeaseStringSyntax.split(text)
        guard parts.count == 3, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw TenureError(.invalidArgument, "-x \(text) is not LOCKSPACE:PATH:OFFSET.", remedy: "For example -x ls1:/dev/sdb:1M.")
        }
        var flags: UInt32 = 0
        if let sector = try sectorSize(o) { flags |= sector == .bytes512 ? SanlockFlags.sector512 : SanlockFlags.sector4K }
        if let alignment = try alignment(o) { flags |= LeaderFlags.alignFlag(for: alignment) }
        return SanlockRindex(flags: flags, lockspace: parts[0], disk: SanlockDisk(path: parts[1], offset: try bytes(parts[2], in: text)))
    }

    /// -Z 512|4096.
    static func sectorSize(_ o: SanlockCLI.Options) throws -> SectorSize? {
        guard let z = o.values["Z"] else { return nil }
        guard let sector = SectorSize(parsing: z) else { throw TenureError(.invalidArgument, "-Z \(z) is not 512 or 4096.") }
        return sector
    }

    /// -A 1M|2M|4M|8M.
    static func alignment(_ o: SanlockCLI.Options) throws -> Alignment? {
        guard let a = o.values["A"] else { return nil }
        guard let alignment = Alignment(parsing: a) else { throw TenureError(.invalidArgument, "-A \(a) is not 1M, 2M, 4M or 8M.") }
        return alignment
    }

    /// `-e NAME[:OFFSET]` or `-e :OFFSET`; no -e is neither.
    static func entry(_ o: SanlockCLI.Options) throws -> SanlockRentry {
        guard let text = o.values["e"] else { return SanlockRentry() }
        guard let colon = text.firstIndex(of: ":") else { return SanlockRentry(name: try checkedName(text)) }
        return SanlockRentry(name: try checkedName(String(text[..<colon])), offset: try bytes(String(text[text.index(after: colon)...]), in: text))
    }

    static func checkedName(_ text: String) throws -> String {
        _ = try LeaseName(text, what: "resource name")
        return text
    }

    static func bytes(_ s: String, in text: String) throws -> UInt64 {
        let mib = s.hasSuffix("M")
        guard let n = UInt64(mib ? String(s.dropLast()) : s), !mib || n <= UInt64.max >> 20 else {
            throw TenureError(.invalidArgument, "\(s) in \(text) is not an offset (bytes, or NM for mebibytes).")
        }
        return mib ? n << 20 : n
    }

    /// update: -z 1 removes the entry, -z 0 (or none) adds it.
    static func updateFlags(_ o: SanlockCLI.Options) throws -> UInt32 {
        try o.flag("z") == true ? SanlockFlags.indexUpdateRemove : SanlockFlags.indexUpdateAdd
    }

    // MARK: client

    static func client(_ action: String, _ o: SanlockCLI.Options, _ connection: SanlockConnection) throws -> Int32 {
        let rx = try index(o)
        let result: Int32
        switch action {
        case "format", "rebuild":
            let (header, _) = try connection.call(action == "format" ? .formatRindex : .rebuildRindex, payload: rx.encoded)
            result = Int32(bitPattern: header.data)
            print("\(action) done \(result)")
        default:
            let command: SanlockCommand = ["create": .createResource, "delete": .deleteResource, "lookup": .lookupRindex][action] ?? .updateRindex
            let flags = command == .updateRindex ? try updateFlags(o) : 0
            let (header, payload) = try connection.call(command, flags: flags, payload: rx.encoded + (try entry(o)).encoded)
            result = Int32(bitPattern: header.data)
            let found = payload.count == SanlockRentry.bytes ? try SanlockRentry(decoding: payload[...]) : SanlockRentry()
            print("\(["create": "create_resource", "delete": "delete_resource"][action] ?? action) done \(result)")
            if result == 0 && action == "create" { print("offset \(found.offset)") }
            if result == 0 && action == "lookup" { print("name \(found.name.isEmpty ? "-" : found.name) offset \(found.offset)") }
        }
        return result == 0 ? 0 : 1
    }

    // MARK: direct

    static func direct(_ action: String, _ o: SanlockCLI.Options) async throws -> Int32 {
        let rx = try index(o)
        let lockspace = try LeaseName(rx.lockspace, what: "lockspace name")
        return try await Devices.with(rx.disk.path, access: action == "lookup" ? .readOnly : .readWrite) { device in
            switch action {
            case "format":
                let sector: SectorSize? = rx.flags & SanlockFlags.sector4K != 0 ? .bytes4096 : rx.flags & SanlockFlags.sector512 != 0 ? .bytes512 : nil
                let geometry = try LeaseAreas.geometry(sectorSize: sector, alignment: LeaderFlags.alignment(in: rx.flags), device: device)
                _ = try await ResourceIndexArea.format(on: device, at: rx.disk.offset, lockspace: lockspace, geometry: geometry, maxResources: nil)
                print("format done 0")
            case "rebuild":
                let layout = ResourceIndexLayout(try await ResourceIndexArea.readHeader(on: device, at: rx.disk.offset, lockspace: lockspace))
                let area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let found = try await ResourceIndexArea.leasesFound(on: device, layout)
                try await ResourceIndexArea.writeArea(ResourceIndexArea.rebuilt(area, found: found, layout), on: device, layout.header)
                print("rebuild done 0")
            case "lookup":
                let asked = try entry(o)
                let layout = ResourceIndexLayout(try await ResourceIndexArea.readHeader(on: device, at: rx.disk.offset, lockspace: lockspace))
                let entries = layout.entries(in: try await ResourceIndexArea.readArea(on: device, layout.header))
                let (found, matches) = try ResourceIndexArea.lookup(name: try LeaseName(asked.name), offset: asked.offset, in: entries, layout)
                print("lookup done \(matches ? 0 : SanlockResult.rindexDiff)")
                guard matches else { return 1 }
                print("name \(found.name.isEmpty ? "-" : found.name.description) offset \(found.resourceOffset)")
            default:
                let asked = try entry(o)
                let remove = try updateFlags(o) == SanlockFlags.indexUpdateRemove
                guard asked.offset != 0, remove || !asked.name.isEmpty else {
                    throw TenureError(.invalidArgument, "direct update needs -e NAME:OFFSET (or -e :OFFSET with -z 1).")
                }
                let layout = ResourceIndexLayout(try await ResourceIndexArea.readHeader(on: device, at: rx.disk.offset, lockspace: lockspace))
                var area = try await ResourceIndexArea.readArea(on: device, layout.header)
                let i = try layout.entry(forResourceAt: asked.offset)
                let written = remove ? ResourceIndexEntry.free : ResourceIndexEntry(resourceOffset: asked.offset, name: try LeaseName(asked.name))
                try await ResourceIndexArea.write(written, asEntry: i, of: &area, layout, on: device)
                print("update done 0")
            }
            return 0
        }
    }
}
