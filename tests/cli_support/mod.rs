//! Running the `transreid` binary from the command-line tests.

use std::ffi::OsStr;
use std::fmt::Debug;
use std::process::{Command, Output};

/// Runs `transreid` with `args`.
pub fn transreid<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_transreid"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap()
}

/// Runs `transreid` with `args`, which must succeed; returns its standard output.
pub fn ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = transreid(args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs `transreid` with `args`, which must fail saying `message`.
pub fn fails<S: AsRef<OsStr> + Debug>(args: &[S], message: &str) {
    let out = transreid(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail");
    assert!(
        stderr.contains(message),
        "{args:?}: `{stderr}` lacks `{message}`"
    );
}
