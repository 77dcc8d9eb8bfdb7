//! The `multipart/form-data` body of a POST Object, read as a stream: the fields before
//! the `file` part are read into a bounded buffer, then the file part's bytes stream out
//! one chunk at a time ([`FileBody`]).
//!
//! Invariants:
//! - At most [`MAX_PRE_DATA`] bytes (AWS's 20 KiB of fields and boundaries, the file
//!   part's own headers included) are held before the file starts; the file itself is
//!   held one client chunk plus one delimiter at a time, whatever its size.
//! - The file's length is known before its first byte is read: the body's
//!   `Content-Length`, minus the bytes before the file, minus the closing delimiter
//!   (`CRLF--boundary--CRLF`, what every browser and HTTP library sends). The object
//!   format seals that length into every segment, so it must be known up front
//!   (`docs/design/browser-uploads.md`). The file stream checks the prediction: it ends
//!   with an error — never cleanly — when the file part turns out longer or shorter, or
//!   when anything but the closing delimiter follows it, so a body whose layout differs
//!   is never stored.
//! - Bytes are yielded only once they are known to be file data (a partial delimiter at
//!   the end of a chunk is held back until the next chunk decides).

use std::sync::{Arc, Mutex};

use bytes::{Buf, Bytes, BytesMut};
use futures::StreamExt;

use crate::object::ByteStream;

/// AWS's bound on everything in a POST body except the file's content (bytes).
pub const MAX_PRE_DATA: usize = 20 * 1024;

/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;

/// One form field before the file, in body order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The name as sent (field names are compared without case).
    pub name: String,
    pub value: String,
}

/// The file part's headers and its predicted length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileHead {
    /// The `filename` parameter, if the part has one (`${filename}` is substituted only
    /// then, as AWS does).
    pub filename: Option<String>,
    /// The part's own `Content-Type` (AWS ignores it: the `Content-Type` field decides).
    pub content_type: Option<String>,
    /// The file's length in bytes.
    pub len: u64,
}

/// What was read before the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefix {
    pub fields: Vec<Field>,
    /// `None`: the form has no `file` part.
    pub file: Option<FileHead>,
}

/// Why a form was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    /// Not well-formed `multipart/form-data` (AWS's `MalformedPOSTRequest`).
    Malformed(&'static str),
    /// More than [`MAX_PRE_DATA`] bytes before the file (AWS's
    /// `MaxPostPreDataLengthExceeded`).
    PreDataTooLong,
    /// Well-formed, but the file part is not followed by the closing delimiter alone, so
    /// its length was not what the body's length implied (sealgate cannot store it).
    Layout,
    /// The client's body failed before the file: `stalled` when it stopped sending
    /// (`limits.body_idle_timeout_secs`), else it broke off.
    Body { stalled: bool },
}

/// The boundary of a `multipart/form-data` Content-Type, if it is one. `Err(())`: the
/// type is `multipart/form-data` but its boundary is missing or invalid.
pub fn boundary(content_type: &str) -> Option<Result<String, ()>> {
    let mut parts = content_type.split(';');
    let mime = parts.next()?.trim();
    if !mime.eq_ignore_ascii_case("multipart/form-data") {
        return None;
    }
    for p in parts {
        let Some((k, v)) = p.split_once('=') else {
            continue;
        };
        if !k.trim().eq_ignore_ascii_case("boundary") {
            continue;
        }
        let v = v.trim();
        let v = v
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(v);
        let ok = !v.is_empty()
            && v.len() <= MAX_BOUNDARY
            && v.bytes().all(|b| (0x20..0x7f).contains(&b))
            && !v.ends_with(' ');
        return Some(if ok { Ok(v.to_string()) } else { Err(()) });
    }
    Some(Err(()))
}

/// The client body with what has been read of it but not consumed.
struct Reader {
    body: ByteStream,
    buf: BytesMut,
    eof: bool,
}

