//! An import over the admin socket: the file arrives in chunks and is
//! spooled to a private file in the state directory, never held in memory;
//! at the commit it is read in batches on a blocking thread while the store
//! writes them, all in one transaction.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWriteExt;
use tokio::sync::OwnedSemaphorePermit;

use crate::import::{self, ImportError, ImportRows};
use crate::model::ReplyAttribute;
use crate::radius::Settings;

static SPOOLS: AtomicU64 = AtomicU64::new(0);

/// The names spool files take: `.import-PID-N.csv`.
const PREFIX: &str = ".import-";

/// Removes the spool files an earlier run left in `dir` (it was killed in
/// the middle of an import: nothing of that import was written), but not
/// those of a process still running.
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .filter(|rest| rest.ends_with(".csv"))
            .and_then(|rest| rest.split('-').next())
        else {
            continue;
        };
        let running = pid.parse::<u32>().is_ok_and(|pid| {
            pid != std::process::id() && Path::new("/proc").join(pid.to_string()).exists()
        });
        if !running {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed the file of an unfinished import")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove the file of an unfinished import")
                }
            }
        }
    }
}

/// An import in progress on a connection: the file received so far.
pub struct Spool {
    path: PathBuf,
    file: tokio::fs::File,
    bytes: usize,
    pub operator: Option<String>,
    /// One import at a time, daemon-wide.
    _slot: OwnedSemaphorePermit,
}

impl Spool {
    /// A new, empty spool file in `dir`, readable by liberad only (it
    /// holds passwords).
    pub async fn create(
        dir: &Path,
        operator: Option<String>,
        slot: OwnedSemaphorePermit,
    ) -> std::io::Result<Spool> {
        let name = format!(
            "{PREFIX}{}-{}.csv",
            std::process::id(),
            SPOOLS.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
        Ok(Spool {
            path,
            file,
            bytes: 0,
            operator,
            _slot: slot,
        })
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Appends the next chunk of the file.
    pub async fn append(&mut self, data: &str) -> std::io::Result<()> {
        self.file.write_all(data.as_bytes()).await?;
        self.bytes += data.len();
        Ok(())
    }

    /// Starts reading the whole file: the header is checked first (a file
    /// that cannot be read at all is an error here), then the rows come in
    /// batches. `settings` vet reply attributes against the dictionaries.
    pub async fn read(
        &mut self,
        settings: Option<Arc<Settings>>,
    ) -> Result<ImportRows, ImportError> {
        self.file
            .flush()
            .await
            .map_err(|e| ImportError::Io(e.to_string()))?;
        let path = self.path.clone();
        let check = move |attribute: &ReplyAttribute| match &settings {
            Some(settings) => settings.encode_login_attribute(attribute).map(drop),
            None => Ok(()),
        };
        import::stream(move || std::fs::File::open(path).map(BufReader::new), check).await
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // Committed, aborted or abandoned: the copy goes.
        let _ = std::fs::remove_file(&self.path);
    }
}
