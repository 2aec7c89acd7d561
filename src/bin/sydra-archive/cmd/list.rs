//! `list`: each entry written as it is read (a line, a `sha256sum -c`
//! line, or an element of the `--json` report), nothing holding the list.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::Context;
use sydra_archive::{Entry, hex};

use crate::args::{bases, point_location, use_keys};
use crate::cli::ListArgs;
use crate::report;
use crate::streams::StdClosed;
use crate::ui;

pub fn list(a: ListArgs, std_closed: StdClosed) -> anyhow::Result<ExitCode> {
    use_keys(&a.keys.identities, a.keys.passphrase_file.as_deref())?;
    std_closed.check(&a.archive, true)?;
    std_closed.check_results("the listing")?;
    let mut bases = bases(&a.chain, &a.s3)?;
    let loc = point_location(&a.archive, a.at.as_deref(), &a.s3, &mut bases)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    // Entries are written as they are read: nothing holds the list. A
    // failed write stops the listing and is reported as such.
    let mut write_failed: Option<io::Error> = None;
    let mut first = true;
    let (json, sha256) = (a.json, a.sha256);
    let listed = {
        let mut visit =
            |e: &Entry, d: Option<&[u8; 32]>, carried: Option<bool>| -> sydra_archive::Result<()> {
                let wrote = if sha256 {
                    d.map_or(Ok(()), |d| write_sha256_line(&mut out, e, d))
                } else if json {
                    write_json_entry(&mut out, e, d, carried, std::mem::take(&mut first))
                } else {
                    write_list_line(&mut out, e, carried)
                };
                wrote.map_err(|err| {
                    write_failed = Some(err);
                    sydra_archive::Error::Interrupted
                })
            };
        sydra_archive::list_chain(&loc, sha256, &a.patterns, &bases, &mut visit)
    };
    if let Some(e) = write_failed {
        return Err(anyhow::Error::new(e).context("cannot write the listing to stdout"));
    }
    let (info, chain) = listed.with_context(|| format!("list {loc}"))?;
    let ended = if json {
        report::write_list_end(&mut out, &info, &chain, first)
    } else {
        Ok(())
    };
    ended
        .and_then(|()| out.flush())
        .context("cannot write the listing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `list --sha256`: one `sha256sum -c` line.
fn write_sha256_line(out: &mut impl Write, e: &Entry, d: &[u8; 32]) -> io::Result<()> {
    if e.kind != sydra_archive::EntryKind::File {
        return Ok(());
    }
    // sha256sum's own escape for names with a backslash or newline.
    if e.path.contains(['\\', '\n']) {
        let name = e.path.replace('\\', "\\\\").replace('\n', "\\n");
        writeln!(out, "\\{}  {name}", hex(d))
    } else {
        writeln!(out, "{}  {}", hex(d), e.path)
    }
}

/// `list`: one line per entry; of an incremental's whole tree, `+`
/// before what the archive itself carries.
fn write_list_line(out: &mut impl Write, e: &Entry, carried: Option<bool>) -> io::Result<()> {
    let mark = match carried {
        None => "",
        Some(true) => "+ ",
        Some(false) => "  ",
    };
    writeln!(
        out,
        "{:<4} {:>12} {mark}{}",
        e.kind.as_str(),
        e.size,
        ui::escape_name(&e.path)
    )
}

/// `list --json`: one entry of the `entries` array (the entries come
/// first, what the archive says about itself after them: a version-2
/// archive says it at its end).
fn write_json_entry(
    out: &mut impl Write,
    e: &Entry,
    d: Option<&[u8; 32]>,
    carried: Option<bool>,
    first: bool,
) -> io::Result<()> {
    out.write_all(if first { b"{\"entries\":[" } else { b"," })?;
    let mut entry = report::ListEntry::new(e, d);
    entry.carried = carried;
    serde_json::to_writer(&mut *out, &entry)?;
    Ok(())
}
