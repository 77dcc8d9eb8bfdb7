//! The multipart upload a request names (shared by the multipart handlers): a sealgate
//! upload id opened (its data key unwrapped as the caller, or for SSE-C with the
//! request's customer key) and verified against the object the request names, or a store
//! upload id, allowed only where encryption is off.
//!
//! SSE-C uploads follow AWS: UploadPart and UploadPartCopy must carry the key the upload
//! was created with (none, or another, is AWS's 400); CompleteMultipartUpload and
//! ListParts may omit it, and are then verified with the upload key the client's token
//! carries (`object::upload`).

use super::classify::Op;
use super::request::Upload;
use super::{Ctx, rules};
use crate::crypto::stream::Dek;
use crate::error::Error;
use crate::object::checksum::Algo;
use crate::object::manifest::UploadUid;
use crate::object::{Envelope, ObjectRef, UploadToken};

/// An open sealgate upload.
pub struct Open {
    pub token: UploadToken,
    pub obj: ObjectRef,
    /// The data key; `None` for an SSE-C upload opened without its customer key
    /// (CompleteMultipartUpload, ListParts).
    dek: Option<Dek>,
    /// The key that MACs the token, part records and part list (the DEK; SSE-C: the
    /// upload key); `None` only for ListParts of an SSE-C upload whose id was listed by
    /// ListMultipartUploads (no upload key) and that came without the customer key.
    mac_key: Option<Dek>,
    pub uid: UploadUid,
    /// Part and object ETags are plaintext MD5s.
    pub md5: bool,
}

impl Open {
    pub fn envelope(&self) -> &Envelope {
        &self.token.envelope
    }

    /// The data key (parts are encrypted under keys derived from it).
    pub fn dek(&self) -> Result<&Dek, Error> {
        self.dek
            .as_ref()
            .ok_or_else(|| Error::Internal("an upload opened without its data key".into()))
    }

    /// The checksum algorithm the upload was created with.
    pub fn algo(&self) -> Option<Algo> {
        self.token.v3.as_ref().and_then(|v| v.algo)
    }

    /// The algorithm of its parts' checksums: the upload's, or AWS's default CRC64NVME
    /// for an upload created without one (the object gets a full-object CRC64NVME).
    pub fn part_algo(&self) -> Algo {
        self.algo().unwrap_or(Algo::Crc64Nvme)
    }

    /// The key of the upload's part records and part list.
    pub fn mac_key(&self) -> Result<&Dek, Error> {
        self.mac_key
            .as_ref()
            .ok_or_else(|| Error::Internal("an upload opened without its MAC key".into()))
    }
}

/// AWS's answer to an UploadPart whose encryption headers do not fit the upload: none
/// for an SSE-C upload, or some for an upload that is not SSE-C.
pub fn encryption_required() -> Error {
    Error::invalid_request(
        "The multipart upload initiate requested encryption. Subsequent part requests must include the appropriate encryption parameters.",
    )
}

/// AWS's answer to a part whose customer key is not the upload's.
pub fn encryption_mismatch() -> Error {
    Error::invalid_request(
        "The provided encryption parameters did not match the ones used originally.",
    )
}

/// Refuses a store upload id while encryption is on: parts of sealgate uploads must be
/// encrypted, and only the token says with which key.
async fn require_plain_upload(ctx: &Ctx) -> Result<(), Error> {
    if rules::effective(ctx, None).await?.is_some() {
        return Err(Error::client(
            s3s::S3ErrorCode::NoSuchUpload,
            "The upload id is not a sealgate upload id; encrypted uploads must use the UploadId returned by CreateMultipartUpload through sealgate.",
        ));
    }
    Ok(())
}

/// The request's upload: `Some` for a sealgate upload (opened and verified), `None` for
/// a plaintext upload (refused while encryption is on).
pub async fn open(ctx: &Ctx) -> Result<Option<Open>, Error> {
    let parts = matches!(ctx.req.op, Op::UploadPart | Op::UploadPartCopy);
    let ck = ctx.req.ssec.as_ref();
    let Some(Upload::Token(token)) = &ctx.req.upload else {
        require_plain_upload(ctx).await?;
        if parts && ck.is_some() {
            return Err(encryption_required());
        }
        return Ok(None);
    };
    let obj = ctx.req.object()?;
    let obj = ObjectRef {
        version_id: None,
        ..obj
    };
    let Some(v3) = token.v3.clone() else {
        return Err(Error::invalid_request(
            "This upload was started by an earlier version of sealgate; abort it and upload again.",
        ));
    };
    let (dek, mac_key) = match (token.customer(), ck) {
        (None, Some(_)) if parts => return Err(encryption_required()),
        // CompleteMultipartUpload and ListParts take the headers only for checksums; a
        // key for an upload that has none is ignored, as they are.
        (None, _) => {
            let dek = ctx
                .objects()
                .open_key(ctx.caller(), &token.envelope, None, &obj)
                .await?;
            (Some(dek.clone()), Some(dek))
        }
        (Some(check), Some(ck)) => {
            if !check.matches(ck) {
                return Err(encryption_mismatch());
            }
            let dek = ctx
                .objects()
                .open_key(ctx.caller(), &token.envelope, Some(ck), &obj)
                .await?;
            let mac_key = token.envelope.upload_mac_key(&dek, &v3.uid);
            (Some(dek), Some(mac_key))
        }
        (Some(_), None) if parts => return Err(encryption_required()),
        (Some(_), None) => match token.upload_key() {
            Some(k) => (None, Some(k.clone())),
            // An id from ListMultipartUploads: nothing to verify it with.
            None if ctx.req.op == Op::ListParts => (None, None),
            None => return Err(encryption_required()),
        },
    };
    if let Some(k) = &mac_key {
        token.verify(k, &obj.bucket, &obj.key)?;
    }
    Ok(Some(Open {
        token: (**token).clone(),
        obj,
        dek,
        mac_key,
        uid: v3.uid,
        md5: v3.md5,
    }))
}
