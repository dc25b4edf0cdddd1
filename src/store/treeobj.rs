//! Tree objects as bytes: parsed and written by commitfs itself, so that a
//! hostile tree never makes a whole directory unreadable and never stops a
//! branch from committing.
//!
//! libgit2 refuses to parse a tree that holds an entry with an empty name or a
//! mode that does not fit 16 bits (so every sibling would be EIO), and refuses
//! to write a tree that holds `.git` (so a branch carrying one could never
//! commit again). Here a tree is read entry by entry and sorted into what the
//! mount shows ([`Listing::entries`]) and what it does not
//! ([`Listing::hidden`]); a directory the mount rewrites keeps its hidden
//! entries exactly as they were stored.
//!
//! The rules, each logged once per tree by the caller (see `Skip`):
//! - a name no directory entry can have (empty, `.`, `..`, over NAME_MAX, `/`
//!   or NUL inside) or one Git refuses to check out (`names::refused`): hidden;
//! - a mode that is not one of Git's (040000, 100644, 100755, 120000, 160000,
//!   and the old 100664, 100600, 100000): hidden;
//! - several entries of one name: the first in Git's tree order wins (a file
//!   `a` sorts before a directory `a`, which Git orders as `a/`; of two of the
//!   same kind, the first stored); the others are hidden;
//! - an entry cut short (a tree object that ends in the middle of one): the
//!   entries before it are shown, the rest of the object is ignored.

use crate::store::Oid;

use crate::store::names::{refused, valid_name};
use crate::store::repo::{EntryKind, TreeEntry};

/// One entry exactly as stored: its mode as written (octal text), name, id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawEntry {
    pub mode: Box<[u8]>,
    pub name: Box<[u8]>,
    pub oid: Oid,
}

impl RawEntry {
    /// The mode as a number; `None` when it is not octal digits.
    pub fn mode_num(&self) -> Option<u32> {
        parse_mode(&self.mode)
    }

    /// Whether Git orders this entry as a directory (its name with a `/`):
    /// git's `S_ISDIR` of the mode as it reads it, whatever the other bits.
    pub fn is_tree(&self) -> bool {
        self.mode_num().is_some_and(|m| m & 0o170000 == 0o040000)
    }
}

/// Why an entry is not shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Empty, `.`, `..`, too long, `/` or NUL.
    BadName,
    /// `.git` or an alias of it (or a `.gitmodules` symlink).
    Refused,
    /// Not one of Git's modes.
    UnknownMode,
    /// A second entry of a name already shown.
    Duplicate,
    /// The tree object ends in the middle of an entry.
    Truncated,
}

impl Skip {
    pub fn describe(self) -> &'static str {
        match self {
            Skip::BadName => "a name no file can have (empty, '.', '..', '/', NUL or too long)",
            Skip::Refused => "a name Git refuses to check out ('.git' or an alias of it)",
            Skip::UnknownMode => "a mode Git does not write",
            Skip::Duplicate => "a name that an earlier entry already has",
            Skip::Truncated => "an entry cut short (the tree object is malformed)",
        }
    }
}

/// A parsed tree: what the mount shows, sorted by name bytes (so lookups can
/// binary-search), and what it keeps unseen.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<TreeEntry>,
    /// Entries not shown, as stored, in stored order (a truncated tail is not
    /// among them: there is no entry to keep).
    pub hidden: Vec<RawEntry>,
    /// What was skipped, and the name it had.
    pub skipped: Vec<(Skip, Box<[u8]>)>,
    /// The tree object it was read from (`None`: no tree, nothing tracked).
    pub tree: Option<Oid>,
}

impl Listing {
    /// The shown entry named `name`.
    pub fn get(&self, name: &[u8]) -> Option<&TreeEntry> {
        let i = self
            .entries
            .binary_search_by(|e| (*e.name).cmp(name))
            .ok()?;
        Some(&self.entries[i])
    }

    /// What the tree cache counts for this listing: every entry it holds,
    /// shown or hidden (a tree of nothing but hidden entries costs memory
    /// too).
    pub fn cost(&self) -> usize {
        self.entries.len() + self.hidden.len() + 1
    }
}

