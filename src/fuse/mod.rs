//! The FUSE adapter: decode a request, call the core, reply, log an error once.
//!
//! Every handler has the same shape: `match self.fs.op(..) { Ok(x) => reply.., Err(e)
//! => fail(op, reply, e) }`. No semantics live here; see `view/mod.rs`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::FsError;
use crate::model::SetAttr;
use crate::view::{Attr, CommitFs, Entry, FileKind};

/// Largest request the kernel may send us, and its read-ahead.
const MAX_IO: u32 = 1 << 20;

pub struct FuseFs {
    fs: Arc<CommitFs>,
    /// The kernel offered FUSE_NO_OPEN_SUPPORT: opens may be answered ENOSYS.
    no_open: bool,
}

impl FuseFs {
    pub fn new(fs: Arc<CommitFs>) -> FuseFs {
        FuseFs { fs, no_open: false }
    }
}

/// The kernel's page cache, which the view's prefetcher pushes small files
/// into (`FUSE_NOTIFY_STORE`).
pub struct PageCache(pub fuser::Notifier);

impl crate::view::prefetch::PageCache for PageCache {
    fn store(&self, ino: u64, data: &[u8]) -> Result<(), crate::view::prefetch::Gone> {
        match self.0.store(INodeNo(ino), 0, data) {
            Ok(()) => Ok(()),
            // The connection is gone (unmounted): stop quietly.
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Err(crate::view::prefetch::Gone),
            Err(e) => {
                // The kernel refused (the inode forgotten since): a hint only.
                log::debug!("prefetch store for inode {ino}: {e}");
                Ok(())
            }
        }
    }
}

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// Logs an error once, at its level, and returns the errno to reply with.
/// Logs a failed operation and gives its errno. A damaged repository fails
/// the same way on every access (the kernel retries a failed read, programs
/// retry too): each distinct failure is logged once at its level, repeats only
/// at debug level. The memory of what was logged is bounded.
fn fail(op: &str, e: FsError) -> Errno {
    static SEEN: std::sync::Mutex<Option<std::collections::HashSet<String>>> =
        std::sync::Mutex::new(None);
    let level = e.level();
    let msg = format!("{op}: {e}");
    let first = level > log::Level::Warn || {
        let mut seen = SEEN.lock().unwrap_or_else(|p| p.into_inner());
        let seen = seen.get_or_insert_with(Default::default);
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(msg.clone())
    };
    if first {
        log::log!(level, "{msg}");
    } else {
        log::debug!("{msg} (again)");
    }
    errno(&e)
}

/// Runs one request's handler. A panic in it (a bug) is caught here: the
/// panic hook has logged it (see main.rs), the reply the handler dropped
/// answers the request with EIO, and this worker thread goes on serving, so a
/// bug fails one request instead of the mount. Nothing acknowledged is lost:
/// pending changes live in the overlay, not in the handler.
fn guard(fs: &CommitFs, op: &str, f: impl FnOnce()) {
    fs.requests.count(op);
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        log::error!("{op}: internal error (a panic, logged above); answered EIO");
    }
}

fn ts_of(t: TimeOrNow) -> crate::model::Ts {
    match t {
        TimeOrNow::Now => crate::model::Ts::now(),
        TimeOrNow::SpecificTime(t) => crate::model::Ts::of(t),
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime.to_system(),
        mtime: a.mtime.to_system(),
        ctime: a.ctime.to_system(),
        crtime: a.mtime.to_system(),
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: crate::view::BLKSIZE,
        flags: 0,
    }
}

fn file_type(k: FileKind) -> FileType {
    match k {
        FileKind::Dir => FileType::Directory,
        FileKind::File => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
    }
}

