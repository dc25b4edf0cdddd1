//! The system log, for a detached daemon with no `--log-file`: one datagram
//! per record to the local syslog socket (`/dev/log`, where journald listens
//! too on a systemd machine; `COMMITFS_SYSLOG` names another socket), in
//! the local form syslog(3) sends: `<PRI>commitfs[PID]: MOUNTPOINT: LEVEL
//! target: message`, facility daemon. env_logger still filters and formats
//! (levels, `RUST_LOG`); this is only where its lines go. No socket (no
//! syslog daemon and no journal): the lines go nowhere, as before.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

/// Where the lines go: `COMMITFS_SYSLOG`, else `/dev/log`.
pub fn socket_path() -> PathBuf {
    std::env::var_os("COMMITFS_SYSLOG")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/log"))
}

/// syslog's priority of a record at `level`: facility daemon (3), and the
/// severity (err 3, warning 4, info 6, debug 7).
pub fn priority(level: log::Level) -> u8 {
    let severity = match level {
        log::Level::Error => 3,
        log::Level::Warn => 4,
        log::Level::Info => 6,
        log::Level::Debug | log::Level::Trace => 7,
    };
    3 * 8 + severity
}

/// A writer that sends each write as one datagram to the syslog socket
/// (env_logger writes each formatted record with one call), connecting
/// again once if the socket went away (a restarted journald).
pub struct Syslog {
    path: PathBuf,
    sock: Option<UnixDatagram>,
}

impl Syslog {
    pub fn new(path: &Path) -> Syslog {
        let mut s = Syslog {
            path: path.to_path_buf(),
            sock: None,
        };
        s.connect();
        s
    }

    /// Non-blocking: a journal that stalls drops lines (EAGAIN) rather than
    /// holding every thread that logs.
    fn connect(&mut self) {
        self.sock = UnixDatagram::unbound()
            .and_then(|s| s.connect(&self.path).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .ok();
    }
}

impl Write for Syslog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // A line is at most what a datagram of /dev/log takes comfortably.
        let line = &buf[..buf.len().min(8192)];
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let sent = self.sock.as_ref().map(|s| s.send(line));
        let full = matches!(&sent, Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock);
        if !full && !matches!(sent, Some(Ok(_))) {
            self.connect();
            if let Some(s) = &self.sock {
                let _ = s.send(line);
            }
        }
        // Never an error: logging must not fail the daemon.
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_write_is_one_datagram_with_its_priority() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("log");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut w = Syslog::new(&path);
        w.write_all(b"<28>commitfs[1]: /m: one\n").unwrap();
        w.write_all(b"<27>commitfs[1]: /m: two\n").unwrap();
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<28>commitfs[1]: /m: one");
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"<27>commitfs[1]: /m: two");
        assert_eq!(priority(log::Level::Warn), 28);
        assert_eq!(priority(log::Level::Error), 27);
        assert_eq!(priority(log::Level::Info), 30);
        // No socket: writes still succeed, and go nowhere.
        let mut gone = Syslog::new(&d.path().join("none"));
        gone.write_all(b"x\n").unwrap();
    }
}
