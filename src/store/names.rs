//! Which tree entry names a mount may show or make: the rules Git applies
//! before it checks a path out (`verify_path` in git's read-cache.c, with
//! `core.protectNTFS` and `core.protectHFS` both on, as Git has them on the
//! platforms they protect).
//!
//! A repository is untrusted input. A tree entry named `.git` (in any letter
//! case, or any name some filesystem Git supports would take for `.git`) would
//! let a repository plant a `.git` directory in the mount, and with it a
//! `config` whose `core.fsmonitor` runs a command on the next `git status`.
//! Such names are never shown and never made. Pure functions over bytes.

/// The longest name a kernel serves (NAME_MAX).
pub const NAME_MAX: usize = 255;

/// Whether `name` is one a directory entry can have at all: not empty, not `.`
/// or `..`, at most NAME_MAX bytes, no `/`, no NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name != b"."
        && name != b".."
        && name.len() <= NAME_MAX
        && !name.contains(&b'/')
        && !name.contains(&0)
}

/// Whether Git refuses to check out an entry of this name (and, for
/// `symlink`, of this name as a symlink): `.git` and its aliases, and a
/// symlink named `.gitmodules` or one of its aliases.
pub fn refused(name: &[u8], symlink: bool) -> bool {
    is_dotgit(name) || (symlink && is_dotgitmodules(name))
}

/// `.git` as any filesystem Git supports would read the name: in any letter
/// case (all of them), with trailing spaces or dots, the 8.3 short name
/// `git~1`, an NTFS stream (`.git::$INDEX_ALLOCATION`) or a backslash-separated
/// first segment (NTFS), or with Unicode code points HFS+ ignores inside.
pub fn is_dotgit(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b".git")
        || name.split(|&c| c == b'\\').any(is_ntfs_dotgit_segment)
        || is_hfs_dot(name, b"git")
}

/// `.gitmodules` as NTFS or HFS+ would read it (git refuses it as a symlink).
/// As for `.git`, NTFS also reads what follows a backslash as a name of its
/// own (git's `verify_path` checks the rest of the name after each one).
pub fn is_dotgitmodules(name: &[u8]) -> bool {
    let after_backslashes = name
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == b'\\')
        .map(|(i, _)| i + 1);
    std::iter::once(0)
        .chain(after_backslashes)
        .any(|at| is_ntfs_dot_generic(&name[at..], b"gitmodules", b"gi7eba"))
        || is_hfs_dot(name, b"gitmodules")
}

/// The rest of an NTFS name after a match: only spaces and dots up to the end
/// or an alternate data stream (`:`).
fn only_spaces_and_periods(rest: &[u8]) -> bool {
    for &c in rest {
        if c == b':' {
            return true;
        }
        if c != b' ' && c != b'.' {
            return false;
        }
    }
    true
}

/// One backslash-separated segment naming `.git` on NTFS: `.git` or `git~1`
/// in any case, then only spaces and dots (or a stream).
fn is_ntfs_dotgit_segment(seg: &[u8]) -> bool {
    let starts = |p: &[u8]| seg.len() >= p.len() && seg[..p.len()].eq_ignore_ascii_case(p);
    if starts(b".git") {
        return only_spaces_and_periods(&seg[4..]);
    }
    if starts(b"git~1") {
        return only_spaces_and_periods(&seg[5..]);
    }
    false
}

/// git's `is_ntfs_dot_generic`: `.NAME`, its short name (first six letters,
/// `~1` to `~4`), or the fall-back short name (`PREFIX~N`), each followed
/// only by spaces and dots.
fn is_ntfs_dot_generic(name: &[u8], dotgit_name: &[u8], shortname_prefix: &[u8]) -> bool {
    let len = dotgit_name.len();
    if name.len() > len && name[0] == b'.' && name[1..=len].eq_ignore_ascii_case(dotgit_name) {
        return only_spaces_and_periods(&name[len + 1..]);
    }
    if name.len() >= 8
        && name[..6].eq_ignore_ascii_case(&dotgit_name[..6])
        && name[6] == b'~'
        && (b'1'..=b'4').contains(&name[7])
    {
        return only_spaces_and_periods(&name[8..]);
    }
    // The fall-back short name: up to six letters of the prefix, `~`, a digit
    // 1-9, then digits, eight characters in all.
    let mut saw_tilde = false;
    let mut i = 0;
    while i < 8 {
        let Some(&c) = name.get(i) else { return false };
        if saw_tilde {
            if !c.is_ascii_digit() {
                return false;
            }
        } else if c == b'~' {
            i += 1;
            match name.get(i) {
                Some(d) if (b'1'..=b'9').contains(d) => {}
                _ => return false,
            }
            saw_tilde = true;
        } else if i >= 6 || c & 0x80 != 0 || c.to_ascii_lowercase() != shortname_prefix[i] {
            return false;
        }
        i += 1;
    }
    only_spaces_and_periods(&name[8..])
}

