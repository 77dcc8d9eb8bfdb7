//! POST Object: browser form uploads with a SigV4 POST policy (research spec §3),
//! answered by sealgate itself before s3s (which would read the whole file into memory).
//!
//! A form becomes a PutObject: its fields are checked against the signed policy, turned
//! into the headers a PUT would carry (content headers, user metadata, SSE, checksums,
//! ACL, tagging), and the file part streams into the same handler as a PUT (`dispatch`),
//! encrypted as a PUT is: the form's SSE fields, else the bucket's default, else the
//! global default, under the access key's principal.
//!
//! Invariants:
//! - Nothing reaches the store before the signature, the expiration, every condition and
//!   the coverage rule have been checked, and the file's length is within the policy's
//!   `content-length-range` (the length is known before the file is read: see `form`).
//! - At most [`form::MAX_PRE_DATA`] bytes of fields are held; the file streams.
//! - Only the form fields a PUT header stands for become headers: a field cannot smuggle
//!   a header that would change what the store does (`x-amz-copy-source`, ...).
//! - Errors are AWS's (codes, messages and extra elements, §3.7).

pub mod form;
pub mod policy;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use s3s::{Body, S3Error};

use super::classify::{Op, Shape};
use super::request::Request;
use super::target::Target;
use super::{Ctx, RequestInfo, State};
use form::FormError;
use policy::{Credential, FormView, Policy};

/// The largest file a POST may carry (AWS: 5 GB).
pub const MAX_POST_FILE: u64 = 5 * 1024 * 1024 * 1024;

/// An S3 error with the extra elements some POST errors carry.
#[derive(Debug, Clone)]
pub struct PostError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// Extra `<Name>value</Name>` elements after the message.
    pub extras: Vec<(&'static str, String)>,
}

impl PostError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> PostError {
        PostError {
            status,
            code: code.to_string(),
            message: message.into(),
            extras: Vec::new(),
        }
    }

    pub fn with(mut self, name: &'static str, value: String) -> PostError {
        self.extras.push((name, value));
        self
    }

    /// The XML error response.
    pub fn response(&self, request_id: &str) -> Response<Body> {
        let esc = |s: &str| quick_xml::escape::partial_escape(s).into_owned();
        let mut xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{}</Code><Message>{}</Message>",
            esc(&self.code),
            esc(&self.message)
        );
        for (k, v) in &self.extras {
            xml.push_str(&format!("<{k}>{}</{k}>", esc(v)));
        }
        xml.push_str(&format!(
            "<RequestId>{}</RequestId></Error>",
            esc(request_id)
        ));
        let mut r = Response::new(Body::from(xml));
        *r.status_mut() = self.status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        r
    }

    fn bad_request(code: &str, message: impl Into<String>) -> PostError {
        PostError::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// P3: a required field is missing (or came after the file).
    fn missing(name: &str) -> PostError {
        PostError::bad_request(
            "InvalidArgument",
            format!(
                "Bucket POST must contain a field named '{name}'.  If it is specified, please check the order of the fields."
            ),
        )
        .with("ArgumentName", name.to_string())
        .with("ArgumentValue", String::new())
    }

    fn access_denied(message: impl Into<String>) -> PostError {
        PostError::new(StatusCode::FORBIDDEN, "AccessDenied", message)
    }
}

const MALFORMED: &str = "The body of your POST request is not well-formed multipart/form-data.";

impl From<FormError> for PostError {
    fn from(e: FormError) -> PostError {
        match e {
            FormError::Malformed(detail) => {
                tracing::info!(detail, "malformed POST form");
                PostError::bad_request("MalformedPOSTRequest", MALFORMED)
            }
            FormError::Layout => PostError::bad_request(
                "MalformedPOSTRequest",
                format!(
                    "{MALFORMED} (sealgate needs the file to be the last part of the form, followed only by the closing boundary and CRLF.)"
                ),
            ),
            FormError::PreDataTooLong => PostError::bad_request(
                "MaxPostPreDataLengthExceeded",
                "Your POST request fields preceeding the upload file was too large.",
            )
            .with("MaxPostPreDataLengthBytes", form::MAX_PRE_DATA.to_string()),
            FormError::Body { stalled: true } => PostError::bad_request(
                "RequestTimeout",
                "Your socket connection to the server was not read from or written to within the timeout period.",
            ),
            FormError::Body { stalled: false } => PostError::bad_request(
                "IncompleteBody",
                "You did not provide the number of bytes specified by the Content-Length HTTP header.",
            ),
        }
    }
}