impl std::ops::Deref for Listing {
    type Target = Vec<TreeEntry>;
    fn deref(&self) -> &Vec<TreeEntry> {
        &self.entries
    }
}

/// A mode as git reads it (`parse_mode` in tree-walk.c): octal digits of any
/// length, summed in 32 bits that wrap, then kept to 16 bits. So `1040000` is
/// a directory to git and `1100644` a file (`git fsck --strict` finds nothing
/// wrong with either); the mount reads them as git does.
fn parse_mode(text: &[u8]) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    let mut m = 0u32;
    for &c in text {
        if !(b'0'..=b'7').contains(&c) {
            return None;
        }
        m = (m << 3).wrapping_add(u32::from(c - b'0'));
    }
    Some(m & 0xffff)
}

/// What a Git mode means, if it is one of Git's.
pub fn kind_of_mode(mode: u32) -> Option<EntryKind> {
    Some(match mode {
        0o100755 => EntryKind::File { executable: true },
        0o100644 | 0o100664 | 0o100600 | 0o100000 => EntryKind::File { executable: false },
        0o120000 => EntryKind::Symlink,
        0o40000 => EntryKind::Dir,
        0o160000 => EntryKind::Submodule,
        _ => return None,
    })
}

/// The mode Git writes for a kind.
pub fn mode_of_kind(kind: EntryKind) -> &'static [u8] {
    match kind {
        EntryKind::File { executable: true } => b"100755",
        EntryKind::File { executable: false } => b"100644",
        EntryKind::Symlink => b"120000",
        EntryKind::Dir => b"40000",
        EntryKind::Submodule => b"160000",
    }
}

/// Every entry of a tree object as stored, and whether it ended cleanly
/// (`false`: the bytes after the last entry returned are not a whole entry).
pub fn parse_raw(data: &[u8]) -> (Vec<RawEntry>, bool) {
    let (entries, whole) = parse_slices(data);
    let out = entries
        .into_iter()
        .map(|(mode, name, oid)| RawEntry {
            mode: mode.into(),
            name: name.into(),
            oid,
        })
        .collect();
    (out, whole)
}

/// One entry as (mode, name, id), borrowing the tree object's bytes.
type Slices<'a> = (&'a [u8], &'a [u8], Oid);

/// The entries of a tree object, borrowing the bytes.
fn parse_slices(data: &[u8]) -> (Vec<Slices<'_>>, bool) {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let Some(sp) = rest.iter().position(|&c| c == b' ') else {
            return (out, false);
        };
        let Some(nul) = rest[sp + 1..]
            .iter()
            .position(|&c| c == 0)
            .map(|i| i + sp + 1)
        else {
            return (out, false);
        };
        let Some(id) = rest.get(nul + 1..nul + 21) else {
            return (out, false);
        };
        let Ok(oid) = Oid::from_bytes(id) else {
            return (out, false);
        };
        out.push((&rest[..sp], &rest[sp + 1..nul], oid));
        rest = &rest[nul + 21..];
    }
    (out, true)
}

/// Git's order of tree entries: by name, a directory's name compared as if it
/// ended in `/`.
fn git_order(a_name: &[u8], a_tree: bool, b_name: &[u8], b_tree: bool) -> std::cmp::Ordering {
    let n = a_name.len().min(b_name.len());
    match a_name[..n].cmp(&b_name[..n]) {
        std::cmp::Ordering::Equal => {}
        o => return o,
    }
    let next = |name: &[u8], tree: bool| -> Option<u8> {
        match name.get(n) {
            Some(&c) => Some(c),
            None if tree => Some(b'/'),
            None => None,
        }
    };
    let (x, y) = (next(a_name, a_tree), next(b_name, b_tree));
    match x.cmp(&y) {
        std::cmp::Ordering::Equal => {
            // Both ended (or both went on with '/'): compare what is left.
            a_name.len().cmp(&b_name.len())
        }
        o => o,
    }
}

