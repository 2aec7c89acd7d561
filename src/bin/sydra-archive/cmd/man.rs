//! What is generated from the command tree: the man pages (`man`) and
//! the shell completion scripts (`completions`).

use std::io::{self, Write};
use std::process::ExitCode;

use sydra_archive::Error;

use crate::cli::{Cli, ManArgs};

/// The man pages, from the command tree: `(name, roff)`, the top page
/// (`sydra-archive`) first, then `sydra-archive-COMMAND` for each command.
fn man_pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Built, each command is named `sydra-archive-COMMAND` and its usage
    // `sydra-archive COMMAND`.
    cmd.build();
    let mut pages = Vec::new();
    for c in std::iter::once(&cmd).chain(cmd.get_subcommands().filter(|c| !c.is_hide_set())) {
        let man = clap_mangen::Man::new(c.clone())
            .source(format!("sydra-archive {}", env!("CARGO_PKG_VERSION")));
        let name = c.get_display_name().unwrap_or(c.get_name()).to_string();
        let mut roff = Vec::new();
        man.render(&mut roff)?;
        pages.push((name, roff));
    }
    Ok(pages)
}

pub fn man(a: ManArgs) -> anyhow::Result<ExitCode> {
    let pages = man_pages()?;
    if let Some(dir) = &a.dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
        for (name, roff) in &pages {
            let path = dir.join(format!("{name}.1"));
            std::fs::write(&path, roff).map_err(|e| Error::io("write", &path, e))?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let want = match &a.command {
        None => "sydra-archive".to_string(),
        Some(c) => format!("sydra-archive-{c}"),
    };
    let Some((_, roff)) = pages.iter().find(|(name, _)| *name == want) else {
        let commands: Vec<&str> = pages[1..]
            .iter()
            .map(|(n, _)| n.trim_start_matches("sydra-archive-"))
            .collect();
        return Err(Error::Refused(format!(
            "no command {}: man pages are for {}",
            a.command.as_deref().unwrap_or_default(),
            commands.join(", ")
        ))
        .into());
    };
    let mut out = io::stdout().lock();
    out.write_all(roff)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<ExitCode> {
    // Generated into memory: clap_complete panics on a failed write.
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "sydra-archive", &mut script);
    io::stdout()
        .write_all(&script)
        .and_then(|()| io::stdout().flush())
        .map(|()| ExitCode::SUCCESS)
        .map_err(anyhow::Error::from)
}
