//! A small HTTP/1.1 server for the accounting API: keep-alive, `content-length` and chunked
//! request bodies, one thread per connection, bounded sizes and idle timeouts.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// Largest request head accepted.
const MAX_HEAD: usize = 64 * 1024;
/// A connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(120);

/// One parsed request.
pub struct Request {
    /// `GET`, `POST`, …
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// The query string (without `?`).
    pub query: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Request {
    /// A query parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }
}

/// A response: status and JSON body.
pub struct Response {
    /// HTTP status.
    pub status: u16,
    /// JSON text.
    pub body: String,
}

/// Serves `handler` on `listener` until the process ends.
pub fn serve<H>(listener: TcpListener, handler: H)
where
    H: Fn(Request) -> Response + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let handler = Arc::clone(&handler);
        std::thread::spawn(move || {
            let _ = connection(stream, handler.as_ref());
        });
    }
}

fn connection<H: Fn(Request) -> Response>(stream: TcpStream, handler: &H) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE))?;
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let (request, close) = match read_request(&mut reader) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => return Ok(()),
            Err(problem) => {
                let body = error_json(&problem);
                write_response(&mut writer, &Response { status: 400, body }, true)?;
                return Ok(());
            }
        };
        let response = handler(request);
        write_response(&mut writer, &response, close)?;
        if close {
            return Ok(());
        }
    }
}

/// An OpenAI-style error body.
pub fn error_json(message: &str) -> String {
    serde_json::json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}})
        .to_string()
}

fn read_request(reader: &mut impl BufRead) -> Result<Option<(Request, bool)>, String> {
    let mut line = String::new();
    let mut head_bytes = 0usize;
    let io = |e: std::io::Error| e.to_string();
    if reader.read_line(&mut line).map_err(io)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Err("malformed request line".into());
    };
    let (method, target) = (method.to_string(), target.to_string());
    let http10 = line.contains("HTTP/1.0");
    let (mut length, mut chunked, mut close) = (0usize, false, http10);
    loop {
        line.clear();
        let n = reader.read_line(&mut line).map_err(io)?;
        head_bytes += n;
        if n == 0 || head_bytes > MAX_HEAD {
            return Err("request head too large or cut short".into());
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            return Err("malformed header".into());
        };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
        match name.as_str() {
            "content-length" => {
                length = value
                    .parse()
                    .map_err(|_| "bad content-length".to_string())?
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        if length > MAX_BODY {
            return Err("body too large".into());
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(io)?;
        body
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    Ok(Some((
        Request {
            method,
            path,
            query,
            body,
        },
        close,
    )))
}

fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let size_text = line.trim().split(';').next().unwrap_or("");
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size".to_string())?;
        if size == 0 {
            // Trailers, then the blank line.
            loop {
                line.clear();
                if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0
                    || line.trim().is_empty()
                {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err("body too large".into());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|e| e.to_string())?;
        line.clear();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
    }
}

fn write_response(out: &mut impl Write, response: &Response, close: bool) -> std::io::Result<()> {
    let reason = match response.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{}\r\n",
        response.status,
        response.body.len(),
        if close { "connection: close\r\n" } else { "" }
    );
    out.write_all(head.as_bytes())?;
    out.write_all(response.body.as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_and_chunked_bodies_are_read() {
        let raw = b"POST /v1/spend/batch?x=1 HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]GET /h HTTP/1.1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let mut reader = BufReader::new(&raw[..]);
        let (first, close) = read_request(&mut reader).unwrap().unwrap();
        assert_eq!(
            (first.method.as_str(), first.path.as_str()),
            ("POST", "/v1/spend/batch")
        );
        assert_eq!(
            (first.param("x"), first.body.as_slice(), close),
            (Some("1"), &b"[]"[..], false)
        );
        let (second, close) = read_request(&mut reader).unwrap().unwrap();
        assert_eq!((second.body.as_slice(), close), (&b"abcde"[..], true));
        assert!(read_request(&mut reader).unwrap().is_none());
    }
}
