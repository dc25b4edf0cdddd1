//! The command line -> a plain [`MountConfig`].
//!
//! Three forms:
//! - `commitfs mount REPO MOUNTPOINT [options]`
//! - `commitfs unmount MOUNTPOINT`
//! - `commitfs REPO MOUNTPOINT -o OPT[,OPT...]`, the form mount(8) uses through
//!   `mount.fuse3`; it is `mount` with every long option spelled as an `-o` option.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::model::{FsConfig, RootSpec, default_spill_dir};

#[derive(Parser, Debug)]
#[command(
    name = "commitfs",
    version,
    about = "Mount a Git repository with every branch as a directory",
    after_help = "The mount(8) helper form is: commitfs REPO MOUNTPOINT -o OPT[,OPT...]"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

// Made once per run: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Mount REPO (a bare repository or a .git directory) at MOUNTPOINT.
    Mount(MountArgs),
    /// Flush pending changes, then unmount MOUNTPOINT.
    Unmount {
        /// The mount point to unmount.
        mountpoint: PathBuf,
    },
    /// Show each branch's uncommitted changes, last commit and last error, and the cache.
    Status {
        /// The mount point to ask.
        mountpoint: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the man pages (commitfs(1), one per command, mount.commitfs(8)) into DIR.
    Man {
        /// Where to write them (made if missing), e.g. /usr/local/share/man/man1.
        dir: PathBuf,
    },
    /// Print shell completions for bash, zsh or fish.
    Completions {
        /// bash, zsh or fish.
        shell: String,
    },
}

#[derive(Args, Debug)]
#[command(args_override_self = true)]
struct MountArgs {
    /// A bare repository (data.git) or a repository's .git directory.
    repo: PathBuf,
    /// An existing, empty directory to mount on.
    mountpoint: PathBuf,
    /// Mount one ref or revision as the root: a branch, a tag, main~3, an abbreviated SHA.
    #[arg(long = "ref", value_name = "REF")]
    git_ref: Option<String>,
    /// Refuse every write (EROFS).
    #[arg(long)]
    read_only: bool,
    /// Author and committer of commits: "Name <email>".
    #[arg(long, value_name = "NAME <EMAIL>")]
    author: Option<String>,
    /// Bytes of blob content kept in memory (suffixes K, M, G; default 256M).
    #[arg(long, value_name = "BYTES")]
    cache_size: Option<String>,
    /// Let users other than the mounting one in; the kernel checks the modes shown.
    #[arg(long)]
    allow_other: bool,
    /// More logging (-v info, -vv debug, -vvv trace); RUST_LOG works too.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Stay attached and log to stderr.
    #[arg(short, long)]
    foreground: bool,
    /// Where a detached daemon writes its log (default: the system log).
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Milliseconds after the last change before a branch is committed.
    #[arg(long, value_name = "MS")]
    settle: Option<u64>,
    /// Sync with this Git server: a remote of the repository, or a URL
    /// (file://, git://, http(s)://, ssh://). Commits are pushed in the
    /// background; other machines' commits are fetched.
    #[arg(long, value_name = "NAME|URL")]
    remote: Option<String>,
    /// Seconds between fetches from --remote (default 5).
    #[arg(long, value_name = "SECONDS")]
    fetch_interval: Option<String>,
    /// With --remote: unmount and SIGTERM push what was committed, waiting
    /// at most this many seconds (default 10; 0: no push then).
    #[arg(long, value_name = "SECONDS")]
    push_on_exit_timeout: Option<String>,
    /// A file name pattern that is never committed (repeatable), besides the
    /// editor swap, backup and lock files.
    #[arg(long, value_name = "GLOB")]
    scratch: Vec<String>,
    /// Commit editor swap, backup and lock files too (only --scratch applies).
    #[arg(long)]
    no_default_scratch: bool,
    /// Commit untracked files that the branch's .gitignore files, info/exclude
    /// or core.excludesFile ignore, too.
    #[arg(long)]
    no_gitignore: bool,
    /// Directory for spill files of large blobs (default $TMPDIR, else /var/tmp).
    #[arg(long, value_name = "DIR")]
    spill_dir: Option<PathBuf>,
    /// Mount options, comma-separated: ref=REF, ro, read-only, cache-size=N, ...
    #[arg(short = 'o', value_name = "OPT[,OPT...]", action = clap::ArgAction::Append)]
    options: Vec<String>,
}