impl Reader {
    /// Reads one more chunk into the buffer; `false` at the end of the body.
    async fn fill(&mut self) -> Result<bool, std::io::Error> {
        if self.eof {
            return Ok(false);
        }
        match self.body.next().await {
            Some(Ok(c)) => {
                self.buf.extend_from_slice(&c);
                Ok(true)
            }
            Some(Err(e)) => Err(e),
            None => {
                self.eof = true;
                Ok(false)
            }
        }
    }

    /// [`Reader::fill`] before the file: a body error is the form's.
    async fn fill_form(&mut self) -> Result<bool, FormError> {
        self.fill().await.map_err(|e| FormError::Body {
            stalled: crate::limits::stalled(&e),
        })
    }

    /// The position of `pat` in the buffer at or after `from`, reading more of the body
    /// while the buffer holds less than `limit` bytes. `Ok(None)`: not within the limit.
    async fn find(
        &mut self,
        pat: &[u8],
        from: usize,
        limit: usize,
    ) -> Result<Option<usize>, FormError> {
        loop {
            if let Some(i) = find(&self.buf[from.min(self.buf.len())..], pat) {
                return Ok(Some(from + i));
            }
            if self.buf.len() >= limit {
                return Ok(None);
            }
            if !self.fill_form().await? {
                return Err(FormError::Malformed("the body ended inside the form"));
            }
        }
    }

    /// Makes sure the buffer holds at least `n` bytes.
    async fn need(&mut self, n: usize) -> Result<(), FormError> {
        while self.buf.len() < n {
            if !self.fill_form().await? {
                return Err(FormError::Malformed("the body ended inside the form"));
            }
        }
        Ok(())
    }
}

fn find(hay: &[u8], pat: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, pat)
}

/// Reads the fields up to the `file` part of a body of `content_length` bytes with
/// `boundary`. Returns them with the file's bytes as a stream (`None` when the form has
/// no file part). The stream passes on the client body's own errors as they are; a form
/// error is also kept in its [`Failure`], so the caller can answer with it rather than
/// with the error the write path makes of a failed body.
pub async fn read(
    body: ByteStream,
    boundary: &str,
    content_length: u64,
) -> Result<(Prefix, Option<FileBody>), FormError> {
    let dash = format!("--{boundary}").into_bytes();
    let delim = format!("\r\n--{boundary}").into_bytes();
    let mut r = Reader {
        body,
        buf: BytesMut::new(),
        eof: false,
    };
    // Everything up to the file's first byte must fit in MAX_PRE_DATA; a little more is
    // read so that a header block ending just past it is recognised as too long rather
    // than malformed.
    let limit = MAX_PRE_DATA + 1;
    let too_long = |found: Option<usize>| found.ok_or(FormError::PreDataTooLong);
    // The first delimiter (a preamble before it is allowed, as RFC 2046 says).
    let mut pos = too_long(r.find(&dash, 0, limit).await?)?;
    let mut fields = Vec::new();
    loop {
        pos += dash.len();
        r.need(pos + 2).await?;
        if &r.buf[pos..pos + 2] == b"--" {
            // The close delimiter: the form has no file.
            return Ok((Prefix { fields, file: None }, None));
        }
        // Transport padding, then CRLF.
        loop {
            r.need(pos + 1).await?;
            match r.buf[pos] {
                b' ' | b'\t' => pos += 1,
                _ => break,
            }
            if pos > limit {
                return Err(FormError::PreDataTooLong);
            }
        }
        r.need(pos + 2).await?;
        if &r.buf[pos..pos + 2] != b"\r\n" {
            return Err(FormError::Malformed(
                "a boundary line does not end with CRLF",
            ));
        }
        // The header block ends at the first empty line (it may be empty itself: the
        // search starts at the boundary line's own CRLF).
        let end = too_long(r.find(b"\r\n\r\n", pos, limit).await?)?;
        let head = if end > pos {
            &r.buf[pos + 2..end]
        } else {
            &[][..]
        };
        let part = part_headers(head)?;
        let data = end + 4;
        if part.name.eq_ignore_ascii_case("file") {
            if data > MAX_PRE_DATA {
                return Err(FormError::PreDataTooLong);
            }
            // CRLF--boundary--CRLF after the file.
            let tail = (delim.len() + 4) as u64;
            let len = content_length
                .checked_sub(data as u64 + tail)
                .ok_or(FormError::Layout)?;
            let mut buf = r.buf;
            buf.advance(data);
            let file = FileHead {
                filename: part.filename,
                content_type: part.content_type,
                len,
            };
            let body = FileBody {
                reader: Reader {
                    body: r.body,
                    buf,
                    eof: r.eof,
                },
                delim,
                left: len,
                stage: Stage::Data,
                failure: Failure::default(),
            };
            return Ok((
                Prefix {
                    fields,
                    file: Some(file),
                },
                Some(body),
            ));
        }
        let stop = too_long(r.find(&delim, data, limit).await?)?;
        let value = std::str::from_utf8(&r.buf[data..stop])
            .map_err(|_| FormError::Malformed("a form field is not UTF-8"))?
            .to_string();
        fields.push(Field {
            name: part.name,
            value,
        });
        pos = stop + 2;
    }
}

