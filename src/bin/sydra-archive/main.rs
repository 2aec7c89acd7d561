//! The `sydra-archive` binary: parse arguments, call the library, map the
//! result to an exit code (0 ok, 1 bad archive, 2 anything else).
//!
//! `cli` holds the arguments, `cmd/` one file per command (arguments to a
//! library call, its result printed), `report` the typed `--json`
//! reports, `ui` progress and stderr lines, `args` what shared arguments
//! become, `streams` the standard streams, `metrics` `--metrics-file`,
//! `exit` the exit codes; this file starts the command and exits.

/// Writes one line to stderr. A closed or full stderr is not a reason to
/// panic or to change the exit code: the line is dropped.
/// Control characters (a newline or an escape in a file name) are escaped,
/// so a line is always one line and cannot forge another or drive the
/// terminal.
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::ui::say(format_args!($($arg)*))
    };
}

mod args;
mod cli;
mod cmd;
mod exit;
mod metrics;
mod report;
mod streams;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};
use exit::{EXIT_OTHER, exit_code, is_broken_pipe, one_line};
use streams::StdClosed;

/// The command thread's stack (see `main`).
const STACK_BYTES: usize = 256 << 20;

/// Runs one command.
fn run(command: Command, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    match command {
        Command::Create(a) => cmd::create::create(a, std_closed),
        Command::Verify(a) => cmd::verify::verify(a, std_closed),
        Command::List(a) => cmd::list::list(a, std_closed),
        Command::Restore(a) => cmd::restore::restore(a, std_closed),
        Command::Merge(a) => cmd::merge::merge(a, std_closed),
        Command::Watch(a) => cmd::watch::watch(a, std_closed),
        Command::Extract(a) => cmd::extract::extract(a, std_closed),
        Command::Ls(a) => cmd::ls::ls(a, std_closed),
        Command::Prune(a) => cmd::prune::prune(a),
        Command::Completions { shell } => cmd::man::completions(shell),
        Command::Man(a) => cmd::man::man(a),
    }
}

/// Runs before `main` (and before Rust's runtime replaces a closed fd 0,
/// 1 or 2 with `/dev/null`): notes which standard descriptors the process
/// was started without.
extern "C" fn note_closed_std_fds() {
    sydra_archive::record_closed_std_fds();
}

#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_STD_FDS: extern "C" fn() = note_closed_std_fds;

fn main() -> ExitCode {
    // A closed stdout is no place for an archive (nor a closed stdin a
    // source of one): `-` is refused for them below.
    let closed = sydra_archive::closed_std_fds();
    let cli = Cli::parse();
    let std_closed = StdClosed {
        stdin: closed[0],
        stdout: closed[1],
    };
    if let Err(e) = sydra_archive::install_signal_handlers(i32::from(EXIT_OTHER)) {
        say!("sydra-archive: cannot install signal handlers: {e}");
        return ExitCode::from(EXIT_OTHER);
    }
    // A chain's tree is a stream merged level by level, one nested
    // iterator per archive: a 1,000-link chain runs deep. The command runs
    // on a thread whose stack is large enough for that in any build (only
    // the pages used are ever committed).
    let worker = std::thread::Builder::new()
        .name("main".into())
        .stack_size(STACK_BYTES)
        .spawn(move || run(cli.command, std_closed));
    let result = match worker.map(|h| h.join()) {
        Ok(Ok(r)) => r,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(e) => Err(anyhow::Error::from(e).context("cannot start the command's thread")),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::from(EXIT_OTHER);
            }
            say!("sydra-archive: {}", one_line(&e));

            ExitCode::from(exit_code(&e))
        }
    }
}