/// Everything `mount` needs, as plain data. Tests build it directly.
#[derive(Debug, Clone)]
pub struct MountConfig {
    pub repo: PathBuf,
    pub mountpoint: PathBuf,
    pub fs: FsConfig,
    pub allow_other: bool,
    pub verbose: u8,
    pub foreground: bool,
    pub log_file: Option<PathBuf>,
}

// Made once per run: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Command {
    Mount(MountConfig),
    Unmount(PathBuf),
    Status { mountpoint: PathBuf, json: bool },
    Man(PathBuf),
    Completions(String),
}

/// What went wrong on the command line, or a request for help/version text.
#[derive(Debug)]
pub enum CliError {
    /// Help or version text for stdout; exit 0.
    Info(String),
    /// One line for stderr; exit 2.
    Usage(String),
}

const SUBCOMMANDS: &[&str] = &["mount", "unmount", "status", "man", "completions", "help"];

pub fn parse(args: Vec<OsString>) -> Result<Command, CliError> {
    let mut args = args;
    // The mount(8) helper form: `commitfs SOURCE MOUNTPOINT -o OPTS`.
    if let Some(first) = args.get(1) {
        let s = first.to_string_lossy();
        if !s.starts_with('-') && !SUBCOMMANDS.contains(&s.as_ref()) {
            args.insert(1, OsString::from("mount"));
        }
    }
    // `-o OPT,...` is spelled as the long options it names, so that clap is
    // the one source of every option's name, value and default; given after
    // the rest, they win, as mount(8) expects.
    if args.get(1).is_some_and(|a| a == "mount") {
        args = expand_o_options(args)?;
    }
    let cli = Cli::try_parse_from(args).map_err(|e| match e.kind() {
        clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
            CliError::Info(e.render().to_string())
        }
        clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CliError::Usage(
            "missing command: commitfs mount REPO MOUNTPOINT, or commitfs unmount MOUNTPOINT (see commitfs --help)".into(),
        ),
        clap::error::ErrorKind::UnknownArgument => {
            use clap::error::{ContextKind, ContextValue};
            let arg = match e.get(ContextKind::InvalidArg) {
                Some(ContextValue::String(a)) => a.clone(),
                _ => "?".into(),
            };
            let like = match e.get(ContextKind::SuggestedArg) {
                Some(ContextValue::String(s)) => format!("did you mean '{s}'? "),
                _ => String::new(),
            };
            CliError::Usage(format!(
                "unknown option '{arg}' ({like}see commitfs --help for the options)"
            ))
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("invalid arguments")
                .trim()
                .trim_start_matches("error: ")
                .to_string();
            CliError::Usage(format!("{first} (see commitfs --help)"))
        }
    })?;
    match cli.cmd {
        Cmd::Unmount { mountpoint } => Ok(Command::Unmount(mountpoint)),
        Cmd::Status { mountpoint, json } => Ok(Command::Status { mountpoint, json }),
        Cmd::Man { dir } => Ok(Command::Man(dir)),
        Cmd::Completions { shell } => Ok(Command::Completions(shell)),
        Cmd::Mount(m) => mount_config(m).map(Command::Mount),
    }
}

fn mount_config(m: MountArgs) -> Result<MountConfig, CliError> {
    let mut cfg = MountConfig {
        repo: m.repo,
        mountpoint: m.mountpoint,
        fs: FsConfig {
            root: match m.git_ref {
                Some(r) => RootSpec::Ref(r),
                None => RootSpec::Whole,
            },
            read_only: m.read_only,
            spill_dir: m.spill_dir.unwrap_or_else(default_spill_dir),
            author: m.author,
            settle: std::time::Duration::from_millis(m.settle.unwrap_or(200)),
            remote: m.remote,
            scratch: m.scratch,
            default_scratch: !m.no_default_scratch,
            gitignore: !m.no_gitignore,
            ..FsConfig::default()
        },
        allow_other: m.allow_other,
        verbose: m.verbose,
        foreground: m.foreground,
        log_file: m.log_file,
    };
    if let Some(s) = m.cache_size {
        cfg.fs.cache_size = parse_size(&s)?;
    }
    if let Some(s) = m.fetch_interval {
        cfg.fs.fetch_interval = parse_interval(&s)?;
    }
    if let Some(s) = m.push_on_exit_timeout {
        cfg.fs.push_on_exit = s
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| (0.0..=3600.0).contains(v))
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "push-on-exit timeout '{s}' is not a number of seconds (0 to 3600)"
                ))
            })?;
    }
    // Expanded before clap parsed anything (see `expand_o_options`): an
    // `-o` still here came after `--`.
    if let Some(o) = m.options.first() {
        return Err(CliError::Usage(format!(
            "-o {o} after '--' (see commitfs --help)"
        )));
    }
    Ok(cfg)
}

