import ArgumentParser
import FoundationEssentials
import Glibc
import Dispatch
import TenureClient
import TenureCore
import TenureFormat
import TenureLaunch
import TenureSanlockWire
import TenureSyscall

/// The `tenure` binary run under the name `sanlock` (a link to it): sanlock's
/// command line, for the systemd units and scripts written for sanlock.
///
/// `sanlock daemon` runs Tenure's daemon serving sanlock's socket;
/// `sanlock client …` talks sanlock's protocol to it (or to sanlock's own
/// daemon) and prints what sanlock prints; `sanlock direct init` lays out
/// areas with Tenure's refusal to overwrite held leases. Exit status 0 on
/// success, 1 on failure, as sanlock's.
public enum SanlockCLI {
    /// Whether the process was started under sanlock's name.
    public static func invokedAsSanlock(_ argv0: String) -> Bool {
        argv0.split(separator: "/").last.map(String.init) == "sanlock"
    }

    public static let usage = """
        Usage: sanlock <command> <action> [options]   (Tenure, speaking sanlock's command line)

        sanlock daemon [-D] [-w 0|1] [-h 0|1] [-l 0|1] [-e NAME] [-o SECONDS] [-U USER] [-G GROUP]
            Tenure's daemon, serving sanlock's socket in $SANLOCK_RUN_DIR (default /run/sanlock)
            and Tenure's own. -D stays in the foreground, -w 0 runs without a watchdog,
            -h 0 without real-time priority, -l 0 without locked memory, -e names the host,
            -o sets the io_timeout. -U and -G are accepted for sanlock's units (the daemon
            runs as the user that starts it).

        sanlock client status [-D]                 the daemon, processes, lockspaces and leases
        sanlock client gets                        the lockspaces joined
        sanlock client host_status -s LS           the hosts of lockspace LS
        sanlock client renewal -s LS               the last renewals of LS: timestamp, read and write times
        sanlock client log_dump                    the daemon's recent log, debug lines included
        sanlock client set_config -s LS -u 0|1     mark LS used (rem_lockspace is refused) or unused
        sanlock client add_lockspace -s LS:ID:PATH:OFFSET [-o SECONDS]
        sanlock client inq_lockspace -s LS:ID:PATH:OFFSET
        sanlock client rem_lockspace -s LS:ID:PATH:OFFSET
        sanlock client acquire -r LS:NAME:PATH:OFFSET[:LVER] -p PID
        sanlock client release -r LS:NAME:PATH:OFFSET -p PID
        sanlock client inquire -p PID
        sanlock client command -r RESOURCE [-r …] -c PATH ARGS…   (acquire, then become the command)
        sanlock client request -r LS:NAME:PATH:OFFSET:LVER -f 0|1|2   (1 force: the holder is killed)
        sanlock client shutdown [-f 0|1]
        sanlock client version

        sanlock direct init -s LS:0:PATH:OFFSET | -r LS:NAME:PATH:OFFSET [-o SECONDS] [-n HOSTS] [-Z 512|4096] [-A 1M|2M|4M|8M]
            refuses to overwrite an area whose leases are held
        sanlock direct dump PATH[:OFFSET[:SIZE]]     every lease in sanlock's dump format
        sanlock direct read_leader -s LS:ID:PATH:OFFSET | -r LS:NAME:PATH:OFFSET
        sanlock direct acquire_id -s LS:ID:PATH:OFFSET [-o SECONDS] [-e NAME] | release_id -s LS:ID:PATH:OFFSET

        sanlock version | -V
        """

    /// Runs sanlock's command line `arguments` (without the program name); returns the exit status.
    public static func main(_ arguments: [String]) async -> Int32 {
        do {
            return try await run(arguments)
        } catch let error as TenureError {
            Terminal.printError(error)
            return 1
        } catch {
            Terminal.standardError("\(error)\n")
            return 1
        }
    }

