//! The open-file limit: raised once at start-up, and the connection cap derived from it.
//!
//! Every socket a service holds is a file descriptor. Many systems start processes with a soft
//! `RLIMIT_NOFILE` of 1,024 under a far higher hard limit, which a process may lift itself to; a
//! gateway left at 1,024 refuses connections (and its own NATS and PostgreSQL reconnects) long
//! before its memory or CPU is the bound. So each service lifts the soft limit to the hard one
//! as it starts, and the public listeners size their default cap from what it then is.

use std::sync::OnceLock;

/// File descriptors kept for everything but client connections (NATS, PostgreSQL, files, ops).
const RESERVED_FDS: u64 = 256;
/// Connections a listener holds at most by default, whatever the limit: a raised limit is often a
/// million, and a million open connections would ask for more memory than a gateway has.
const CONNECTION_CEILING: u64 = 65_536;
/// Connections a listener holds at least by default, even under a tiny limit.
const CONNECTION_FLOOR: u64 = 64;

/// The soft limit before and after [`raise`], as it found and left it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit the process started with.
    pub before: u64,
    /// The soft limit now (the hard limit, unless lifting it failed).
    pub after: u64,
}

/// Lifts this process's soft `RLIMIT_NOFILE` to its hard limit, once per process (`hexflow dev`
/// starts several services in one), and logs the old and the new limit. A failure is logged and
/// leaves the limit as it was: the service still runs, with fewer connections.
pub fn raise() -> Raised {
    static RAISED: OnceLock<Raised> = OnceLock::new();
    *RAISED.get_or_init(|| {
        let before = soft_limit().unwrap_or(0);
        match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(after) if after == before => {
                tracing::info!(limit = after, "open-file limit (RLIMIT_NOFILE) already at the hard limit");
                Raised { before, after }
            }
            Ok(after) => {
                tracing::info!(before, after, "open-file limit (RLIMIT_NOFILE) raised to the hard limit");
                Raised { before, after }
            }
            Err(err) => {
                tracing::warn!(limit = before, error = %err, "could not raise the open-file limit (RLIMIT_NOFILE)");
                Raised { before, after: before }
            }
        }
    })
}

/// The soft limit on open files of this process (`None` where there is none).
pub fn soft_limit() -> Option<u64> {
    rlimit::Resource::NOFILE.get().ok().map(|(soft, _)| soft)
}

/// The default connection cap of a public listener under an open-file limit of `fds`: seven
/// eighths of it (an eighth, at least 256, is kept for everything else), between 64 and 65,536.
pub fn connection_cap(fds: u64) -> u32 {
    let reserved = RESERVED_FDS.max(fds / 8);
    let cap = fds.saturating_sub(reserved).clamp(CONNECTION_FLOOR, CONNECTION_CEILING);
    u32::try_from(cap).expect("the cap is at most CONNECTION_CEILING")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the child process that [`raise_lifts_the_soft_limit_to_the_hard_one`] starts.
    const CHILD: &str = "HEXFLOW_OPEN_FILES_CHILD";

    #[test]
    fn raise_lifts_the_soft_limit_to_the_hard_one() {
        if std::env::var(CHILD).as_deref() == Ok("1") {
            return raising_in_this_process();
        }
        // The same test again in a child process started under a soft limit of 64 (the shell
        // lowers it before exec), so this test process's own limit is left alone and the raise
        // has work to do.
        let exe = std::env::current_exe().expect("the test binary's path");
        let output = std::process::Command::new("sh")
            .args(["-c", r#"ulimit -Sn 64 && exec "$0" "$@""#])
            .arg(exe)
            .args(["--exact", "open_files::tests::raise_lifts_the_soft_limit_to_the_hard_one", "--nocapture"])
            .env(CHILD, "1")
            .output()
            .expect("starting the child test process");
        let said = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(output.status.success(), "the child failed:\n{said}");
        assert!(said.contains("1 passed"), "the child test did not run:\n{said}");
    }

    /// What the child process of [`raise_lifts_the_soft_limit_to_the_hard_one`] checks.
    fn raising_in_this_process() {
        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert!(soft < hard, "the child starts below its hard limit ({soft} of {hard})");

        let raised = raise();

        let (soft, hard) = rlimit::Resource::NOFILE.get().unwrap();
        assert_eq!(soft, hard, "the soft limit is the hard one after the raise");
        assert_eq!(raised, Raised { before: 64, after: hard });
        assert_eq!(raise(), raised, "a second call changes and logs nothing");
    }

    #[test]
    fn the_connection_cap_leaves_room_under_the_limit_and_stays_bounded() {
        assert_eq!(connection_cap(1024), 768, "256 kept under a small limit");
        assert_eq!(connection_cap(20_000), 17_500, "an eighth kept under a larger one");
        assert_eq!(connection_cap(1 << 20), 65_536, "a million files is not a million connections");
        assert_eq!(connection_cap(100), 64, "a floor under a tiny limit");
        for fds in [320, 1024, 4096, 65_536, 100_000] {
            assert!(u64::from(connection_cap(fds)) + 256 <= fds, "room kept under {fds}");
        }
    }
}
