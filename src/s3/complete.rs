//! CompleteMultipartUpload: the object is completed in the store exactly once, without
//! copying it (`docs/design/multipart.md`).
//!
//! 1. The client's part list is checked against the store's parts and sealgate's part
//!    records: each part must be there, uploaded through sealgate, in the attempt whose
//!    ETag the client names (the latest upload of a part number wins, as on S3).
//! 2. The manifest (the authenticated part list with each attempt's salt, and the
//!    object's ETag) is written to the state bucket.
//! 3. The store's upload is completed with the store's ETags of those attempts.
//!
//! If sealgate dies between 2 and 3 the upload is still open and the client's retry
//! completes it; if it dies after 3, or the answer is lost, a repeated completion finds
//! the object and its manifest and answers as the first did. An object whose manifest is
//! missing is never served.

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use quick_xml::events::Event;
use s3s::{Body, S3Response};

use super::body::read_small_body;
use super::upload::{self, Open};
use super::{Ctx, forward, sse};
use crate::crypto::format::part_cipher_len;
use crate::error::Error;
use crate::object::checksum::{Algo, Served};
use crate::object::manifest::{
    Manifest, ManifestChecksum, ManifestPart, PartRecord, etag_id, multipart_etag, unquote,
};
use crate::object::{ObjectMeta, ObjectRef};
use crate::upstream::UpBody;
use crate::xml::{Edit, rewrite_text, texts};

