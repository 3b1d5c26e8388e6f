//! Directories and files that hold keys, readable by their owner only (0700 and 0600 on
//! Unix): a device's home (`rapport.db` holds the device keys and every space key) and the
//! relay's data directory (its identity key and database). Shared by both sides so that
//! they are kept private in one way.

use std::io;
use std::path::Path;

/// Creates `dir` (and missing parents) readable by its owner only, and tightens it if it
/// already exists and is open to others.
pub fn dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    tighten(dir, 0o700)
}

/// Makes a database file and its SQLite companions (`-wal`, `-shm`, `-journal`) readable
/// by their owner only: the file is created empty with that mode when missing (SQLite
/// then opens it and gives the companions it creates the same mode), and tightened when
/// it exists.
pub fn database(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => tighten(path, 0o600)?,
        Err(e) => return Err(e),
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut companion = path.as_os_str().to_owned();
        companion.push(suffix);
        match tighten(Path::new(&companion), 0o600) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// Removes the group and other permission bits of `path` if it has any.
fn tighten(path: &Path, mode: u32) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let current = std::fs::metadata(path)?.permissions().mode();
        if current & 0o077 != 0
            && let Err(e) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        {
            // Not ours to change (another user's file, a read-only mount): say so and go
            // on rather than refuse to open what the user can read.
            tracing::warn!(path = %path.display(), "could not make it owner-only: {e}");
        }
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}

/// Writes `bytes` to a new file at `path` (refusing to replace one) readable by its owner
/// only, and makes it durable: the file is synced, then its directory, so that a power cut
/// right after cannot leave an identity half written or missing.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes the entries of `dir` (files created or renamed in it) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    std::fs::File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_and_existing_places_end_up_owner_only() {
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let root = tempfile::tempdir().unwrap();
        let home = root.path().join("a/home");
        dir(&home).unwrap();
        assert_eq!(mode(&home), 0o700);
        let db = home.join("rapport.db");
        database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);

        // A place made by an older build, open to everyone, is tightened.
        let old = root.path().join("old");
        std::fs::create_dir(&old).unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old_db = old.join("rapport.db");
        let wal = old.join("rapport.db-wal");
        for file in [&old_db, &wal] {
            std::fs::write(file, b"kept").unwrap();
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        dir(&old).unwrap();
        database(&old_db).unwrap();
        assert_eq!(
            (mode(&old), mode(&old_db), mode(&wal)),
            (0o700, 0o600, 0o600)
        );
        assert_eq!(
            std::fs::read(&old_db).unwrap(),
            b"kept",
            "contents untouched"
        );

        let key = home.join("identity.key");
        write_new(&key, b"secret").unwrap();
        assert_eq!(mode(&key), 0o600);
        assert!(write_new(&key, b"other").is_err(), "never replaces a key");
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
    }
}