    static func run(_ arguments: [String]) async throws -> Int32 {
        guard let type = arguments.first else {
            print(usage)
            return 1
        }
        switch type {
        case "-h", "--help", "help":
            print(usage)
            return 0
        case "-V", "version":
            print("sanlock \(SanlockCLI.sanlockVersion) (Tenure \(TenureVersion.string))")
            return 0
        case "daemon":
            return try await daemon(Options(Array(arguments.dropFirst())))
        case "client", "direct":
            guard arguments.count >= 2 else {
                throw TenureError(.invalidArgument, "sanlock \(type) needs an action.", remedy: "Run `sanlock help` for the actions.")
            }
            let options = try Options(Array(arguments.dropFirst(2)))
            return type == "client" ? try client(arguments[1], options) : try await direct(arguments[1], options)
        default:
            throw TenureError(.invalidArgument, "\(type) is not a sanlock command.", remedy: "Use daemon, client, direct or version (`sanlock help`).")
        }
    }

    static let sanlockVersion = "3.8.5"

    /// sanlock's short options: `-X VALUE` pairs, and `-D` alone.
    struct Options {
        var values: [Character: String] = [:]
        var debug = false
        /// Words that are not options (`direct dump PATH[:OFFSET[:SIZE]]`).
        var positional: [String] = []
        /// Every `-r` given (client command takes several).
        var resources: [String] = []
        /// What follows `-c`: the command and its arguments (client command).
        var command: [String] = []

        static let known: Set<Character> = ["s", "r", "o", "f", "w", "h", "l", "e", "U", "G", "n", "Z", "A", "Q", "R", "p", "u", "x", "z", "i", "g", "d", "O"]

        init(_ words: [String]) throws {
            var i = 0
            while i < words.count {
                let word = words[i]
                if !word.hasPrefix("-") {
                    positional.append(word)
                    i += 1
                    continue
                }
                guard word.count == 2, let letter = word.last else {
                    throw TenureError(.invalidArgument, "\(word) is not an option sanlock's command line takes here.", remedy: "Options are -X VALUE (`sanlock help`).")
                }
                if letter == "D" {
                    debug = true
                    i += 1
                    continue
                }
                if letter == "c" {
                    command = Array(words[(i + 1)...])
                    break
                }
                guard Self.known.contains(letter) else {
                    throw TenureError(.invalidArgument, "-\(letter) is not served by Tenure's sanlock command line.", remedy: "See `sanlock help` for the options it takes.")
                }
                guard i + 1 < words.count else { throw TenureError(.invalidArgument, "-\(letter) needs a value.") }
                values[letter] = words[i + 1]
                if letter == "r" { resources.append(words[i + 1]) }
                i += 2
            }
        }

        func required(_ letter: Character, _ what: String) throws -> String {
            guard let v = values[letter] else { throw TenureError(.invalidArgument, "This action needs -\(letter) \(what).") }
            return v
        }

        func number(_ letter: Character, in range: ClosedRange<Int>) throws -> Int? {
            guard let text = values[letter] else { return nil }
            guard let n = Int(text), range.contains(n) else {
                throw TenureError(.invalidArgument, "-\(letter) \(text) is not a number in \(range.lowerBound)...\(range.upperBound).")
            }
            return n
        }

        func flag(_ letter: Character) throws -> Bool? {
            try number(letter, in: 0...1).map { $0 == 1 }
        }
    }

    // MARK: daemon

