use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Started as etcd-wrapper or kubelet-wrapper (a link), skiff is that profile's `run`.
    let cli = skiff::cli::Cli::parse_from(skiff::wrapper::argv(std::env::args_os().collect()));
    skiff::logging::init(&cli.log_level);
    match skiff::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skiff: error: {e:#}");
            ExitCode::from(skiff::cli::exit_code(&e))
        }
    }
}
