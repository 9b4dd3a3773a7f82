//! `cargo xtask`: the command is the `xtask` library's `main` (see `lib.rs`).

fn main() -> std::process::ExitCode {
    xtask::main()
}