pub async fn complete(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let original = read_small_body(&mut ctx).await?;
    let body = strip_part_checksums(&original)?;
    let mut headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    let Some(up) = upload::open(&ctx).await? else {
        let resp = ctx.forward(headers, UpBody::Bytes(body)).await?;
        return Ok(forward::to_client(resp, false, forward::CHECKSUM_REQUEST));
    };
    let wanted = completed_parts(&body)?;
    let Some(stored) = ctx
        .objects()
        .upload_parts(&up.obj, &up.token.upstream_id)
        .await?
    else {
        // No such upload in the store: completed before (an answer lost)?
        return repeated(&ctx, &up, &wanted).await;
    };
    super::conditions::check_write(&ctx, &mut headers).await?;
    let records = ctx.objects().part_records(up.mac_key()?, &up.uid).await?;
    let client_sums = listed_checksums(&original, wanted.len())?;
    let mut parts = Vec::with_capacity(wanted.len());
    let mut sums = Vec::with_capacity(wanted.len());
    let mut store_list = String::from("<CompleteMultipartUpload>");
    // Part sizes are the store's to police (S3: 5 MiB but the last), on what it holds.
    for (pn, client_etag) in &wanted {
        let invalid = || {
            Error::client(
                s3s::S3ErrorCode::InvalidPart,
                format!(
                    "One or more of the specified parts could not be found. The part may not have been uploaded, or the specified entity tag may not match the part's entity tag (part {pn})."
                ),
            )
        };
        // Of the attempts the store lists for this part, the latest sealgate recorded.
        let (r, (store_etag, cipher_len)): (&PartRecord, &(String, u64)) = stored
            .get(pn)
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let id = etag_id(&s.0);
                records
                    .iter()
                    .find(|r| r.part_number == *pn && r.etag_id == id)
                    .map(|r| (r, s))
            })
            .max_by_key(|(r, _)| r.at_ms)
            .ok_or_else(invalid)?;
        let etag = match r.md5 {
            Some(m) if up.md5 => crate::object::ETag::quoted_md5(&m),
            _ => store_etag.clone(),
        };
        if unquote(client_etag) != unquote(&etag) {
            return Err(invalid());
        }
        // A part checksum the client lists must be the one it uploaded the part with.
        if let Some((algo, want)) = client_sums.as_ref().map(|(a, v)| (*a, &v[parts.len()]))
            && r.checksum.as_ref() != Some(&(algo, want.clone()))
        {
            return Err(invalid());
        }
        if part_cipher_len(r.len, true) != *cipher_len {
            return Err(Error::tampered(format!(
                "part {pn} in the store is not the length sealgate wrote"
            )));
        }
        let part = ManifestPart {
            part_number: *pn,
            len: r.len,
            salt: r.salt,
            etag,
            md5: None,
            checksum: r.sealed_checksum(up.mac_key()?),
        };
        parts.push(match r.md5 {
            // The MD5 is the client's ETag: the part list keeps it sealed.
            Some(m) if up.md5 => part.with_md5(up.mac_key()?, &m),
            _ => part,
        });
        sums.push(r.checksum.clone());
        store_list.push_str(&format!(
            "<Part><PartNumber>{pn}</PartNumber><ETag>{}</ETag></Part>",
            quick_xml::escape::escape(store_etag.as_str())
        ));
    }
    store_list.push_str("</CompleteMultipartUpload>");
    let full_object = up.token.v3.as_ref().is_some_and(|v| v.full_object);
    let checksum = object_checksum(full_object, &parts, &sums);
    check_full_object_checksum(&ctx.headers, checksum.as_ref(), up.algo().is_none())?;
    let manifest = Manifest {
        upload: hex::encode(up.uid),
        etag: up.md5.then(|| multipart_etag(&parts)),
        parts,
        checksum: match &checksum {
            Some(c) => Some(ManifestChecksum::seal(up.mac_key()?, c)),
            None => None,
        },
    };
    ctx.objects()
        .put_manifest(up.mac_key()?, &up.uid, &manifest)
        .await?;
    let resp = ctx
        .forward(headers, UpBody::Bytes(Bytes::from(store_list)))
        .await?;
    let status = resp.status();
    let store_headers = resp.headers().clone();
    let answer = resp.bytes().await.map_err(Error::store_body)?;
    // S3 may answer 200 with an <Error> body.
    if !status.is_success() || answer.windows(7).any(|w| w == b"<Error>") {
        let mut out = S3Response::new(Body::from(answer));
        out.status = Some(if status.is_success() {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            status
        });
        out.headers = forward::response_headers(&store_headers, &["content-length"]);
        return Ok(out);
    }
    let store_etag = texts(&answer, &["ETag"])
        .map_err(Error::Internal)?
        .into_iter()
        .next()
        .unwrap_or_default();
    let size: u64 = manifest.parts.iter().map(|p| p.len).sum();
    super::plaintext::remember(&ctx, &up.obj, &store_etag, size, manifest.etag.clone());
    let objects = ctx.state.clone();
    let (uid, store_id) = (up.uid, up.token.upstream_id.clone());
    tokio::spawn(async move { objects.objects.forget_upload(&uid, &store_id).await });
    let answer = match &manifest.etag {
        Some(e) => rewrite_text(&answer, |p, _| {
            if p.last().map(String::as_str) == Some("ETag") {
                Edit::Replace(e.clone())
            } else {
                Edit::Keep
            }
        })
        .map_err(Error::Internal)?,
        None => answer,
    };
    let answer = with_checksum(answer, checksum.as_ref());
    let mut out = S3Response::new(Body::from(answer));
    out.status = Some(StatusCode::OK);
    out.headers = forward::response_headers(
        &store_headers,
        &[&["content-length"][..], &forward::response_drop_list()].concat(),
    );
    // AWS's answer to a completion has no SSE-C fields.
    sse::response_headers(&mut out.headers, up.envelope(), None);
    Ok(out)
}

