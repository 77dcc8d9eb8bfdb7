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

mod answer;
mod error;
pub mod form;
mod headers;
pub mod policy;

use std::sync::Arc;

use http::{HeaderMap, Response, StatusCode};
use s3s::{Body, S3Error};

use super::classify::{Op, Shape};
use super::request::Request;
use super::target::Target;
use super::{Ctx, RequestInfo, State};
use error::MALFORMED;
pub use error::PostError;
use form::FormError;
use policy::{Credential, FormView, Policy};

/// The largest file a POST may carry (AWS: 5 GB).
pub const MAX_POST_FILE: u64 = 5 * 1024 * 1024 * 1024;

/// Answers a POST Object request (classified `PostObject` by the listener). `tls`: the
/// client connection is TLS (the scheme of the object's `Location`).
pub async fn serve(
    state: &Arc<State>,
    authz: &super::authz::Authz,
    req: http::Request<Body>,
    target: Target,
    info: RequestInfo,
    tls: bool,
    allow_v2: bool,
) -> Response<Body> {
    let id = info.id.clone();
    match post(state, authz, req, target, info, tls, allow_v2).await {
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
    authz: &super::authz::Authz,
    req: http::Request<Body>,
    target: Target,
    info: RequestInfo,
    tls: bool,
    allow_v2: bool,
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
    let v2 = get("x-amz-signature").is_none()
        && (get("signature").is_some() || get("awsaccesskeyid").is_some());
    if v2 && !allow_v2 {
        return Err(PostError::bad_request(
            "InvalidRequest",
            "Signature Version 2 is not supported; sign requests with AWS Signature Version 4 (or set allow_signature_v2).",
        )
        .into());
    }
    let key = get("key")
        .ok_or_else(|| PostError::missing("key"))?
        .to_string();
    let field = |n: &str| get(n).unwrap_or_default();
    let access_key_id = if v2 {
        signed_v2(state, &get)?
    } else {
        signed_v4(state, &get)?
    };
    // P9, P6, P7, P8: the policy, its expiration, its conditions.
    let policy = Policy::decode(field("policy"))?;
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
    let headers = headers::put_headers(&fields, head.len)?;
    let target = Target {
        shape: Shape::Object,
        bucket: Some(bucket.clone()),
        key: Some(key.clone()),
        query: Vec::new(),
    };
    // SSE-C form fields need TLS, as the headers do.
    let ssec_transport = info.secure || state.encryption.allow_ssec_over_http;
    let parsed = Request::parse(Op::PutObject, target, &headers, ssec_transport)?;
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
        principal: state
            .access_keys
            .get(&access_key_id)
            .map(|k| k.principal.clone())
            .ok_or_else(|| crate::error::Error::Internal("a signer without its key".into()))?,
        method: http::Method::PUT,
        headers,
        body,
        trailers: None,
        call: crate::kms::CallContext::s3(Some(info.peer), Some(info.id.clone())),
    };
    tracing::Span::current().record("bucket", bucket.as_str());
    // Authorized as the PutObject it stands for (s3:PutObject on the key), with the
    // signer's identity policies, like any other request.
    let identity = authz
        .identity(&access_key_id)
        .ok_or_else(|| crate::error::Error::Internal("access key without an identity".into()))?;
    let put = super::authz::run(&identity, ctx, info.secure, super::dispatch).await;
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
    let location = answer::object_location(&parts, &key, tls);
    Ok(answer::success(
        put.headers,
        &fields,
        &bucket,
        &key,
        &location,
    ))
}

/// Checks a Signature Version 4 form (`X-Amz-Algorithm`, `-Credential`, `-Date`,
/// `-Signature`, `Policy`); returns the access key that signed it.
fn signed_v4<'f>(
    state: &Arc<State>,
    get: &impl Fn(&str) -> Option<&'f str>,
) -> Result<String, Answer> {
    let field = |n: &str| get(n).unwrap_or_default();
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
    Ok(credential.access_key.to_string())
}

/// Checks a Signature Version 2 form (`AWSAccessKeyId`, `Policy`, `Signature`; only with
/// `allow_signature_v2`); returns the access key that signed it.
fn signed_v2<'f>(
    state: &Arc<State>,
    get: &impl Fn(&str) -> Option<&'f str>,
) -> Result<String, Answer> {
    for (n, canonical) in [
        ("awsaccesskeyid", "AWSAccessKeyId"),
        ("policy", "Policy"),
        ("signature", "Signature"),
    ] {
        if get(n).is_none() {
            return Err(PostError::missing(canonical).into());
        }
    }
    let field = |n: &str| get(n).unwrap_or_default();
    let id = field("awsaccesskeyid");
    let Some(access_key) = state.access_keys.get(id) else {
        return Err(PostError::new(
            StatusCode::FORBIDDEN,
            "InvalidAccessKeyId",
            "The AWS Access Key Id you provided does not exist in our records.",
        )
        .with("AWSAccessKeyId", id.to_string())
        .into());
    };
    let policy_b64 = field("policy");
    let expected = policy::signature_v2(access_key.secret.as_str(), policy_b64);
    let provided = field("signature");
    if !policy::signatures_match(&expected, provided) {
        return Err(PostError::new(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided. Check your key and signing method.",
        )
        .with("AWSAccessKeyId", id.to_string())
        .with("StringToSign", policy_b64.to_string())
        .with("SignatureProvided", provided.to_string())
        .into());
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filenames_lose_their_directories() {
        assert_eq!(basename("C:\\Users\\a\\photo.jpg"), "photo.jpg");
        assert_eq!(basename("dir/sub/x.txt"), "x.txt");
        assert_eq!(basename("plain"), "plain");
        assert_eq!(basename(""), "");
    }
}
