//! The Unix-socket listener: created with mode 0660, refuses a socket another daemon is serving,
//! and judges each peer by its credentials.

use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::{UnixListener, UnixStream};

use super::serve::Admission;

/// Why the socket could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another process answers on the socket.
    #[error("another caxton daemon is already serving on {0}")]
    InUse(PathBuf),
    /// The OS refused.
    #[error("cannot listen on {path}: {error}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The OS error (shown in the message, so not chained as a source).
        error: io::Error,
    },
}

/// Bind the API socket, replacing a stale socket file left by a crashed daemon.
pub async fn bind_unix_socket(path: &Path) -> Result<CheckedUnixListener, BindError> {
    let io_err = |error| BindError::Io {
        path: path.to_owned(),
        error,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(BindError::InUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(io_err)?;
    }
    let inner = UnixListener::bind(path).map_err(io_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(io_err)?;
    let socket_gid = std::fs::metadata(path).map_err(io_err)?.gid();
    Ok(CheckedUnixListener {
        inner,
        // SAFETY: geteuid has no preconditions.
        own_uid: unsafe { libc::geteuid() },
        socket_gid,
        socket_group: group_name(socket_gid),
    })
}

/// A Unix listener that accepts only root, our own user and the socket's group.
pub struct CheckedUnixListener {
    inner: UnixListener,
    own_uid: u32,
    socket_gid: u32,
    /// The group's name for refusal messages, looked up once.
    socket_group: String,
}

impl CheckedUnixListener {
    /// Root, our own user, and members of the socket's group (primary or supplementary: an
    /// operator added with `usermod -aG caxton` has it only as a supplementary group).
    fn allows(&self, uid: u32, gid: u32, pid: Option<i32>) -> bool {
        uid == 0
            || uid == self.own_uid
            || gid == self.socket_gid
            || pid.is_some_and(|p| in_group(p, self.socket_gid))
    }
}

/// Whether a process has `gid` among its supplementary groups (`Groups:` in /proc/PID/status).
fn in_group(pid: i32, gid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Groups:"))
                .map(|groups| {
                    groups
                        .split_whitespace()
                        .any(|g| g.parse::<u32>() == Ok(gid))
                })
        })
        .unwrap_or(false)
}

impl CheckedUnixListener {
    /// Accept the next connection and judge its peer. A refused peer is still accepted, so that
    /// it can be told why (a 403) instead of seeing the connection drop.
    pub(crate) async fn accept_checked(&self) -> io::Result<(UnixStream, Admission)> {
        let (stream, _) = self.inner.accept().await?;
        let admission = match stream.peer_cred() {
            Ok(cred) if self.allows(cred.uid(), cred.gid(), cred.pid()) => Admission::Allowed,
            Ok(cred) => Admission::Refused(format!(
                "uid {} (gid {}) may not use this socket: only root, uid {} and members of \
                 group {} may",
                cred.uid(),
                cred.gid(),
                self.own_uid,
                self.socket_group
            )),
            Err(e) => Admission::Refused(format!(
                "the peer's credentials could not be read ({e}), so it is not allowed"
            )),
        };
        Ok((stream, admission))
    }
}

/// `NAME (gid N)`, or just the number when the group has no name.
fn group_name(gid: u32) -> String {
    match nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)) {
        Ok(Some(group)) => format!("{} (gid {gid})", group.name),
        _ => format!("gid {gid}"),
    }
}
