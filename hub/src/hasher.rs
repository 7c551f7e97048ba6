//! Password hashing on a small fixed pool of threads.
//!
//! argon2id is deliberately expensive: each hash or check takes ~19 MiB and tens of
//! milliseconds of CPU. A fixed pool bounds the CPU and memory a burst of logins can take from
//! the rooms; requests beyond it queue.
//!
//! glibc's malloc raises its mmap threshold to the size of the first large block freed, after
//! which every 19 MiB argon2 block came from the heap and was kept: measured, each registration
//! grew the process by 19 MiB (50 of them: 1 GB). Pinning the threshold makes such blocks go
//! back to the system when freed.

use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

use argon2::{Argon2, PasswordHasher, PasswordVerifier};
use tokio::sync::oneshot;

enum Job {
    Hash(String, oneshot::Sender<Result<String, String>>),
    Verify(String, String, oneshot::Sender<bool>),
}

/// A handle to the hashing threads; they stop when the last handle is dropped.
pub struct Hasher {
    jobs: Mutex<std_mpsc::Sender<Job>>,
}

impl Hasher {
    /// Starts `threads` hashing threads.
    pub fn new(threads: usize) -> Hasher {
        pin_mmap_threshold();
        let (tx, rx) = std_mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        match job {
                            Ok(Job::Hash(password, reply)) => {
                                let _ = reply.send(hash(&password));
                            }
                            Ok(Job::Verify(password, phc, reply)) => {
                                let ok = Argon2::default()
                                    .verify_password(password.as_bytes(), phc.as_str())
                                    .is_ok();
                                let _ = reply.send(ok);
                            }
                            Err(_) => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a hashing thread");
            }
        }
        Hasher {
            jobs: Mutex::new(tx),
        }
    }

    fn submit(&self, job: Job) -> bool {
        self.jobs.lock().is_ok_and(|jobs| jobs.send(job).is_ok())
    }

    /// Hashes a password into a PHC string.
    ///
    /// # Errors
    /// Hashing failed, or the pool is gone.
    pub async fn hash(&self, password: String) -> Result<String, String> {
        let (tx, rx) = oneshot::channel();
        if !self.submit(Job::Hash(password, tx)) {
            return Err("hashing pool stopped".into());
        }
        rx.await.map_err(|_| "hashing pool stopped".to_owned())?
    }

    /// Checks a password against a PHC string (false on any failure).
    pub async fn verify(&self, password: String, phc: String) -> bool {
        let (tx, rx) = oneshot::channel();
        self.submit(Job::Verify(password, phc, tx)) && rx.await.unwrap_or(false)
    }
}

/// Hashes on the calling thread (startup only).
pub fn hash(password: &str) -> Result<String, String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| format!("argon2: {e}"))
}

/// Keeps allocations of 1 MiB and more in their own mappings, returned to the system on free
/// (see the module docs).
fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets an allocator tunable; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}