/// What a part's headers say.
struct PartHeaders {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
}

fn part_headers(block: &[u8]) -> Result<PartHeaders, FormError> {
    let text = std::str::from_utf8(block)
        .map_err(|_| FormError::Malformed("part headers are not UTF-8"))?;
    let (mut disposition, mut content_type) = (None, None);
    for line in text.split("\r\n").filter(|l| !l.is_empty()) {
        if line.starts_with([' ', '\t']) {
            return Err(FormError::Malformed("folded part header"));
        }
        let (k, v) = line
            .split_once(':')
            .ok_or(FormError::Malformed("a part header has no colon"))?;
        let v = v.trim();
        if k.eq_ignore_ascii_case("content-disposition") {
            disposition = Some(v);
        } else if k.eq_ignore_ascii_case("content-type") {
            content_type = Some(v.to_string());
        }
    }
    let disposition =
        disposition.ok_or(FormError::Malformed("a part has no Content-Disposition"))?;
    let (kind, params) = disposition.split_once(';').unwrap_or((disposition, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return Err(FormError::Malformed("a part is not form-data"));
    }
    let params = disposition_params(params)?;
    let get = |n: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    let name = get("name").ok_or(FormError::Malformed("a part has no name"))?;
    let filename = match get("filename*") {
        Some(ext) => Some(ext_value(&ext)?),
        None => get("filename"),
    };
    Ok(PartHeaders {
        name,
        filename,
        content_type,
    })
}

/// `name="value"; other=token` → pairs; a quoted value may escape `"` as `\"`.
fn disposition_params(s: &str) -> Result<Vec<(String, String)>, FormError> {
    let bad = FormError::Malformed("malformed Content-Disposition");
    let mut out = Vec::new();
    let mut rest = s.trim_start_matches([' ', '\t', ';']);
    while !rest.is_empty() {
        let eq = rest.find('=').ok_or(bad.clone())?;
        let name = rest[..eq].trim().to_string();
        if name.is_empty() || name.contains(';') {
            return Err(bad);
        }
        let after = rest[eq + 1..].trim_start();
        let (value, tail) = if let Some(q) = after.strip_prefix('"') {
            let mut v = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    // Only `\"` is an escape (as multer reads it): browsers encode `"` as
                    // `%22` and send Windows paths with their backslashes.
                    '\\' if q[i + 1..].starts_with('"') => {
                        v.push('"');
                        chars.next();
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => v.push(c),
                }
            }
            let end = end.ok_or(bad.clone())?;
            (v, &q[end..])
        } else {
            let stop = after.find(';').unwrap_or(after.len());
            (after[..stop].trim().to_string(), &after[stop..])
        };
        out.push((name, value));
        let tail = tail.trim_start();
        if !(tail.is_empty() || tail.starts_with(';')) {
            return Err(bad);
        }
        rest = tail.trim_start_matches([' ', '\t', ';']);
    }
    Ok(out)
}

