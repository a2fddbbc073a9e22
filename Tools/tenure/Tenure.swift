import Foundation
import TenureCLI

/// The `tenure` executable: everything lives in TenureCLI so tests can drive
/// the same commands in-process.
@main
enum Tenure {
    static func main() async {
        // Run as `sanlock` (a link to this binary): sanlock's command line.
        if SanlockCLI.invokedAsSanlock(CommandLine.arguments[0]) {
            exit(await SanlockCLI.main(Array(CommandLine.arguments.dropFirst())))
        }
        await TenureCommand.main(nil)
    }
}
