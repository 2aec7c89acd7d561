//! Exit codes (0 ok, 1 bad archive, 2 anything else) and the error as
//! the one line printed before the process exits.

use std::io;

use sydra_archive::Error;

/// The archive is bad (corrupt, tampered with, not an archive).
pub const EXIT_ARCHIVE: u8 = 1;
/// Anything else went wrong.
pub const EXIT_OTHER: u8 = 2;

/// The error and its causes on one line, each cause once: the library's
/// messages already end with the OS error they wrap.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}

pub fn exit_code(e: &anyhow::Error) -> u8 {
    match e.downcast_ref::<Error>() {
        Some(err) if err.is_archive_fault() => EXIT_ARCHIVE,
        _ => EXIT_OTHER,
    }
}

pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.downcast_ref::<io::Error>()
        .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
}
