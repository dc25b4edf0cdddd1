//! Which untracked paths a commit leaves out: those the branch's `.gitignore`
//! files, `$GIT_DIR/info/exclude` and `core.excludesFile` ignore (SPEC
//! section 4), with git's rules.
//!
//! The patterns are parsed and matched by the `ignore` crate's `Gitignore`
//! (ripgrep's): negation, directory-only patterns, anchoring by a leading or
//! middle `/`, `**`, escapes, trailing spaces. What git does around the
//! matcher is done here, level by level as `build_tree` walks down:
//! - a directory's `.gitignore` (as the mount shows it now: a written one is
//!   read from the overlay, a clean one from its blob) applies to the paths
//!   below that directory, and a deeper file wins over a shallower one; below
//!   all of them come `info/exclude`, then `core.excludesFile`;
//! - a path under an ignored directory is ignored, whatever a negation below
//!   says, and the `.gitignore` files there are not read (git does not read
//!   them either);
//! - only untracked paths are left out: that is decided by the caller, from
//!   the base tree of each directory.
//!
//! Cost: only the directories a commit walks (the changed ones) are looked
//! at, one `.gitignore` each, and a parsed file is kept by its blob id.
//! Matching a name is independent of the depth: a pattern with no slash
//! looks at the name alone, and a pattern file whose slashed patterns have no
//! `**` is matched, below the depth they can reach, against the path's last
//! few components only (which no slashed pattern of it can match, as the
//! whole path could not).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;

use crate::store::Oid;
use ::ignore::Match;
use ::ignore::gitignore::{Gitignore, GitignoreBuilder};
use lru::LruCache;
use parking_lot::Mutex;

use crate::error::FsResult;
use crate::inodes::{Ino, Kind};

/// The name of the pattern file in a directory.
pub const GITIGNORE: &[u8] = b".gitignore";

/// Pattern files larger than this are skipped, as git skips them
/// (`PATTERN_MAX_FILE_SIZE`).
const MAX_FILE: usize = 100 << 20;

/// Lines of a pattern file matched by one matcher.
const PART: usize = 2048;

/// Parsed pattern files kept, by blob id.
const CACHED: usize = 256;

/// One parsed pattern file.
pub struct Patterns {
    /// The file's patterns in order, in parts of at most `PART` lines (one
    /// matcher of tens of thousands of globs is more than the regex
    /// compiler takes): the last part that matches decides, as the last
    /// pattern that matches does.
    parts: Vec<Gitignore>,
    /// The most path components a pattern with a slash in it can match, or
    /// None when one has no bound (`**`, a character class): a path deeper
    /// than that is matched by its name alone.
    reach: Option<usize>,
}

impl Patterns {
    /// Parses the text of a pattern file. A line that is not UTF-8, or that
    /// the matcher refuses, is skipped (and logged).
    pub fn parse(text: &[u8]) -> Patterns {
        let text = text.strip_prefix(b"\xef\xbb\xbf").unwrap_or(text);
        let mut parts = Vec::new();
        let mut reach = Some(0);
        let mut b = GitignoreBuilder::new("");
        let mut lines = 0;
        let done = |b: &GitignoreBuilder, parts: &mut Vec<Gitignore>| match b.build() {
            Ok(gi) if gi.is_empty() => {}
            Ok(gi) => parts.push(gi),
            Err(e) => log::warn!("ignore patterns not usable: {e}"),
        };
        for (i, line) in text.split(|&c| c == b'\n').enumerate() {
            let Ok(line) = std::str::from_utf8(line) else {
                log::debug!("ignore pattern on line {} is not UTF-8; skipped", i + 1);
                continue;
            };
            match b.add_line(None, line) {
                Ok(_) => {
                    reach = match (reach, line_reach(line)) {
                        (Some(a), Some(b)) => Some(a.max(b)),
                        _ => None,
                    };
                    lines += 1;
                }
                Err(e) => log::debug!("ignore pattern on line {} skipped: {e}", i + 1),
            }
            if lines == PART {
                done(&b, &mut parts);
                b = GitignoreBuilder::new("");
                lines = 0;
            }
        }
        done(&b, &mut parts);
        Patterns { parts, reach }
    }

    /// Whether there is no pattern at all.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// What the last pattern that matches `path` says.
    fn matched(&self, path: &Path, is_dir: bool) -> Match<()> {
        for gi in self.parts.iter().rev() {
            match gi.matched(path, is_dir) {
                Match::None => continue,
                Match::Ignore(_) => return Match::Ignore(()),
                Match::Whitelist(_) => return Match::Whitelist(()),
            }
        }
        Match::None
    }
}

