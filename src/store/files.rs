//! Files that hold personal data are private to their owner: created 0600 (folders 0700)
//! before anything is written to them, and replaced whole (written beside, then renamed).

use std::io::Write;
use std::path::Path;

use crate::error::{StoreError, StoreResult};

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        source,
        path: path.to_path_buf(),
    }
}

/// Creates `dir` (and its parents) readable by its owner only, when it is absent.
pub fn create_private_dir(dir: &Path) -> StoreResult<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io(dir))
}

/// An empty file at `path`, readable by its owner only; an existing file is left alone.
pub fn create_private_file(path: &Path) -> StoreResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path).map(drop).map_err(io(path))
}

/// An exclusive lock on `path` + `.lock` (created 0600 and left in place: removing a lock
/// file races with the next process taking it), held until the file is dropped. SQLite's
/// own locks cannot serve: opening and closing a second handle on the database would
/// release the connection's POSIX locks.
pub fn lock_beside(path: &Path) -> StoreResult<std::fs::File> {
    let mut lock_name = path.file_name().unwrap_or_default().to_os_string();
    lock_name.push(".lock");
    let lock_path = path.with_file_name(lock_name);
    create_private_file(&lock_path)?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    file.lock().map_err(io(&lock_path))?;
    Ok(file)
}

/// `bytes` as the whole of `path` (mode 0600): written beside it, synced and renamed, so
/// a reader never sees half a file. The partial file is this process's own.
pub fn write_private(path: &Path, bytes: &[u8]) -> StoreResult<()> {
    let mut partial_name = path.file_name().unwrap_or_default().to_os_string();
    partial_name.push(format!(".{}.partial", std::process::id()));
    let partial = path.with_file_name(partial_name);
    let _ = std::fs::remove_file(&partial);
    create_private_file(&partial)?;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&partial)
        .map_err(io(&partial))?;
    file.write_all(bytes).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, path).map_err(io(path))
}
