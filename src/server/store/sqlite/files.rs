//! Files beside the database: the WAL to fsync, the lock that makes one process the owner.

use super::*;

/// Open `<db><suffix>` (the WAL, the lock file) with `options`.
pub(super) fn beside(
    db: &Path,
    suffix: &str,
    options: &std::fs::OpenOptions,
) -> Result<std::fs::File, StoreError> {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    options
        .open(&name)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {name:?}: {e}")))
}

pub(super) fn lock_owner(db: &Path) -> Result<std::fs::File, StoreError> {
    let file = beside(
        db,
        ".lock",
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true),
    )?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Unavailable(format!(
            "{} is in use by another sluice process (one process per SQLite database; \
             use PostgreSQL to run several)",
            db.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(StoreError::Unavailable(format!(
            "cannot lock {}.lock: {e}",
            db.display()
        ))),
    }
}
