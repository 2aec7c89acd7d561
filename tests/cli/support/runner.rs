//! Running the real binary: plainly, with stdin, bounded in time and
//! memory, or on a pseudo-terminal.

use std::path::Path;
use std::process::{Command, Output, Stdio};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sydra-archive"))
}

/// Runs the binary with `args`, stdin closed.
pub fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sydra-archive")
}

/// Runs the binary with `input` on stdin.
pub fn run_stdin(args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = bin()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let data = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&data); // the reader may stop early
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

pub fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The JSON object a command printed on stdout.
pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: stdout {:?} stderr {}", stdout(o), stderr(o)))
}

/// Asserts the exit code, showing stderr when it differs.
#[track_caller]
pub fn expect_code(o: &Output, want: i32) {
    assert_eq!(
        code(o),
        want,
        "stderr: {}\nstdout: {}",
        stderr(o),
        stdout(o)
    );
}

pub fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs the binary with at most 512 MiB of address space and a 60 s limit.
pub fn run_bounded(args: &[&str]) -> Output {
    use std::os::unix::process::CommandExt;
    let mut c = bin();
    c.args(args).stdin(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 512 << 20,
                rlim_max: 512 << 20,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_bounded(child, std::time::Duration::from_secs(60))
}

/// Runs the binary with stdin, stdout and stderr on a pseudo-terminal
/// (python's pty module); the output is what the terminal saw.
pub fn run_in_pty(args: &[&str]) -> Output {
    let script = r#"
import os, pty, sys
pid, fd = pty.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
out = b""
while True:
    try:
        chunk = os.read(fd, 4096)
    except OSError:
        break
    if not chunk:
        break
    out += chunk
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
sys.exit(os.waitstatus_to_exitcode(status))
"#;
    Command::new("python3")
        .args(["-c", script, env!("CARGO_BIN_EXE_sydra-archive")])
        .args(args)
        .output()
        .unwrap()
}

/// Waits for `child` and its output, killing it after `limit`: a hang is a
/// test failure, not a stuck test run.
pub fn wait_bounded(child: std::process::Child, limit: std::time::Duration) -> Output {
    let pid = child.id() as i32;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let watchdog = std::thread::spawn(move || {
        let start = std::time::Instant::now();
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            if start.elapsed() > limit {
                // SAFETY: kill(2) on our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    });
    let out = child.wait_with_output().unwrap();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(!watchdog.join().unwrap(), "ran for over {limit:?}");
    out
}