/// One code point of UTF-8 as git's `pick_one_utf8_char` reads it: `None`
/// at the end and for a sequence git takes as malformed (overlong forms,
/// surrogates, U+FFFE and U+FFFF, past U+10FFFF, cut short), after which
/// `rest` is empty.
fn pick_utf8(rest: &mut &[u8]) -> Option<u32> {
    let s = *rest;
    let cont = |i: usize| s.get(i).is_some_and(|&c| c & 0xc0 == 0x80);
    let bits = |i: usize| u32::from(s[i] & 0x3f);
    let (ch, len) = match *s.first()? {
        c if c < 0x80 => (u32::from(c), 1),
        c if c & 0xe0 == 0xc0 && cont(1) && c & 0xfe != 0xc0 => {
            ((u32::from(c & 0x1f) << 6) | bits(1), 2)
        }
        c if c & 0xf0 == 0xe0
            && cont(1)
            && cont(2)
            && !(c == 0xe0 && s[1] & 0xe0 == 0x80)
            && !(c == 0xed && s[1] & 0xe0 == 0xa0)
            && !(c == 0xef && s[1] == 0xbf && s[2] & 0xfe == 0xbe) =>
        {
            ((u32::from(c & 0x0f) << 12) | (bits(1) << 6) | bits(2), 3)
        }
        c if c & 0xf8 == 0xf0
            && cont(1)
            && cont(2)
            && cont(3)
            && !(c == 0xf0 && s[1] & 0xf0 == 0x80)
            && !(c == 0xf4 && s[1] > 0x8f)
            && c <= 0xf4 =>
        {
            (
                (u32::from(c & 0x07) << 18) | (bits(1) << 12) | (bits(2) << 6) | bits(3),
                4,
            )
        }
        _ => {
            *rest = &[];
            return None;
        }
    };
    *rest = &s[len..];
    Some(ch)
}

/// git's `next_hfs_char`: the next code point HFS+ does not ignore; `None` at
/// the end or at bytes that are not UTF-8.
fn next_hfs_char(rest: &mut &[u8]) -> Option<u32> {
    loop {
        let c = pick_utf8(rest)?;
        if !hfs_ignored(c) {
            return Some(c);
        }
    }
}

/// Code points HFS+ ignores when it compares names.
fn hfs_ignored(c: u32) -> bool {
    matches!(c, 0x200c..=0x200f | 0x202a..=0x202e | 0x206a..=0x206f | 0xfeff)
}

/// `.` followed by `needle` (ASCII, lower case) as HFS+ compares names:
/// ignorable code points skipped, ASCII case folded. As in git's
/// `is_hfs_dot_generic`, bytes that are not UTF-8 (as git reads it) end the
/// name there: `.git` followed by them is refused too.
fn is_hfs_dot(name: &[u8], needle: &[u8]) -> bool {
    let mut rest = name;
    if next_hfs_char(&mut rest) != Some(u32::from(b'.')) {
        return false;
    }
    for &want in needle {
        match next_hfs_char(&mut rest) {
            Some(c) if c < 0x80 && (c as u8).to_ascii_lowercase() == want => {}
            _ => return false,
        }
    }
    next_hfs_char(&mut rest).is_none()
}

/// Paths visited by a walk of trees, each a name below a parent: a path is
/// spelled out only when it is needed, so a deep tree costs one name per
/// level, not one whole path per level.
#[derive(Default)]
pub struct Paths {
    nodes: Vec<(usize, Box<[u8]>)>,
}

impl Paths {
    /// The branch's root (the empty path).
    pub const ROOT: usize = usize::MAX;

