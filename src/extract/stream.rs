//! Extracting from an archive read whole as a stream (version 1, or a
//! pipe): fully verified as it is read, the wanted members kept.

use std::sync::atomic::Ordering;

use crate::error::Result;
use crate::extract::patterns::Patterns;
use crate::extract::stage::{Stage, StagedFile};
use crate::format::head::Entry;
use crate::read::{FileSink, Sink};

/// Keeps the wanted members of an archive read whole as a stream.
pub struct StreamSink<'s> {
    pats: std::sync::Mutex<Patterns>,
    stage: &'s Stage,
}

impl<'s> StreamSink<'s> {
    /// Keeps what `pats` wants, staged in `stage`.
    pub fn new(pats: Patterns, stage: &'s Stage) -> Self {
        StreamSink {
            pats: std::sync::Mutex::new(pats),
            stage,
        }
    }

    /// The patterns, with which of them matched something.
    pub fn into_patterns(self) -> Patterns {
        self.pats.into_inner().unwrap_or_else(|e| e.into_inner())
    }
}

/// One member of [`StreamSink`]: written to staging, or dropped.
pub struct StreamFile<'s> {
    staged: Option<StagedFile>,
    stage: &'s Stage,
}

impl<'s> Sink for StreamSink<'s> {
    type File = StreamFile<'s>;

    fn dir(&self, e: &Entry) -> Result<()> {
        let wanted = self
            .pats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(&e.path);
        if wanted {
            self.stage.dir(e)?;
        }
        Ok(())
    }

    fn file(&self, e: &Entry) -> Result<StreamFile<'s>> {
        let wanted = self
            .pats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wants(&e.path);
        let staged = if wanted {
            self.stage.check_target(&e.path)?;
            Some(self.stage.file(e)?)
        } else {
            None
        };
        Ok(StreamFile {
            staged,
            stage: self.stage,
        })
    }
}

impl FileSink for StreamFile<'_> {
    fn write(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.staged {
            Some(s) => s.write(data),
            None => Ok(()),
        }
    }

    fn finish(self, e: &Entry) -> Result<()> {
        if let Some(s) = self.staged {
            s.finish(e)?;
            self.stage.files.fetch_add(1, Ordering::Relaxed);
            self.stage.bytes.fetch_add(e.size, Ordering::Relaxed);
        }
        Ok(())
    }
}
