//! An incremental's own members checked as they stream by (FORMAT.md
//! C.2, C.3): its operations parse, in order, and every tail an append
//! names is there; every member also goes on to the sink wrapped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::format::head::Entry;
use crate::format::incremental::{
    CHANGES_PATH, Change, ChangeOrder, MAX_CHANGE_LINE, MAX_TAILS, TAILS_DIR,
};
use crate::read::{FileSink, Info, Plan, Sink};

/// A sink that also checks an incremental's own members as they stream
/// by (FORMAT.md C.2, C.3): its operations parse, in order, and every
/// tail an append names is there. Everything else goes to `inner`.
pub struct OwnCheck<S> {
    /// The sink the members go to.
    pub inner: S,
    state: Arc<Mutex<OwnState>>,
}

#[derive(Default)]
struct OwnState {
    changes_seen: bool,
    error: Option<Error>,
    order: ChangeOrder,
    tails_needed: BTreeSet<String>,
    tails_seen: BTreeSet<String>,
}

impl<S> OwnCheck<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        OwnCheck {
            inner,
            state: Arc::default(),
        }
    }

    /// After a full read: for an incremental, what its own members must be.
    pub fn check(&self, info: &Info) -> Result<()> {
        if info.base.is_none() {
            return Ok(());
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = st.error.take() {
            return Err(e);
        }
        if !st.changes_seen {
            return Err(Error::corrupt(format!(
                "an incremental archive without its {CHANGES_PATH}"
            )));
        }
        if let Some(t) = st.tails_needed.difference(&st.tails_seen).next() {
            return Err(Error::corrupt(format!(
                "an append's tail {t} is not in the archive"
            )));
        }
        Ok(())
    }
}

impl<S: Sink> Sink for OwnCheck<S> {
    type File = OwnFile<S::File>;

    fn plan(&mut self, plan: &Plan) -> Result<()> {
        self.inner.plan(plan)
    }

    fn dir(&self, entry: &Entry) -> Result<()> {
        self.inner.dir(entry)
    }

    fn file(&self, entry: &Entry) -> Result<Self::File> {
        let lines = if entry.path == CHANGES_PATH {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            st.changes_seen = true;
            Some((Arc::clone(&self.state), Vec::new()))
        } else {
            if entry.path.starts_with(TAILS_DIR) {
                let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
                if st.tails_seen.len() < MAX_TAILS {
                    st.tails_seen.insert(entry.path.clone());
                }
            }
            None
        };
        Ok(OwnFile {
            inner: self.inner.file(entry)?,
            lines,
        })
    }

    fn workers(&self, cores: usize) -> usize {
        self.inner.workers(cores)
    }
}

/// A member going through [`OwnCheck`].
pub struct OwnFile<F> {
    inner: F,
    /// For the operations member: the shared state and the line so far.
    lines: Option<(Arc<Mutex<OwnState>>, Vec<u8>)>,
}

impl OwnState {
    fn line(&mut self, line: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let c = match self.order.next(line) {
            Ok(c) => c,
            Err(e) => {
                self.error = Some(e);
                return;
            }
        };
        if let Change::Append { tail, .. } = &c {
            if self.tails_needed.len() >= MAX_TAILS {
                self.error = Some(Error::corrupt(format!(
                    "{CHANGES_PATH}: more than {MAX_TAILS} appends"
                )));
                return;
            }
            self.tails_needed.insert(tail.clone());
        }
    }
}

impl<F: FileSink> FileSink for OwnFile<F> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        if let Some((state, buf)) = &mut self.lines {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            for chunk in data.split_inclusive(|&b| b == b'\n') {
                buf.extend_from_slice(chunk);
                if buf.last() == Some(&b'\n') {
                    st.line(&buf[..buf.len() - 1]);
                    buf.clear();
                } else if buf.len() > MAX_CHANGE_LINE {
                    st.error.get_or_insert(Error::corrupt(format!(
                        "{CHANGES_PATH}: a line longer than {MAX_CHANGE_LINE} bytes"
                    )));
                    buf.clear();
                }
            }
        }
        self.inner.write(data)
    }

    fn finish(self, entry: &Entry) -> Result<()> {
        if let Some((state, buf)) = &self.lines
            && !buf.is_empty()
        {
            let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.error.get_or_insert(Error::corrupt(format!(
                "{CHANGES_PATH}: its last line has no newline"
            )));
        }
        self.inner.finish(entry)
    }
}