    pub fn add(&mut self, parent: usize, name: &[u8]) -> usize {
        self.nodes.push((parent, name.into()));
        self.nodes.len() - 1
    }

    pub fn full(&self, mut at: usize) -> Vec<u8> {
        let mut names = Vec::new();
        while let Some((parent, name)) = self.nodes.get(at) {
            names.push(&**name);
            at = *parent;
        }
        names.reverse();
        names.join(&b'/')
    }
}

/// Why a program may not create a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadName {
    /// Longer than NAME_MAX (ENAMETOOLONG).
    TooLong,
    /// A name Git must never store or would refuse to check out (EINVAL).
    Refused,
}

/// A name a program may create: not one Git must never store or would
/// refuse to check out (`.git` in any case and its aliases; see `refused`),
/// and for a symlink, also not `.gitmodules` or its aliases.
pub fn check_new_name(name: &[u8], symlink: bool) -> Result<(), BadName> {
    use crate::store::repo::{NAME_MAX, valid_name};
    if name.len() > NAME_MAX {
        return Err(BadName::TooLong);
    }
    if !valid_name(name) || refused(name, symlink) {
        return Err(BadName::Refused);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotgit_and_its_aliases_are_refused() {
        for n in [
            ".git",
            ".GIT",
            ".Git",
            ".git.",
            ".git ",
            ".git. . ",
            "git~1",
            "GIT~1",
            "git~1.",
            ".git::$INDEX_ALLOCATION",
            ".git:x",
            ".git\\config",
            "x\\.git",
            ".g\u{200c}it",
            "\u{feff}.GIT",
            ".git\u{200d}",
        ] {
            assert!(is_dotgit(n.as_bytes()), "{n:?} must be refused");
            assert!(refused(n.as_bytes(), false), "{n:?}");
        }
        // git's read of HFS+ names: bytes it cannot decode end the name, so
        // `.git` followed by them is `.git` (U+FFFE and U+FFFF, surrogates and
        // overlong forms count as undecodable).
        for n in [
            &b".git\xff"[..],
            b".GIT\x80",
            b".git\xef\xbf\xbf",
            b".git\xef\xbf\xbe",
            b".g\xe2\x80\x8cit\xff",
            b".git\xed\xa0\x80",
            b".git\xc0\xae",
            b".git\xe2\x80\x8c\xf5",
        ] {
            assert!(is_dotgit(n), "{n:?} must be refused");
        }
    }

    #[test]
    fn ordinary_names_are_served() {
        for n in [
            ".gitignore",
            ".github",
            ".git-blame-ignore-revs",
            "git",
            ".gitx",
            "git~2",
            "a.git",
            ".git.d",
            ".gi",
            "\u{e9}.git",
        ] {
            assert!(!is_dotgit(n.as_bytes()), "{n:?} must be served");
        }
        for n in [
            &b".g\xffit"[..],
            b"\xff.git",
            b".gi\xef\xbf\xbft",
            b".git\xe2\x80\x8cx",
        ] {
            assert!(!is_dotgit(n), "{n:?} must be served");
        }
    }

    #[test]
    fn dotgitmodules_is_refused_only_as_a_symlink() {
        for n in [
            ".gitmodules",
            ".GITMODULES",
            ".gitmodules ",
            "gitmod~1",
            "GI7EBA~1",
            "gi7e~123",
            "x\\.gitmodules",
            "a\\b\\GITMOD~1 .",
            ".gitmodules\u{200c}",
        ] {
            assert!(is_dotgitmodules(n.as_bytes()), "{n:?}");
            assert!(refused(n.as_bytes(), true), "{n:?}");
            assert!(!refused(n.as_bytes(), false), "{n:?}");
        }
        for n in [
            ".gitmodulesx",
            "gitmod~5",
            "gitmodules",
            "gi7eba~0",
            "gi7eba~12",
            ".gitmodules\\x",
            "x\\gitmod~1\\y",
        ] {
            assert!(!is_dotgitmodules(n.as_bytes()), "{n:?}");
        }
    }

    #[test]
    fn valid_names_are_bytes_without_slash_or_nul() {
        assert!(valid_name(b"a\xffb"));
        for n in [&b""[..], b".", b"..", b"a/b", b"a\0b", &[b'x'; 256]] {
            assert!(!valid_name(n));
        }
        assert!(valid_name(&[b'x'; 255]));
    }
}