/// An RFC 8187 extended value (`UTF-8''%e2%82%ac.txt`).
fn ext_value(v: &str) -> Result<String, FormError> {
    let bad = FormError::Malformed("malformed filename*");
    let mut it = v.splitn(3, '\'');
    let (charset, _lang, value) = (it.next(), it.next(), it.next().ok_or(bad.clone())?);
    if !charset.is_some_and(|c| c.eq_ignore_ascii_case("utf-8")) {
        return Err(bad);
    }
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| bad)
}

/// Where a [`FileBody`] records why it failed, for the caller to answer with.
#[derive(Clone, Debug, Default)]
pub struct Failure(Arc<Mutex<Option<FormError>>>);

impl Failure {
    fn set(&self, e: FormError) {
        if let Ok(mut s) = self.0.lock()
            && s.is_none()
        {
            *s = Some(e);
        }
    }

    /// The form error the file stream ended with, if it did.
    pub fn get(&self) -> Option<FormError> {
        self.0.lock().ok().and_then(|s| s.clone())
    }
}

enum Stage {
    Data,
    Tail,
    Done,
}

/// The file part's bytes. See the module invariants.
pub struct FileBody {
    reader: Reader,
    /// `CRLF--boundary`.
    delim: Vec<u8>,
    /// File bytes still expected.
    left: u64,
    stage: Stage,
    failure: Failure,
}

impl FileBody {
    /// Where the stream records a form error.
    pub fn failure(&self) -> Failure {
        self.failure.clone()
    }

    /// The file's bytes as a stream: exactly the predicted length, then the end — or an
    /// error (recorded in [`FileBody::failure`] when it is the form's).
    pub fn into_stream(self) -> ByteStream {
        futures::stream::unfold(self, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        })
        .boxed()
    }

    fn fail(&mut self, e: FormError) -> Option<Result<Bytes, std::io::Error>> {
        self.stage = Stage::Done;
        self.failure.set(e);
        Some(Err(std::io::Error::other(
            "the POST form's file part is not what the body's length implied",
        )))
    }

    /// The client body failed: passed on as it is (the write path tells the client).
    fn broken(&mut self, e: std::io::Error) -> Option<Result<Bytes, std::io::Error>> {
        self.stage = Stage::Done;
        Some(Err(e))
    }

    /// More bytes of file data; an error when they are more than predicted.
    fn data(&mut self, b: BytesMut) -> Option<Result<Bytes, std::io::Error>> {
        let n = b.len() as u64;
        if n > self.left {
            return self.fail(FormError::Layout);
        }
        self.left -= n;
        Some(Ok(b.freeze()))
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            match self.stage {
                Stage::Done => return None,
                Stage::Data => {
                    let buf = &mut self.reader.buf;
                    if let Some(i) = find(buf, &self.delim) {
                        let data = buf.split_to(i);
                        buf.advance(self.delim.len());
                        self.stage = Stage::Tail;
                        if data.len() as u64 != self.left {
                            return self.fail(FormError::Layout);
                        }
                        if data.is_empty() {
                            continue;
                        }
                        return self.data(data);
                    }
                    // Bytes that cannot begin a delimiter are file data.
                    let keep = self.delim.len() - 1;
                    if buf.len() > keep {
                        let data = buf.split_to(buf.len() - keep);
                        return self.data(data);
                    }
                    match self.reader.fill().await {
                        Ok(true) => {}
                        Ok(false) => {
                            return self
                                .fail(FormError::Malformed("the body ended inside the file part"));
                        }
                        Err(e) => return self.broken(e),
                    }
                }
                Stage::Tail => {
                    // `--` CRLF, then the end of the body.
                    loop {
                        if self.reader.buf.len() > 4 {
                            return self.fail(FormError::Layout);
                        }
                        match self.reader.fill().await {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => return self.broken(e),
                        }
                    }
                    if &self.reader.buf[..] != b"--\r\n" {
                        return self.fail(if self.reader.buf.starts_with(b"--") {
                            FormError::Layout
                        } else {
                            FormError::Malformed(
                                "the file part is not followed by the closing boundary",
                            )
                        });
                    }
                    self.stage = Stage::Done;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
