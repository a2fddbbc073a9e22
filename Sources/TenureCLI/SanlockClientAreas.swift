import TenureCore
import TenureFormat
import TenureSanlockWire

/// The `sanlock client` actions that lay out and read lease areas and act
/// on leases and hosts through the daemon: init, read, align, convert,
/// examine and set_event. Each prints sanlock's `… done RESULT` line.
enum SanlockClientAreas {
    static let actions: Set<String> = ["init", "read", "align", "convert", "examine", "set_event"]

    static func run(_ action: String, _ o: SanlockCLI.Options, _ connection: SanlockConnection) throws -> Int32 {
        let result: Int32
        switch action {
        case "init":
            result = try initialise(o, connection)
        case "read":
            result = try read(o, connection)
        case "align":
            let ls = try lockspace(o)
            let (header, _) = try connection.call(.align, payload: ls.disk.encoded)
            result = Int32(bitPattern: header.data)
            print("align done \(result)")
            return result > 0 ? 0 : 1
        case "convert":
            let pid = try o.number("p", in: 1...Int(Int32.max)) ?? 0
            guard pid > 0 else { throw TenureError(.invalidArgument, "client convert needs -p PID.") }
            let resource = try SanlockCLI.sanlockResource(try o.required("r", "LOCKSPACE:NAME:PATH:OFFSET[:SH]"))
            let (header, _) = try connection.call(.convert, data2: UInt32(pid), payload: Array(resource.encoded.prefix(SanlockWire.resourceBytes)))
            result = Int32(bitPattern: header.data)
            print("convert done \(result)")
        case "examine":
            let (header, _) = o.values["s"] != nil
                ? try connection.call(.examineLockspace, payload: try lockspace(o).encoded)
                : try connection.call(.examineResource, payload: Array(try resource(o).encoded.prefix(SanlockWire.resourceBytes)))
            result = Int32(bitPattern: header.data)
            print("examine done \(result)")
        default:
            result = try setEvent(o, connection)
        }
        return result == 0 ? 0 : 1
    }

    /// -s LOCKSPACE (host id 0 allowed) with -Z/-A as its flags.
    static func lockspace(_ o: SanlockCLI.Options) throws -> SanlockLockspace {
        var ls = SanlockLockspace(try LockspaceSpec(parsing: try o.required("s", "LOCKSPACE:HOST_ID:PATH:OFFSET")))
        ls.flags |= try layoutFlags(o)
        return ls
    }

    static func resource(_ o: SanlockCLI.Options) throws -> SanlockResource {
        var r = try SanlockCLI.sanlockResource(try o.required("r", "LOCKSPACE:NAME:PATH:OFFSET"))
        r.flags |= try layoutFlags(o)
        return r
    }

    /// -Z and -A as SANLK_LSF_/SANLK_RES_ flags (the same bits).
    static func layoutFlags(_ o: SanlockCLI.Options) throws -> UInt32 {
        var flags: UInt32 = 0
        if let sector = try SanlockIndexCLI.sectorSize(o) { flags |= sector == .bytes512 ? SanlockFlags.sector512 : SanlockFlags.sector4K }
        if let alignment = try SanlockIndexCLI.alignment(o) { flags |= LeaderFlags.alignFlag(for: alignment) }
        return flags
    }

    /// `client init -s LOCKSPACE | -r RESOURCE [-n MAX_HOSTS] [-o IO_TIMEOUT] [-Z -A]`: laid out by the daemon.
    static func initialise(_ o: SanlockCLI.Options, _ connection: SanlockConnection) throws -> Int32 {
        let maxHosts = UInt32(try o.number("n", in: 0...LeaseGeometry.absoluteMaxHosts) ?? 0)
        let header: SanlockHeader
        if o.values["s"] != nil {
            let io = UInt32(try o.number("o", in: 0...300) ?? 0)
            (header, _) = try connection.call(.writeLockspace, data: maxHosts, data2: io, payload: try lockspace(o).encoded)
        } else {
            (header, _) = try connection.call(.writeResource, data: maxHosts, data2: 0, payload: try resource(o).encoded)
        }
        let result = Int32(bitPattern: header.data)
        print("init done \(result)")
        return result
    }

    /// `client read -s LOCKSPACE | -r RESOURCE`: what the area says, as sanlock prints it.
    static func read(_ o: SanlockCLI.Options, _ connection: SanlockConnection) throws -> Int32 {
        if o.values["s"] != nil {
            let asked = try lockspace(o)
            let (header, payload) = try connection.call(.readLockspace, payload: asked.encoded)
            let result = Int32(bitPattern: header.data)
            guard result == 0, payload.count == SanlockWire.lockspaceBytes else {
                print("read error \(result)")
                return result == 0 ? -1 : result
            }
            let found = try SanlockLockspace(decoding: payload[...])
            print("s \(found.name):\(asked.hostID):\(asked.disk.path):\(asked.disk.offset)")
            if o.debug { print("io_timeout \(header.data2)") }
            return 0
        }
        let (header, payload) = try connection.call(.readResource, payload: try resource(o).encoded)
        let result = Int32(bitPattern: header.data)
        guard result == 0, payload.count >= SanlockWire.resourceBytes else {
            print("read error \(result)")
            return result == 0 ? -1 : result
        }
        var found = try SanlockResource.decode(payload[...], withDisks: false).0
        found.disks = try resource(o).disks
        print("r \(found.stateString)")
        return 0
    }

    /// `client set_event -s LOCKSPACE -i HOST_ID [-g GENERATION] -e EVENT -d DATA`.
    static func setEvent(_ o: SanlockCLI.Options, _ connection: SanlockConnection) throws -> Int32 {
        let name = try o.required("s", "LOCKSPACE")
        func number(_ letter: Character, _ what: String) throws -> UInt64 {
            let text = try o.required(letter, what)
            guard let n = text.hasPrefix("0x") ? UInt64(text.dropFirst(2), radix: 16) : UInt64(text) else {
                throw TenureError(.invalidArgument, "-\(letter) \(text) is not a number.")
            }
            return n
        }
        let event = SanlockHostEvent(hostID: try number("i", "HOST_ID"), generation: o.values["g"] == nil ? 0 : try number("g", "GENERATION"),
                                     event: try number("e", "EVENT"), data: o.values["d"] == nil ? 0 : try number("d", "DATA"))
        let (header, _) = try connection.call(.setEvent, payload: SanlockLockspace(named: name).encoded + event.encoded)
        let result = Int32(bitPattern: header.data)
        print("set_event done \(result)")
        return result
    }
}
