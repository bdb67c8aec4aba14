//! systemd-sysext images of skiff made by packaging/mksysext.py, over the man pages and
//! completions generated from the CLI as packaging/build-static's gen-docs writes them.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{run_ok, stdout};

/// The man pages and completions gen-docs writes, generated the same way from the CLI.
pub fn docs(dir: &Path) -> PathBuf {
    use clap::CommandFactory;
    let (man, completions) = (dir.join("man"), dir.join("completions"));
    std::fs::create_dir_all(&man).unwrap();
    std::fs::create_dir_all(&completions).unwrap();
    let cmd = skiff::cli::Cli::command();
    clap_mangen::generate_to(cmd.clone(), &man).unwrap();
    for shell in [
        clap_complete::Shell::Bash,
        clap_complete::Shell::Zsh,
        clap_complete::Shell::Fish,
    ] {
        clap_complete::generate_to(shell, &mut cmd.clone(), "skiff", &completions).unwrap();
    }
    dir.to_path_buf()
}

/// packaging/mksysext.py for `arch` over `binary`, into `dir`/out (docs in `dir`/docs,
/// release URL https://releases.example/skiff/): the image's path.
pub fn mksysext(dir: &Path, binary: &Path, arch: &str, version: &str) -> PathBuf {
    let docs = dir.join("docs");
    if !docs.exists() {
        self::docs(&docs);
    }
    let o = run_ok(
        Command::new("python3")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/packaging/mksysext.py"
            ))
            .args(["--binary", binary.to_str().unwrap(), "--arch", arch])
            .args([
                "--version",
                version,
                "--url",
                "https://releases.example/skiff/",
            ])
            .args(["--units", concat!(env!("CARGO_MANIFEST_DIR"), "/units")])
            .arg("--docs")
            .arg(&docs)
            .arg("--out")
            .arg(dir.join("out")),
    );
    PathBuf::from(stdout(&o).trim())
}
