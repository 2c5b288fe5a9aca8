//! The daemon's end of the Unix socket: a private directory (0700) and socket (0600), a lock file
//! so a second daemon on the same path exits with a clear message, removal of a stale socket only
//! when nothing answers on it, a check of every connecting process's uid, and removal of the
//! socket at exit.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use crate::authority::LocalAuthority;

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// Another daemon holds the lock.
    #[error("another zeta-mlxd{pid} is already serving {path}; stop it first (or pass --socket to use another path)")]
    AlreadyRunning {
        /// The socket.
        path: PathBuf,
        /// " (pid N)" when known.
        pid: String,
    },
    /// The directory belongs to someone else or is open to others.
    #[error("{0}")]
    Unsafe(String),
    /// An OS error.
    #[error("socket {path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SocketError + '_ {
    move |source| SocketError::Io { path: path.to_path_buf(), source }
}

fn my_uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Holds the lock and removes the socket and lock file when dropped.
pub struct SocketGuard {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

fn prepare_dir(dir: &Path) -> Result<(), SocketError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io(dir))?;
        return Ok(());
    }
    check_dir(dir)
}

fn check_dir(dir: &Path) -> Result<(), SocketError> {
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    let sticky = meta.mode() & 0o1000 != 0;
    if meta.uid() != my_uid() && !sticky {
        return Err(SocketError::Unsafe(format!(
            "socket directory {} belongs to uid {}, not to this user ({}); choose another path with --socket",
            dir.display(),
            meta.uid(),
            my_uid()
        )));
    }
    Ok(())
}

/// What [`bind`] would refuse, found without creating, locking or removing anything (the daemon
/// may be running on the path): something not a socket at the path or not our lock beside it, a
/// folder that is someone else's.
pub fn check_path(path: &Path) -> Result<(), SocketError> {
    // Only a socket is ever replaced: a file or folder at the path (a typo in --socket) is the
    // user's, and is neither removed nor written beside.
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt as _;
        if !meta.file_type().is_socket() {
            return Err(SocketError::Unsafe(format!(
                "{} exists and is not a socket; it is left alone: choose another path with --socket",
                path.display()
            )));
        }
    }
    // The nearest folder that exists must be a folder: a file on the way would fail every start.
    let mut at = path.parent();
    while let Some(dir) = at.filter(|d| !d.as_os_str().is_empty()) {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {
                check_dir(dir)?;
                break;
            }
            Ok(_) => {
                return Err(SocketError::Unsafe(format!(
                    "{} is not a folder, so no socket can be made under it: choose another path with --socket",
                    dir.display()
                )));
            }
            Err(_) => at = dir.parent(),
        }
    }
    let lock_path = path.with_extension("lock");
    // Nor is a file at the lock's path taken over unless it is a lock this daemon wrote (empty or
    // a pid): a link or someone's `zeta.lock` would be truncated, then removed at exit.
    if let Ok(meta) = std::fs::symlink_metadata(&lock_path) {
        let ours = meta.file_type().is_file()
            && meta.len() <= 20
            && std::fs::read_to_string(&lock_path).is_ok_and(|s| s.trim().bytes().all(|b| b.is_ascii_digit()));
        if !ours {
            return Err(SocketError::Unsafe(format!(
                "{} exists and is not this daemon's lock file; it is left alone: choose another path with --socket",
                lock_path.display()
            )));
        }
    }
    Ok(())
}

/// Sets up and binds the socket.
pub fn bind(path: &Path) -> Result<(UnixListener, SocketGuard), SocketError> {
    check_path(path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_dir(dir)?;
    }
    let lock_path = path.with_extension("lock");
    let mut lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    // SAFETY: flock on an open descriptor we own.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let pid = std::fs::read_to_string(&lock_path).ok().map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
        return Err(SocketError::AlreadyRunning {
            path: path.to_path_buf(),
            pid: pid.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        });
    }
    lock.set_len(0).map_err(io(&lock_path))?;
    write!(lock, "{}", std::process::id()).map_err(io(&lock_path))?;

    if path.exists() {
        // With the lock held, an answering socket means a process that ignores the lock.
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => {
                return Err(SocketError::AlreadyRunning { path: path.to_path_buf(), pid: String::new() });
            }
            Err(_) => {
                tracing::info!(path = %path.display(), "removing stale socket (nothing answers on it)");
                std::fs::remove_file(path).map_err(io(path))?;
            }
        }
    }
    let listener = UnixListener::bind(path).map_err(io(path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    Ok((listener, SocketGuard { path: path.to_path_buf(), lock_path, _lock: lock }))
}

/// Whether a connecting process may talk to the daemon: its own user, or root.
pub fn allowed(stream: &UnixStream) -> Result<u32, Option<u32>> {
    match stream.peer_cred() {
        Ok(c) if c.uid() == my_uid() || c.uid() == 0 => Ok(c.uid()),
        Ok(c) => Err(Some(c.uid())),
        Err(_) => Err(None),
    }
}

/// Accepted connections from allowed peers, ready for any gRPC client's `:authority`
/// ([`LocalAuthority`]); others are logged and closed.
pub fn incoming(
    listener: UnixListener,
) -> impl futures_util::Stream<Item = std::io::Result<LocalAuthority<UnixStream>>> {
    futures_util::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => match allowed(&stream) {
                    Ok(_) => return Some((Ok(LocalAuthority::new(stream)), listener)),
                    Err(uid) => {
                        match uid {
                            Some(uid) => tracing::warn!(peer_uid = uid, "refused a connection from another user"),
                            None => tracing::warn!("refused a connection from a peer of unknown user"),
                        }
                        drop(stream);
                    }
                },
                Err(e) => {
                    // Out of descriptors and the like: report, pause, keep serving.
                    tracing::error!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_at_the_socket_path_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "precious").unwrap();
        let e = super::bind(&path).err().expect("a regular file is not replaced");
        assert!(e.to_string().contains("is not a socket"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "precious");
        assert!(!dir.path().join("notes.lock").exists(), "nothing is written beside it");
    }

    #[test]
    fn a_file_on_the_way_to_the_socket_is_found_by_the_check() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let e = super::check_path(&dir.path().join("f/deeper/x.sock")).unwrap_err();
        assert!(e.to_string().contains("is not a folder"), "{e}");
        super::check_path(&dir.path().join("new/deeper/x.sock")).expect("folders made at start are fine");
    }

    #[tokio::test]
    async fn a_lock_path_holding_something_else_is_never_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("zeta.sock");
        let lock = dir.path().join("zeta.lock");
        std::fs::write(&lock, "my notes").unwrap();
        let e = super::bind(&path).err().expect("someone else's file at the lock path");
        assert!(e.to_string().contains("not this daemon's lock file"), "{e}");
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), "my notes");
        assert!(!path.exists());
        // A lock left by an earlier daemon (a pid) is reused, and removed when done.
        std::fs::write(&lock, "12345").unwrap();
        let (listener, guard) = super::bind(&path).expect("a stale lock is ours");
        assert_eq!(std::fs::read_to_string(&lock).unwrap(), std::process::id().to_string());
        drop((listener, guard));
        assert!(!lock.exists() && !path.exists());
    }
}
