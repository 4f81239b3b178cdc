//! The admin socket: a Unix stream socket that reads one JSON request per
//! line and writes one JSON response per line.
//!
//! Lines are bounded ([`MAX_REQUEST_LINE`]), connections are bounded (the
//! one over the limit is told `busy` and closed), a request must arrive
//! whole within the request timeout (the first one too, so that a client
//! that connects and says nothing does not hold a slot), a connection
//! silent between requests is closed after the idle timeout, and nothing a
//! client sends can stop the loop: every bad line gets an error response
//! and the connection goes on.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handler::{Admin, Session};
use super::protocol::{MAX_REQUEST_LINE, Request, Response, code};
use crate::config::AdminConfig;

/// Why the admin socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    #[error(
        "admin socket {0}: the path exists and is not a socket; liberad removes only stale sockets"
    )]
    NotASocket(PathBuf),
    #[error("admin socket {0}: another process is listening on it (is liberad already running?)")]
    InUse(PathBuf),
    #[error("admin socket {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A bound admin socket, removed from the file system when dropped.
pub struct AdminSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl AdminSocket {
    /// Creates the socket at the configured path with the configured mode.
    /// A stale socket left by a previous run is replaced; any other file is
    /// left alone and refused.
    pub fn bind(config: &AdminConfig) -> Result<AdminSocket, BindError> {
        let path = config.socket.clone();
        let io_error = |source| BindError::Io {
            path: path.clone(),
            source,
        };
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_socket() => {
                if std::os::unix::net::UnixStream::connect(&path).is_ok() {
                    return Err(BindError::InUse(path));
                }
                std::fs::remove_file(&path).map_err(io_error)?;
            }
            Ok(_) => return Err(BindError::NotASocket(path)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let listener = UnixListener::bind(&path).map_err(io_error)?;
        let socket = AdminSocket {
            listener,
            path: path.clone(),
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(config.socket_mode))
            .map_err(io_error)?;
        Ok(socket)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `shutdown`, serving each on its own task
    /// tracked by `tasks`.
    pub async fn serve(
        self,
        admin: Arc<Admin>,
        config: &AdminConfig,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) {
        let slots = Arc::new(Semaphore::new(config.max_connections));
        let limits = Limits {
            idle: config.idle_timeout(),
            request: config.request_timeout(),
        };
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => break,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment
                    // rather than spin.
                    tracing::warn!(error = %e, "admin socket: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(slot) => {
                    let admin = Arc::clone(&admin);
                    let shutdown = shutdown.clone();
                    tasks.spawn(async move {
                        serve_connection(stream, &admin, limits, shutdown).await;
                        drop(slot);
                    });
                }
                Err(_) => {
                    tasks.spawn(refuse_busy(stream));
                }
            }
        }
    }
}

impl Drop for AdminSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How long a connection may take.
#[derive(Clone, Copy, Debug)]
struct Limits {
    /// Silence between requests.
    idle: Duration,
    /// The first request after connecting, and each request from its
    /// first byte to its newline.
    request: Duration,
}

/// How long a refused connection gets to take its answer.
const BUSY_LINGER: Duration = Duration::from_secs(1);

/// Tells a connection over the limit that the daemon is busy. The answer
/// is written first; then the client's request is read (and dropped), so
/// that its write does not fail on a closed socket before it reads the
/// answer.
async fn refuse_busy(stream: UnixStream) {
    let response = Response::refusal(
        code::BUSY,
        "too many admin connections are open; try again shortly",
    );
    let (read, mut write) = stream.into_split();
    let answered = async {
        write_response(&mut write, &response).await?;
        let mut reader = BufReader::new(read);
        let mut line = Vec::new();
        read_line(&mut reader, &mut line).await.map(drop)
    };
    let _ = tokio::time::timeout(BUSY_LINGER, answered).await;
}

/// What waiting for the next request gave.
enum Next {
    Line(io::Result<Line>),
    /// Nothing came within the idle (or, first, the request) timeout.
    Silent,
    /// A request began but did not end within the request timeout.
    Slow,
    Stop,
}

/// Waits for the start of the next request (at most `wait`), then for its
/// end (at most the request timeout).
async fn next_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    wait: Duration,
    limits: Limits,
    shutdown: &CancellationToken,
) -> Next {
    let started = tokio::select! {
        () = shutdown.cancelled() => return Next::Stop,
        started = tokio::time::timeout(wait, reader.fill_buf()) => started,
    };
    match started {
        Err(_) => return Next::Silent,
        Ok(Err(e)) => return Next::Line(Err(e)),
        Ok(Ok(_)) => {}
    }
    tokio::select! {
        () = shutdown.cancelled() => Next::Stop,
        read = tokio::time::timeout(limits.request, read_line(reader, line)) => match read {
            Err(_) => Next::Slow,
            Ok(read) => Next::Line(read),
        },
    }
}