/// Answers a POST Object request (classified `PostObject` by the listener). `tls`: the
/// client connection is TLS (the scheme of the object's `Location`).
pub async fn serve(
    state: &Arc<State>,
    req: http::Request<Body>,
    target: Target,
    info: RequestInfo,
    tls: bool,
) -> Response<Body> {
    let id = info.id.clone();
    match post(state, req, target, info, tls).await {
        Ok(r) => r,
        Err(Answer::Post(e)) => e.response(&id),
        Err(Answer::S3(e)) => {
            let mut e = e;
            e.set_request_id(id);
            e.to_http_response().unwrap_or_else(|_| {
                PostError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "").response("")
            })
        }
    }
}

/// How a POST fails: an error with extra elements, or an ordinary S3 error (from the
/// write path).
enum Answer {
    Post(PostError),
    S3(S3Error),
}

impl From<PostError> for Answer {
    fn from(e: PostError) -> Answer {
        Answer::Post(e)
    }
}

impl From<FormError> for Answer {
    fn from(e: FormError) -> Answer {
        Answer::Post(e.into())
    }
}

impl From<crate::error::Error> for Answer {
    fn from(e: crate::error::Error) -> Answer {
        Answer::S3(e.into())
    }
}

/// The text after the last `/` or `\` of a file name (what `${filename}` stands for).
fn basename(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

async fn post(
    state: &Arc<State>,
    req: http::Request<Body>,
    target: Target,
    info: RequestInfo,
    tls: bool,
) -> Result<Response<Body>, Answer> {
    let (parts, body) = req.into_parts();
    let bucket = match (target.shape, &target.bucket) {
        (Shape::Bucket, Some(b)) => b.clone(),
        _ => {
            return Err(PostError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                "The specified method is not allowed against this resource.",
            )
            .into());
        }
    };
    if bucket.eq_ignore_ascii_case(&state.state_bucket) {
        return Err(PostError::access_denied(
            "This bucket holds sealgate's own settings and is not accessible through sealgate.",
        )
        .into());
    }
    // P1, P2: a multipart/form-data body with a boundary.
    let boundary = match form::boundary(header_str(&parts.headers, "content-type").unwrap_or("")) {
        None => {
            return Err(PostError::new(
                StatusCode::PRECONDITION_FAILED,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
            )
            .with(
                "Condition",
                "Bucket POST must be of the enclosure-type multipart/form-data".into(),
            )
            .into());
        }
        Some(Err(())) => {
            return Err(PostError::bad_request("MalformedPOSTRequest", MALFORMED).into());
        }
        Some(Ok(b)) => b,
    };
    let Some(len) =
        header_str(&parts.headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Err(PostError::new(
            StatusCode::LENGTH_REQUIRED,
            "MissingContentLength",
            "You must provide the Content-Length HTTP header.",
        )
        .into());
    };
    let stream = super::forward::body_stream(body);
    let (prefix, file) = form::read(stream, &boundary, len).await?;

    // `${filename}` is expanded in every field when the file part names a file.
    let filename = prefix
        .file
        .as_ref()
        .and_then(|f| f.filename.as_deref())
        .map(basename);
    let fields: Vec<(String, String)> = prefix
        .fields
        .iter()
        .map(|f| {
            let v = match filename {
                Some(n) => f.value.replace("${filename}", n),
                None => f.value.clone(),
            };
            (f.name.clone(), v)
        })
        .collect();
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };

    // P3, P4: the key and the signing fields.
    if get("x-amz-signature").is_none()
        && (get("signature").is_some() || get("awsaccesskeyid").is_some())
    {
        return Err(PostError::bad_request(
            "InvalidRequest",
            "Signature Version 2 is not supported; sign requests with AWS Signature Version 4.",
        )
        .into());
    }
    let key = get("key")
        .ok_or_else(|| PostError::missing("key"))?
        .to_string();
    const SIGNING: [(&str, &str); 5] = [
        ("x-amz-algorithm", "X-Amz-Algorithm"),
        ("x-amz-credential", "X-Amz-Credential"),
        ("x-amz-date", "X-Amz-Date"),
        ("x-amz-signature", "X-Amz-Signature"),
        ("policy", "Policy"),
    ];
    if SIGNING.iter().all(|(n, _)| get(n).is_none()) {
        // Anonymous: sealgate requires signed requests.
        return Err(PostError::access_denied("Access Denied").into());
    }
    if let Some((_, canonical)) = SIGNING.iter().find(|(n, _)| get(n).is_none()) {
        return Err(PostError::missing(canonical).into());
    }
    let field = |n: &str| get(n).unwrap_or_default();
    let algorithm = field("x-amz-algorithm");
    if algorithm != "AWS4-HMAC-SHA256" {
        return Err(PostError::bad_request(
            "InvalidArgument",
            "X-Amz-Algorithm only supports 'AWS4-HMAC-SHA256'",
        )
        .with("ArgumentName", "X-Amz-Algorithm".into())
        .with("ArgumentValue", algorithm.to_string())
        .into());
    }
    let credential_text = field("x-amz-credential");
    let credential = Credential::parse(credential_text).ok_or_else(|| {
        PostError::bad_request(
            "InvalidArgument",
            format!("Invalid credential: {credential_text}; expected <access key>/<yyyymmdd>/<region>/s3/aws4_request"),
        )
        .with("ArgumentName", "X-Amz-Credential".into())
        .with("ArgumentValue", credential_text.to_string())
    })?;
    // P15, P5: the access key and the signature over the policy as sent.
    let Some(access_key) = state.access_keys.get(credential.access_key) else {
        return Err(PostError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
        .with("AWSAccessKeyId", credential.access_key.to_string())
        .into());
    };
    let policy_b64 = field("policy");
    let expected = policy::signature(
        access_key.secret.as_str(),
        credential.date,
        credential.region,
        credential.service,
        policy_b64,
    );
    let provided = field("x-amz-signature");
    if !policy::signatures_match(&expected, provided) {
        let bytes: Vec<String> = policy_b64.bytes().map(|b| format!("{b:02x}")).collect();
        return Err(PostError::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
        .with("AWSAccessKeyId", credential.access_key.to_string())
        .with("StringToSign", policy_b64.to_string())
        .with("SignatureProvided", provided.to_string())
        .with("StringToSignBytes", bytes.join(" "))
        .into());
    }
    // P9, P6, P7, P8: the policy, its expiration, its conditions.
    let policy = Policy::decode(policy_b64)?;
    if time::OffsetDateTime::now_utc() >= policy.expiration {
        return Err(
            PostError::access_denied("Invalid according to Policy: Policy expired.").into(),
        );
    }
    policy::check_fields(
        &policy,
        &FormView {
            fields: &fields,
            bucket: &bucket,
        },
    )?;
    if get("bucket").is_some_and(|b| b != bucket) {
        return Err(PostError::access_denied("Access Denied").into());
    }
    // P13, then the file's size (P10, P11) before any of it is read.
    let (Some(head), Some(file)) = (prefix.file, file) else {
        return Err(PostError::bad_request(
            "InvalidArgument",
            "POST requires exactly one file upload per request.",
        )
        .with("ArgumentName", "file".into())
        .with("ArgumentValue", "0".into())
        .into());
    };
    if key.is_empty() {
        return Err(PostError::bad_request(
            "InvalidArgument",
            "User key must have a length greater than 0.",
        )
        .into());
    }
    if key.len() > 1024 {
        return Err(PostError::bad_request("KeyTooLongError", "Your key is too long").into());
    }
    if head.len > MAX_POST_FILE {
        return Err(PostError::bad_request(
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
        .with("ProposedSize", head.len.to_string())
        .with("MaxSizeAllowed", MAX_POST_FILE.to_string())
        .into());
    }
    policy::check_size(&policy, head.len)?;

    // The PutObject this form stands for.
    let headers = put_headers(&fields, head.len)?;
    let target = Target {
        shape: Shape::Object,
        bucket: Some(bucket.clone()),
        key: Some(key.clone()),
        query: Vec::new(),
    };
    let parsed = Request::parse(Op::PutObject, target, &headers)?;
    let failure = file.failure();
    let stream = file.into_stream();
    let body = Body::http_body_unsync(http_body_util::StreamBody::new(
        futures::TryStreamExt::map_ok(
            futures::TryStreamExt::map_err(
                stream,
                |e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) },
            ),
            http_body::Frame::data,
        ),
    ));
    let ctx = Ctx {
        state: state.clone(),
        req: parsed,
        principal: access_key.principal.clone(),
        method: http::Method::PUT,
        headers,
        body,
        trailers: None,
        call: crate::kms::CallContext::s3(Some(info.peer), Some(info.id.clone())),
    };
    tracing::Span::current().record("bucket", bucket.as_str());
    let put = super::dispatch(ctx).await;
    if let Some(e) = failure.get() {
        // The file part was not what the body's length implied: the store got a broken
        // body and stored nothing.
        return Err(e.into());
    }
    let put = put?;
    let status = put.status.unwrap_or(StatusCode::OK);
    if !status.is_success() {
        let mut r = Response::new(put.output);
        *r.status_mut() = status;
        *r.headers_mut() = put.headers;
        return Ok(r);
    }
    let location = object_location(&parts, &key, tls);
    Ok(success(put.headers, &fields, &bucket, &key, &location))
}