/// Hands the kernel an entry: one more lookup of it that the kernel will
/// forget (counted before the reply goes out).
fn reply_entry(fs: &CommitFs, reply: ReplyEntry, e: &Entry) {
    fs.looked_up(&[e.attr.ino]);
    reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0));
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Not FUSE_WRITEBACK_CACHE, deliberately: with it the kernel would
        // acknowledge write(2) itself and send the data later, so a full disk
        // (ENOSPC) could only show at fsync or close, and close sends us
        // nothing (see `open`). Without it every write reaches `write` below
        // and gets its own errno.
        let wanted = InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_NO_OPEN_SUPPORT;
        let supported = config.capabilities() & wanted;
        self.no_open = supported.contains(InitFlags::FUSE_NO_OPEN_SUPPORT);
        if let Err(missing) = config.add_capabilities(supported) {
            log::debug!("kernel lacks capabilities {missing:?}");
        }
        let _ = config.set_max_readahead(MAX_IO);
        let _ = config.set_max_write(MAX_IO);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        guard(&self.fs, "lookup", move || {
            // Debug builds only, for the test that a panicking handler fails
            // one request and loses nothing.
            #[cfg(debug_assertions)]
            if std::env::var_os("COMMITFS_TEST_PANIC_NAME").is_some_and(|n| n == name) {
                panic!("COMMITFS_TEST_PANIC_NAME looked up");
            }
            // Debug builds only, for the test that `commitfs status` answers
            // while every request thread is busy: a lookup of a name with
            // this prefix holds its thread until the release file exists
            // (a minute at most).
            #[cfg(debug_assertions)]
            if let (Some(prefix), Some(release)) = (
                std::env::var_os("COMMITFS_TEST_BLOCK_PREFIX"),
                std::env::var_os("COMMITFS_TEST_BLOCK_RELEASE"),
            ) && name.as_bytes().starts_with(prefix.as_bytes())
            {
                let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !Path::new(&release).exists() && std::time::Instant::now() < until {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            match self.fs.lookup(parent.0, name.as_bytes()) {
                Ok(e) => reply_entry(&self.fs, reply, &e),
                Err(e) => reply.error(fail("lookup", e)),
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        guard(&self.fs, "getattr", move || match self.fs.getattr(ino.0) {
            Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
            Err(e) => reply.error(fail("getattr", e)),
        });
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        guard(&self.fs, "setattr", move || {
            let a = SetAttr {
                mode,
                uid,
                gid,
                size,
                atime: atime.map(ts_of),
                mtime: mtime.map(ts_of),
            };
            match self.fs.setattr(ino.0, a) {
                Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
                Err(e) => reply.error(fail("setattr", e)),
            }
        });
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        guard(&self.fs, "readlink", move || {
            match self.fs.readlink(ino.0) {
                Ok(t) => reply.data(&t),
                Err(e) => reply.error(fail("readlink", e)),
            }
        });
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        guard(&self.fs, "mknod", move || {
            match self.fs.mknod(parent.0, name.as_bytes(), mode) {
                Ok(e) => reply_entry(&self.fs, reply, &e),
                Err(e) => reply.error(fail("mknod", e)),
            }
        });
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        guard(&self.fs, "mkdir", move || {
            match self.fs.mkdir(parent.0, name.as_bytes(), mode) {
                Ok(e) => reply_entry(&self.fs, reply, &e),
                Err(e) => reply.error(fail("mkdir", e)),
            }
        });
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard(&self.fs, "unlink", move || {
            match self.fs.unlink(parent.0, name.as_bytes()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("unlink", e)),
            }
        });
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        guard(&self.fs, "rmdir", move || {
            match self.fs.rmdir(parent.0, name.as_bytes()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("rmdir", e)),
            }
        });
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        guard(&self.fs, "symlink", move || {
            match self.fs.symlink(
                parent.0,
                link_name.as_bytes(),
                target.as_os_str().as_bytes(),
            ) {
                Ok(e) => reply_entry(&self.fs, reply, &e),
                Err(e) => reply.error(fail("symlink", e)),
            }
        });
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "rename", move || {
            match self.fs.rename(
                parent.0,
                name.as_bytes(),
                newparent.0,
                newname.as_bytes(),
                flags.bits(),
            ) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("rename", e)),
            }
        });
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        newparent: INodeNo,
        newname: &OsStr,
        reply: ReplyEntry,
    ) {
        guard(&self.fs, "link", move || {
            match self.fs.link(ino.0, newparent.0, newname.as_bytes()) {
                Ok(e) => reply_entry(&self.fs, reply, &e),
                Err(e) => reply.error(fail("link", e)),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        guard(&self.fs, "open", move || {
            let write = flags.acc_mode() != OpenAccMode::O_RDONLY || flags.0 & libc::O_TRUNC != 0;
            match self.fs.open(ino.0, write) {
                Ok(_) if self.no_open => reply.error(Errno::ENOSYS),
                Ok(o) => {
                    let keep = if o.keep_cache {
                        FopenFlags::FOPEN_KEEP_CACHE
                    } else {
                        FopenFlags::empty()
                    };
                    reply.opened(FileHandle(0), keep | FopenFlags::FOPEN_NOFLUSH)
                }
                Err(e) => reply.error(fail("open", e)),
            }
        });
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        guard(&self.fs, "read", move || {
            // The closure runs only on success; on an error the reply is still ours.
            let mut reply = Some(reply);
            let res = self.fs.read_with(ino.0, offset, size, |d| {
                if let Some(r) = reply.take() {
                    r.data(d)
                }
            });
            if let (Err(e), Some(r)) = (res, reply.take()) {
                r.error(fail("read", e));
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        guard(&self.fs, "write", move || {
            match self.fs.write(ino.0, offset, data) {
                Ok(n) => reply.written(n),
                Err(e) => reply.error(fail("write", e)),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "flush", move || {
            reply.error(Errno::ENOSYS);
        });
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "release", move || {
            reply.ok();
        });
    }

    /// fsync and fdatasync make the file durable in the overlay (no commit).
    fn fsync(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "fsync", move || match self.fs.fsync_data(ino.0) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("fsync", e)),
        });
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        guard(&self.fs, "opendir", move || match self.fs.opendir(ino.0) {
            Ok(o) => {
                let f = if o.keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(o.fh), f)
            }
            Err(e) => reply.error(fail("opendir", e)),
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        guard(&self.fs, "readdir", move || {
            match self
                .fs
                .readdir(ino.0, fh.0, offset, crate::view::READDIR_BATCH)
            {
                Ok(entries) => {
                    for e in entries {
                        let name = OsStr::from_bytes(&e.name);
                        if reply.add(INodeNo(e.ino), e.next, file_type(e.kind), name) {
                            break;
                        }
                    }
                    reply.ok()
                }
                Err(e) => reply.error(fail("readdir", e)),
            }
        });
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        guard(&self.fs, "readdirplus", move || {
            // The kernel has processed the previous reply on this handle.
            self.fs.prefetch_listed(fh.0);
            match self
                .fs
                .readdir(ino.0, fh.0, offset, crate::view::READDIR_BATCH)
            {
                Ok(entries) => {
                    let mut sent = 0;
                    // Each entry but `.` and `..` is a lookup the kernel will
                    // forget (counted before the reply goes out).
                    let mut handed = Vec::with_capacity(entries.len());
                    for e in &entries {
                        let Some(entry) = self.fs.entry_of(e) else {
                            // Removed since it was listed: not shown.
                            sent += 1;
                            continue;
                        };
                        let name = OsStr::from_bytes(&e.name);
                        if reply.add(
                            INodeNo(e.ino),
                            e.next,
                            name,
                            &entry.ttl,
                            &file_attr(&entry.attr),
                            Generation(0),
                        ) {
                            break;
                        }
                        sent += 1;
                        if &*e.name != b"." && &*e.name != b".." {
                            handed.push(e.ino);
                        }
                    }
                    // Remembered before the reply goes out: the kernel may send the
                    // next READDIRPLUS or the RELEASEDIR of this handle (which queue
                    // these entries' prefetch, once it surely has their inodes) as
                    // soon as it has the reply, to another thread.
                    self.fs.listed(fh.0, &entries[..sent]);
                    self.fs.looked_up(&handed);
                    reply.ok();
                }
                Err(e) => reply.error(fail("readdirplus", e)),
            }
        });
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "releasedir", move || {
            self.fs.releasedir(fh.0);
            reply.ok();
        });
    }

    fn fsyncdir(
        &self,
        req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "fsyncdir", move || {
            match self.fs.fsync_as(ino.0, req.uid()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("fsyncdir", e)),
            }
        });
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        guard(&self.fs, "statfs", move || {
            let s = self.fs.statfs();
            reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            );
        });
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "setxattr", move || {
            match self.fs.set_xattr(ino.0) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("setxattr", e)),
            }
        });
    }

    /// Git stores no extended attributes. ENOSYS makes the kernel stop asking
    /// and answer every later getxattr(2) with EOPNOTSUPP itself, including the
    /// `security.capability` lookup it makes before each write to a file, which
    /// would otherwise cost a round trip per write.
    fn getxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _size: u32,
        reply: ReplyXattr,
    ) {
        guard(&self.fs, "getxattr", move || {
            reply.error(Errno::ENOSYS);
        });
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        guard(&self.fs, "listxattr", move || {
            match self.fs.list_xattr(ino.0) {
                Ok(names) if size == 0 => reply.size(names.len() as u32),
                Ok(names) if names.len() > size as usize => reply.error(Errno::ERANGE),
                Ok(names) => reply.data(&names),
                Err(e) => reply.error(fail("listxattr", e)),
            }
        });
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        guard(&self.fs, "removexattr", move || {
            match self.fs.set_xattr(ino.0) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("removexattr", e)),
            }
        });
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        guard(&self.fs, "access", move || {
            match self.fs.access(ino.0, mask.bits()) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("access", e)),
            }
        });
    }

    /// ENOSYS, once: the kernel then creates files with MKNOD and opens them as
    /// it opens every file here (without asking, see `open`), so a created file
    /// costs one round trip instead of CREATE plus a RELEASE at close.
    fn create(
        &self,
        _req: &Request,
        _parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        guard(&self.fs, "create", move || {
            reply.error(Errno::ENOSYS);
        });
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        guard(&self.fs, "fallocate", move || {
            match self.fs.fallocate(ino.0, offset, length, mode) {
                Ok(()) => reply.ok(),
                Err(e) => reply.error(fail("fallocate", e)),
            }
        });
    }

    fn forget(&self, _req: &Request, ino: INodeNo, _nlookup: u64) {
        guard(&self.fs, "forget", move || {
            self.fs.forget(ino.0, _nlookup);
        });
    }
}