    static func daemon(_ given: Options) async throws -> Int32 {
        let o = try SanlockConfig.apply(to: given)
        let runDir = ProcessInfo.processInfo.environment["SANLOCK_RUN_DIR"] ?? SanlockWire.defaultRunDir
        var args = ["daemon", "--sanlock-run-dir", runDir]
        if o.debug { args.append("--foreground") }
        if try o.flag("w") == false { args += ["--watchdog", "none"] }
        if let h = try o.flag("h") { args += ["--realtime", h ? "on" : "off"] }
        if let l = try o.number("l", in: -1...2) { args += ["--lock-memory", l == 0 ? "off" : "on"] }
        if let name = o.values["e"] { args += ["--host-name", name] }
        if let io = try o.number("o", in: 1...300) { args += ["--io-timeout", String(io)] }
        if let group = o.values["G"] { args += ["--socket-group", group] }
        if let fire = o.values["F"] { args += ["--watchdog-fire", fire] }
        if let grace = o.values["K"] { args += ["--kill-grace", grace] }
        for ignored in ["Q", "R", "U"] where o.values[Character(ignored)] != nil {
            Terminal.standardError("sanlock: -\(ignored) is accepted and has no effect under Tenure\n")
        }
        await TenureCommand.main(args)
        return 0
    }

    // MARK: client