/// Form fields that stand for a PutObject header of the same name.
const HEADER_FIELDS: &[&str] = &[
    "cache-control",
    "content-type",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "content-md5",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// S3's canned ACLs.
const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// A header value for a field: non-ASCII text as an RFC 2047 encoded word (as S3 returns
/// such metadata).
fn header_value(name: &str, v: &str) -> Result<HeaderValue, PostError> {
    let text = if v.is_ascii() {
        v.to_string()
    } else {
        use base64::Engine as _;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    };
    HeaderValue::from_str(&text).map_err(|_| {
        PostError::bad_request(
            "InvalidArgument",
            format!("The {name} field holds characters a header cannot carry."),
        )
        .with("ArgumentName", name.to_string())
    })
}

/// The headers of the PutObject a form stands for (`len`: the file's length).
fn put_headers(fields: &[(String, String)], len: u64) -> Result<HeaderMap, PostError> {
    let mut h = HeaderMap::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in fields {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            continue;
        }
        seen.push(lower.clone());
        let value: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&lower))
            .map(|(_, v)| v.as_str())
            .collect();
        let value = value.join(",");
        let header = if HEADER_FIELDS.contains(&lower.as_str()) || lower.starts_with("x-amz-meta-")
        {
            lower.clone()
        } else if lower == "acl" {
            if !CANNED_ACLS.contains(&value.as_str()) {
                return Err(PostError::bad_request("InvalidArgument", "")
                    .with("ArgumentName", "x-amz-acl".into())
                    .with("ArgumentValue", value));
            }
            "x-amz-acl".to_string()
        } else if lower == "tagging" {
            h.insert("x-amz-tagging", header_value("tagging", &tagging(&value)?)?);
            continue;
        } else {
            // Fields S3 does not store (signing fields, success_action_*, x-ignore-*,
            // anything else the policy allowed) are not headers.
            continue;
        };
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            PostError::bad_request("InvalidArgument", format!("Invalid field name: {name}"))
        })?;
        h.insert(name.clone(), header_value(name.as_str(), &value)?);
    }
    if !h.contains_key(http::header::CONTENT_TYPE) {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("binary/octet-stream"),
        );
    }
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(h)
}

