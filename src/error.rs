//! One error type for the filesystem core and its one errno table.
//!
//! Every operation of the core returns `Result<_, FsError>`. The FUSE adapter turns
//! an error into an errno with [`FsError::errno`] and logs it once, at the level
//! [`FsError::level`] gives: a lookup that finds nothing is routine (`debug`), a
//! repository that cannot be read is worth a `warn`.

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
            FsError::Io(_) => libc::EIO,
        }
    }

    /// The level at which the adapter logs this error.
    pub fn level(&self) -> log::Level {
        match self {
            FsError::Io(_) => log::Level::Warn,
            _ => log::Level::Debug,
        }
    }

    pub fn io(what: impl fmt::Display) -> FsError {
        FsError::Io(what.to_string())
    }
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::Io(s) => write!(f, "I/O error: {s}"),
            other => write!(f, "{}", std::io::Error::from_raw_os_error(other.errno())),
        }
    }
}

impl std::error::Error for FsError {}

impl From<git2::Error> for FsError {
    fn from(e: git2::Error) -> Self {
        FsError::Io(e.message().to_string())
    }
}

impl From<std::io::Error> for FsError {
    fn from(e: std::io::Error) -> Self {
        FsError::Io(e.to_string())
    }
}

pub type FsResult<T> = Result<T, FsError>;