    static func client(_ action: String, _ o: Options) throws -> Int32 {
        let runDir = ProcessInfo.processInfo.environment["SANLOCK_RUN_DIR"] ?? SanlockWire.defaultRunDir
        let connection = SanlockConnection(runDir: runDir)
        switch action {
        case "status":
            for record in try connection.stream(.status) { print(record.sanlockLine) }
        case "gets":
            // sanlock's lines: "s NAME:ID:PATH:OFFSET FLAGS" (a space even
            // without flags), and with -h 1 each host as "h ID gen G timestamp T STATE".
            let withHosts = try o.flag("h") ?? false
            let (header, payload) = try connection.call(.getLockspaces)
            for i in 0..<Int(header.data2) {
                let start = i * SanlockWire.lockspaceBytes
                let ls = try SanlockLockspace(decoding: payload[start..<(start + SanlockWire.lockspaceBytes)])
                let flags = (ls.flags & 0x1 != 0 ? "ADD " : "") + (ls.flags & 0x2 != 0 ? "REM " : "")
                print("s \(ls.name):\(ls.hostID):\(ls.disk.path):\(ls.disk.offset) \(flags)")
                guard withHosts else { continue }
                let (hostsHeader, hostsPayload) = try connection.call(.getHosts, payload: SanlockLockspace(named: ls.name).encoded)
                guard Int32(bitPattern: hostsHeader.data) == 0 else {
                    print("hosts error \(Int32(bitPattern: hostsHeader.data))")
                    continue
                }
                for j in 0..<Int(hostsHeader.data2) {
                    let at = j * SanlockWire.hostBytes
                    let host = SanlockHost(decoding: hostsPayload[at..<(at + SanlockWire.hostBytes)])
                    print("h \(host.hostID) gen \(host.generation) timestamp \(host.timestamp) \(host.stateName)")
                }
            }
        case "host_status":
            let name = try o.required("s", "LOCKSPACE")
            let lockspace = SanlockLockspace(named: name)
            for record in try connection.stream(.hostStatus, payload: lockspace.encoded, uncounted: true) where record.kind == .host {
                print("\(record.data32) timestamp \(record.data64)")
            }
        case "set_config":
            let name = try o.required("s", "LOCKSPACE")
            let command: UInt32
            if let orphans = try o.flag("O") {
                command = orphans ? SanlockFlags.configUsedByOrphans : SanlockFlags.configUnusedByOrphans
            } else if let used = try o.flag("u") {
                command = used ? SanlockFlags.configUsed : SanlockFlags.configUnused
            } else {
                throw TenureError(.invalidArgument, "client set_config needs -u 0|1 or -O 0|1.")
            }
            let lockspace = SanlockLockspace(named: name)
            let (header, _) = try connection.call(.setConfig, data: command, payload: lockspace.encoded)
            let result = Int32(bitPattern: header.data)
            print("set_config done \(result)")
            return result == 0 ? 0 : 1
        case "log_dump":
            let (header, payload) = try connection.call(.logDump)
            print(String(decoding: payload.prefix(Int(header.data)).prefix { $0 != 0 }, as: UTF8.self))
        case "renewal":
            let name = try o.required("s", "LOCKSPACE")
            let lockspace = SanlockLockspace(named: name)
            for record in try connection.stream(.renewal, payload: lockspace.encoded, uncounted: true) where record.kind == .renewal {
                print(record.text)
            }
        case "add_lockspace", "inq_lockspace", "rem_lockspace":
            let spec = try LockspaceSpec(parsing: try o.required("s", "LOCKSPACE:HOST_ID:PATH:OFFSET"))
            let lockspace = SanlockLockspace(spec)
            let command: SanlockCommand = action == "add_lockspace" ? .addLockspace : action == "inq_lockspace" ? .inqLockspace : .remLockspace
            let io = try o.number("o", in: 1...300).map(UInt32.init) ?? 0
            let (header, _) = try connection.call(command, data: command == .addLockspace ? io : 0, payload: lockspace.encoded)
            let result = Int32(bitPattern: header.data)
            print("\(action) done \(result)")
            return result == 0 ? 0 : 1
        case "acquire", "release":
            let pid = try o.number("p", in: 1...Int(Int32.max)) ?? 0
            guard pid > 0 else { throw TenureError(.invalidArgument, "client \(action) needs -p PID: the process the lease is for.") }
            let resource = try sanlockResource(try o.required("r", "LOCKSPACE:NAME:PATH:OFFSET"))
            let command: SanlockCommand = action == "acquire" ? .acquire : .release
            let payload = command == .acquire ? resource.encoded + [UInt8](repeating: 0, count: SanlockWire.optionsBytes)
                                              : Array(resource.encoded.prefix(SanlockWire.resourceBytes))
            let (header, _) = try connection.call(command, data: 1, data2: UInt32(pid), payload: payload)
            let result = Int32(bitPattern: header.data)
            print("\(action) done \(result)")
            return result == 0 ? 0 : 1
        case "command":
            return try holdAndExec(o, runDir: runDir)
        case let index where SanlockIndexCLI.clientActions.contains(index):
            return try SanlockIndexCLI.client(index, o, connection)
        case let area where SanlockClientAreas.actions.contains(area):
            return try SanlockClientAreas.run(area, o, connection)
        case "inquire":
            let pid = try o.number("p", in: 1...Int(Int32.max)) ?? 0
            guard pid > 0 else { throw TenureError(.invalidArgument, "client inquire needs -p PID.") }
            let (header, payload) = try connection.call(.inquire, data2: UInt32(pid))
            let result = Int32(bitPattern: header.data)
            if result == 0 { print(String(decoding: payload.prefix { $0 != 0 }, as: UTF8.self)) }
            print("inquire done \(result)")
            return result == 0 ? 0 : 1
        case "request":
            let resource = try sanlockResource(try o.required("r", "LOCKSPACE:NAME:PATH:OFFSET:LVER"))
            let mode = try o.number("f", in: 0...2) ?? 0
            let (header, _) = try connection.call(.request, data: UInt32(mode), payload: resource.encoded)
            let result = Int32(bitPattern: header.data)
            print("request done \(result)")
            return result == 0 ? 0 : 1
        case "shutdown":
            let force = try o.flag("f") ?? false
            let (header, _) = try connection.call(.shutdown, data: force ? 1 : 0)
            let result = Int32(bitPattern: header.data)
            print("shutdown done \(result)")
            return result == 0 ? 0 : 1
        case "version":
            let (header, _) = try connection.call(.version)
            let v = header.data2
            print("client version \(sanlockVersion)")
            print("daemon version \(v >> 24).\((v >> 16) & 0xFF).\((v >> 8) & 0xFF) (0x\(Format.padded(String(v, radix: 16), 8, with: "0")))")
        default:
            throw TenureError(.invalidArgument, "\(action) is not a sanlock client action Tenure serves.",
                              remedy: "Use status, gets, host_status, renewal, log_dump, set_config, set_event, add_lockspace, inq_lockspace, rem_lockspace, acquire, release, convert, inquire, request, examine, init, read, align, command, shutdown, version, or the resource index's format, rebuild, create, delete, lookup and update.")
        }
        return 0
    }

