//! Multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, ListParts,
//! AbortMultipartUpload, ListMultipartUploads (completion: `complete.rs`).
//!
//! Design (`docs/design/multipart.md`):
//! - CreateMultipartUpload draws the object's DEK and a random upload id, writes the
//!   object's authenticated metadata (format 3: everything but its parts, size and ETag)
//!   and hands the client a token that carries the store's upload id and the wrapped DEK:
//!   sealgate keeps no per-upload state in memory, any instance can take any part.
//! - Each part is encrypted on its own (any order, in parallel, any size) with its own
//!   header and a fresh salt per attempt, and recorded in the state bucket once the store
//!   has it (which attempt, its length and MD5), so completion can name the attempts.
//! - Client checksums are verified by sealgate per part and removed before the store sees
//!   them (the store holds different bytes).

use bytes::Bytes;
use http::HeaderMap;
use s3s::{Body, S3Response};

use super::body::{declared_len, echo_checksums, send_as_is, send_verified};
use super::checksum::Declared;
use super::upload::{self, Open};
use super::{Ctx, forward, rules, source, sse};
use crate::crypto::format::plain_len_of_part_cipher;
use crate::error::Error;
use crate::object::checksum::{Algo, Served};
use crate::object::describe::{self, Described};
use crate::object::manifest::{PartRecord, etag_id};
use crate::object::upload::UploadKind;
use crate::object::write::{Outcome, Writer, computing_checksum};
use crate::object::{Alg, ETag, ObjectMeta, UploadToken, meta};
use crate::upstream::UpBody;
use crate::xml::{Edit, insert_before_close, rewrite_text, texts};

/// The checksum a CreateMultipartUpload asks for: its algorithm, and whether the object's
/// checksum is FULL_OBJECT (CRCs only; CRC64NVME always) rather than COMPOSITE (the
/// digest of the parts' digests), with AWS's refusals of combinations it does not have.
fn requested_checksum(h: &HeaderMap) -> Result<Option<(Algo, bool)>, Error> {
    let text = |n: &str| {
        h.get(n)
            .map(|v| v.to_str().unwrap_or("").trim().to_string())
    };
    let (algo, kind) = (
        text("x-amz-checksum-algorithm"),
        text("x-amz-checksum-type"),
    );
    let Some(name) = algo else {
        if kind.is_some() {
            return Err(Error::invalid_request(
                "The x-amz-checksum-type header can only be used with the x-amz-checksum-algorithm header.",
            ));
        }
        return Ok(None);
    };
    let algo = Algo::parse(&name).ok_or_else(|| {
        Error::invalid_request(format!(
            "Checksum algorithm provided is unsupported: {name}. Use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256."
        ))
    })?;
    let full = match kind.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None => algo == Algo::Crc64Nvme,
        Some("FULL_OBJECT") if algo.combinable() => true,
        Some("COMPOSITE") if algo != Algo::Crc64Nvme => false,
        Some(t @ ("FULL_OBJECT" | "COMPOSITE")) => {
            return Err(Error::invalid_request(format!(
                "The {t} checksum type cannot be used with the {} checksum algorithm.",
                algo.display().to_ascii_lowercase()
            )));
        }
        Some(t) => {
            return Err(Error::invalid_request(format!(
                "Value for x-amz-checksum-type header is invalid: {t}. Use FULL_OBJECT or COMPOSITE."
            )));
        }
    };
    Ok(Some((algo, full)))
}

/// Tells the client which checksum the upload will have.
fn echo_requested(out: &mut S3Response<Body>, checksum: Option<(Algo, bool)>) {
    if let Some((algo, full)) = checksum {
        forward::set_header(&mut out.headers, "x-amz-checksum-algorithm", algo.display());
        let kind = if full { "FULL_OBJECT" } else { "COMPOSITE" };
        forward::set_header(&mut out.headers, "x-amz-checksum-type", kind);
    }
}

