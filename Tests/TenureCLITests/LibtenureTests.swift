import Foundation
import Testing

/// libtenure, built by cc as it ships, against a real daemon.
@Suite("libtenure, the C client", .serialized,
       .enabled(if: Harness.which("cc") != nil, "needs a C compiler (cc) to build libtenure"))
struct LibtenureTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    /// Builds libtenure.so into `dir` with the shipping script; returns its path.
    func build(into dir: String) throws -> String {
        let built = try Harness.run("/bin/bash", [Self.root + "/Tools/build-libtenure.sh", dir])
        try #require(built.status == 0, "build-libtenure.sh failed: \(built)")
        return dir + "/lib/libtenure.so.1"
    }

    @Test func theLibraryNeedsNoSwiftRuntime() throws {
        let scratch = try Scratch()
        let library = try build(into: scratch.path + "/libtenure")
        let dynamic = try Harness.run("/usr/bin/readelf", ["-d", library])
        #expect(dynamic.status == 0)
        #expect(!dynamic.stdout.lowercased().contains("swift"), "libtenure links a Swift library:\n\(dynamic.stdout)")
        #expect(dynamic.stdout.contains("libc.so.6"))
        let pc = try String(contentsOfFile: scratch.path + "/libtenure/lib/pkgconfig/tenure.pc", encoding: .utf8)
        #expect(pc.contains("Libs: -L${libdir} -ltenure"))
    }

    @Test func aCProgramRegistersAcquiresForksRestrictsAndReleases() throws {
        let scratch = try Scratch()
        let prefix = scratch.path + "/libtenure"
        _ = try build(into: prefix)
        let program = scratch.path + "/test_libtenure"
        let compiled = try Harness.run(Harness.which("cc")!, ["-std=c11", "-D_GNU_SOURCE", "-Wall", "-Werror", "-I", prefix + "/include",
                                                             Self.root + "/Tests/libtenure/test_libtenure.c", "-L", prefix + "/lib", "-ltenure",
                                                             "-Wl,-rpath," + prefix + "/lib", "-o", program])
        try #require(compiled.status == 0, "cc failed: \(compiled)")
        let file = try scratch.file("leases.img", size: 4 << 20)
        try Harness.tenureOK(["direct", "format", "--lockspace", "C", "--path", file, "--resources", "1", "--io-timeout", "1", "--max-hosts", "8"])
        let daemon = try RunningDaemon(scratch: scratch)
        try daemon.clientOK(["add-lockspace", "-s", "C:1:\(file):0"])
        let resource = "C:R0:\(file):1048576"
        let run = try Harness.run(program, [daemon.runDir, resource, "C", "R0", file, "1048576"])
        #expect(run.status == 0, "\(run.stdout)\(run.stderr)")
        #expect(run.stdout.contains("0 failures"), "\(run.stdout)")
        #expect(!run.stdout.contains("FAIL"), "\(run.stdout)")
    }
}
