//! One HTTP/1.1 request per connection, read under a byte limit and a deadline.
//!
//! The request head is read into the handler's buffer (allocated once,
//! [`super::REQUEST_HEAD_BYTES_MAX`]) and parsed by `httparse` into a stack array of
//! [`super::REQUEST_HEADERS_MAX`] headers. Whatever goes wrong is an answer, never a
//! panic: a head that does not parse is 400, one that is too long or has too many
//! headers 431, one that does not arrive in time 408, a method other than GET 405.
//! Every answer closes the connection (`Connection: close`), so a client cannot keep
//! a handler with keep-alive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::REQUEST_HEADERS_MAX;

/// A request we answer: a GET of `path` (query string removed).
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub path: String,
}

/// Why there is no request to route.
#[derive(Debug)]
pub enum RequestError {
    /// The client closed or sent nothing before the deadline: nothing to answer.
    Closed,
    /// A bad request: answer this and close.
    Refused(Response),
}

/// An answer.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn text(status: u16, body: String) -> Response {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.into_bytes() }
    }

    /// The answer when every handler is busy and the queue is full.
    pub fn busy() -> Response {
        Response::text(503, "busy: too many connections\n".into())
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Reads and parses one request head from `stream` into `buffer`; the whole head
/// must arrive within `timeout`.
pub fn read_request(
    stream: &mut TcpStream,
    buffer: &mut [u8],
    timeout: Duration,
) -> Result<Request, RequestError> {
    let deadline = Instant::now() + timeout;
    let mut filled = 0;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(timed_out(filled));
        }
        // `set_read_timeout(Some(0))` is an error: `remaining` is not zero here.
        let _ = stream.set_read_timeout(Some(remaining));
        let read = match stream.read(&mut buffer[filled..]) {
            Ok(0) => return Err(RequestError::Closed),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(timed_out(filled));
            }
            Err(_) => return Err(RequestError::Closed),
        };
        filled += read;
        match parse(&buffer[..filled]) {
            Parsed::Complete(request) => return Ok(request),
            Parsed::Refused(response) => return Err(RequestError::Refused(response)),
            Parsed::Partial if filled == buffer.len() => {
                return Err(RequestError::Refused(Response::text(
                    431,
                    format!("request head longer than {} bytes\n", buffer.len()),
                )));
            }
            Parsed::Partial => {}
        }
    }
}

fn timed_out(filled: usize) -> RequestError {
    if filled == 0 {
        RequestError::Closed
    } else {
        RequestError::Refused(Response::text(408, "request head not complete in time\n".into()))
    }
}

enum Parsed {
    Complete(Request),
    Partial,
    Refused(Response),
}

/// Parses a request head (pure, for tests and fuzzing).
fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(bytes) {
        Ok(httparse::Status::Partial) => Parsed::Partial,
        Ok(httparse::Status::Complete(_)) => {
            let (Some(method), Some(path)) = (request.method, request.path) else {
                return Parsed::Refused(Response::text(400, "bad request\n".into()));
            };
            if method != "GET" {
                return Parsed::Refused(Response::text(405, "only GET is served\n".into()));
            }
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            Parsed::Complete(Request { path: path.to_string() })
        }
        Err(httparse::Error::TooManyHeaders) => Parsed::Refused(Response::text(
            431,
            format!("more than {REQUEST_HEADERS_MAX} headers\n"),
        )),
        Err(e) => Parsed::Refused(Response::text(400, format!("bad request: {e}\n"))),
    }
}

/// Fuzz invariants of the request parser (`fuzz/fuzz_targets/http_request.rs`,
/// replayed by `tests/fuzz_replay.rs`): any bytes give a verdict without a panic; a
/// refusal is 400, 405 or 431; an accepted request is a GET whose path has no query;
/// and every strict prefix of an accepted head is `Partial`, so a head split across
/// reads anywhere is read to the end, never refused half-way.
#[doc(hidden)]
pub fn fuzz_check_request(data: &[u8]) {
    let data = &data[..data.len().min(super::REQUEST_HEAD_BYTES_MAX)];
    match parse(data) {
        Parsed::Refused(response) => {
            assert!(matches!(response.status, 400 | 405 | 431), "{}", response.status);
        }
        Parsed::Partial => {}
        Parsed::Complete(request) => {
            // httparse skips empty lines before the request line (RFC 9112 §2.2).
            let start = data.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(0);
            assert!(data[start..].starts_with(b"GET "), "{data:?}");
            assert!(!request.path.contains('?'), "{}", request.path);
            let mut headers = [httparse::EMPTY_HEADER; REQUEST_HEADERS_MAX];
            let head = match httparse::Request::new(&mut headers).parse(data) {
                Ok(httparse::Status::Complete(head)) => head,
                other => panic!("complete once, then {other:?}"),
            };
            for end in 0..head {
                assert!(
                    matches!(parse(&data[..end]), Parsed::Partial),
                    "prefix of {end} bytes of an accepted head is not partial: {:?}",
                    String::from_utf8_lossy(&data[..head])
                );
            }
        }
    }
}

/// Writes `response` with its length and closes the connection.
pub fn write_response(stream: &mut TcpStream, response: Response) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(&response.body)?;
    stream.flush()?;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(bytes: &[u8]) -> Option<u16> {
        match parse(bytes) {
            Parsed::Complete(_) => Some(200),
            Parsed::Partial => None,
            Parsed::Refused(r) => Some(r.status),
        }
    }

    #[test]
    fn parses_a_get_and_drops_the_query() {
        match parse(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n") {
            Parsed::Complete(r) => assert_eq!(r.path, "/metrics"),
            _ => panic!("not complete"),
        }
    }

    #[test]
    fn fuzz_check_accepts_assorted_inputs() {
        for input in [
            &b"GET /metrics HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n"[..],
            b"GET /ready?x HTTP/1.0\r\n\r\n",
            b"POST / HTTP/1.1\r\n\r\n",
            b"\x00\xff",
            b"",
            b"GET / HTTP/1.1\n\n",
        ] {
            fuzz_check_request(input);
        }
    }

    #[test]
    fn bad_heads_are_refused_not_panics() {
        assert_eq!(status(b"GET /ping HTTP/1.1\r\nHost: a\r\n"), None, "partial");
        assert_eq!(status(b"\x00\x01garbage\r\n\r\n"), Some(400));
        assert_eq!(status(b"POST /ping HTTP/1.1\r\n\r\n"), Some(405));
        let many: String = (0..REQUEST_HEADERS_MAX + 1).map(|i| format!("h{i}: v\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes()), Some(431));
    }
}