    /// `client command -r RES [-r RES…] -c PATH ARGS…`: registers, acquires
    /// the leases for this process, and becomes the command (exec, keeping
    /// the registration), so the daemon's fencing reaches the command itself.
    static func holdAndExec(_ o: Options, runDir: String) throws -> Int32 {
        guard !o.resources.isEmpty, !o.command.isEmpty else {
            throw TenureError(.invalidArgument, "client command needs -r RESOURCE (one or more) and -c PATH ARGS.")
        }
        let resources = try o.resources.map(sanlockResource)
        let connection = SanlockConnection(runDir: runDir)
        let fd = try connection.connect()
        try UnixSocket.sendAll(SanlockHeader(command: SanlockCommand.register.rawValue).encoded, to: fd, path: connection.path)
        let payload = resources.flatMap(\.encoded) + [UInt8](repeating: 0, count: SanlockWire.optionsBytes)
        let acquire = SanlockHeader(command: SanlockCommand.acquire.rawValue, length: UInt32(SanlockWire.headerBytes + payload.count),
                                    data: UInt32(resources.count), data2: SanlockWire.selfPid)
        try UnixSocket.sendAll(acquire.encoded + payload, to: fd, path: connection.path)
        let result = Int32(bitPattern: try SanlockHeader(decoding: try connection.read(SanlockWire.headerBytes, fd)).data)
        print("acquire done \(result)")
        guard result == 0 else { return 1 }
        try Client.becomeHolder(o.command, keeping: fd.rawValue)
    }

    /// A resource in sanlock's string form (`LS:NAME:PATH:OFFSET[:LVER|:SH]`).
    static func sanlockResource(_ text: String) throws -> SanlockResource {
        SanlockResource(try ResourceSpec(parsing: text))
    }

    // MARK: direct

    static func direct(_ action: String, _ o: Options) async throws -> Int32 {
        switch action {
        case "dump":
            guard let target = o.positional.first else {
                throw TenureError(.invalidArgument, "direct dump needs PATH[:OFFSET[:SIZE]].")
            }
            try await SanlockDump.dump(target, detail: try o.number("f", in: 0...2) ?? 0)
            return 0
        case "next_free":
            guard let target = o.positional.first else {
                throw TenureError(.invalidArgument, "direct next_free needs PATH[:OFFSET].")
            }
            try await SanlockDump.nextFree(target, sectorSize: try SanlockIndexCLI.sectorSize(o), alignment: try SanlockIndexCLI.alignment(o))
            return 0
        case "renew_id":
            return try await runTenure(["direct", "renew-id", "-s", try o.required("s", "LOCKSPACE:HOST_ID:PATH:OFFSET")])
        case "acquire", "release":
            // sanlock's -i and -g: the host id and generation to act as.
            var args = ["direct", action, "-r", try o.required("r", "LOCKSPACE:NAME:PATH:OFFSET"), "--host-id", try o.required("i", "HOST_ID")]
            if let g = o.values["g"] { args += ["--generation", g] }
            if action == "acquire" { args.append("--no-wait") }
            return try await runTenure(args)
        case "read_leader":
            try await SanlockDump.readLeader(lockspace: o.values["s"], resource: o.values["r"])
            return 0
        case "acquire_id", "release_id":
            var args = ["direct", action == "acquire_id" ? "acquire-id" : "release-id", "-s", try o.required("s", "LOCKSPACE:HOST_ID:PATH:OFFSET")]
            if action == "acquire_id" {
                if let io = o.values["o"] { args += ["--io-timeout", io] }
                if let name = o.values["e"] { args += ["--host-name", name] }
            }
            return try await runTenure(args)
        case let index where SanlockIndexCLI.directActions.contains(index):
            return try await SanlockIndexCLI.direct(index, o)
        default:
            break
        }
        guard action == "init" else {
            throw TenureError(.invalidArgument, "direct \(action) is not served by Tenure's sanlock command line yet.",
                              remedy: "Use `tenure direct --help` for Tenure's own tools (read, dump, format).")
        }
        var args = ["direct", "init"]
        if let s = o.values["s"] { args += ["-s", s] }
        if let r = o.values["r"] { args += ["-r", r] }
        if let io = o.values["o"] { args += ["--io-timeout", io] }
        if let n = o.values["n"] { args += ["--max-hosts", n] }
        if let z = o.values["Z"] { args += ["--sector-size", z] }
        if let a = o.values["A"] { args += ["--align", a] }
        return try await runTenure(args)
    }

