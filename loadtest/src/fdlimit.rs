//! The process's own open-file limit: every connection is a file descriptor, and the usual soft
//! limit (1024) ends a large run with `Too many open files` long before the hub is the limit.
//! At start the soft limit is raised to the hard limit (which only root can raise); the
//! preflight (`preflight.rs`) then compares what the run needs with what was granted.

/// The open-file limits after [`raise_to_hard`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimit {
    /// The soft limit before raising it.
    pub was: u64,
    /// The soft limit now: what the run may open.
    pub soft: u64,
    /// The hard limit: the ceiling without root.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (or to `fs.nr_open` when the hard limit is
/// unlimited, which the kernel would refuse).
///
/// # Errors
/// The OS error of `getrlimit`/`setrlimit`; the harness then runs with the limit it had.
pub fn raise_to_hard() -> std::io::Result<FileLimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let was = limit.rlim_cur;
    let target = if limit.rlim_max == libc::RLIM_INFINITY {
        nr_open().unwrap_or(was)
    } else {
        limit.rlim_max
    };
    if target > was {
        limit.rlim_cur = target;
        // SAFETY: `setrlimit` only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const limit) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(FileLimit {
        was,
        soft: target.max(was),
        hard: limit.rlim_max,
    })
}

/// The kernel's per-process ceiling on open files (`/proc/sys/fs/nr_open`).
fn nr_open() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise_to_hard().unwrap();
        assert!(first.soft >= first.was);
        if first.hard != libc::RLIM_INFINITY {
            assert_eq!(first.soft, first.hard);
        }
        let again = raise_to_hard().unwrap();
        assert_eq!(again.was, first.soft);
        assert_eq!(again.soft, first.soft);
    }
}
