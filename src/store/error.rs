//! libgit2's errors, mapped once into the errno table (`FsError`): an OS
//! error keeps its exhaustion (ENOSPC, EDQUOT, EFBIG, ENFILE) and anything
//! else is EIO. libgit2 gives an OS error's text and no errno, so the
//! exhaustion is read from the words `strerror` puts in it; that is the one
//! place a message's text decides anything.

use crate::error::FsError;

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