    /// Runs one of Tenure's own commands in this process.
    static func runTenure(_ args: [String]) async throws -> Int32 {
        do {
            var command = try TenureCommand.parseAsRoot(args)
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
            return 0
        } catch {
            TenureCommand.exit(withError: error)
        }
    }
}

/// A client of sanlock's socket: one connection per request, as libsanlock's.
struct SanlockConnection {
    let runDir: String
    var path: String { runDir + "/" + SanlockWire.socketName }

    /// Sends one request and reads its reply: the header and what its length counts.
    func call(_ command: SanlockCommand, flags: UInt32 = 0, data: UInt32 = 0, data2: UInt32 = 0, payload: [UInt8] = []) throws -> (SanlockHeader, [UInt8]) {
        let fd = try connect()
        defer { try? Syscall.close(fd, path: path) }
        let header = SanlockHeader(command: command.rawValue, flags: flags, length: UInt32(SanlockWire.headerBytes + payload.count), data: data, data2: data2)
        try UnixSocket.sendAll(header.encoded + payload, to: fd, path: path)
        let reply = try SanlockHeader(decoding: try read(SanlockWire.headerBytes, fd))
        var rest = try read(reply.payloadBytes, fd)
        // sanlock's get_lockspaces may count only its header; the lockspaces follow.
        if command == .getLockspaces && reply.payloadBytes == 0 { rest = try read(Int(reply.data2) * SanlockWire.lockspaceBytes, fd) }
        // sanlock's log_dump counts only its header; `data` bytes of text follow.
        if command == .logDump && reply.payloadBytes == 0 { rest = try read(Int(reply.data), fd) }
        return (reply, rest)
    }

    /// A request answered by state records until the daemon closes.
    func stream(_ command: SanlockCommand, payload: [UInt8] = [], uncounted: Bool = false) throws -> [SanlockState] {
        let fd = try connect()
        defer { try? Syscall.close(fd, path: path) }
        let length = SanlockWire.headerBytes + (uncounted ? 0 : payload.count)
        try UnixSocket.sendAll(SanlockHeader(command: command.rawValue, length: UInt32(length)).encoded + payload, to: fd, path: path)
        let reply = try SanlockHeader(decoding: try read(SanlockWire.headerBytes, fd))
        let result = Int32(bitPattern: reply.data)
        guard result == 0 else {
            throw TenureError(.notFound, "The daemon answered \(command) with \(result).")
        }
        var bytes: [UInt8] = []
        while true {
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = try UnixSocket.receive(into: &chunk, at: 0, count: chunk.count, from: fd, path: path)
            if n == 0 { break }
            bytes += chunk[..<n]
        }
        return try SanlockState.decodeStream(bytes[...])
    }

