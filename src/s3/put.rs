//! PutObject: the body is verified against the client's checksums, encrypted segment by
//! segment, and streamed to the store with sealgate's metadata; nothing is buffered
//! beyond one segment.
//!
//! Invariants: when encryption applies (requested, bucket default or global default) the
//! store receives only ciphertext — any failure (KMS, checksum, short body) ends the
//! upload stream with an error before the last segment, so the store stores nothing.
//! Client checksums are verified by sealgate and never forwarded; the verified checksum is
//! echoed in the response as S3 does.

use s3s::{Body, S3Response};

use super::body::{declared_len, declared_md5, echo_checksums, send_as_is, send_verified};
use super::checksum::Declared;
use super::{Ctx, forward, plaintext, rules, sse};
use crate::error::Error;
use crate::object::checksum::{Algo, Served};
use crate::object::write::Writer;
use crate::object::{Alg, ETag, meta};

pub async fn put_object(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let declared = Declared::from_headers(&ctx.headers)?;
    meta::reject_reserved(&ctx.headers)?;
    let mut headers = forward::request_headers(&ctx.headers, &forward::write_drop_list());
    super::conditions::check_write(&ctx, &mut headers).await?;
    let Some(sse) = rules::effective(&ctx, ctx.req.sse.clone()).await? else {
        // Encryption is configured off for this bucket and not requested: store as sent.
        return send_as_is(&mut ctx, headers, &declared).await;
    };
    let obj = ctx.req.object()?;
    let len = declared_len(&ctx)?;
    let (env, dek) = ctx.objects().new_key(ctx.caller(), &sse, &obj).await?;
    let md5 = ctx.state.encryption.md5_etags && sse.alg == Alg::S3;
    let (writer, outcome) = Writer::single(env, dek, len, md5, declared_md5(&declared));
    let (resp, digests) = send_verified(&mut ctx, headers, &declared, Some(writer), true).await?;
    let ok = resp.status().is_success();
    let written = outcome.get();
    let mut out = forward::to_client(resp, false, &forward::response_drop_list());
    if let (true, Some(meta)) = (ok, &written.meta) {
        echo_checksums(&mut out, &digests);
        // The client's checksum, or the CRC64NVME sealgate kept when it sent none.
        let checksum = digests
            .iter()
            .find(|(a, _)| *a != Algo::Md5)
            .map(|(a, d)| Served::full(*a, d));
        if checksum.is_some() {
            forward::set_header(&mut out.headers, "x-amz-checksum-type", "FULL_OBJECT");
        }
        sse::response_headers(&mut out.headers, &meta.envelope, ctx.req.ssec.as_ref());
        let etag = written.md5.filter(|_| md5).map(|m| ETag::quoted_md5(&m));
        let store_etag = plaintext::store_etag(&out.headers);
        plaintext::remember_with(&ctx, &obj, &store_etag, meta.size, etag.clone(), checksum);
        if let Some(e) = etag {
            forward::set_header(&mut out.headers, "etag", &e);
        }
    }
    Ok(out)
}
