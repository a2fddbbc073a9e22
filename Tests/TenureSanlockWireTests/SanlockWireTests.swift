import Foundation
import Testing
import TenureTestSupport
import TenureCore
@testable import TenureSanlockWire

/// sanlock's client protocol: the codec against sanlock's own installed
/// headers (libsanlock-dev), and requests decoded at the edge.
@Suite(.ownThreads) struct SanlockWireTests {
    static let headers = ["/usr/include/sanlock.h", "/usr/include/sanlock_admin.h", "/usr/include/sanlock_resource.h", "/usr/include/sanlock_rv.h"]
    static var haveHeaders: Bool {
        headers.allSatisfy { FileManager.default.fileExists(atPath: $0) } && FileManager.default.isExecutableFile(atPath: "/usr/bin/gcc")
    }

    /// Compiles and runs a C program that prints "NAME VALUE" lines from sanlock's headers.
    static func valuesFromHeaders() throws -> [String: Int64] {
        let dir = NSTemporaryDirectory() + "sanlock-layout-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let items: [(String, String)] = [
            ("nameBytes", "SANLK_NAME_LEN"), ("pathBytes", "SANLK_PATH_LEN"),
            ("diskBytes", "sizeof(struct sanlk_disk)"), ("lockspaceBytes", "sizeof(struct sanlk_lockspace)"),
            ("resourceBytes", "sizeof(struct sanlk_resource)"), ("optionsBytes", "sizeof(struct sanlk_options)"),
            ("hostBytes", "sizeof(struct sanlk_host)"), ("maxResources", "SANLK_MAX_RESOURCES"), ("maxDisks", "SANLK_MAX_DISKS"),
            ("helperPathBytes", "SANLK_HELPER_PATH_LEN"), ("helperArgsBytes", "SANLK_HELPER_ARGS_LEN"),
            ("ls.hostID", "offsetof(struct sanlk_lockspace, host_id)"), ("ls.flags", "offsetof(struct sanlk_lockspace, flags)"),
            ("ls.disk", "offsetof(struct sanlk_lockspace, host_id_disk)"), ("disk.offset", "offsetof(struct sanlk_disk, offset)"),
            ("res.name", "offsetof(struct sanlk_resource, name)"), ("res.lver", "offsetof(struct sanlk_resource, lver)"),
            ("res.data64", "offsetof(struct sanlk_resource, data64)"), ("res.data32", "offsetof(struct sanlk_resource, data32)"),
            ("res.flags", "offsetof(struct sanlk_resource, flags)"), ("res.numDisks", "offsetof(struct sanlk_resource, num_disks)"),
            ("res.disks", "offsetof(struct sanlk_resource, disks)"),
            ("host.generation", "offsetof(struct sanlk_host, generation)"), ("host.timestamp", "offsetof(struct sanlk_host, timestamp)"),
            ("host.ioTimeout", "offsetof(struct sanlk_host, io_timeout)"), ("host.flags", "offsetof(struct sanlk_host, flags)"),
            ("addAsync", "SANLK_ADD_ASYNC"), ("remAsync", "SANLK_REM_ASYNC"), ("remUnused", "SANLK_REM_UNUSED"), ("inqWait", "SANLK_INQ_WAIT"),
            ("resLver", "SANLK_RES_LVER"), ("resNumHosts", "SANLK_RES_NUM_HOSTS"), ("resShared", "SANLK_RES_SHARED"),
            ("resPersistent", "SANLK_RES_PERSISTENT"), ("acquireLVB", "SANLK_ACQUIRE_LVB"), ("acquireOrphan", "SANLK_ACQUIRE_ORPHAN"),
            ("acquireOrphanOnly", "SANLK_ACQUIRE_ORPHAN_ONLY"), ("acquireOwnerNoWait", "SANLK_ACQUIRE_OWNER_NOWAIT"),
            ("releaseAll", "SANLK_REL_ALL"), ("releaseRename", "SANLK_REL_RENAME"), ("releaseOrphan", "SANLK_REL_ORPHAN"),
            ("requestForce", "SANLK_REQ_FORCE"), ("requestGraceful", "SANLK_REQ_GRACEFUL"),
            ("restrictAll", "SANLK_RESTRICT_ALL"), ("restrictSIGKILL", "SANLK_RESTRICT_SIGKILL"), ("restrictSIGTERM", "SANLK_RESTRICT_SIGTERM"),
            ("hostUnknown", "SANLK_HOST_UNKNOWN"), ("hostFree", "SANLK_HOST_FREE"), ("hostLive", "SANLK_HOST_LIVE"),
            ("hostFail", "SANLK_HOST_FAIL"), ("hostDead", "SANLK_HOST_DEAD"),
            ("rv.aioTimeout", "SANLK_AIO_TIMEOUT"), ("rv.leaderMagic", "SANLK_LEADER_MAGIC"), ("rv.leaderLockspace", "SANLK_LEADER_LOCKSPACE"),
            ("rv.leaderResource", "SANLK_LEADER_RESOURCE"), ("rv.leaderChecksum", "SANLK_LEADER_CHECKSUM"), ("rv.acquireLver", "SANLK_ACQUIRE_LVER"),
            ("rv.acquireLockspace", "SANLK_ACQUIRE_LOCKSPACE"), ("rv.acquireIDLive", "SANLK_ACQUIRE_IDLIVE"), ("rv.acquireOwned", "SANLK_ACQUIRE_OWNED"),
            ("rv.acquireOther", "SANLK_ACQUIRE_OTHER"), ("rv.hostIDBusy", "SANLK_HOSTID_BUSY"),
            ("rindexBytes", "sizeof(struct sanlk_rindex)"), ("rentryBytes", "sizeof(struct sanlk_rentry)"),
            ("rx.maxResources", "offsetof(struct sanlk_rindex, max_resources)"), ("rx.lockspace", "offsetof(struct sanlk_rindex, lockspace_name)"),
            ("rx.disk", "offsetof(struct sanlk_rindex, disk)"), ("re.offset", "offsetof(struct sanlk_rentry, offset)"),
            ("rxNoLockspace", "SANLK_RX_NO_LOCKSPACE"), ("rxupAdd", "SANLK_RXUP_ADD"), ("rxupRem", "SANLK_RXUP_REM"),
            ("rifSector4K", "SANLK_RIF_SECTOR4K"), ("rifAlign8M", "SANLK_RIF_ALIGN8M"),
            ("rv.rindexMagic", "SANLK_RINDEX_MAGIC"), ("rv.rindexVersion", "SANLK_RINDEX_VERSION"),
            ("rv.rindexLockspace", "SANLK_RINDEX_LOCKSPACE"), ("rv.rindexOffset", "SANLK_RINDEX_OFFSET"), ("rv.rindexDiff", "SANLK_RINDEX_DIFF"),
        ]
        let source = """
            #include <stddef.h>
            #include <stdint.h>
            #include <stdio.h>
            #include <sanlock.h>
            #include <sanlock_admin.h>
            #include <sanlock_resource.h>
            #include <sanlock_rv.h>
            int main(void) {
            \(items.map { "    printf(\"%s %lld\\n\", \"\($0.0)\", (long long)(\($0.1)));" }.joined(separator: "\n"))
                return 0;
            }
            """
        try source.write(toFile: dir + "/layout.c", atomically: true, encoding: .utf8)
        let compile = Process()
        compile.executableURL = URL(fileURLWithPath: "/usr/bin/gcc")
        compile.arguments = ["-o", dir + "/layout", dir + "/layout.c"]
        try compile.run()
        compile.waitUntilExit()
        guard compile.terminationStatus == 0 else { throw TenureError(.invalidArgument, "gcc could not compile against sanlock's headers") }
        let run = Process()
        let pipe = Pipe()
        run.executableURL = URL(fileURLWithPath: dir + "/layout")
        run.standardOutput = pipe
        try run.run()
        let text = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        run.waitUntilExit()
        var values: [String: Int64] = [:]
        for line in text.split(separator: "\n") {
            let parts = line.split(separator: " ")
            if parts.count == 2, let v = Int64(parts[1]) { values[String(parts[0])] = v }
        }
        return values
    }

    @Test(.enabled(if: SanlockWireTests.haveHeaders, "needs gcc and libsanlock-dev's headers (Tools/install-deps.sh installs them)"))
    func everySizeOffsetFlagAndResultMatchesSanlocksHeaders() throws {
        let c = try Self.valuesFromHeaders()
        let ours: [String: Int64] = [
            "nameBytes": 48, "pathBytes": Int64(SanlockWire.pathBytes), "diskBytes": Int64(SanlockWire.diskBytes),
            "lockspaceBytes": Int64(SanlockWire.lockspaceBytes), "resourceBytes": Int64(SanlockWire.resourceBytes),
            "optionsBytes": Int64(SanlockWire.optionsBytes), "hostBytes": Int64(SanlockWire.hostBytes),
            "maxResources": Int64(SanlockWire.maxResources), "maxDisks": Int64(SanlockWire.maxDisks),
            "helperPathBytes": Int64(SanlockWire.helperPathBytes), "helperArgsBytes": Int64(SanlockWire.helperArgsBytes),
            // The offsets the codec reads and writes at (SanlockLockspace, SanlockResource, SanlockHost).
            "ls.hostID": 48, "ls.flags": 56, "ls.disk": 64, "disk.offset": Int64(SanlockWire.pathBytes),
            "res.name": 48, "res.lver": 96, "res.data64": 104, "res.data32": 112, "res.flags": 120, "res.numDisks": 124,
            "res.disks": Int64(SanlockWire.resourceBytes),
            "host.generation": 8, "host.timestamp": 16, "host.ioTimeout": 24, "host.flags": 28,
            "addAsync": Int64(SanlockFlags.addAsync), "remAsync": Int64(SanlockFlags.remAsync), "remUnused": Int64(SanlockFlags.remUnused),
            "inqWait": Int64(SanlockFlags.inqWait), "resLver": Int64(SanlockFlags.resLver), "resNumHosts": Int64(SanlockFlags.resNumHosts),
            "resShared": Int64(SanlockFlags.resShared), "resPersistent": Int64(SanlockFlags.resPersistent),
            "acquireLVB": Int64(SanlockFlags.acquireLVB), "acquireOrphan": Int64(SanlockFlags.acquireOrphan),
            "acquireOrphanOnly": Int64(SanlockFlags.acquireOrphanOnly), "acquireOwnerNoWait": Int64(SanlockFlags.acquireOwnerNoWait),
            "releaseAll": Int64(SanlockFlags.releaseAll), "releaseRename": Int64(SanlockFlags.releaseRename),
            "releaseOrphan": Int64(SanlockFlags.releaseOrphan), "requestForce": Int64(SanlockFlags.requestForce),
            "requestGraceful": Int64(SanlockFlags.requestGraceful), "restrictAll": Int64(SanlockFlags.restrictAll),
            "restrictSIGKILL": Int64(SanlockFlags.restrictSIGKILL), "restrictSIGTERM": Int64(SanlockFlags.restrictSIGTERM),
            "hostUnknown": Int64(SanlockFlags.hostUnknown), "hostFree": Int64(SanlockFlags.hostFree), "hostLive": Int64(SanlockFlags.hostLive),
            "hostFail": Int64(SanlockFlags.hostFail), "hostDead": Int64(SanlockFlags.hostDead),
            "rv.aioTimeout": Int64(SanlockResult.aioTimeout), "rv.leaderMagic": Int64(SanlockResult.leaderMagic),
            "rv.leaderLockspace": Int64(SanlockResult.leaderLockspace), "rv.leaderResource": Int64(SanlockResult.leaderResource),
            "rv.leaderChecksum": Int64(SanlockResult.leaderChecksum), "rv.acquireLver": Int64(SanlockResult.acquireLver),
            "rv.acquireLockspace": Int64(SanlockResult.acquireLockspace), "rv.acquireIDLive": Int64(SanlockResult.acquireIDLive),
            "rv.acquireOwned": Int64(SanlockResult.acquireOwned), "rv.acquireOther": Int64(SanlockResult.acquireOther),
            "rv.hostIDBusy": Int64(SanlockResult.hostIDBusy),
            // The resource index (SanlockRindex, SanlockRentry).
            "rindexBytes": Int64(SanlockRindex.bytes), "rentryBytes": Int64(SanlockRentry.bytes),
            "rx.maxResources": 4, "rx.lockspace": 16, "rx.disk": 64, "re.offset": 48,
            "rxNoLockspace": Int64(SanlockFlags.indexNoLockspace), "rxupAdd": Int64(SanlockFlags.indexUpdateAdd),
            "rxupRem": Int64(SanlockFlags.indexUpdateRemove), "rifSector4K": Int64(SanlockFlags.sector4K), "rifAlign8M": Int64(SanlockFlags.align8M),
            "rv.rindexMagic": Int64(SanlockResult.rindexMagic), "rv.rindexVersion": Int64(SanlockResult.rindexVersion),
            "rv.rindexLockspace": Int64(SanlockResult.rindexLockspace), "rv.rindexOffset": Int64(SanlockResult.rindexOffset),
            "rv.rindexDiff": Int64(SanlockResult.rindexDiff),
        ]
        #expect(c.count == ours.count, "the C program printed \(c.count) values for \(ours.count) checks")
        for (name, value) in ours.sorted(by: { $0.key < $1.key }) {
            #expect(c[name] == value, "\(name): sanlock's headers say \(c[name].map(String.init) ?? "nothing"), the codec uses \(value)")
        }
    }

    static func lockspace() -> SanlockLockspace {
        SanlockLockspace(name: "LS", hostID: 3, flags: 0, disk: SanlockDisk(path: "/dev/mapper/vg-leases", offset: 0))
    }

    static func resource(shared: Bool = false) -> SanlockResource {
        SanlockResource(lockspace: "LS", name: "vm-disk-1", lver: 7, flags: (shared ? SanlockFlags.resShared : 0) | SanlockFlags.resLver,
                        disks: [SanlockDisk(path: "/dev/mapper/vg-leases", offset: 1 << 20)])
    }

    @Test func anAddLockspaceRoundTripsWithItsFlagsAndIOTimeout() throws {
        let payload = Self.lockspace().encoded
        let header = SanlockHeader(command: SanlockCommand.addLockspace.rawValue, flags: SanlockFlags.addAsync,
                                   length: UInt32(SanlockWire.headerBytes + payload.count), data: 5)
        let decodedHeader = try SanlockHeader(decoding: header.encoded)
        #expect(decodedHeader == header)
        let request = try SanlockRequest.decode(decodedHeader, payload: payload)
        #expect(request == .addLockspace(Self.lockspace(), async: true, ioTimeoutSeconds: 5))
    }

    /// libsanlock's lookup counts a struct sanlk_resource in its length but
    /// sends a struct sanlk_rentry: the reader takes what is sent.
    @Test func aLookupIsReadAsSentNotAsCountedAndCreateCarriesNumHosts() throws {
        let rx = SanlockRindex(flags: SanlockFlags.align1M, lockspace: "LS", disk: SanlockDisk(path: "/dev/sdb", offset: 1 << 20))
        let entry = SanlockRentry(name: "vm1", offset: 3 << 20)
        let lookup = SanlockHeader(command: SanlockCommand.lookupRindex.rawValue,
                                   length: UInt32(SanlockWire.headerBytes + SanlockRindex.bytes + SanlockWire.resourceBytes))
        #expect(lookup.bytesToRead == SanlockRindex.bytes + SanlockRentry.bytes)
        #expect(try SanlockRequest.decode(lookup, payload: rx.encoded + entry.encoded) == .lookupIndex(rx, entry, flags: 0))
        let create = SanlockHeader(command: SanlockCommand.createResource.rawValue,
                                   length: UInt32(SanlockWire.headerBytes + SanlockRindex.bytes + SanlockRentry.bytes), data: 0, data2: 4)
        #expect(create.bytesToRead == SanlockRindex.bytes + SanlockRentry.bytes)
        #expect(try SanlockRequest.decode(create, payload: rx.encoded + entry.encoded) == .createResource(rx, entry, numHosts: 4))
        #expect(try SanlockRindex(decoding: rx.encoded[...]) == rx)
        #expect(try SanlockRentry(decoding: entry.encoded[...]) == entry)
        // A cut-short entry is refused, not padded.
        #expect(throws: TenureError.self) { try SanlockRequest.decode(create, payload: rx.encoded + entry.encoded.dropLast(8)) }
    }

    @Test func anAcquireCarriesItsResourcesDisksAndTarget() throws {
        let payload = Self.resource().encoded + Self.resource(shared: true).encoded + [UInt8](repeating: 0, count: SanlockWire.optionsBytes)
        let forCaller = SanlockHeader(command: SanlockCommand.acquire.rawValue, length: UInt32(32 + payload.count), data: 2, data2: SanlockWire.selfPid)
        #expect(try SanlockRequest.decode(forCaller, payload: payload)
                == .acquire(.caller, [Self.resource(), Self.resource(shared: true)], flags: 0, ownerName: ""))
        let forPid = SanlockHeader(command: SanlockCommand.acquire.rawValue, length: UInt32(32 + payload.count), data: 2, data2: 4242)
        guard case .acquire(.pid(4242), _, _, _) = try SanlockRequest.decode(forPid, payload: payload) else {
            Issue.record("the target pid was lost")
            return
        }
    }

    @Test func malformedMessagesAreRefusedNamingWhatIsWrong() throws {
        var bytes = SanlockHeader(command: 1).encoded
        bytes[0] ^= 0xFF
        #expect(throws: TenureError.self) { try SanlockHeader(decoding: bytes) }
        let huge = SanlockHeader(command: SanlockCommand.acquire.rawValue, length: UInt32(SanlockWire.maxMessageBytes + 1))
        #expect(throws: TenureError.self) { try SanlockHeader(decoding: huge.encoded) }
        // Nine resources, a short payload, extra bytes, an unknown command, a pid of 0.
        let nine = SanlockHeader(command: SanlockCommand.acquire.rawValue, data: 9, data2: SanlockWire.selfPid)
        #expect(throws: TenureError.self) { try SanlockRequest.decode(nine, payload: []) }
        let short = SanlockHeader(command: SanlockCommand.addLockspace.rawValue)
        #expect(throws: TenureError.self) { try SanlockRequest.decode(short, payload: Array(Self.lockspace().encoded.dropLast())) }
        let extra = SanlockHeader(command: SanlockCommand.remLockspace.rawValue)
        #expect(throws: TenureError.self) { try SanlockRequest.decode(extra, payload: Self.lockspace().encoded + [0]) }
        #expect(throws: TenureError.self) { try SanlockRequest.decode(SanlockHeader(command: 99), payload: []) }
        let zeroPid = SanlockHeader(command: SanlockCommand.inquire.rawValue, data2: 0)
        #expect(throws: TenureError.self) { try SanlockRequest.decode(zeroPid, payload: []) }
        // A path without its NUL.
        var unterminated = Self.lockspace().encoded
        for i in 64..<(64 + SanlockWire.pathBytes) { unterminated[i] = 0x41 }
        #expect(throws: TenureError.self) { try SanlockRequest.decode(extra, payload: unterminated) }
    }

    /// libsanlock sends host_status's lockspace after a header that counts only itself.
    @Test func hostStatusReadsTheLockspaceItsHeaderDoesNotCount() throws {
        let header = SanlockHeader(command: SanlockCommand.hostStatus.rawValue)
        #expect(header.payloadBytes == 0 && header.bytesToRead == SanlockWire.lockspaceBytes)
        #expect(try SanlockRequest.decode(header, payload: Self.lockspace().encoded) == .hostStatus(lockspace: "LS"))
        let status = SanlockHeader(command: SanlockCommand.status.rawValue, data: 3)
        #expect(status.bytesToRead == 0)
        #expect(try SanlockRequest.decode(status, payload: []) == .status(depth: 3))
    }

    @Test func aStateRecordIsEightyBytesThenItsTextAndTrailer() {
        let record = SanlockState(kind: .resource, data32: 42, data64: 7, name: "R0", text: "list=held", trailer: [1, 2, 3]).encoded
        #expect(record.count == SanlockState.fixedBytes + "list=held".utf8.count + 1 + 3)
        #expect(record[0] == 4 && record[8] == 42 && record[16] == 7 && record[24] == UInt8(ascii: "R"))
        #expect(record[72] == UInt8("list=held".utf8.count + 1))
    }

    @Test func aStateStringIsSanlocks() {
        var r = Self.resource()
        r.disks[0].path = "/dev/odd:name"
        #expect(r.stateString == "LS:vm-disk-1:/dev/odd\\:name:1048576:7")
        #expect(Self.resource(shared: true).stateString == "LS:vm-disk-1:/dev/mapper/vg-leases:1048576:SH")
    }
}
