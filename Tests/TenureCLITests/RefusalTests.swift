import Foundation
import Testing
import TenureTestSupport

/// Every refusal of `tenure direct init` / `format`: the command exits 1,
/// says what was wrong and what to do, and leaves the file untouched.
@Suite("tenure direct refuses bad input with a message that says what to do", .ownThreads)
struct RefusalTests {
    /// Runs `arguments`, expects exit 1 with every fragment in stderr, and
    /// checks `file` (when given) is byte for byte as before.
    func expectRefusal(_ arguments: [String], says fragments: [String], untouched file: String? = nil,
                       sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try file.map { try contents(of: $0, length: 64 << 20) }
        let outcome = try Harness.tenure(arguments)
        #expect(outcome.status == 1, "expected a refusal:\n\(outcome)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(outcome.stderr.contains(fragment), "stderr lacks \"\(fragment)\":\n\(outcome.stderr)", sourceLocation: sourceLocation)
        }
        if let file, let before {
            #expect(try contents(of: file, length: 64 << 20) == before, "the refused command changed \(file)", sourceLocation: sourceLocation)
        }
    }

    @Test func pathThatDoesNotExist() throws {
        let scratch = try Scratch()
        try expectRefusal(["direct", "init", "-s", "ls:0:\(scratch.path)/missing.img:0"],
                          says: ["missing.img does not exist", "Create the lease file first"])
        #expect(!FileManager.default.fileExists(atPath: "\(scratch.path)/missing.img"))
    }

    @Test func directoryInsteadOfAFile() throws {
        let scratch = try Scratch()
        try expectRefusal(["direct", "init", "-s", "ls:0:\(scratch.path):0"],
                          says: ["is a directory, not a regular file or a block device", "Give the path of a lease file"])
    }

    @Test(.enabled(if: FileManager.default.fileExists(atPath: "/dev/shm"), "needs /dev/shm (tmpfs)"))
    func fileOnTmpfs() throws {
        let file = "/dev/shm/tenure-test-\(getpid()).img"
        try Data(repeating: 0, count: 2 << 20).write(to: URL(fileURLWithPath: file))
        defer { try? FileManager.default.removeItem(atPath: file) }
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0"], says: ["is on tmpfs", "disk-backed filesystem"], untouched: file)
    }

    /// A file this user may not write: read-only by mode for an ordinary
    /// user, immutable (chattr +i) for root, whom modes do not stop.
    @Test(.enabled(if: !Harness.isRoot || Harness.which("chattr") != nil, "needs chattr (e2fsprogs) to make a file unwritable for root"))
    func fileThatIsNotWritable() throws {
        let scratch = try Scratch()
        let file = try scratch.file("ro.img", size: 2 << 20)
        if Harness.isRoot {
            let made = try Harness.run(Harness.which("chattr")!, ["+i", file])
            try #require(made.status == 0, "chattr +i failed (filesystem without attributes?): \(made)")
        } else {
            chmod(file, 0o444)
        }
        defer { if Harness.isRoot { _ = try? Harness.run(Harness.which("chattr")!, ["-i", file]) } }
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0"], says: ["Cannot open \(file) for reading and writing"], untouched: file)
    }

    @Test func misalignedOffset() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):512"],
                          says: ["Offset 512", "not a multiple of the 1M lease area size", "multiple of 1048576"], untouched: file)
        try expectRefusal(["direct", "init", "-r", "ls:r:\(file):1000000"],
                          says: ["Offset 1000000", "not a multiple"], untouched: file)
    }

    @Test func areaPastTheEndOfTheDevice() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 3 << 20, fill: 0x5A)
        try expectRefusal(["direct", "init", "-r", "ls:r:\(file):3M"],
                          says: ["ends past the end of \(file) (3145728 bytes)", "grow the file or volume to at least 4194304 bytes"], untouched: file)
        // format checks the whole layout before writing anything: 1 lockspace + 3 resources need 4M.
        try expectRefusal(["direct", "format", "--lockspace", "ls", "--path", file, "--resources", "3"],
                          says: ["ends past the end"], untouched: file)
    }

    @Test func unknownSectorSizeOrAlignment() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 16 << 20, fill: 0x5A)
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0", "--sector-size", "1024"],
                          says: ["--sector-size 1024 is not a sector size", "Use 512 or 4096"], untouched: file)
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0", "--align", "3M"],
                          says: ["--align 3M is not a lease area size", "1M, 2M, 4M or 8M"], untouched: file)
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0", "--sector-size", "512", "--align", "2M"],
                          says: ["Sector size 512 with align 2M is not a valid lease layout", "512/1M, 4096/1M, 4096/2M, 4096/4M, 4096/8M"], untouched: file)
    }

    @Test func nameLongerThan48Bytes() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        let long = String(repeating: "n", count: 49)
        try expectRefusal(["direct", "init", "-s", "\(long):0:\(file):0"],
                          says: ["lockspace name \"\(long)\" is 49 bytes long", "at most 48"], untouched: file)
        try expectRefusal(["direct", "init", "-r", "ls:\(long):\(file):1M"],
                          says: ["is 49 bytes long", "at most 48"], untouched: file)
        // Multi-byte characters count as bytes: 25 × "é" is 50 bytes.
        try expectRefusal(["direct", "format", "--lockspace", String(repeating: "é", count: 25), "--path", file, "--resources", "1"],
                          says: ["is 50 bytes long"], untouched: file)
        // Exactly 48 bytes fits.
        try Harness.tenureOK(["direct", "init", "-s", "\(String(repeating: "n", count: 48)):0:\(file):0"])
    }

    @Test func maxHostsOutsideTheLayout() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        try expectRefusal(["direct", "init", "-r", "ls:r:\(file):1M", "--max-hosts", "2001"],
                          says: ["--max-hosts 2001 is outside 1...2000", "512/1M"], untouched: file)
        try expectRefusal(["direct", "init", "-r", "ls:r:\(file):1M", "--max-hosts", "0"],
                          says: ["--max-hosts 0 is outside"], untouched: file)
    }

    /// A negative count once trapped the Swift runtime (issue 28).
    @Test func resourceCountOutsideTheLimit() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        for count in ["-1", "0", "8193"] {
            try expectRefusal(["direct", "format", "--lockspace", "ls", "--path", file, "--resources", count],
                              says: ["--resources \(count): format lays out 1...8192", "Give --resources between 1 and 8192"], untouched: file)
        }
    }

    @Test func ioTimeoutOutOfRange() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0", "--io-timeout", "0"],
                          says: ["--io-timeout 0 is outside 1...300 seconds"], untouched: file)
    }

    @Test func malformedLeaseStrings() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20, fill: 0x5A)
        let outcome = try Harness.tenure(["direct", "init", "-s", "ls:0:\(file)"])
        #expect(outcome.status == 1)
        #expect(outcome.stderr.contains("NAME:HOST_ID:PATH:OFFSET"), "\(outcome.stderr)")
        let resource = try Harness.tenure(["direct", "init", "-r", "ls:r:\(file):1M:junk"])
        #expect(resource.status == 1)
        #expect(resource.stderr.contains("junk"), "\(resource.stderr)")
    }

    /// An area whose lease is held by a host is not overwritten without
    /// --force; with --force it is, with a warning.
    @Test func heldLeasesAreNotOverwrittenUnlessForced() throws {
        let scratch = try Scratch()
        let file = try scratch.file("a.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "ls", "--path", file, "--resources", "2", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "acquire-id", "-s", "ls:3:\(file):0", "--host-name", "h3", "--io-timeout", "1"])
        try Harness.tenureOK(["direct", "acquire", "-r", "ls:R1:\(file):2M", "--host-id", "3", "-s", "ls:3:\(file):0"])

        try expectRefusal(["direct", "init", "-s", "ls:0:\(file):0"],
                          says: ["Refusing to overwrite leases that are in use", "host 3", "--force"], untouched: file)
        try expectRefusal(["direct", "init", "-r", "ls:R1:\(file):2M"],
                          says: ["Refusing to overwrite leases that are in use", "R1", "--force"], untouched: file)
        try expectRefusal(["direct", "format", "--lockspace", "ls", "--path", file, "--resources", "2"],
                          says: ["Refusing to overwrite"], untouched: file)
        // The free resource R0 can be re-initialised without --force.
        try Harness.tenureOK(["direct", "init", "-r", "ls:R0:\(file):1M"])

        let forced = try Harness.tenureOK(["direct", "init", "-r", "ls:R1:\(file):2M", "--force"])
        #expect(forced.stderr.contains("warning: overwriting a held lease (--force)"), "\(forced.stderr)")
        let read = try Harness.json(try Harness.tenureOK(["direct", "read", "-r", "ls:R1:\(file):2M", "--json"]).stdout)
        #expect(read["state"] as? String == "free")
    }
}