/// A completion repeated after the store's upload is gone: if the object the request
/// names is this upload's, completed with these parts, the first answer again (AWS
/// answers a repeated completion with success; SDKs retry when an answer is lost).
async fn repeated(
    ctx: &Ctx,
    up: &Open,
    wanted: &[(u32, String)],
) -> Result<S3Response<Body>, Error> {
    let current = ObjectRef {
        version_id: None,
        ..up.obj.clone()
    };
    let head = ctx.objects().head(&current, HeaderMap::new()).await?;
    let meta = if head.status().is_success() {
        ObjectMeta::read(head.headers())?
    } else {
        None
    };
    let Some(meta) = meta.filter(|m| m.upload == Some(up.uid)) else {
        return Err(Error::no_such_upload());
    };
    // An SSE-C object cannot be opened without its customer key, which a completion may
    // omit: the part list, MACed under the upload key, is what is checked then.
    let meta = if meta.envelope.is_customer() && ctx.req.ssec.is_none() {
        meta
    } else {
        ctx.objects()
            .open(
                ctx.caller(),
                meta,
                ctx.req.ssec.as_ref(),
                &current,
                head.content_length(),
            )
            .await?
            .0
    };
    let manifest = ctx.objects().manifest(up.mac_key()?, &up.uid).await?;
    let same = manifest.parts.len() == wanted.len()
        && manifest
            .parts
            .iter()
            .zip(wanted)
            .all(|(p, (n, e))| p.part_number == *n && unquote(&p.etag) == unquote(e));
    if !same {
        return Err(Error::no_such_upload());
    }
    let etag = match &manifest.etag {
        Some(e) => e.clone(),
        None => super::plaintext::store_etag(head.headers()),
    };
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Location>/{b}/{k}</Location><Bucket>{b}</Bucket><Key>{k}</Key><ETag>{e}</ETag></CompleteMultipartUploadResult>",
        b = quick_xml::escape::escape(up.obj.bucket.as_str()),
        k = quick_xml::escape::escape(up.obj.key.as_str()),
        e = quick_xml::escape::escape(etag.as_str()),
    );
    let checksum = match &manifest.checksum {
        Some(c) => Some(c.open(up.mac_key()?)?),
        None => None,
    };
    let xml = with_checksum(Bytes::from(xml), checksum.as_ref());
    let mut out = S3Response::new(Body::from(xml));
    out.status = Some(StatusCode::OK);
    forward::set_header(&mut out.headers, "content-type", "application/xml");
    if let Some(v) = head.headers().get("x-amz-version-id") {
        out.headers.insert("x-amz-version-id", v.clone());
    }
    sse::response_headers(&mut out.headers, &meta.envelope, None);
    Ok(out)
}

