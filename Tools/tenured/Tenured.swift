import Glibc
import TenureCore
import TenureIO
import TenureLaunch
import TenureSyscall

/// `tenured`: the daemon alone, started by `tenure daemon` (docs/architecture.md).
@main
enum Tenured {
    static func main() async {
        // Before the runtime starts its threads: 512 KiB stacks, not 8 MiB.
        DetachedThread.useSmallStacksByDefault()
        do {
            guard let (flags, configPath) = try DaemonArguments.parse(Array(CommandLine.arguments.dropFirst())) else {
                print(DaemonArguments.help, terminator: "")
                exit(0)
            }
            let (settings, level) = try DaemonSettings.load(flags: flags, configPath: configPath)
            try await DaemonLauncher.serve(settings, logging: level)
            exit(0)
        } catch let error as TenureError {
            var text = "tenured: error [\(error.code.rawValue)]: \(error.message)\n"
            if !error.remedy.isEmpty { text += "  \(error.remedy)\n" }
            StandardError.write(text)
        } catch {
            StandardError.write("tenured: error: \(error)\n")
        }
        exit(1)
    }
}
