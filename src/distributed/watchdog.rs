//! Ends a process whose training step does not complete in time, so that a hung collective (a
//! dead or stuck peer) ends the job instead of waiting forever.

use std::sync::mpsc::{channel, RecvTimeoutError, Sender};
use std::time::Duration;

/// A thread that exits the process with status 3 when [`Watchdog::feed`] is not called for
/// `timeout`. An MPI launcher then ends the other ranks. Dropping it stops the thread.
pub struct Watchdog {
    feed: Sender<Option<Duration>>,
}

impl Watchdog {
    /// Starts watching; `what` names the process in the message.
    pub fn start(timeout: Duration, what: String) -> Self {
        let (feed, fed) = channel::<Option<Duration>>();
        std::thread::Builder::new()
            .name("transreid-watchdog".into())
            .spawn(move || {
                let mut timeout = timeout;
                loop {
                    match fed.recv_timeout(timeout) {
                        Ok(Some(next)) => timeout = next,
                        Ok(None) => {}
                        Err(RecvTimeoutError::Disconnected) => return,
                        Err(RecvTimeoutError::Timeout) => {
                            eprintln!(
                                "error: {what}: no training step completed within {} s (a \
                                 rank died or hangs, or the step is slower than \
                                 --step-timeout); ending the job",
                                timeout.as_secs()
                            );
                            std::process::exit(3);
                        }
                    }
                }
            })
            .expect("spawning the watchdog thread");
        Self { feed }
    }

    /// A step completed: the countdown restarts.
    pub fn feed(&self) {
        let _ = self.feed.send(None);
    }

    /// Restarts the countdown with another limit (e.g. around an evaluation that others wait
    /// for), kept until changed again.
    pub fn set_timeout(&self, timeout: Duration) {
        let _ = self.feed.send(Some(timeout));
    }
}
