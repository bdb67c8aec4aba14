//! Copying file contents between trees in the store, holes kept as holes.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;

/// Copies `src` into the empty `dst`: only the data regions (found with `SEEK_DATA` and
/// `SEEK_HOLE`), so a sparse file stays sparse; then sets the length, keeping a trailing hole.
pub fn copy_sparse(src: &mut File, dst: &mut File) -> io::Result<()> {
    let len = src.metadata()?.len();
    let mut pos = 0u64;
    let mut buf = vec![0u8; 128 * 1024];
    while pos < len {
        let Some(start) = seek(src, pos, libc::SEEK_DATA)? else {
            break;
        };
        let end = seek(src, start, libc::SEEK_HOLE)?.unwrap_or(len).min(len);
        src.seek(SeekFrom::Start(start))?;
        dst.seek(SeekFrom::Start(start))?;
        let mut left = end - start;
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = src.read(&mut buf[..want])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the file shrank while it was copied",
                ));
            }
            dst.write_all(&buf[..n])?;
            left -= n as u64;
        }
        pos = end;
    }
    dst.set_len(len)
}

/// `lseek` with `SEEK_DATA`/`SEEK_HOLE`; `None` when there is no more data (ENXIO).
fn seek(f: &File, from: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let from = i64::try_from(from).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: plain syscall on a valid fd.
    let r = unsafe { libc::lseek(f.as_raw_fd(), from, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENXIO) => Ok(None),
            _ => Err(e),
        };
    }
    Ok(Some(r as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_stay_holes_and_bytes_stay_bytes() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        let mut f = File::create(&a).unwrap();
        f.seek(SeekFrom::Start(1 << 20)).unwrap();
        f.write_all(b"middle").unwrap();
        f.set_len(8 << 20).unwrap();
        drop(f);
        let mut src = File::open(&a).unwrap();
        let mut dst = File::create(&b).unwrap();
        copy_sparse(&mut src, &mut dst).unwrap();
        drop(dst);
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        let m = std::fs::metadata(&b).unwrap();
        assert_eq!(m.len(), 8 << 20);
        assert!(
            m.blocks() * 512 < 1 << 20,
            "the holes were written: {} blocks",
            m.blocks()
        );
        // A dense file and an empty one copy too.
        std::fs::write(&a, b"dense").unwrap();
        let mut dst = File::create(&b).unwrap();
        copy_sparse(&mut File::open(&a).unwrap(), &mut dst).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"dense");
        std::fs::write(&a, b"").unwrap();
        let mut dst = File::create(&b).unwrap();
        copy_sparse(&mut File::open(&a).unwrap(), &mut dst).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), b"");
    }
}