pub async fn create(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    meta::reject_reserved(&ctx.headers)?;
    let checksum = requested_checksum(&ctx.headers)?;
    let mut headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let Some(sse) = rules::effective(&ctx, ctx.req.sse.clone()).await? else {
        // Encryption is off for this bucket: the store's own upload.
        let resp = ctx.forward(headers, UpBody::Empty).await?;
        let ok = resp.status().is_success();
        let mut out = forward::to_client(resp, false, forward::CHECKSUM_REQUEST);
        if ok {
            echo_requested(&mut out, checksum);
        }
        return Ok(out);
    };
    let obj = ctx.req.object()?;
    let (env, dek) = ctx.objects().new_key(ctx.caller(), &sse, &obj).await?;
    let md5 = ctx.state.encryption.md5_etags && sse.alg == Alg::S3;
    let mut uid = [0u8; 16];
    aws_lc_rs::rand::fill(&mut uid).map_err(|_| Error::Internal("RNG".into()))?;
    describe::prepare_write(&mut headers);
    let head = ObjectMeta::multipart_head(env.clone(), &dek, uid, md5, Described::of(&headers));
    head.write(&mut headers);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, forward::CHECKSUM_REQUEST));
    }
    let store_headers = forward::response_headers(resp.headers(), &forward::response_drop_list());
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let store_id = texts(&body, &["UploadId"])
        .map_err(Error::Internal)?
        .into_iter()
        .next()
        .ok_or_else(|| {
            Error::Internal("the store's CreateMultipartUpload answer has no UploadId".into())
        })?;
    let kind = UploadKind {
        md5,
        full_object: checksum.is_some_and(|(_, full)| full),
        algo: checksum.map(|(a, _)| a),
    };
    let token = UploadToken::new(
        store_id.clone(),
        env,
        uid,
        kind,
        &dek,
        &obj.bucket,
        &obj.key,
    );
    // The state bucket's copy (for ListMultipartUploads) lacks an SSE-C upload key.
    ctx.objects()
        .put_upload_record(&store_id, &token.encode_for_store())
        .await?;
    let token = token.encode();
    let body = rewrite_text(&body, |p, _| {
        if p.last().map(String::as_str) == Some("UploadId") {
            Edit::Replace(token.clone())
        } else {
            Edit::Keep
        }
    })
    .map_err(|e| Error::Internal(format!("store's CreateMultipartUpload answer: {e}")))?;
    let mut out = forward::rewritten(body, store_headers);
    out.headers.remove("content-length");
    sse::response_headers(&mut out.headers, &head.envelope, ctx.req.ssec.as_ref());
    echo_requested(&mut out, checksum);
    Ok(out)
}

fn part_number(ctx: &Ctx) -> Result<u32, Error> {
    ctx.req.part_number.ok_or_else(Error::invalid_part_number)
}

/// Records a part the store accepted, and returns its client-visible ETag.
async fn record_part(
    ctx: &Ctx,
    up: &Open,
    pn: u32,
    len: u64,
    store_etag: &str,
    outcome: &Outcome,
) -> Result<String, Error> {
    let written = outcome.get();
    let salt = written
        .salt
        .ok_or_else(|| Error::Internal("a part was written without a salt".into()))?;
    let md5 = written.md5.filter(|_| up.md5);
    let record = PartRecord {
        part_number: pn,
        etag_id: etag_id(store_etag),
        salt,
        len,
        md5,
        checksum: written.checksum.clone(),
        at_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    };
    ctx.objects()
        .put_part_record(up.mac_key()?, &up.uid, &record)
        .await?;
    Ok(match md5 {
        Some(m) => ETag::quoted_md5(&m),
        None => store_etag.to_string(),
    })
}

pub async fn upload_part(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    let headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let Some(up) = upload::open(&ctx).await? else {
        return send_as_is(&mut ctx, headers, &declared).await;
    };
    let pn = part_number(&ctx)?;
    let len = declared_len(&ctx)?;
    let (writer, outcome) = Writer::part(up.dek()?.clone(), pn, len, up.md5);
    let writer = match up.algo() {
        Some(_) => writer,
        None => writer.with_default_checksum(),
    };
    let (resp, digests) = send_verified(&mut ctx, headers, &declared, Some(writer), true).await?;
    let ok = resp.status().is_success();
    let mut out = forward::to_client(resp, false, &forward::response_drop_list());
    if ok {
        let store_etag = super::plaintext::store_etag(&out.headers);
        let etag = record_part(&ctx, &up, pn, len, &store_etag, &outcome).await?;
        forward::set_header(&mut out.headers, "etag", &etag);
        echo_checksums(&mut out, &digests);
        sse::response_headers(&mut out.headers, up.envelope(), ctx.req.ssec.as_ref());
    }
    Ok(out)
}

