//! Refs read by hand, for when libgit2 cannot read them: a corrupt
//! `packed-refs` makes libgit2 fail every ref lookup and listing, so one bad
//! line would empty the root and `.tags`. Here each line of `packed-refs` and
//! each loose ref file stands alone: what is damaged is skipped, the rest is
//! shown. Loose refs win over packed ones, as in Git.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::store::Oid;

/// Loose ref files deeper than this, or more of them than `MAX_LOOSE`, are
/// not read (a repository is untrusted input).
const MAX_DEPTH: usize = 64;
const MAX_LOOSE: usize = 1 << 20;

#[derive(Debug, Default)]
pub struct RefsRead {
    /// Full names (`refs/heads/main`) and the ids they name; no symbolic refs.
    pub refs: Vec<(Vec<u8>, Oid)>,
    /// Lines of `packed-refs` and loose files that could not be read.
    pub bad: usize,
}

fn parse_id(hex: &[u8]) -> Option<Oid> {
    if hex.len() != 40 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    std::str::from_utf8(hex).ok()?.parse().ok()
}

/// The lines of a `packed-refs` file: `ID NAME`, comments (`#`) and peeled
/// lines (`^ID`) aside. Returns the refs and the number of bad lines.
pub fn parse_packed(data: &[u8]) -> (Vec<(Vec<u8>, Oid)>, usize) {
    let mut out = Vec::new();
    let mut bad = 0;
    for line in data.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || line[0] == b'#' || line[0] == b'^' {
            continue;
        }
        let ok = line.len() > 41 && line[40] == b' ';
        match (ok, ok.then(|| parse_id(&line[..40])).flatten()) {
            (true, Some(oid)) if line[41..].starts_with(b"refs/") => {
                out.push((line[41..].to_vec(), oid))
            }
            _ => bad += 1,
        }
    }
    (out, bad)
}

/// Every ref under `common_dir/refs` and in `common_dir/packed-refs`.
pub fn read_refs(common_dir: &Path) -> RefsRead {
    let mut read = RefsRead::default();
    let mut by_name = std::collections::BTreeMap::new();
    if let Ok(data) = std::fs::read(common_dir.join("packed-refs")) {
        let (refs, bad) = parse_packed(&data);
        read.bad += bad;
        by_name.extend(refs);
    }
    // Loose refs: a walk with a stack of (directory, its ref name prefix).
    let mut todo = vec![(common_dir.join("refs"), b"refs/".to_vec(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, prefix, depth)) = todo.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_LOOSE {
                read.bad += 1;
                break;
            }
            let mut name = prefix.clone();
            name.extend_from_slice(e.file_name().as_bytes());
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if depth < MAX_DEPTH {
                    name.push(b'/');
                    todo.push((e.path(), name, depth + 1));
                }
                continue;
            }
            if !ft.is_file() || name.ends_with(b".lock") {
                continue;
            }
            let Ok(data) = std::fs::read(e.path()) else {
                read.bad += 1;
                continue;
            };
            if data.starts_with(b"ref:") {
                continue; // symbolic
            }
            let hex = data.strip_suffix(b"\n").unwrap_or(&data);
            match parse_id(hex) {
                Some(oid) => {
                    by_name.insert(name, oid);
                }
                None => read.bad += 1,
            }
        }
    }
    read.refs = by_name.into_iter().collect();
    read
}

/// Whether some directory under `common_dir/refs` is nested `depth` levels or
/// more below it. libgit2 lists loose refs with a walk that stops, without an
/// error, at the first directory 100 levels down: every ref it had not reached
/// yet (all branches sorting after `a`, for `refs/heads/a/a/.../a`) would
/// vanish from the listing. Only directories are read, no ref file.
pub fn nested_at_least(common_dir: &Path, depth: usize) -> bool {
    let mut todo = vec![(common_dir.join("refs"), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, d)) = todo.pop() {
        if d >= depth {
            return true;
        }
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            seen += 1;
            if seen > MAX_LOOSE {
                return true;
            }
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push((e.path(), d + 1));
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_packed_lines_are_skipped_and_the_rest_kept() {
        let id = "0123456789012345678901234567890123456789";
        let data = format!(
            "# pack-refs with: peeled fully-peeled sorted\n{id} refs/heads/a\nGARBAGE LINE\n^{id}\n{id} refs/tags/v1\nzz{id} refs/heads/b\n"
        );
        let (refs, bad) = parse_packed(data.as_bytes());
        let names: Vec<&[u8]> = refs.iter().map(|r| &r.0[..]).collect();
        assert_eq!(names, vec![&b"refs/heads/a"[..], b"refs/tags/v1"]);
        assert_eq!(bad, 2);
    }

    #[test]
    fn nesting_is_measured_below_refs() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("refs/heads/a/b/c")).unwrap();
        std::fs::create_dir_all(t.path().join("refs/tags")).unwrap();
        assert!(nested_at_least(t.path(), 4));
        assert!(!nested_at_least(t.path(), 5));
        assert!(!nested_at_least(&t.path().join("none"), 1));
    }
}
