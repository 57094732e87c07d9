use std::process::ExitCode;

fn main() -> ExitCode {
    match vouch::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