/// Parses a tree object and sorts its entries into shown and hidden.
pub fn parse(data: &[u8]) -> Listing {
    let (raw, whole) = parse_slices(data);
    let mut listing = Listing::default();
    let hide = |listing: &mut Listing, why: Skip, (mode, name, oid): Slices<'_>| {
        listing.skipped.push((why, name.into()));
        listing.hidden.push(RawEntry {
            mode: mode.into(),
            name: name.into(),
            oid,
        });
    };
    let mut candidates: Vec<(Slices<'_>, EntryKind)> = Vec::with_capacity(raw.len());
    for e in raw {
        let kind = parse_mode(e.0).and_then(kind_of_mode);
        let skip = if !valid_name(e.1) {
            Some(Skip::BadName)
        } else if refused(e.1, kind == Some(EntryKind::Symlink)) {
            Some(Skip::Refused)
        } else {
            None
        };
        match (skip, kind) {
            (None, Some(k)) => candidates.push((e, k)),
            (Some(why), _) => hide(&mut listing, why, e),
            (None, None) => hide(&mut listing, Skip::UnknownMode, e),
        }
    }
    // Of entries sharing a name, the first in Git's order wins (of two of one
    // kind, the first stored): rank them in that order, then sort by name
    // bytes (what lookups binary-search) with the rank breaking ties.
    let in_git_order = candidates.windows(2).all(|w| {
        git_order(
            w[0].0.1,
            w[0].1 == EntryKind::Dir,
            w[1].0.1,
            w[1].1 == EntryKind::Dir,
        ) == std::cmp::Ordering::Less
    });
    if !in_git_order {
        candidates.sort_by(|(a, ak), (b, bk)| {
            git_order(a.1, *ak == EntryKind::Dir, b.1, *bk == EntryKind::Dir)
        });
    }
    let mut ranked: Vec<(usize, (Slices<'_>, EntryKind))> =
        candidates.into_iter().enumerate().collect();
    ranked.sort_by(|(ra, (a, _)), (rb, (b, _))| a.1.cmp(b.1).then(ra.cmp(rb)));
    let mut shown: Vec<TreeEntry> = Vec::with_capacity(ranked.len());
    for (_, (e, kind)) in ranked {
        if shown.last().is_some_and(|l| *l.name == *e.1) {
            hide(&mut listing, Skip::Duplicate, e);
            continue;
        }
        shown.push(TreeEntry {
            name: e.1.into(),
            oid: e.2,
            kind,
        });
    }
    listing.entries = shown;
    if !whole {
        listing.skipped.push((Skip::Truncated, Box::default()));
    }
    listing
}

/// A tree object's bytes for `entries`, sorted into Git's order. Entries that
/// share a name keep the order they are given in (the one shown first).
pub fn serialize(mut entries: Vec<RawEntry>) -> Vec<u8> {
    entries.sort_by(|a, b| git_order(&a.name, a.is_tree(), &b.name, b.is_tree()));
    let mut out = Vec::with_capacity(
        entries
            .iter()
            .map(|e| e.mode.len() + e.name.len() + 22)
            .sum(),
    );
    for e in &entries {
        out.extend_from_slice(&e.mode);
        out.push(b' ');
        out.extend_from_slice(&e.name);
        out.push(0);
        out.extend_from_slice(e.oid.as_bytes());
    }
    out
}

/// The blob id of the bytes of file `path`, read in pieces (a written file
/// may be large).
pub fn hash_blob_file(path: &std::path::Path) -> std::io::Result<Oid> {
    use sha1::{Digest, Sha1};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    let mut h = Sha1::new();
    h.update(format!("blob {len}\0").as_bytes());
    let mut buf = vec![0u8; 64 << 10];
    let mut seen = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        seen += n as u64;
        h.update(&buf[..n]);
    }
    if seen != len {
        return Err(std::io::Error::other(
            "the file changed while it was hashed",
        ));
    }
    Oid::from_bytes(&h.finalize()).map_err(std::io::Error::other)
}

/// The id Git gives an object of `kind` (`b"tree"`, `b"blob"`, `b"commit"`).
pub fn hash_object(kind: &str, data: &[u8]) -> Oid {
    use sha1::{Digest, Sha1};
    let mut h = Sha1::new();
    h.update(format!("{kind} {}\0", data.len()).as_bytes());
    h.update(data);
    // A SHA-1 is 20 bytes: from_bytes cannot fail on it.
    Oid::from_bytes(&h.finalize()).unwrap_or(Oid::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(mode: &str, name: &[u8], n: u8) -> RawEntry {
        RawEntry {
            mode: mode.as_bytes().into(),
            name: name.into(),
            oid: Oid::from_bytes(&[n; 20]).unwrap(),
        }
    }

    #[test]
    fn round_trips_and_matches_git_order() {
        let entries = vec![
            raw("100644", b"a.c", 1),
            raw("40000", b"a", 2),
            raw("100644", b"a-b", 3),
            raw("100755", b"b", 4),
        ];
        let bytes = serialize(entries);
        let (back, whole) = parse_raw(&bytes);
        assert!(whole);
        let names: Vec<&[u8]> = back.iter().map(|e| &*e.name).collect();
        // Git orders the directory `a` as `a/`: after `a-b` and `a.c`.
        assert_eq!(names, vec![&b"a-b"[..], b"a.c", b"a", b"b"]);
    }

    #[test]
    fn hostile_entries_are_hidden_and_siblings_shown() {
        let entries = vec![
            raw("100644", b"", 1),
            raw("777777", b"weird", 2),
            raw("40000", b".git", 3),
            raw("100644", b"ok", 4),
            raw("40000", b"x", 5),
            raw("100644", b"x", 6),
            raw("100644", b"ok", 7),
            raw("120000", b".gitmodules", 8),
        ];
        let l = parse(&serialize(entries.clone()));
        let shown: Vec<(&[u8], u8)> = l
            .entries
            .iter()
            .map(|e| (&*e.name, e.oid.as_bytes()[0]))
            .collect();
        assert_eq!(shown, vec![(&b"ok"[..], 4), (&b"x"[..], 6)]);
        assert_eq!(l.hidden.len(), 6);
        let skips: Vec<Skip> = l.skipped.iter().map(|s| s.0).collect();
        for s in [
            Skip::BadName,
            Skip::UnknownMode,
            Skip::Refused,
            Skip::Duplicate,
        ] {
            assert!(skips.contains(&s), "{s:?} in {skips:?}");
        }
    }

    /// Modes read as git reads them: wrapped to 16 bits, so a long mode whose
    /// low bits are a directory's is a directory, shown and ordered as one; a
    /// hidden entry git orders as a directory (`040755`) keeps that order when
    /// the tree is written again (fsck's treeNotSorted otherwise).
    #[test]
    fn modes_are_read_and_ordered_as_git_reads_them() {
        let stored = vec![
            raw("100644", b"a.b", 1),
            raw("1040000", b"a", 2),
            raw("100644", b"c.d", 3),
            raw("040755", b"c", 4),
            raw("1100644", b"f", 5),
        ];
        let bytes: Vec<u8> = stored
            .iter()
            .flat_map(|e| {
                let mut v = e.mode.to_vec();
                v.push(b' ');
                v.extend_from_slice(&e.name);
                v.push(0);
                v.extend_from_slice(e.oid.as_bytes());
                v
            })
            .collect();
        // Already in git's order: written again byte for byte.
        assert_eq!(serialize(stored.clone()), bytes);
        let l = parse(&bytes);
        let kinds: Vec<(&[u8], EntryKind)> = l.entries.iter().map(|e| (&*e.name, e.kind)).collect();
        assert_eq!(
            kinds,
            vec![
                (&b"a"[..], EntryKind::Dir),
                (b"a.b", EntryKind::File { executable: false }),
                (b"c.d", EntryKind::File { executable: false }),
                (b"f", EntryKind::File { executable: false }),
            ]
        );
        assert_eq!(l.hidden.len(), 1, "040755 is not a mode git writes");
    }

    #[test]
    fn a_truncated_tree_shows_what_came_before() {
        let mut bytes = serialize(vec![raw("100644", b"a", 1), raw("100644", b"b", 2)]);
        bytes.truncate(bytes.len() - 5);
        let l = parse(&bytes);
        assert_eq!(l.entries.len(), 1);
        assert_eq!(l.skipped.last().map(|s| s.0), Some(Skip::Truncated));
    }

    #[test]
    fn hashes_like_git() {
        // `git hash-object -t blob /dev/null`
        assert_eq!(
            hash_object("blob", b"").to_string(),
            "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
        );
        // The empty tree.
        assert_eq!(
            hash_object("tree", b"").to_string(),
            "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
        );
    }
}
