//! Writes one key's ops to a JSON file, for a failing test to leave behind, and reads such
//! a file back, to check it again.
//!
//! Does not decide when to write (the caller does, on a verdict that is not a pass).

use super::history::Op;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum JsonError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Writes `ops` (one key's) to `dir/<label>-<key>.json`, creating `dir` if needed, and
/// returns the file's path. Characters of the label or key that are unsafe in a file name
/// become `_`.
pub fn write_key_history(dir: &Path, label: &str, key: &str, ops: &[Op]) -> Result<PathBuf, JsonError> {
    let path = dir.join(format!("{}-{}.json", file_name_safe(label), file_name_safe(key)));
    let io_error = |source| JsonError::Io {
        path: path.clone(),
        source,
    };
    fs::create_dir_all(dir).map_err(io_error)?;
    let mut writer = BufWriter::new(File::create(&path).map_err(io_error)?);
    serde_json::to_writer_pretty(&mut writer, ops).map_err(|source| JsonError::Json {
        path: path.clone(),
        source,
    })?;
    writer.flush().map_err(io_error)?;
    Ok(path)
}

/// Reads ops written by [`write_key_history`].
pub fn read_key_history(path: &Path) -> Result<Vec<Op>, JsonError> {
    let file = File::open(path).map_err(|source| JsonError::Io {
        path: path.to_owned(),
        source,
    })?;
    serde_json::from_reader(BufReader::new(file)).map_err(|source| JsonError::Json {
        path: path.to_owned(),
        source,
    })
}

fn file_name_safe(text: &str) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.';
    text.chars().map(|c| if safe(c) { c } else { '_' }).collect()
}