/// Parses `x-amz-copy-source-range: bytes=a-b` into `[a, b+1)`.
fn copy_range(h: &HeaderMap) -> Result<Option<(u64, u64)>, Error> {
    let Some(v) = h.get("x-amz-copy-source-range") else {
        return Ok(None);
    };
    let bad = || {
        Error::invalid_argument(
            "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last are the zero-based offsets of the first and last bytes to copy",
        )
    };
    let s = v
        .to_str()
        .map_err(|_| bad())?
        .trim()
        .strip_prefix("bytes=")
        .ok_or_else(bad)?;
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let (a, b): (u64, u64) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
    if b < a {
        return Err(bad());
    }
    Ok(Some((a, b + 1)))
}

pub async fn upload_part_copy(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let src = ctx
        .req
        .copy_source
        .clone()
        .ok_or_else(|| Error::Internal("UploadPartCopy without a source".into()))?;
    let up = upload::open(&ctx).await?;
    let source = source::open(&ctx, &src).await?;
    let range = copy_range(&ctx.headers)?;
    if up.is_none() && source.sealed.is_none() {
        // Plaintext into a plaintext upload: the store copies.
        let mut h = forward::request_headers(&ctx.headers, &forward::write_drop_list());
        forward::set_header(&mut h, "x-amz-copy-source", &src.copy_source_header());
        let resp = ctx.forward(h, UpBody::Empty).await?;
        return Ok(forward::to_client(resp, false, &[]));
    }
    if let Some((a, b)) = range {
        let size = source.size();
        if b > size || a >= size {
            return Err(Error::invalid_range(size));
        }
    }
    let (plain, len) = source::plaintext(&ctx, &source, range).await?;
    let pn = part_number(&ctx)?;
    let (body, outcome, tapped) = match &up {
        Some(up) => {
            let (writer, outcome) = Writer::part(up.dek()?.clone(), pn, len, up.md5);
            // A part gets a checksum of its upload's algorithm (AWS's default CRC64NVME
            // when the upload was created without one), as on AWS.
            let (plain, writer, tapped) = computing_checksum(plain, writer, Some(up.part_algo()));
            let (stream, len) = writer.seal_stream(plain, &mut HeaderMap::new());
            (UpBody::Stream { stream, len }, Some(outcome), tapped)
        }
        None => (UpBody::Stream { stream: plain, len }, None, None),
    };
    let resp = ctx
        .forward(HeaderMap::new(), UpBody::Checked(Box::new(body)))
        .await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let (etag, env) = match (&up, &outcome) {
        (Some(up), Some(outcome)) => {
            let store_etag = super::plaintext::store_etag(resp.headers());
            let etag = record_part(&ctx, up, pn, len, &store_etag, outcome).await?;
            (Some(etag), Some(up.envelope()))
        }
        _ => (None, None),
    };
    let checksum = tapped.as_ref().and_then(|t| t.served());
    Ok(source::copy_result(
        "CopyPartResult",
        &source,
        &resp,
        env,
        ctx.req.ssec.as_ref(),
        etag.as_deref(),
        checksum.as_ref(),
    ))
}

