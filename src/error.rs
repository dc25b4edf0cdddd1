//! One error type for the filesystem core and its one errno table.
//!
//! Every operation of the core returns `Result<_, FsError>`. The FUSE adapter turns
//! an error into an errno with [`FsError::errno`] and logs it once, at the level
//! [`FsError::level`] gives: a lookup that finds nothing is routine (`debug`), a
//! repository that cannot be read is worth a `warn`, and so is a resource that
//! ran out.
//!
//! I/O errors keep the errno a program can act on: a full disk is ENOSPC (a
//! quota EDQUOT, a file too large for the spill filesystem EFBIG, the daemon
//! out of descriptors ENFILE), never EIO. Use [`FsError::from_io`] rather than
//! formatting an `io::Error` into [`FsError::io`], which would make it EIO.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    /// No such entry (ENOENT).
    NotFound,
    /// A directory operation on something that is not a directory (ENOTDIR).
    NotDir,
    /// A file operation on a directory (EISDIR).
    IsDir,
    /// A write to a snapshot, a read-only mount, or (until writes exist) anywhere (EROFS).
    ReadOnly,
    /// Not permitted for this kind of object (EPERM): link, mknod, chown to others.
    NotPermitted,
    /// Permission denied (EACCES): access(X_OK) on a file that is not executable.
    Access,
    /// Bad argument: a name Git must never store, a symlink readlink on a file (EINVAL).
    Invalid,
    /// A name longer than NAME_MAX (ENAMETOOLONG).
    NameTooLong,
    /// The name is taken (EEXIST).
    Exists,
    /// rmdir or rename over a directory that is not empty (ENOTEMPTY).
    NotEmpty,
    /// A rename across branches or into a snapshot (EXDEV), so that mv copies.
    CrossDevice,
    /// Not a handle this mount gave out (EBADF).
    BadHandle,
    /// Extended attributes and other things Git has no place for (ENOTSUP).
    NotSupported,
    /// No such extended attribute (ENODATA).
    NoData,
    /// A file another writer replaced (the mount now shows their version):
    /// written through a descriptor opened before, its data would go nowhere
    /// (ESTALE).
    Stale,
    /// No space left on the device that holds the repository or the spill
    /// files (ENOSPC). The string says what was being written, for the log and
    /// `commitfs status`.
    NoSpace(String),
    /// A disk quota ran out (EDQUOT, kept as it is: `quota(1)` explains it).
    Quota(String),
    /// A file larger than the spill filesystem allows (EFBIG).
    TooBig(String),
    /// The daemon ran out of file descriptors (EMFILE or ENFILE, both ENFILE:
    /// to the program, the system's table is full, not its own).
    NoFiles(String),
    /// The repository could not give us what we need: a missing or corrupt
    /// object, an I/O error (EIO). The string says what, for the log.
    Io(String),
}

impl FsError {
    pub fn errno(&self) -> i32 {
        match self {
            FsError::NotFound => libc::ENOENT,
            FsError::NotDir => libc::ENOTDIR,
            FsError::IsDir => libc::EISDIR,
            FsError::ReadOnly => libc::EROFS,
            FsError::NotPermitted => libc::EPERM,
            FsError::Access => libc::EACCES,
            FsError::Invalid => libc::EINVAL,
            FsError::NameTooLong => libc::ENAMETOOLONG,
            FsError::Exists => libc::EEXIST,
            FsError::NotEmpty => libc::ENOTEMPTY,
            FsError::CrossDevice => libc::EXDEV,
            FsError::BadHandle => libc::EBADF,
            FsError::NotSupported => libc::ENOTSUP,
            FsError::NoData => libc::ENODATA,
            FsError::Stale => libc::ESTALE,
            FsError::NoSpace(_) => libc::ENOSPC,
            FsError::Quota(_) => libc::EDQUOT,
            FsError::TooBig(_) => libc::EFBIG,
            FsError::NoFiles(_) => libc::ENFILE,
            FsError::Io(_) => libc::EIO,
        }
    }

    /// The level at which the adapter logs this error.
    pub fn level(&self) -> log::Level {
        match self {
            FsError::Io(_) => log::Level::Warn,
            e if e.is_exhaustion() => log::Level::Warn,
            _ => log::Level::Debug,
        }
    }

    pub fn io(what: impl fmt::Display) -> FsError {
        FsError::Io(what.to_string())
    }

    /// A resource ran out (space, quota, a file size limit, descriptors): the
    /// operation may well succeed once it is back, unlike a damaged object.
    pub fn is_exhaustion(&self) -> bool {
        matches!(
            self,
            FsError::NoSpace(_) | FsError::Quota(_) | FsError::TooBig(_) | FsError::NoFiles(_)
        )
    }

