//! `demo`: the newcomer's demo, run by `./demo` (see `testenv::demo`).

fn main() -> std::process::ExitCode {
    testenv::demo::main()
}
