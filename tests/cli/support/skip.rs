//! Tests that need what a machine may not have (s3s-fs, root) skip
//! visibly: a skip writes one line on the process's stderr that a plain
//! `cargo test` shows, and an environment variable turns it into a
//! failure where the test must run (CI).

/// Writes `skipped: <test>: <why>` straight to file descriptor 2. libtest
/// captures what `eprintln!` prints in a passing test (shown only with
/// `--nocapture`); it does not capture this, so a skipped test that
/// reports `ok` still says that it did not run.
pub fn skip(why: &str) {
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let line = format!("skipped: {test}: {why}\n");
    // SAFETY: write(2) of a valid buffer to fd 2.
    let _ = unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// Whether root-only tests run: `SYDRA_ARCHIVE_ROOT_TESTS=1` asks for
/// them, and then not being root is a failure (they were asked for and
/// cannot run). Unset, the test skips visibly (see [`skip`]). `what` says
/// what root is needed for.
pub fn root_tests(what: &str) -> bool {
    if std::env::var_os("SYDRA_ARCHIVE_ROOT_TESTS").is_none() {
        skip(&format!(
            "needs root ({what}); run as root with SYDRA_ARCHIVE_ROOT_TESTS=1"
        ));
        return false;
    }
    // SAFETY: geteuid cannot fail.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "SYDRA_ARCHIVE_ROOT_TESTS is set but the tests do not run as root ({what})"
    );
    true
}