async fn serve_connection(
    stream: UnixStream,
    admin: &Admin,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let uid = stream.peer_cred().ok().map(|cred| cred.uid());
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    let mut session = Session::default();
    // A client that connects must say something soon; between requests it
    // may think for longer.
    let mut wait = limits.request;
    loop {
        let next = next_request(&mut reader, &mut line, wait, limits, &shutdown).await;
        wait = limits.idle;
        let response = match next {
            Next::Stop => break,
            Next::Silent => {
                tracing::debug!(uid, "admin connection silent, closing");
                break;
            }
            Next::Slow => {
                tracing::debug!(uid, "admin request too slow, closing");
                let response = Response::refusal(
                    code::INVALID_REQUEST,
                    format!(
                        "the request did not arrive whole within {} s; the connection is closed",
                        limits.request.as_secs()
                    ),
                );
                let _ =
                    tokio::time::timeout(BUSY_LINGER, write_response(&mut write, &response)).await;
                break;
            }
            Next::Line(Err(e)) => {
                tracing::debug!(uid, error = %e, "admin connection read failed");
                break;
            }
            Next::Line(Ok(Line::End)) => break,
            Next::Line(Ok(Line::TooLong)) => Response::refusal(
                code::LINE_TOO_LONG,
                format!("request line longer than {MAX_REQUEST_LINE} bytes; it was ignored"),
            ),
            Next::Line(Ok(Line::Complete)) => {
                let text = trim_line(&line);
                if text.is_empty() {
                    continue;
                }
                match parse_request(text) {
                    Ok(request) => admin.handle(request, uid, &mut session).await,
                    Err(response) => *response,
                }
            }
        };
        // A client that stops reading is dropped, not waited for forever.
        let written =
            tokio::time::timeout(limits.idle, write_response(&mut write, &response)).await;
        if !matches!(written, Ok(Ok(()))) {
            break;
        }
    }
}

async fn write_response(
    out: &mut (impl tokio::io::AsyncWrite + Unpin),
    response: &Response,
) -> io::Result<()> {
    let mut bytes = serde_json::to_vec(response).map_err(io::Error::other)?;
    bytes.push(b'\n');
    out.write_all(&bytes).await?;
    out.flush().await
}

/// Reads a request, telling a malformed line, an unknown command and a
/// known command with wrong arguments apart.
fn parse_request(text: &[u8]) -> Result<Request, Box<Response>> {
    let refuse = |code: &str, message: String| Box::new(Response::refusal(code, message));
    let value: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| refuse(code::INVALID_REQUEST, format!("malformed JSON: {e}")))?;
    let Some(command) = value
        .get("cmd")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
    else {
        return Err(refuse(
            code::INVALID_REQUEST,
            "a request is a JSON object with a \"cmd\" string".to_owned(),
        ));
    };
    if !Request::COMMANDS.contains(&command.as_str()) {
        return Err(refuse(
            code::UNKNOWN_COMMAND,
            format!("unknown command {command:?}"),
        ));
    }
    serde_json::from_value(value)
        .map_err(|e| refuse(code::INVALID_REQUEST, format!("{command}: {e}")))
}

fn trim_line(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.trim_ascii()
}

/// What [`read_line`] found.
#[derive(Debug, PartialEq, Eq)]
enum Line {
    /// A whole line is in the buffer (newline removed).
    Complete,
    /// A line longer than the limit was read and thrown away.
    TooLong,
    /// The peer closed the connection. A last line without its newline is
    /// dropped: a request counts only once it is complete.
    End,
}

/// Reads one newline-terminated line into `buf`, never holding more than
/// [`MAX_REQUEST_LINE`] bytes of it.
async fn read_line<R: AsyncBufRead + Unpin>(reader: &mut R, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut too_long = false;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(Line::End);
        }
        let (chunk, consumed, complete) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], i + 1, true),
            None => (available, available.len(), false),
        };
        if !too_long {
            if buf.len() + chunk.len() > MAX_REQUEST_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(chunk);
            }
        }
        reader.consume(consumed);
        if complete {
            return Ok(if too_long {
                Line::TooLong
            } else {
                Line::Complete
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines_of(input: &[u8]) -> Vec<(Line, Vec<u8>)> {
        // A tiny buffer makes lines arrive in many pieces.
        let mut reader = BufReader::with_capacity(7, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let line = read_line(&mut reader, &mut buf).await.unwrap();
            if line == Line::End {
                return out;
            }
            out.push((line, buf.clone()));
        }
    }

    #[tokio::test]
    async fn lines_are_split_and_bounded() {
        let mut input = b"{\"cmd\":\"ping\"}\n".to_vec();
        input.extend(vec![b'x'; MAX_REQUEST_LINE + 1]);
        input.extend(b"\nshort\npartial");
        let lines = lines_of(&input).await;
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], (Line::Complete, b"{\"cmd\":\"ping\"}".to_vec()));
        assert_eq!(lines[1].0, Line::TooLong);
        assert_eq!(lines[2], (Line::Complete, b"short".to_vec()));
    }

    #[tokio::test]
    async fn a_line_of_exactly_the_limit_is_read() {
        let mut input = vec![b'y'; MAX_REQUEST_LINE];
        input.push(b'\n');
        let lines = lines_of(&input).await;
        assert_eq!(lines[0].0, Line::Complete);
        assert_eq!(lines[0].1.len(), MAX_REQUEST_LINE);
    }

    #[test]
    fn bad_requests_get_their_own_codes() {
        let code_of = |text: &str| parse_request(text.as_bytes()).unwrap_err().code.unwrap();
        assert_eq!(code_of("{nope"), code::INVALID_REQUEST);
        assert_eq!(code_of("[1,2]"), code::INVALID_REQUEST);
        assert_eq!(code_of(r#"{"cmd":"fly"}"#), code::UNKNOWN_COMMAND);
        assert_eq!(
            code_of(r#"{"cmd":"release","contract":7}"#),
            code::INVALID_REQUEST
        );
        assert!(parse_request(br#"{"cmd":"ping"}"#).is_ok());
    }
}