/// How many path components the pattern on `line` can match at most: 0 for
/// one that looks at the name alone (no slash but a trailing one), None for
/// one with no bound. It reads the line as `GitignoreBuilder::add_line` does.
fn line_reach(line: &str) -> Option<usize> {
    if line.starts_with('#') {
        return Some(0);
    }
    let mut p = if line.ends_with("\\ ") {
        line
    } else {
        line.trim_end()
    };
    if let Some(rest) = p.strip_prefix('\\').filter(|r| r.starts_with(['!', '#'])) {
        p = rest;
    } else if let Some(rest) = p.strip_prefix('!') {
        p = rest;
    }
    let p = p.strip_suffix('/').unwrap_or(p);
    if !p.contains('/') {
        return Some(0);
    }
    let p = p.strip_prefix('/').unwrap_or(p);
    // `*` and `?` never match a slash (each component matches one); a class
    // or an alternation might, and `**` matches any number.
    if p.contains("**") || p.contains(['[', '{']) {
        return None;
    }
    Some(p.bytes().filter(|&c| c == b'/').count() + 1)
}

/// The last `k` components of `path` (all of it if it has fewer).
fn last_components(path: &[u8], k: usize) -> &[u8] {
    let mut seen = 0;
    for (i, &c) in path.iter().enumerate().rev() {
        if c == b'/' {
            seen += 1;
            if seen == k {
                return &path[i + 1..];
            }
        }
    }
    path
}

/// The pattern files in force at each level of a walk down a branch, and the
/// path walked. Level 0 is the branch root.
pub struct Walk {
    /// The path of the directory at the deepest level, below the branch root:
    /// each name followed by `/`.
    path: Vec<u8>,
    /// Where each level's directory path ends in `path`.
    ends: Vec<usize>,
    /// The pattern files that apply, lowest precedence first, each with the
    /// level of the directory it is matched from.
    files: Vec<(usize, Arc<Patterns>)>,
}

impl Default for Walk {
    fn default() -> Self {
        Walk {
            path: Vec::new(),
            ends: vec![0],
            files: Vec::new(),
        }
    }
}

impl Walk {
    fn level(&self) -> usize {
        self.ends.len() - 1
    }

    /// Goes down into directory `name` of the deepest level.
    pub fn enter(&mut self, name: &[u8]) {
        self.path.extend_from_slice(name);
        self.path.push(b'/');
        self.ends.push(self.path.len());
    }

    /// Goes back up from the deepest level; its pattern files go.
    pub fn leave(&mut self) {
        let level = self.level();
        while self.files.last().is_some_and(|(l, _)| *l == level) {
            self.files.pop();
        }
        if level > 0 {
            self.ends.pop();
            self.path.truncate(self.ends[self.level()]);
        }
    }

    /// Patterns matched from the deepest level's directory, taking precedence
    /// over every file added before.
    pub fn add(&mut self, p: Arc<Patterns>) {
        if !p.is_empty() {
            self.files.push((self.level(), p));
        }
    }

    /// Whether entry `name` of the deepest level's directory is ignored (its
    /// directory not being ignored: the caller knows that).
    pub fn ignored(&mut self, name: &[u8], is_dir: bool) -> bool {
        if self.files.is_empty() {
            return false;
        }
        let level = self.level();
        let len = self.path.len();
        self.path.extend_from_slice(name);
        let mut out = false;
        for (at, p) in self.files.iter().rev() {
            let rel = &self.path[self.ends[*at]..];
            let depth = level - at + 1;
            let rel = match p.reach {
                Some(d) if depth > d => last_components(rel, d + 1),
                _ => rel,
            };
            match p.matched(Path::new(OsStr::from_bytes(rel)), is_dir) {
                Match::None => continue,
                Match::Ignore(_) => out = true,
                Match::Whitelist(_) => out = false,
            }
            break;
        }
        self.path.truncate(len);
        out
    }
}

/// Parsed pattern files, by the blob id of their text.
pub struct Cache(Mutex<LruCache<Oid, Arc<Patterns>>>);

impl Default for Cache {
    fn default() -> Self {
        Cache(Mutex::new(LruCache::new(
            std::num::NonZeroUsize::new(CACHED).expect("nonzero"),
        )))
    }
}

impl Cache {
    fn get_or_parse(
        &self,
        oid: Oid,
        text: impl FnOnce() -> FsResult<Vec<u8>>,
    ) -> FsResult<Arc<Patterns>> {
        if let Some(p) = self.0.lock().get(&oid) {
            return Ok(p.clone());
        }
        let p = Arc::new(Patterns::parse(&text()?));
        self.0.lock().put(oid, p.clone());
        Ok(p)
    }
}

