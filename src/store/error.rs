//! libgit2's errors, mapped once into the errno table (`FsError`): an OS
//! error keeps its exhaustion (ENOSPC, EDQUOT, EFBIG, ENFILE) and anything
//! else is EIO. libgit2 gives an OS error's text and no errno, so the
//! exhaustion is read from the words `strerror` puts in it; that is the one
//! place a message's text decides anything.

use crate::error::FsError;
use crate::store::Oid;

/// What the store failed at, by kind, each with what to show (the server's
/// message, the ref, the object's id). A caller that acts on a failure
/// matches on its kind, never on its text; what a program gets is
/// `FsError::from` it, the one mapping into the errno table (below).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// No such ref (or branch) by that name: ENOENT.
    NotFound(String),
    /// The name is taken by another ref: EEXIST.
    Exists(String),
    /// A compare-and-swap of this ref lost: another writer moved it first.
    CasLost(String),
    /// The server refused a push (it moved meanwhile, or a hook said no),
    /// with its message.
    Refused(String),
    /// The server could not be reached, or the connection failed (network,
    /// TLS, SSH, HTTP).
    Network(String),
    /// A fetch or push failed otherwise (credentials, a bad URL), with
    /// libgit2's message.
    Remote(String),
    /// An object whose bytes are not what its id says.
    Corrupt { id: Oid, what: String },
    /// Anything else, already in the errno table's terms (a full disk stays
    /// ENOSPC).
    Fs(FsError),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::NotFound(what) => write!(f, "{what}: not found"),
            StoreError::Exists(what) => write!(f, "{what}: exists"),
            StoreError::CasLost(r) => write!(f, "{r} was moved by another writer meanwhile"),
            StoreError::Refused(m) | StoreError::Network(m) | StoreError::Remote(m) => {
                f.write_str(m)
            }
            StoreError::Corrupt { id, what } => write!(f, "object {id} is damaged: {what}"),
            StoreError::Fs(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> StoreError {
        StoreError::Fs(FsError::from(e))
    }
}

impl From<StoreError> for FsError {
    fn from(e: StoreError) -> FsError {
        match e {
            StoreError::NotFound(_) => FsError::NotFound,
            StoreError::Exists(_) => FsError::Exists,
            StoreError::Fs(e) => e,
            other @ (StoreError::CasLost(_)
            | StoreError::Refused(_)
            | StoreError::Network(_)
            | StoreError::Remote(_)
            | StoreError::Corrupt { .. }) => FsError::io(other),
        }
    }
}

impl From<crate::store::names::BadName> for FsError {
    fn from(e: crate::store::names::BadName) -> FsError {
        match e {
            crate::store::names::BadName::TooLong => FsError::NameTooLong,
            crate::store::names::BadName::Refused => FsError::Invalid,
        }
    }
}

impl From<FsError> for StoreError {
    fn from(e: FsError) -> StoreError {
        StoreError::Fs(e)
    }
}

/// A push refused and a network failure keep their kind (libgit2 gives
/// them only to a fetch or a push); anything else is the errno table's.
impl From<git2::Error> for StoreError {
    fn from(e: git2::Error) -> StoreError {
        match StoreError::of_remote(&e, e.message().to_string()) {
            StoreError::Remote(_) => StoreError::Fs(FsError::from(e)),
            kind => kind,
        }
    }
}

impl StoreError {
    /// Anything else that failed, said in `what` (EIO).
    pub fn io(what: impl std::fmt::Display) -> StoreError {
        StoreError::Fs(FsError::io(what))
    }

    /// I/O error `e` while doing `what`, its exhaustion kept (see
    /// [`FsError::from_io`]).
    pub fn from_io(e: &std::io::Error, what: impl std::fmt::Display) -> StoreError {
        StoreError::Fs(FsError::from_io(e, what))
    }

    /// A resource ran out (see [`FsError::is_exhaustion`]).
    pub fn is_exhaustion(&self) -> bool {
        matches!(self, StoreError::Fs(e) if e.is_exhaustion())
    }

    /// Reading object `id` failed with `e`: `Corrupt` if libgit2 found its
    /// bytes do not hash to it (libgit2 checks as it reads), else as any
    /// libgit2 error.
    pub(in crate::store) fn reading(e: git2::Error, id: Oid) -> StoreError {
        if e.code() == git2::ErrorCode::HashsumMismatch {
            return StoreError::Corrupt {
                id,
                what: e.message().to_string(),
            };
        }
        StoreError::from(e)
    }