    func connect() throws -> FileDescriptor {
        do {
            return try UnixSocket.connect(to: path)
        } catch {
            throw TenureError(.daemonUnavailable, "Cannot reach a sanlock daemon at \(path): \(error.message)",
                              remedy: "Start it (`sanlock daemon`), or point SANLOCK_RUN_DIR at its run dir.", errno: error.errno)
        }
    }

    func read(_ count: Int, _ fd: FileDescriptor) throws -> [UInt8] {
        try UnixSocket.receiveExactly(count, from: fd, path: path) ?? []
    }
}

extension SanlockState {
    /// The line `sanlock client status` prints for this record.
    var sanlockLine: String {
        switch kind {
        case .daemon:
            return "daemon \(name)"
        case .client:
            return "p \(data32) \(name)"
        case .lockspace:
            guard let ls = try? SanlockLockspace(decoding: trailer[...]) else { return "s \(name)" }
            return "s \(ls.name):\(ls.hostID):\(SanlockResource.escape(ls.disk.path)):\(ls.disk.offset)\(text.contains("list=add") ? " ADD" : "")"
        case .resource:
            guard let (r, _) = try? SanlockResource.decode(trailer[...], withDisks: true) else { return "r \(name)" }
            var parts = [r.lockspace, r.name]
            for d in r.disks { parts += [SanlockResource.escape(d.path), String(d.offset)] }
            return "r " + parts.joined(separator: ":") + (r.isShared ? ":SH p \(data32)" : ":\(data64) p \(data32)")
                + (text.contains("list=orphan") ? " ORPHAN" : "")
        case .host:
            return "\(data32) timestamp \(data64)"
        case .renewal:
            return text
        }
    }
}

/// sanlock's /etc/sanlock/sanlock.conf for `sanlock daemon`: the keys
/// Tenure acts on become options (the command line wins), the keys that
/// tune sanlock's own machinery are accepted and named as having no
/// effect, and any other key is refused with the nearest known one.
enum SanlockConfig {
    /// Where the file is; TENURE_SANLOCK_CONF points elsewhere (tests).
    static var path: String { ProcessInfo.processInfo.environment["TENURE_SANLOCK_CONF"] ?? "/etc/sanlock/sanlock.conf" }

    /// Keys Tenure acts on, and the short option each becomes (F and K are
    /// Tenure's own letters for --watchdog-fire and --kill-grace).
    static let served: [String: Character] = [
        "use-watchdog": "w", "high-priority": "h", "mlock-level": "l", "our-host-name": "e", "io-timeout": "o",
        "gname": "G", "watchdog-fire-timeout": "F", "kill-grace-seconds": "K",
    ]

    /// Keys of sanlock's own machinery: accepted, without effect.
    static let ignored: Set<String> = [
        "uname", "quiet-fail", "debug-renew", "logfile-priority", "logfile-use-utc", "syslog-priority", "names-log-priority",
        "sh-retries", "renewal-read-extend-sec", "paxos-debug-all", "debug-io", "max-sectors-kb", "debug-clients", "debug-cmd",
        "max-worker-threads", "use-aio", "write-init-io-timeout", "renewal-history-size",
    ]

    static func apply(to given: SanlockCLI.Options) throws -> SanlockCLI.Options {
        let file = try ConfigFile.load(path, required: false)
        var options = given
        for (key, value) in file.values.sorted(by: { $0.key < $1.key }) {
            if let letter = served[key] {
                if options.values[letter] == nil { options.values[letter] = value }
            } else if ignored.contains(key) {
                Terminal.standardError("sanlock: \(path): \(key.replacing("-", with: "_")) has no effect under Tenure\n")
            } else {
                let known = Array(served.keys) + Array(ignored)
                let nearest = Spelling.nearest(key, in: known.sorted()) ?? ""
                throw TenureError(.invalidArgument, "\(path): \(key.replacing("-", with: "_")) is not a sanlock setting.",
                                  remedy: "Did you mean \(nearest.replacing("-", with: "_"))?")
            }
        }
        return options
    }
}
