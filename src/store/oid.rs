//! The id of an object: the store's own type, 20 bytes of SHA-1. Every layer
//! names objects by it; only the store converts it to and from libgit2's.

use std::fmt;

/// An object id (SHA-1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Oid([u8; 20]);

/// Bytes that are not an id: not 20 of them, or not 40 hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadId;

impl fmt::Display for BadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not an object id")
    }
}

impl std::error::Error for BadId {}

impl From<BadId> for crate::store::error::StoreError {
    fn from(e: BadId) -> Self {
        crate::store::error::StoreError::io(e)
    }
}

impl Oid {
    /// The all-zero id (no object).
    pub const ZERO: Oid = Oid([0; 20]);

    pub fn from_bytes(b: &[u8]) -> Result<Oid, BadId> {
        Ok(Oid(b.try_into().map_err(|_| BadId)?))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn is_zero(&self) -> bool {
        self.0 == [0; 20]
    }
}

impl std::str::FromStr for Oid {
    type Err = BadId;

    /// 40 hex digits, either case.
    fn from_str(s: &str) -> Result<Oid, BadId> {
        let s = s.as_bytes();
        if s.len() != 40 {
            return Err(BadId);
        }
        let digit = |c: u8| match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(BadId),
        };
        let mut out = [0u8; 20];
        for (i, pair) in s.chunks_exact(2).enumerate() {
            out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
        }
        Ok(Oid(out))
    }
}

impl fmt::Display for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Oid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<git2::Oid> for Oid {
    fn from(o: git2::Oid) -> Oid {
        // A git2 id of a SHA-1 repository is 20 bytes.
        Oid::from_bytes(o.as_bytes()).unwrap_or(Oid::ZERO)
    }
}

impl From<Oid> for git2::Oid {
    fn from(o: Oid) -> git2::Oid {
        git2::Oid::from_bytes(&o.0).unwrap_or(git2::Oid::ZERO_SHA1)
    }
}

impl PartialEq<git2::Oid> for Oid {
    fn eq(&self, o: &git2::Oid) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

impl PartialEq<Oid> for git2::Oid {
    fn eq(&self, o: &Oid) -> bool {
        self.as_bytes() == o.as_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_reads_and_prints_as_git_does() {
        let hex = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";
        let o: Oid = hex.parse().unwrap();
        assert_eq!(o.to_string(), hex);
        assert_eq!(format!("{o:?}"), hex);
        assert_eq!(o, git2::Oid::from_str(hex).unwrap());
        assert_eq!(Oid::from(git2::Oid::from_str(hex).unwrap()), o);
        assert_eq!(git2::Oid::from(o).to_string(), hex);
        assert_eq!(hex.to_uppercase().parse::<Oid>(), Ok(o));
        assert_eq!(Oid::from_bytes(o.as_bytes()), Ok(o));
        assert!("4b82".parse::<Oid>().is_err());
        assert!(format!("{}g", &hex[..39]).parse::<Oid>().is_err());
        assert!(Oid::from_bytes(&[1; 19]).is_err());
        assert!(Oid::ZERO.is_zero() && !o.is_zero());
        assert!(Oid::ZERO < o);
    }
}
