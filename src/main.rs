//! `commitfs`: parse the command line, then mount or unmount. No logic here.

use commitfs::daemon;
use commitfs::daemon::cli::{self, CliError, Command};

fn main() {
    // Memory (docs/SEMANTICS.md, "Memory"), set before any thread starts:
    // glibc's malloc serves blocks of 256 KiB or more with their own
    // mappings, returned at free. Left to itself it raises that threshold
    // after the first such free, and then keeps the 1-4 MiB buffers of
    // concurrent reads in its heaps for good: 32 readers of 4 MiB files
    // with a 32 MiB cache left 143 MiB anonymous when idle, 50 MiB with the
    // threshold fixed (`scripts/memory.sh`).
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
    commitfs::store::repo::tune_libgit2();
    // A panic is a bug: said on stderr, in the log (the log file of a
    // detached daemon) and in the system log (the journal), where it is found
    // after the fact. The handler that panicked answers EIO and the daemon
    // goes on (see fuse/mod.rs and daemon/mod.rs).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let what = format!(
            "internal error in thread {}: {info}",
            thread.name().unwrap_or("?")
        );
        eprintln!("commitfs: {what}");
        log::error!("{what}");
        if let Ok(msg) = std::ffi::CString::new(what.replace('\0', " ")) {
            // SAFETY: static C strings and a valid C string for "%s".
            unsafe {
                libc::openlog(c"commitfs".as_ptr(), libc::LOG_PID, libc::LOG_DAEMON);
                libc::syslog(libc::LOG_ERR, c"%s".as_ptr(), msg.as_ptr());
            }
        }
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
            commitfs::daemon::control::query(&mountpoint, json).map(|out| print!("{out}"))
        }
        Command::Man(dir) => daemon::docs::write_man_pages(&dir).map(|pages| {
            for p in pages {
                println!("{}", p.display());
            }
        }),
        Command::Completions(shell) => daemon::docs::completions(&shell).map(|s| print!("{s}")),
    };
    if let Err(msg) = result {
        eprintln!("commitfs: {msg}");
        std::process::exit(1);
    }
}