    /// A fetch's or push's failure, as libgit2 classified it (its code and
    /// class, never the text of its message).
    pub(in crate::store) fn of_remote(e: &git2::Error, msg: String) -> StoreError {
        use git2::{ErrorClass, ErrorCode};
        match (e.code(), e.class()) {
            (ErrorCode::NotFastForward, _) => StoreError::Refused(msg),
            (_, ErrorClass::Net | ErrorClass::Ssh | ErrorClass::Http | ErrorClass::Ssl) => {
                StoreError::Network(msg)
            }
            _ => StoreError::Remote(msg),
        }
    }

    /// Whether a ref update failed because the ref was not as expected (a
    /// compare-and-swap lost), by libgit2's code.
    pub(in crate::store) fn is_cas_lost(e: &git2::Error) -> bool {
        matches!(
            e.code(),
            git2::ErrorCode::Modified | git2::ErrorCode::Exists | git2::ErrorCode::Locked
        )
    }
}

/// The words `strerror` (glibc's or musl's) puts in an OS error's message,
/// for each exhaustion: libgit2 gives no errno, only that text.
/// Makes the typed error from libgit2's message.
type MakeError = fn(String) -> FsError;

const OS_WORDS: &[(&str, MakeError)] = &[
    ("No space left on device", FsError::NoSpace),
    ("Disk quota exceeded", FsError::Quota),
    ("Quota exceeded", FsError::Quota),
    ("File too large", FsError::TooBig),
    ("Too many open files", FsError::NoFiles),
    ("No file descriptors available", FsError::NoFiles),
];

impl From<git2::Error> for FsError {
    fn from(e: git2::Error) -> Self {
        let msg = e.message();
        if e.class() == git2::ErrorClass::Os
            && let Some((_, make)) = OS_WORDS.iter().find(|(w, _)| msg.contains(w))
        {
            return make(msg.to_string());
        }
        FsError::Io(msg.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each kind of store failure has its one errno, and says what failed.
    #[test]
    fn store_errors_map_once_into_the_errno_table() {
        let id: Oid = "4b825dc642cb6eb9a060e54bf8d69288fbee4904".parse().unwrap();
        let cases = [
            (StoreError::NotFound("refs/heads/x".into()), libc::ENOENT),
            (StoreError::Exists("refs/heads/y".into()), libc::EEXIST),
            (StoreError::CasLost("refs/heads/main".into()), libc::EIO),
            (
                StoreError::Refused("push refused: hook said no".into()),
                libc::EIO,
            ),
            (StoreError::Network("cannot connect".into()), libc::EIO),
            (StoreError::Remote("bad credentials".into()), libc::EIO),
            (
                StoreError::Corrupt {
                    id,
                    what: "its content does not hash to its id".into(),
                },
                libc::EIO,
            ),
            (StoreError::Fs(FsError::NoSpace("x".into())), libc::ENOSPC),
        ];
        for (e, errno) in cases {
            let shown = e.to_string();
            let fs = FsError::from(e);
            assert_eq!(fs.errno(), errno, "{shown}");
            if errno == libc::EIO {
                assert!(fs.to_string().contains(&shown), "{fs} says {shown}");
            }
        }
        assert!(
            StoreError::Corrupt {
                id,
                what: "w".into()
            }
            .to_string()
            .contains("4b825dc642cb6eb9a060e54bf8d69288fbee4904")
        );
        // libgit2's exhaustion stays an exhaustion through the store's type.
        let full = git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Os,
            "failed to write: No space left on device",
        );
        assert_eq!(FsError::from(StoreError::from(full)).errno(), libc::ENOSPC);
    }

    #[test]
    fn libgit2_os_errors_are_read_by_their_words() {
        let os = |m: &str| {
            FsError::from(git2::Error::new(
                git2::ErrorCode::GenericError,
                git2::ErrorClass::Os,
                m,
            ))
        };
        let e = os("failed to write out file: No space left on device");
        assert_eq!(e.errno(), libc::ENOSPC);
        assert!(e.to_string().contains("No space left on device"), "{e}");
        assert_eq!(os("x: Disk quota exceeded").errno(), libc::EDQUOT);
        assert_eq!(os("x: File too large").errno(), libc::EFBIG);
        assert_eq!(os("x: Too many open files").errno(), libc::ENFILE);
        assert_eq!(
            os("failed to stat 'x': Permission denied").errno(),
            libc::EIO
        );
        // Only an OS error's text is the OS's.
        let odb = FsError::from(git2::Error::new(
            git2::ErrorCode::GenericError,
            git2::ErrorClass::Odb,
            "object named 'No space left on device' not found",
        ));
        assert_eq!(odb.errno(), libc::EIO);
    }
}
