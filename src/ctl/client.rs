//! The admin socket seen from `liberactl`: a blocking Unix stream, one
//! request line out, one response line back.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::admin::protocol::{IMPORT_CHUNK_BYTES, Request, Response};

/// How long to wait for an answer (an import of a large file takes a while).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a call got no response.
#[derive(Debug)]
pub enum Failure {
    /// Our side: the arguments or a local file.
    Usage(String),
    /// The daemon could not be reached, or went away, or answered nonsense.
    Unreachable(String),
}

pub struct Client {
    path: PathBuf,
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Client {
    /// Connects, or explains which socket could not be reached.
    pub fn connect(path: &Path) -> Result<Client, String> {
        let unreachable = |e: std::io::Error| {
            format!(
                "cannot reach liberad at {}: {e} (is it running? is this the socket \
                 of [admin] socket in its configuration?)",
                path.display()
            )
        };
        let stream = UnixStream::connect(path).map_err(unreachable)?;
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .map_err(unreachable)?;
        let reader = BufReader::new(stream.try_clone().map_err(unreachable)?);
        Ok(Client {
            path: path.to_owned(),
            stream,
            reader,
        })
    }

    /// Sends one request and reads its response.
    pub fn call(&mut self, request: &Request) -> Result<Response, Failure> {
        let lost = |e: std::io::Error| {
            Failure::Unreachable(format!(
                "lost the connection to liberad at {}: {e}",
                self.path.display()
            ))
        };
        let mut line = serde_json::to_vec(request)
            .map_err(|e| Failure::Usage(format!("cannot encode the request: {e}")))?;
        line.push(b'\n');
        // A daemon that refuses the connection (busy) answers and closes
        // before reading: its answer is still there to read.
        let sent = self.stream.write_all(&line);
        let mut answer = String::new();
        let read = match self.reader.read_line(&mut answer) {
            Ok(read) if read > 0 || sent.is_ok() => read,
            Ok(_) => {
                return Err(lost(
                    sent.err()
                        .unwrap_or_else(|| std::io::ErrorKind::BrokenPipe.into()),
                ));
            }
            Err(e) => return Err(lost(sent.err().unwrap_or(e))),
        };
        if read == 0 {
            return Err(Failure::Unreachable(format!(
                "liberad at {} closed the connection without answering",
                self.path.display()
            )));
        }
        serde_json::from_str(&answer).map_err(|e| {
            Failure::Unreachable(format!(
                "liberad at {} answered something that is not a response: {e}",
                self.path.display()
            ))
        })
    }
}

/// Splits text into pieces whose JSON encoding stays under the chunk size,
/// cutting only between characters.
pub fn chunks(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut encoded = 0;
    for (i, c) in text.char_indices() {
        let size = match c {
            '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
            c if (c as u32) < 0x20 => 6,
            c => c.len_utf8(),
        };
        if encoded + size > IMPORT_CHUNK_BYTES {
            pieces.push(&text[start..i]);
            start = i;
            encoded = 0;
        }
        encoded += size;
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_rebuild_the_text_and_stay_small_once_encoded() {
        let text = "a,\"b\"\n\u{1}é🙂".repeat(20_000);
        let pieces = chunks(&text);
        assert!(pieces.len() > 1);
        assert_eq!(pieces.concat(), text);
        for piece in pieces {
            let encoded = serde_json::to_string(piece).unwrap();
            assert!(encoded.len() <= IMPORT_CHUNK_BYTES + 2, "{}", encoded.len());
        }
        assert!(chunks("").is_empty());
    }
}
