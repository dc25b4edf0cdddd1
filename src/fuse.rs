//! The FUSE adapter: decode a request, call the core, reply, log an error once.
//!
//! Every handler has the same shape: `match self.fs.op(..) { Ok(x) => reply.., Err(e)
//! => fail(op, reply, e) }`. No semantics live here; see `fs.rs`.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags,
    Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, RenameFlags,
    ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use crate::error::FsError;
use crate::fs::{Attr, CommitFs, Entry, FileKind};

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

fn errno(e: &FsError) -> Errno {
    Errno::from_i32(e.errno())
}

/// Logs an error once, at its level, and returns the errno to reply with.
fn fail(op: &str, e: FsError) -> Errno {
    log::log!(e.level(), "{op}: {e}");
    errno(&e)
}

fn time(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

fn file_attr(a: &Attr) -> FileAttr {
    let t = time(a.time);
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: file_type(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: 0,
        blksize: crate::fs::BLKSIZE,
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

fn reply_entry(reply: ReplyEntry, e: &Entry) {
    reply.entry(&e.ttl, &file_attr(&e.attr), Generation(0));
}

impl Filesystem for FuseFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
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
        match self.fs.lookup(parent.0, name.as_bytes()) {
            Ok(e) => reply_entry(reply, &e),
            Err(e) => reply.error(fail("lookup", e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.fs.getattr(ino.0) {
            Ok(e) => reply.attr(&e.ttl, &file_attr(&e.attr)),
            Err(e) => reply.error(fail("getattr", e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        _size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        match self.fs.check_writable(ino.0) {
            Ok(()) => reply.error(Errno::EROFS),
            Err(e) => reply.error(fail("setattr", e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.fs.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(fail("readlink", e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        reply.error(fail("mknod", write_error(&self.fs, parent)));
    }

    fn mkdir(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        reply.error(fail("mkdir", write_error(&self.fs, parent)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fail("unlink", write_error(&self.fs, parent)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fail("rmdir", write_error(&self.fs, parent)));
    }

    fn symlink(
        &self,
        _req: &Request,
        parent: INodeNo,
        _link_name: &OsStr,
        _target: &Path,
        reply: ReplyEntry,
    ) {
        reply.error(fail("symlink", write_error(&self.fs, parent)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _newparent: INodeNo,
        _newname: &OsStr,
        _flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        reply.error(fail("rename", write_error(&self.fs, parent)));
    }

    fn link(
        &self,
        _req: &Request,
        ino: INodeNo,
        _newparent: INodeNo,
        _newname: &OsStr,
        reply: ReplyEntry,
    ) {
        reply.error(fail("link", write_error(&self.fs, ino)));
    }

    /// The first open of a file is checked (EROFS for a write, EISDIR, ENOENT) and
    /// then answered ENOSYS: the kernel then never sends an open (nor a flush or
    /// release) again, opens every file with FOPEN_KEEP_CACHE, and sends reads by
    /// inode. Each open would otherwise cost a round trip to the daemon, and a
    /// warm read of many small files would be bound by them rather than served
    /// from the page cache. After that, a write to a snapshot fails with EROFS at
    /// the write instead of at the open.
    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
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
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        reply.error(fail("write", write_error(&self.fs, ino)));
    }

    /// Answered ENOSYS, so that the kernel stops sending flushes: a close then
    /// costs no round trip. Nothing is ever dirty on the read side. (With the
    /// kernel's writeback cache, dirty pages are still written back at close
    /// before the kernel looks at this; the write side learns of a close from
    /// those writes.)
    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.error(Errno::ENOSYS);
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
        reply.ok();
    }

    fn fsync(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.fs.opendir(ino.0) {
            Ok(o) => {
                let f = if o.keep_cache {
                    FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR
                } else {
                    FopenFlags::empty()
                };
                reply.opened(FileHandle(o.fh), f)
            }
            Err(e) => reply.error(fail("opendir", e)),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        match self
            .fs
            .readdir(ino.0, fh.0, offset, crate::fs::READDIR_BATCH)
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
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        match self
            .fs
            .readdir(ino.0, fh.0, offset, crate::fs::READDIR_BATCH)
        {
            Ok(entries) => {
                let mut sent = 0;
                for e in &entries {
                    let entry = self.fs.entry_of(e);
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
                }
                reply.ok();
                // Only once the kernel has the entries can it take their pages.
                self.fs.prefetch_listed(&entries[..sent]);
            }
            Err(e) => reply.error(fail("readdirplus", e)),
        }
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.fs.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let s = self.fs.statfs();
        reply.statfs(
            s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
        );
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
        reply.error(fail("setxattr", write_error(&self.fs, ino)));
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        match self.fs.getattr(ino.0) {
            Ok(_) => reply.error(Errno::ENODATA),
            Err(e) => reply.error(fail("getxattr", e)),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.fs.getattr(ino.0) {
            Ok(_) if size == 0 => reply.size(0),
            Ok(_) => reply.data(&[]),
            Err(e) => reply.error(fail("listxattr", e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fail("removexattr", write_error(&self.fs, ino)));
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        match self.fs.access(ino.0, mask.bits()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(fail("access", e)),
        }
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        _name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        reply.error(fail("create", write_error(&self.fs, parent)));
    }

    fn fallocate(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        _offset: u64,
        _length: u64,
        _mode: i32,
        reply: ReplyEmpty,
    ) {
        reply.error(fail("fallocate", write_error(&self.fs, ino)));
    }
}

/// The error for an operation that would change `ino` (or a child of it).
fn write_error(fs: &CommitFs, ino: INodeNo) -> FsError {
    match fs.check_writable(ino.0) {
        Ok(()) => FsError::ReadOnly,
        Err(e) => e,
    }
}
