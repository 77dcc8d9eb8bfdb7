//! Files only their owner may read: created `0600` whatever the process umask, and
//! secrets refused when others may read them. A leaf module: the KMS (database, audit
//! log, root key and URL files), the PKCS#11 PIN file and the sealed root key use it.

use std::fs::{File, OpenOptions};
use std::path::Path;

/// Creates `path` for writing, readable and writable by its owner only; fails with
/// `AlreadyExists` if it exists (nothing is overwritten).
pub fn create_new_private(path: &Path) -> std::io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
}

/// The permission bits of `path` that give group or others access, if any
/// (always none where Unix modes do not exist).
pub fn shared_mode(path: &Path) -> std::io::Result<Option<u32>> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
        Ok((mode & 0o077 != 0).then_some(mode))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(None)
    }
}

/// Refuses a file holding a secret (`what`: "root key file", "PIN file"...) that anyone
/// but its owner may read or write; the message names the file and the fix.
pub fn check_private(path: &Path, what: &str) -> Result<(), String> {
    let shown = path.display();
    match shared_mode(path) {
        Err(e) => Err(format!("cannot read {what} {shown}: {e}")),
        Ok(Some(mode)) => Err(format!(
            "{what} {shown} is accessible by group or others (mode {mode:03o}); \
             restrict it with `chmod 600 {shown}`"
        )),
        Ok(None) => Ok(()),
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn new_files_are_private_and_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        create_new_private(&p).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            create_new_private(&p).unwrap_err().kind(),
            std::io::ErrorKind::AlreadyExists
        );
        assert_eq!(check_private(&p, "key file"), Ok(()));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = check_private(&p, "key file").unwrap_err();
        assert!(e.contains("mode 640") && e.contains("chmod 600"), "{e}");
    }
}