/// The ignore rules of a mount's commits: the parsed pattern files, and
/// whether they apply at all (`--no-gitignore`).
pub struct Ignores {
    cache: Cache,
    enabled: bool,
    common_dir: std::path::PathBuf,
}

impl Ignores {
    pub fn new(enabled: bool, common_dir: &Path) -> Ignores {
        Ignores {
            cache: Cache::default(),
            enabled,
            common_dir: common_dir.to_path_buf(),
        }
    }

    /// The walk a commit of a branch starts with: `core.excludesFile` (when
    /// set), then `info/exclude` of the common directory, at the root. None
    /// with `--no-gitignore`.
    pub(crate) fn walk(&self, repo: &crate::store::repo::Txn<'_>) -> Option<Walk> {
        if !self.enabled {
            return None;
        }
        let mut walk = Walk::default();
        let excludes_file = repo.excludes_file();
        let info = self.common_dir.join("info").join("exclude");
        for path in excludes_file.into_iter().chain([info]) {
            if let Some(p) = self.patterns_in_file(&path) {
                walk.add(p);
            }
        }
        Some(walk)
    }

    /// The patterns in a file of the repository's (a missing or unreadable
    /// file has none; unreadable is logged, as git warns).
    fn patterns_in_file(&self, path: &Path) -> Option<Arc<Patterns>> {
        let text = match std::fs::metadata(path) {
            Ok(m) if m.len() > MAX_FILE as u64 => {
                log::warn!("{}: larger than 100 MiB; not read", path.display());
                return None;
            }
            Ok(_) => std::fs::read(path),
            Err(e) => Err(e),
        };
        let text = match text {
            Ok(t) => t,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                return None;
            }
            Err(e) => {
                log::warn!("{}: {e}; its patterns do not apply", path.display());
                return None;
            }
        };
        let oid = crate::store::treeobj::hash_object("blob", &text);
        self.cache.get_or_parse(oid, || Ok(text)).ok()
    }

    /// The patterns of the `.gitignore` among `children` (a directory's, in
    /// name order), as the mount shows it: a written file's current bytes, a
    /// clean one's blob. A symlink or a directory of that name is no pattern
    /// file (git does not follow a symlinked `.gitignore`).
    pub(crate) fn gitignore_in(
        &self,
        src: &dyn crate::commit::Pending,
        children: &[(Box<[u8]>, Ino)],
    ) -> FsResult<Option<Arc<Patterns>>> {
        let Ok(i) = children.binary_search_by(|(n, _)| (**n).cmp(GITIGNORE)) else {
            return Ok(None);
        };
        let ino = children[i].1;
        let n = src.node(ino)?;
        let p = match &n.kind {
            Kind::File { oid, .. } => self
                .cache
                .get_or_parse(*oid, || read_pattern_file(src, ino))?,
            Kind::MFile { .. } => {
                let text = read_pattern_file(src, ino)?;
                let oid = crate::store::treeobj::hash_object("blob", &text);
                self.cache.get_or_parse(oid, || Ok(text))?
            }
            _ => return Ok(None),
        };
        Ok(Some(p))
    }
}

