import TenureCLI

/// The `tenure` executable: everything lives in TenureCLI so tests can drive
/// the same commands in-process.
@main
enum Tenure {
    static func main() async {
        await TenureCommand.main(nil)
    }
}