/// The object's checksum from its parts' (`None` unless every part carried one of the
/// same algorithm): the full-object CRC when asked for (CRC64NVME always), else AWS's
/// composite.
fn object_checksum(
    full_object: bool,
    parts: &[ManifestPart],
    sums: &[Option<(Algo, Vec<u8>)>],
) -> Option<Served> {
    let algo = sums.first()?.as_ref()?.0;
    let list = sums
        .iter()
        .zip(parts)
        .map(|(s, p)| match s {
            Some((a, d)) if *a == algo => Some((d.clone(), p.len)),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    Served::of_parts(algo, full_object || algo == Algo::Crc64Nvme, &list)
}

/// A checksum of the object the client sent with the completion must be the object's
/// (when its parts' checksums give one: without them there is nothing to check it by).
/// `defaulted`: the upload named no algorithm, so its object checksum is AWS's default
/// CRC64NVME, and a checksum of another algorithm has nothing to be checked by.
fn check_full_object_checksum(
    h: &HeaderMap,
    ours: Option<&Served>,
    defaulted: bool,
) -> Result<(), Error> {
    let Some(ours) = ours else { return Ok(()) };
    for algo in Algo::CHECKSUMS {
        let Some(v) = h.get(algo.header()).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        if defaulted && algo != ours.algo {
            continue;
        }
        let v = v.trim();
        // A composite value may be sent with or without its `-N`.
        let bare = ours
            .value
            .split_once('-')
            .map_or(ours.value.as_str(), |(b, _)| b);
        if ours.algo != algo || (v != ours.value && v != bare) {
            return Err(Error::client(
                s3s::S3ErrorCode::BadDigest,
                format!(
                    "The {} you specified for the object did not match what sealgate computed from its parts.",
                    algo.display()
                ),
            ));
        }
    }
    Ok(())
}

/// An algorithm and one digest per part.
type Listed = (Algo, Vec<Vec<u8>>);

/// The part checksums a CompleteMultipartUpload body lists, when it lists one per part
/// (of one algorithm), decoded.
fn listed_checksums(xml: &[u8], parts: usize) -> Result<Option<Listed>, Error> {
    use base64::Engine as _;
    for algo in Algo::CHECKSUMS {
        let name = format!("Checksum{}", algo.display());
        let vals = texts(xml, &["Part", name.as_str()]).map_err(Error::malformed_xml)?;
        if vals.is_empty() {
            continue;
        }
        if vals.len() != parts {
            return Err(Error::invalid_request(format!(
                "Every part needs its {name} when one part has it."
            )));
        }
        let decoded = vals
            .iter()
            .map(|v| base64::engine::general_purpose::STANDARD.decode(v.trim()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| Error::invalid_request(format!("A part's {name} is not base64.")))?;
        return Ok(Some((algo, decoded)));
    }
    Ok(None)
}

/// A CompleteMultipartUploadResult with the object's checksum and its type.
fn with_checksum(answer: Bytes, checksum: Option<&Served>) -> Bytes {
    match checksum {
        Some(c) => c.add_to(answer, "CompleteMultipartUploadResult"),
        None => answer,
    }
}

/// Part numbers and ETags listed in a CompleteMultipartUpload body, in order.
fn completed_parts(xml: &[u8]) -> Result<Vec<(u32, String)>, Error> {
    let nums = texts(xml, &["Part", "PartNumber"]).map_err(Error::malformed_xml)?;
    let etags = texts(xml, &["Part", "ETag"]).map_err(Error::malformed_xml)?;
    let nums: Vec<u32> = nums
        .iter()
        .map(|n| n.trim().parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(Error::malformed_xml)?;
    if nums.is_empty() {
        return Err(Error::malformed_xml("no parts"));
    }
    if nums.len() != etags.len() {
        return Err(Error::malformed_xml(
            "every Part needs a PartNumber and an ETag",
        ));
    }
    if nums.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::client(
            s3s::S3ErrorCode::InvalidPartOrder,
            "The list of parts was not in ascending order. Parts must be ordered by part number.",
        ));
    }
    if nums.iter().any(|n| !(1..=10_000).contains(n)) {
        return Err(Error::invalid_part_number());
    }
    Ok(nums.into_iter().zip(etags).collect())
}

/// Removes every `<Checksum*>` element from a CompleteMultipartUpload body.
pub fn strip_part_checksums(xml: &[u8]) -> Result<Bytes, Error> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len()));
    let mut skip_depth = 0usize;
    loop {
        let ev = reader.read_event().map_err(Error::malformed_xml)?;
        match &ev {
            Event::Eof => break,
            Event::Start(s)
                if skip_depth > 0 || s.local_name().as_ref().starts_with(b"Checksum") =>
            {
                skip_depth += 1;
                continue;
            }
            Event::End(_) if skip_depth > 0 => {
                skip_depth -= 1;
                continue;
            }
            Event::Empty(s) if s.local_name().as_ref().starts_with(b"Checksum") => continue,
            _ if skip_depth > 0 => continue,
            _ => {}
        }
        writer.write_event(ev).map_err(Error::malformed_xml)?;
    }
    Ok(Bytes::from(writer.into_inner()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_checksums_are_removed_and_everything_else_kept() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Part><ETag>"e1"</ETag><ChecksumCRC32>AAAAAA==</ChecksumCRC32><PartNumber>1</PartNumber></Part><Part><ETag>"e2"</ETag><PartNumber>2</PartNumber></Part></CompleteMultipartUpload>"#;
        let out = strip_part_checksums(xml).unwrap();
        let s = std::str::from_utf8(&out).unwrap();
        assert!(!s.contains("Checksum"), "{s}");
        assert!(
            s.contains("<ETag>\"e1\"</ETag><PartNumber>1</PartNumber>"),
            "{s}"
        );
        let parts = completed_parts(&out).unwrap();
        assert_eq!(
            parts,
            vec![(1, "\"e1\"".to_string()), (2, "\"e2\"".to_string())]
        );
    }

    #[test]
    fn malformed_xml_is_a_client_error() {
        let e = strip_part_checksums(b"<a><b></a>").unwrap_err();
        let s: s3s::S3Error = e.into();
        assert_eq!(*s.code(), s3s::S3ErrorCode::MalformedXML);
    }

    #[test]
    fn parts_out_of_order_are_invalid_part_order() {
        let xml = b"<CompleteMultipartUpload><Part><PartNumber>2</PartNumber><ETag>a</ETag></Part><Part><PartNumber>1</PartNumber><ETag>b</ETag></Part></CompleteMultipartUpload>";
        let s: s3s::S3Error = completed_parts(xml).unwrap_err().into();
        assert_eq!(s.code().as_str(), "InvalidPartOrder");
    }
}