pub async fn list_parts(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let up = upload::open(&ctx).await?;
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    let Some(up) = up else {
        return Ok(forward::to_client(resp, false, &[]));
    };
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let store_headers = forward::response_headers(resp.headers(), &["content-length"]);
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let algo = up.algo();
    let records = if up.md5 || algo.is_some() {
        ctx.objects().part_records(up.mac_key()?, &up.uid).await?
    } else {
        Vec::new()
    };
    let client_id = up.token.encode();
    // The client's ETag of each listed part, in document order.
    let nums = texts(&body, &["Part", "PartNumber"]).map_err(Error::Internal)?;
    let store_etags = texts(&body, &["Part", "ETag"]).map_err(Error::Internal)?;
    let listed: Vec<Option<&PartRecord>> = nums
        .iter()
        .zip(&store_etags)
        .map(|(n, e)| {
            let (n, id) = (n.parse::<u32>().ok()?, etag_id(e));
            records
                .iter()
                .find(|r| r.part_number == n && r.etag_id == id)
        })
        .collect();
    let etags: Vec<Option<String>> = listed
        .iter()
        .map(|r| r.and_then(|r| r.md5).map(|m| ETag::quoted_md5(&m)))
        .collect();
    let mut i = 0usize;
    let body = rewrite_text(&body, |p, t| {
        let in_part = p.len() >= 2 && p[p.len() - 2] == "Part";
        match p.last().map(String::as_str) {
            Some("UploadId") if t == up.token.upstream_id => Edit::Replace(client_id.clone()),
            Some("ETag") if in_part => {
                i += 1;
                match etags.get(i - 1).cloned().flatten() {
                    Some(e) => Edit::Replace(e),
                    None => Edit::Keep,
                }
            }
            Some("Size") if in_part => match t
                .parse::<u64>()
                .ok()
                .and_then(|c| plain_len_of_part_cipher(c, true))
            {
                Some(plain) => Edit::Replace(plain.to_string()),
                None => Edit::Keep,
            },
            _ => Edit::Keep,
        }
    })
    .map_err(Error::Internal)?;
    let body = match algo {
        Some(a) => with_part_checksums(body, a, &listed),
        None => body,
    };
    Ok(forward::rewritten(body, store_headers))
}

/// A ListParts answer with AWS's checksum elements: each listed part's checksum (as its
/// client sent it) before its `</Part>`, and the upload's algorithm.
fn with_part_checksums(body: Bytes, algo: Algo, listed: &[Option<&PartRecord>]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + listed.len() * 64);
    let mut rest = &body[..];
    for r in listed {
        let Some(at) = rest.windows(7).position(|w| w == b"</Part>") else {
            break;
        };
        out.extend_from_slice(&rest[..at]);
        if let Some((a, d)) = r.and_then(|r| r.checksum.as_ref())
            && *a == algo
        {
            out.extend_from_slice(Served::full(algo, d).element().as_bytes());
        }
        out.extend_from_slice(b"</Part>");
        rest = &rest[at + 7..];
    }
    out.extend_from_slice(rest);
    let algorithm = format!("<ChecksumAlgorithm>{}</ChecksumAlgorithm>", algo.display());
    insert_before_close(Bytes::from(out), "ListPartsResult", &algorithm)
}

pub async fn abort(ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    if resp.status().is_success()
        && let Some(token) = ctx.req.token()
        && let Some(v3) = &token.v3
    {
        ctx.objects()
            .forget_upload(&v3.uid, &token.upstream_id)
            .await;
    }
    Ok(forward::to_client(resp, false, &[]))
}

/// ListMultipartUploads with the upload ids clients received from sealgate (and paging
/// markers in the same terms).
pub async fn list_uploads(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    // A marker the client got from sealgate is a token: the store wants its own id.
    for (k, v) in ctx.req.query.iter_mut() {
        if k == "upload-id-marker"
            && let Ok(Some(t)) = UploadToken::decode(v)
        {
            *v = t.upstream_id;
        }
    }
    let headers = forward::request_headers(&ctx.headers, &[]);
    let resp = ctx.forward(headers, UpBody::Empty).await?;
    if !resp.status().is_success() {
        return Ok(forward::to_client(resp, false, &[]));
    }
    let store_headers = forward::response_headers(resp.headers(), &["content-length"]);
    let body = resp.bytes().await.map_err(Error::store_body)?;
    let mut ids = texts(&body, &["Upload", "UploadId"]).map_err(Error::Internal)?;
    ids.extend(texts(&body, &["NextUploadIdMarker"]).map_err(Error::Internal)?);
    ids.extend(texts(&body, &["UploadIdMarker"]).map_err(Error::Internal)?);
    ids.sort();
    ids.dedup();
    let mut tokens = std::collections::HashMap::new();
    for id in ids.into_iter().filter(|i| !i.is_empty()) {
        if let Some(t) = ctx.objects().upload_record(&id).await? {
            tokens.insert(id, t);
        }
    }
    let body = rewrite_text(&body, |p, t| match p.last().map(String::as_str) {
        Some("UploadId" | "NextUploadIdMarker" | "UploadIdMarker") => match tokens.get(t) {
            Some(tok) => Edit::Replace(tok.clone()),
            None => Edit::Keep,
        },
        _ => Edit::Keep,
    })
    .map_err(Error::Internal)?;
    Ok(forward::rewritten(body, store_headers))
}
