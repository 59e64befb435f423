//! The `grader` binary; everything lives in the library so tests reach it directly.

fn main() -> std::process::ExitCode {
    grader::cli::main()
}
