//! Man pages and shell completions, generated from the command line's own
//! definitions (clap), so that they never disagree with `--help`:
//! `commitfs man DIR` writes commitfs(1), a page per subcommand, and
//! mount.commitfs(8), the mount(8) and fstab form with every `-o` option;
//! `commitfs completions SHELL` prints bash, zsh or fish completions.

use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::daemon::cli::Cli;

/// Writes the man pages into `dir` (made if missing); returns their paths.
pub fn write_man_pages(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let fail =
        |e: std::io::Error| format!("cannot write the man pages into {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(fail)?;
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        out.push(
            clap_mangen::Man::new(sub.clone())
                .generate_to(dir)
                .map_err(fail)?,
        );
    }
    out.push(
        clap_mangen::Man::new(cmd.clone())
            .generate_to(dir)
            .map_err(fail)?,
    );
    out.push(
        clap_mangen::Man::new(mount_helper(&cmd))
            .section("8")
            .generate_to(dir)
            .map_err(fail)?,
    );
    Ok(out)
}

/// mount.commitfs(8): `mount -t fuse.commitfs REPO MNT -o OPTIONS` and the
/// fstab line, every `-o` option described as `commitfs mount`'s option of
/// the same name.
fn mount_helper(cmd: &clap::Command) -> clap::Command {
    let mount = cmd
        .find_subcommand("mount")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("mount"));
    let mut opts = String::new();
    for a in mount.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if long == "help" {
            continue;
        }
        let takes_value = a.get_num_args().is_some_and(|n| n.takes_values());
        let spelling = if takes_value {
            let v = a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string())
                .unwrap_or_else(|| "VALUE".into());
            format!("{long}={v}")
        } else {
            long.to_string()
        };
        let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
        opts.push_str(&format!("  {spelling}\n      {help}\n"));
    }
    clap::Command::new("mount.commitfs")
        .about("mount a Git repository through mount(8) and fstab (fuse.commitfs)")
        .long_about(format!(
            "mount(8) runs commitfs for a file system of type fuse.commitfs, through \
             mount.fuse3: `mount -t fuse.commitfs REPO MOUNTPOINT -o OPTIONS`, or a line of \
             /etc/fstab such as `/srv/data.git /mnt/data fuse.commitfs ref=main,allow_other 0 0`. \
             commitfs is run as `commitfs REPO MOUNTPOINT -o OPTIONS`, and each option is the \
             long option of `commitfs mount` of the same name (`ro` is read-only; `_` may stand \
             for `-`); mount(8)'s generic options (rw, nodev, nosuid, noauto, user, _netdev, \
             x-*, ...) are accepted and ignored.\n\nOptions:\n{opts}\nSee commitfs(1) and \
             commitfs-mount(1)."
        ))
        .arg(
            clap::Arg::new("REPO")
                .required(true)
                .help("A bare repository or a .git directory"),
        )
        .arg(
            clap::Arg::new("MOUNTPOINT")
                .required(true)
                .help("An existing, empty directory"),
        )
        .arg(
            clap::Arg::new("options")
                .short('o')
                .value_name("OPT[,OPT...]")
                .help("Mount options: the long options of commitfs mount, comma-separated"),
        )
}

/// The completion script for `shell` (bash, zsh, fish).
pub fn completions(shell: &str) -> Result<String, String> {
    use clap_complete::Shell;
    let sh = match shell {
        "bash" => Shell::Bash,
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        other => {
            return Err(format!(
                "no completions for shell '{other}': bash, zsh or fish"
            ));
        }
    };
    let mut out = Vec::new();
    clap_complete::generate(sh, &mut Cli::command(), "commitfs", &mut out);
    String::from_utf8(out).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn man_pages_and_completions_are_made_from_the_options() {
        let d = tempfile::tempdir().unwrap();
        let pages = write_man_pages(d.path()).unwrap();
        let names: Vec<String> = pages
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for want in [
            "commitfs.1",
            "commitfs-mount.1",
            "commitfs-unmount.1",
            "commitfs-status.1",
            "mount.commitfs.8",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} in {names:?}");
        }
        let mount = std::fs::read_to_string(d.path().join("commitfs-mount.1")).unwrap();
        assert!(mount.contains("push\\-on\\-exit\\-timeout"), "{mount}");
        let helper = std::fs::read_to_string(d.path().join("mount.commitfs.8")).unwrap();
        assert!(
            helper.starts_with(".ie") || helper.contains(".TH"),
            "{helper}"
        );
        assert!(helper.contains("fetch\\-interval=SECONDS"), "{helper}");
        assert!(helper.contains("fuse.commitfs"), "{helper}");
        for sh in ["bash", "zsh", "fish"] {
            let c = completions(sh).unwrap();
            assert!(c.contains("--remote") && c.contains("unmount"), "{sh}");
        }
        assert!(completions("tcsh").is_err());
    }
}