/// `args` with each `-o OPTS` (or `-oOPTS`) of `commitfs mount` replaced by
/// the long options it names, appended at the end: `ro` is `--read-only`,
/// `v` `--verbose`, `f` `--foreground`, `cache_size=64M` `--cache-size=64M`;
/// mount(8)'s generic options and `x-*` are dropped.
fn expand_o_options(args: Vec<OsString>) -> Result<Vec<OsString>, CliError> {
    let mut out = Vec::with_capacity(args.len());
    let mut groups = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if a == "--" {
            out.push(a);
            out.extend(it.by_ref());
            break;
        }
        if a == "-o" {
            let Some(g) = it.next() else {
                return Err(CliError::Usage(
                    "-o needs options: -o OPT[,OPT...] (see commitfs --help)".into(),
                ));
            };
            groups.push(g.to_string_lossy().into_owned());
        } else if let Some(g) = a.to_str().and_then(|s| s.strip_prefix("-o")) {
            groups.push(g.to_string());
        } else {
            out.push(a);
        }
    }
    // The long options `commitfs mount` has, from clap's own definitions.
    let known: Vec<String> = <MountArgs as clap::Args>::augment_args(clap::Command::new("mount"))
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    let mut long = Vec::new();
    for group in &groups {
        for opt in split_options(group) {
            let (key, value) = match opt.split_once('=') {
                Some((k, v)) => (k, Some(v)),
                None => (opt.as_str(), None),
            };
            // fsname/subtype are set by commitfs itself; mount.fuse3 may pass them along.
            if key.starts_with("x-")
                || IGNORED.contains(&key)
                || matches!(key, "fsname" | "subtype" | "comment")
            {
                continue;
            }
            let name = match key.replace('_', "-").as_str() {
                "ro" => "read-only".to_string(),
                "v" => "verbose".to_string(),
                "f" => "foreground".to_string(),
                k => k.to_string(),
            };
            if !known.contains(&name) {
                return Err(CliError::Usage(format!(
                    "unknown option '{opt}' (see commitfs --help for the options)"
                )));
            }
            long.push(OsString::from(match value {
                Some(v) => format!("--{name}={v}"),
                None => format!("--{name}"),
            }));
        }
    }
    // Before a `--`, if there is one, so that clap reads them as options.
    let at = out.iter().position(|a| a == "--").unwrap_or(out.len());
    out.splice(at..at, long);
    Ok(out)
}

/// Splits `a,b=c,d` on commas; a backslash escapes the next character.
fn split_options(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().filter(|o| !o.is_empty()).collect()
}

/// Generic options mount(8) passes or implies that mean nothing to commitfs.
const IGNORED: &[&str] = &[
    "rw",
    "dev",
    "nodev",
    "suid",
    "nosuid",
    "exec",
    "noexec",
    "atime",
    "noatime",
    "relatime",
    "norelatime",
    "strictatime",
    "nodiratime",
    "diratime",
    "lazytime",
    "nolazytime",
    "auto",
    "noauto",
    "user",
    "nouser",
    "users",
    "owner",
    "group",
    "defaults",
    "nofail",
    "_netdev",
    "async",
    "sync",
    "dirsync",
    "loud",
    "silent",
    "default_permissions",
    "nonempty",
];

/// `5`, `0.5`: seconds, more than 0 and at most a day.
fn parse_interval(s: &str) -> Result<std::time::Duration, CliError> {
    s.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| *v > 0.0 && *v <= 86400.0)
        .map(std::time::Duration::from_secs_f64)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "fetch interval '{s}' is not a number of seconds (more than 0, at most 86400)"
            ))
        })
}