/// The `tagging` field (`<Tagging><TagSet><Tag><Key/><Value/></Tag>...`) as the
/// `x-amz-tagging` header of a PUT (`k=v&k2=v2`, URL-encoded).
fn tagging(xml: &str) -> Result<String, PostError> {
    use quick_xml::events::Event;
    let malformed = || {
        PostError::bad_request(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    };
    let mut r = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let (mut pairs, mut key, mut value) = (Vec::new(), None::<String>, None::<String>);
    let mut root = false;
    loop {
        match r.read_event().map_err(|_| malformed())? {
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                root |= path.is_empty();
                path.push(name);
            }
            Event::End(_) => {
                if path.last().map(String::as_str) == Some("Tag") {
                    match (key.take(), value.take()) {
                        (Some(k), v) => pairs.push((k, v.unwrap_or_default())),
                        _ => return Err(malformed()),
                    }
                }
                path.pop();
            }
            Event::Empty(s) => {
                root |= path.is_empty();
                if s.local_name().as_ref() == b"Value"
                    && path.last().map(String::as_str) == Some("Tag")
                {
                    value = Some(String::new());
                }
            }
            Event::Text(t) => {
                let v = t.unescape().map_err(|_| malformed())?.into_owned();
                let in_tag = path.len() >= 2 && path[path.len() - 2] == "Tag";
                match path.last().map(String::as_str) {
                    Some("Key") if in_tag => key = Some(v),
                    Some("Value") if in_tag => value = Some(v),
                    _ if v.trim().is_empty() => {}
                    _ if path.is_empty() => return Err(malformed()),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root || !path.is_empty() {
        return Err(malformed());
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

/// The object's URL: the bucket URL the form was posted to, plus the key (percent-encoded,
/// `/` included, as S3's `Location`).
fn object_location(parts: &http::request::Parts, key: &str, tls: bool) -> String {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let scheme = if tls { "https" } else { "http" };
    let path = parts.uri.path().trim_end_matches('/');
    format!(
        "{scheme}://{host}{path}/{}",
        crate::upstream::sign::uri_encode(key, false)
    )
}

/// `application/x-www-form-urlencoded` encoding of a query value.
fn form_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'*');
    percent_encoding::utf8_percent_encode(s, SET)
        .to_string()
        .replace("%20", "+")
}

/// An absolute http(s) URL S3 can redirect to.
fn redirect_target(url: &str) -> Option<&str> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.authority().is_some()).then_some(url)
}

/// The answer to a stored form (§3.6): 303 to `success_action_redirect`, else the
/// `success_action_status` (200, 201 with a `PostResponse`, or 204), with the PUT's
/// headers (ETag, SSE, version id, checksums) and `Location`.
fn success(
    put: HeaderMap,
    fields: &[(String, String)],
    bucket: &str,
    key: &str,
    location: &str,
) -> Response<Body> {
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let etag = put
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut headers = put;
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::CONTENT_TYPE);
    let set = |h: &mut HeaderMap, n: http::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    let redirect = get("success_action_redirect")
        .or_else(|| get("redirect"))
        .and_then(redirect_target);
    let (status, body) = if let Some(url) = redirect {
        let sep = if url.contains('?') { '&' } else { '?' };
        let to = format!(
            "{url}{sep}bucket={}&key={}&etag={}",
            form_encode(bucket),
            form_encode(key),
            form_encode(&etag)
        );
        set(&mut headers, http::header::LOCATION, &to);
        (StatusCode::SEE_OTHER, Body::empty())
    } else {
        set(&mut headers, http::header::LOCATION, location);
        match get("success_action_status") {
            Some("200") => (StatusCode::OK, Body::empty()),
            Some("201") => {
                let esc = |s: &str| quick_xml::escape::partial_escape(s).into_owned();
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                    esc(location),
                    esc(bucket),
                    esc(key),
                    esc(&etag)
                );
                set(&mut headers, http::header::CONTENT_TYPE, "application/xml");
                (StatusCode::CREATED, Body::from(xml))
            }
            _ => (StatusCode::NO_CONTENT, Body::empty()),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &[(&str, &str)]) -> Vec<(String, String)> {
        f.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn only_fields_that_stand_for_put_headers_become_headers() {
        let h = put_headers(
            &fields(&[
                ("key", "k"),
                ("Content-Type", "text/plain"),
                ("X-Amz-Meta-Color", "blue"),
                ("x-amz-meta-color", "green"),
                ("x-amz-meta-name", "caf\u{e9}"),
                ("x-amz-copy-source", "other/object"),
                ("x-amz-server-side-encryption", "aws:kms"),
                ("acl", "public-read"),
                ("success_action_status", "201"),
                ("policy", "p"),
            ]),
            42,
        )
        .unwrap();
        assert_eq!(h.get("content-type").unwrap(), "text/plain");
        assert_eq!(h.get("x-amz-meta-color").unwrap(), "blue,green");
        assert_eq!(h.get("x-amz-meta-name").unwrap(), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(h.get("x-amz-server-side-encryption").unwrap(), "aws:kms");
        assert_eq!(h.get("x-amz-acl").unwrap(), "public-read");
        assert_eq!(h.get("content-length").unwrap(), "42");
        for absent in [
            "x-amz-copy-source",
            "key",
            "policy",
            "success_action_status",
        ] {
            assert!(h.get(absent).is_none(), "{absent}");
        }
        let h = put_headers(&fields(&[("key", "k")]), 0).unwrap();
        assert_eq!(h.get("content-type").unwrap(), "binary/octet-stream");
        assert_eq!(
            put_headers(&fields(&[("acl", "everyone")]), 0)
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        assert!(put_headers(&fields(&[("content-type", "a\r\nb")]), 0).is_err());
    }

    #[test]
    fn tagging_xml_becomes_the_tagging_header() {
        assert_eq!(
            tagging("<Tagging><TagSet><Tag><Key>a b</Key><Value>1&amp;2</Value></Tag><Tag><Key>c</Key><Value></Value></Tag></TagSet></Tagging>")
                .unwrap(),
            "a%20b=1%262&c="
        );
        assert_eq!(
            tagging("<InvalidXmlTagging></InvalidXmlTagging>").unwrap(),
            ""
        );
        assert_eq!(tagging("not-xml").unwrap_err().code, "MalformedXML");
        assert_eq!(
            tagging("<Tagging><TagSet>").unwrap_err().code,
            "MalformedXML"
        );
    }

    #[test]
    fn success_answers_follow_success_action_fields() {
        let mut put = HeaderMap::new();
        put.insert("etag", "\"abc\"".parse().unwrap());
        put.insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
        let loc = "http://h/b/a%2Fb";
        let r = success(put.clone(), &fields(&[]), "b", "a/b", loc);
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["location"], loc);
        assert_eq!(r.headers()["x-amz-server-side-encryption"], "AES256");
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "404")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 204);
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "200")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 200);
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "201")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 201);
        let r = success(
            put.clone(),
            &fields(&[("success_action_redirect", "https://app.example/done?x=1")]),
            "b",
            "a b/c",
            loc,
        );
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "https://app.example/done?x=1&bucket=b&key=a+b%2Fc&etag=%22abc%22"
        );
        // A URL S3 cannot interpret: as if absent.
        let r = success(
            put,
            &fields(&[("success_action_redirect", "/relative")]),
            "b",
            "k",
            loc,
        );
        assert_eq!(r.status(), 204);
    }

    #[test]
    fn filenames_lose_their_directories() {
        assert_eq!(basename("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(basename("dir/sub/x.txt"), "x.txt");
        assert_eq!(basename("plain"), "plain");
        assert_eq!(basename(""), "");
    }
}
