//! Writes skiff's man pages and shell completions, generated from the CLI definition, into
//! the directory given (packaging/build-static calls this).

use std::path::PathBuf;

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "packaging/out".into()),
    );
    let man = out.join("man");
    let completions = out.join("completions");
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    let cmd = skiff::cli::Cli::command();
    // skiff.1 and one page per subcommand (skiff-run.1, …), as git and cargo ship them.
    clap_mangen::generate_to(cmd.clone(), &man)?;
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "skiff", &completions)?;
    }
    println!("{}", out.display());
    Ok(())
}
