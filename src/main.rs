use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = skiff::cli::Cli::parse();
    skiff::logging::init(&cli.log_level);
    match skiff::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: error: {e:#}");
            ExitCode::from(skiff::cli::exit_code(&e))
        }
    }
}
