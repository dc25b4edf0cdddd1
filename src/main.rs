//! `commitfs`: parse the command line, then mount or unmount. No logic here.

use commitfs::cli::{self, CliError, Command};
use commitfs::daemon;

fn main() {
    std::panic::set_hook(Box::new(|info| {
        eprintln!("commitfs: internal error: {info}");
        log::error!("internal error: {info}");
    }));
    let cmd = match cli::parse(std::env::args_os().collect()) {
        Ok(c) => c,
        Err(CliError::Info(text)) => {
            print!("{text}");
            return;
        }
        Err(CliError::Usage(msg)) => {
            eprintln!("commitfs: {msg}");
            std::process::exit(2);
        }
    };
    let result = match cmd {
        Command::Mount(cfg) => daemon::mount(cfg),
        Command::Unmount(mnt) => daemon::unmount(&mnt),
        Command::Status { mountpoint, json } => {
            commitfs::control::query(&mountpoint, json).map(|out| print!("{out}"))
        }
    };
    if let Err(msg) = result {
        eprintln!("commitfs: {msg}");
        std::process::exit(1);
    }
}