    /// I/O error `e` while doing `what`: ENOSPC, EDQUOT, EFBIG, EMFILE and
    /// ENFILE keep their meaning, anything else is EIO.
    pub fn from_io(e: &std::io::Error, what: impl fmt::Display) -> FsError {
        match exhaustion_of_io(e) {
            // The kind's own words come from Display; a custom error's text
            // (which names what failed) is kept.
            Some(make) if e.raw_os_error().is_some() => make(what.to_string()),
            Some(make) => make(format!("{what}: {e}")),
            None => FsError::Io(format!("{what}: {e}")),
        }
    }

    /// The same error, its description prefixed with `what`.
    pub fn context(self, what: impl fmt::Display) -> FsError {
        let with = |s: String| {
            if s.is_empty() {
                what.to_string()
            } else {
                format!("{what}: {s}")
            }
        };
        match self {
            FsError::NoSpace(s) => FsError::NoSpace(with(s)),
            FsError::Quota(s) => FsError::Quota(with(s)),
            FsError::TooBig(s) => FsError::TooBig(with(s)),
            FsError::NoFiles(s) => FsError::NoFiles(with(s)),
            FsError::Io(s) => FsError::Io(with(s)),
            other => other,
        }
    }
}

/// Which exhaustion `e` is, if it is one: by its errno, or by its kind for an
/// error made with `io::Error::new(kind, ..)`.
fn exhaustion_of_io(e: &std::io::Error) -> Option<fn(String) -> FsError> {
    use std::io::ErrorKind;
    match e.raw_os_error() {
        Some(libc::ENOSPC) => Some(FsError::NoSpace),
        Some(libc::EDQUOT) => Some(FsError::Quota),
        Some(libc::EFBIG) => Some(FsError::TooBig),
        Some(libc::EMFILE | libc::ENFILE) => Some(FsError::NoFiles),
        Some(_) => None,
        None => match e.kind() {
            ErrorKind::StorageFull => Some(FsError::NoSpace),
            ErrorKind::QuotaExceeded => Some(FsError::Quota),
            ErrorKind::FileTooLarge => Some(FsError::TooBig),
            _ => None,
        },
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            FsError::Io(s) => return write!(f, "I/O error: {s}"),
            FsError::NoSpace(s) => ("no space left on device", s),
            FsError::Quota(s) => ("disk quota exceeded", s),
            FsError::TooBig(s) => ("file too large", s),
            FsError::NoFiles(s) => ("out of file descriptors", s),
            other => {
                return write!(f, "{}", std::io::Error::from_raw_os_error(other.errno()));
            }
        };
        match what {
            (name, s) if s.is_empty() => write!(f, "{name}"),
            (name, s) => write!(f, "{name}: {s}"),
        }
    }
}

impl std::error::Error for FsError {}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        match exhaustion_of_io(&e) {
            Some(make) if e.raw_os_error().is_some() => make(String::new()),
            Some(make) => make(e.to_string()),
            None => FsError::Io(e.to_string()),
        }
    }
}

pub type FsResult<T> = Result<T, FsError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exhaustion_keeps_its_errno() {
        let os = |n| FsError::from(std::io::Error::from_raw_os_error(n)).errno();
        assert_eq!(os(libc::ENOSPC), libc::ENOSPC);
        assert_eq!(os(libc::EDQUOT), libc::EDQUOT);
        assert_eq!(os(libc::EFBIG), libc::EFBIG);
        assert_eq!(os(libc::EMFILE), libc::ENFILE);
        assert_eq!(os(libc::ENFILE), libc::ENFILE);
        assert_eq!(os(libc::EACCES), libc::EIO);
        // An error made from a kind, with a message, keeps it too.
        let e = std::io::Error::new(std::io::ErrorKind::StorageFull, "spill dir full");
        let e = FsError::from_io(&e, "writing");
        assert_eq!(e.errno(), libc::ENOSPC);
        assert_eq!(
            e.to_string(),
            "no space left on device: writing: spill dir full"
        );
        let e = FsError::from_io(&std::io::Error::from_raw_os_error(libc::ENOSPC), "x");
        assert_eq!(e.to_string(), "no space left on device: x");
        assert_eq!(e.level(), log::Level::Warn);
        assert!(e.is_exhaustion());
        assert_eq!(
            e.context("in /r").to_string(),
            "no space left on device: in /r: x"
        );
    }
}
