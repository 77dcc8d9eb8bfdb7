//! The multipart upload a request names (shared by the multipart handlers): a sealgate
//! upload id opened (its data key unwrapped as the caller) and verified against the object
//! the request names, or a store upload id, allowed only where encryption is off.

use super::request::Upload;
use super::{Ctx, rules};
use crate::crypto::stream::Dek;
use crate::error::Error;
use crate::object::manifest::UploadUid;
use crate::object::{Envelope, ObjectRef, UploadToken};

/// An open sealgate upload.
pub struct Open {
    pub token: UploadToken,
    pub obj: ObjectRef,
    pub dek: Dek,
    pub uid: UploadUid,
    /// Part and object ETags are plaintext MD5s.
    pub md5: bool,
}

impl Open {
    pub fn envelope(&self) -> &Envelope {
        &self.token.envelope
    }
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
    let Some(Upload::Token(token)) = &ctx.req.upload else {
        require_plain_upload(ctx).await?;
        return Ok(None);
    };
    let obj = ctx.req.object()?;
    let obj = ObjectRef {
        version_id: None,
        ..obj
    };
    let dek = ctx
        .objects()
        .open_key(ctx.caller(), &token.envelope, &obj)
        .await?;
    token.verify(&dek, &obj.bucket, &obj.key)?;
    let v3 = token.v3.clone().ok_or_else(Error::no_such_upload)?;
    Ok(Some(Open {
        token: token.clone(),
        obj,
        dek,
        uid: v3.uid,
        md5: v3.md5,
    }))
}