/// `67108864`, `64M`, `64MiB`, `1G`, `512k`.
pub fn parse_size(s: &str) -> Result<usize, CliError> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(digits);
    let n: u64 = num
        .parse()
        .map_err(|_| CliError::Usage(format!("'{s}' is not a size: use bytes, or K, M, G")))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(CliError::Usage(format!(
                "'{s}' is not a size: use bytes, or K, M, G"
            )));
        }
    };
    let bytes = n
        .checked_mul(mult)
        .ok_or_else(|| CliError::Usage(format!("size '{s}' is too large")))?;
    if bytes < 1 << 20 {
        return Err(CliError::Usage(format!(
            "cache size '{s}' is too small: give at least 1M"
        )));
    }
    usize::try_from(bytes).map_err(|_| CliError::Usage(format!("size '{s}' is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        std::iter::once("commitfs")
            .chain(v.iter().copied())
            .map(OsString::from)
            .collect()
    }

    fn mount(v: &[&str]) -> MountConfig {
        match parse(args(v)) {
            Ok(Command::Mount(m)) => m,
            other => panic!("expected a mount, got {other:?}"),
        }
    }

    #[test]
    fn long_options_and_o_options_agree() {
        let a = mount(&[
            "mount",
            "r.git",
            "/mnt",
            "--ref",
            "main",
            "--read-only",
            "--cache-size",
            "64M",
            "--allow-other",
        ]);
        let b = mount(&[
            "r.git",
            "/mnt",
            "-o",
            "ref=main,ro,cache_size=67108864,allow_other",
        ]);
        for m in [&a, &b] {
            assert_eq!(m.fs.root, RootSpec::Ref("main".into()));
            assert!(m.fs.read_only);
            assert_eq!(m.fs.cache_size, 64 << 20);
            assert!(m.allow_other);
        }
    }

    /// Every `-o` option is the long option of the same name (clap is the
    /// one source of both), and comes after the long ones: it wins.
    #[test]
    fn o_options_are_the_long_options_and_win() {
        let m = mount(&[
            "r.git",
            "/mnt",
            "--settle",
            "50",
            "-o",
            "settle=700,author=A B <a@b>,scratch=*.x,scratch=*.y,v,v,f",
            "-oremote=origin,fetch_interval=2,spill_dir=/var/tmp,no_default_scratch",
        ]);
        assert_eq!(m.fs.settle, std::time::Duration::from_millis(700));
        assert_eq!(m.fs.author.as_deref(), Some("A B <a@b>"));
        assert_eq!(m.fs.scratch, ["*.x", "*.y"]);
        assert_eq!(m.verbose, 2);
        assert!(m.foreground);
        assert_eq!(m.fs.remote.as_deref(), Some("origin"));
        assert_eq!(m.fs.fetch_interval, std::time::Duration::from_secs(2));
        assert_eq!(m.fs.spill_dir, PathBuf::from("/var/tmp"));
        assert!(!m.fs.default_scratch);
        // A value clap refuses is one line naming it.
        match parse(args(&["r.git", "/mnt", "-o", "settle=soon"])) {
            Err(CliError::Usage(msg)) => {
                assert_eq!(msg.lines().count(), 1, "{msg}");
                assert!(msg.contains("soon"), "{msg}");
            }
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn no_gitignore_in_both_spellings() {
        assert!(mount(&["r.git", "/mnt"]).fs.gitignore);
        assert!(
            !mount(&["mount", "r.git", "/mnt", "--no-gitignore"])
                .fs
                .gitignore
        );
        for o in ["no_gitignore", "no-gitignore"] {
            assert!(!mount(&["r.git", "/mnt", "-o", o]).fs.gitignore, "{o}");
        }
    }

    #[test]
    fn mount8_generic_options_are_accepted() {
        let m = mount(&[
            "r.git",
            "/mnt",
            "-o",
            "rw,nosuid,nodev,noatime,nofail,_netdev,x-systemd.automount,ref=v1",
        ]);
        assert_eq!(m.fs.root, RootSpec::Ref("v1".into()));
        assert!(!m.fs.read_only);
    }

    #[test]
    fn unknown_options_are_one_clear_line() {
        for bad in [
            vec!["r.git", "/mnt", "-o", "frobnicate"],
            vec!["mount", "r.git", "/mnt", "--frobnicate"],
            vec!["mount", "r.git", "/mnt", "--cache-size", "lots"],
        ] {
            match parse(args(&bad)) {
                Err(CliError::Usage(msg)) => {
                    assert_eq!(msg.lines().count(), 1, "{msg}");
                    assert!(msg.contains("frobnicate") || msg.contains("lots"), "{msg}");
                }
                other => panic!("{bad:?}: expected a usage error, got {other:?}"),
            }
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("64MiB").unwrap(), 64 << 20);
        assert!(parse_size("12").is_err());
        assert!(parse_size("99999999999999999999G").is_err());
    }

    #[test]
    fn no_arguments_is_a_usage_error() {
        assert!(
            matches!(parse(args(&[])), Err(CliError::Usage(m)) if m.contains("missing command"))
        );
    }

    #[test]
    fn unmount_form() {
        assert!(
            matches!(parse(args(&["unmount", "/mnt"])), Ok(Command::Unmount(p)) if p == std::path::Path::new("/mnt"))
        );
    }
}