/// The whole content of a pattern file of the mount, through the code
/// that serves reads (none past MAX_FILE: such a file is skipped).
fn read_pattern_file(src: &dyn crate::commit::Pending, ino: Ino) -> FsResult<Vec<u8>> {
    match src.read_file(ino, MAX_FILE)? {
        Some(text) => Ok(text),
        None => {
            log::warn!("a .gitignore larger than 100 MiB is not read");
            Ok(Vec::new())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(files: &[(&[&str], &str)]) -> Walk {
        let mut w = Walk::default();
        let mut at: Vec<&str> = Vec::new();
        for (dir, text) in files {
            while !dir.starts_with(&at) {
                at.pop();
                w.leave();
            }
            for d in &dir[at.len()..] {
                w.enter(d.as_bytes());
                at.push(d);
            }
            w.add(Arc::new(Patterns::parse(text.as_bytes())));
        }
        w
    }

    fn at(w: &mut Walk, dir: &[&str]) {
        while w.level() > 0 {
            w.leave();
        }
        for d in dir {
            w.enter(d.as_bytes());
        }
    }

    #[test]
    fn reach_of_patterns() {
        assert_eq!(line_reach("*.o"), Some(0));
        assert_eq!(line_reach("build/"), Some(0));
        assert_eq!(line_reach("!keep.o"), Some(0));
        assert_eq!(line_reach("# a/b/c"), Some(0));
        assert_eq!(line_reach("/top"), Some(1));
        assert_eq!(line_reach("/a/b/"), Some(2));
        assert_eq!(line_reach("a/b/c"), Some(3));
        assert_eq!(line_reach("!/a/b"), Some(2));
        assert_eq!(line_reach("a/**/b"), None);
        assert_eq!(line_reach("**/b/c"), None);
        assert_eq!(line_reach("a/[xy]"), None);
        assert_eq!(last_components(b"a/b/c", 2), b"b/c");
        assert_eq!(last_components(b"a/b/c", 1), b"c");
        assert_eq!(last_components(b"a/b/c", 5), b"a/b/c");
    }

    #[test]
    fn git_rules() {
        let mut w = walk(&[(&[], "*.o\nbuild/\n!keep.o\n/top.txt\nsub/only.txt\n")]);
        assert!(w.ignored(b"a.o", false));
        assert!(!w.ignored(b"keep.o", false));
        assert!(!w.ignored(b"a.c", false));
        assert!(w.ignored(b"build", true));
        assert!(
            !w.ignored(b"build", false),
            "a file named build is not a directory"
        );
        assert!(w.ignored(b"top.txt", false));
        at(&mut w, &["sub"]);
        assert!(w.ignored(b"a.o", false));
        assert!(!w.ignored(b"top.txt", false), "anchored at the root only");
        assert!(w.ignored(b"only.txt", false));
        at(&mut w, &["x", "sub"]);
        assert!(!w.ignored(b"only.txt", false), "a middle slash anchors");
    }

    #[test]
    fn deeper_files_win_and_go_with_their_level() {
        let mut w = walk(&[(&[], "*.log\n"), (&["d"], "!keep.log\n/here\n")]);
        assert!(!w.ignored(b"keep.log", false));
        assert!(w.ignored(b"other.log", false));
        assert!(w.ignored(b"here", false));
        w.enter(b"e");
        assert!(!w.ignored(b"here", false), "anchored at d");
        assert!(!w.ignored(b"keep.log", false));
        w.leave();
        w.leave();
        assert!(w.ignored(b"keep.log", false), "d's file no longer applies");
        assert!(!w.ignored(b"here", false));
    }

    #[test]
    fn deep_paths_match_as_shallow_ones() {
        // Below the reach of a file's slashed patterns, the name decides.
        let mut w = walk(&[(&[], "/a/b\n*.o\na/*/c\n")]);
        for _ in 0..1000 {
            w.enter(b"a");
        }
        assert!(w.ignored(b"x.o", false));
        assert!(!w.ignored(b"b", false));
        assert!(!w.ignored(b"c", false));
        let mut w = walk(&[(&[], "a/**/z\n")]);
        for _ in 0..50 {
            w.enter(b"a");
        }
        assert!(w.ignored(b"z", false));
        assert!(!w.ignored(b"y", false));
    }

    #[test]
    fn many_lines_match_as_one_file() {
        // Tens of thousands of globs, more than one matcher takes: the last
        // line that matches still decides.
        let mut text = String::new();
        for i in 0..20_000 {
            text.push_str(&format!("a*b{i}/c?d\n"));
        }
        text.push_str("*.o\n");
        for i in 0..5000 {
            text.push_str(&format!("x*{i}\n"));
        }
        text.push_str("!keep.o\n");
        let mut w = Walk::default();
        w.add(Arc::new(Patterns::parse(text.as_bytes())));
        assert!(w.ignored(b"a.o", false));
        assert!(!w.ignored(b"keep.o", false));
        assert!(w.ignored(b"x12", false));
        w.enter(b"aQb19999");
        assert!(w.ignored(b"cZd", false));
        assert!(!w.ignored(b"keep.o", false));
    }

    #[test]
    fn odd_lines() {
        let p =
            Patterns::parse(b"\xef\xbb\xbf*.o\r\n\xff\xfe.bad\n  \n\\#hash\n\\!bang\ntrail\\ \n");
        let mut w = Walk::default();
        w.add(Arc::new(p));
        assert!(
            w.ignored(b"a.o", false),
            "a BOM and a CR are not part of the pattern"
        );
        assert!(w.ignored(b"#hash", false));
        assert!(w.ignored(b"!bang", false));
        assert!(w.ignored(b"trail ", false));
        assert!(!w.ignored(b"trail", false));
        assert!(Patterns::parse(b"# only a comment\n\n").is_empty());
    }
}
