//! Put/Get/DeleteBucketEncryption: answered by sealgate from its own rules
//! ([`super::rules`]), never forwarded to the store as its own encryption configuration.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use s3s::{Body, S3Error, S3ErrorCode, S3Response};

use super::rules::{self, Rule};
use super::{Ctx, forward};
use crate::error::Error;
use crate::s3::classify::Op;
use crate::upstream::{UpBody, UpRequest};

fn xml_response(status: StatusCode, body: String) -> S3Response<Body> {
    let mut r = S3Response::new(Body::from(Bytes::from(body)));
    r.status = Some(status);
    forward::set_header(&mut r.headers, "content-type", "application/xml");
    r
}

async fn ensure_bucket_exists(ctx: &Ctx, bucket: &str) -> Result<(), Error> {
    let req = UpRequest {
        method: Method::HEAD,
        bucket: Some(bucket.to_string()),
        key: None,
        query: Vec::new(),
        headers: HeaderMap::new(),
        body: UpBody::Empty,
    };
    let resp = ctx.send(req).await?;
    match resp.status() {
        s if s.is_success() => Ok(()),
        StatusCode::NOT_FOUND => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::NoSuchBucket,
            "The specified bucket does not exist",
        ))),
        s => Err(Error::Client(S3Error::with_message(
            S3ErrorCode::AccessDenied,
            format!("The store refused access to the bucket ({s})"),
        ))),
    }
}

pub async fn handle(mut ctx: Ctx) -> Result<S3Response<Body>, Error> {
    let bucket = ctx.req.bucket.clone().unwrap_or_default();
    ensure_bucket_exists(&ctx, &bucket).await?;
    match ctx.req.op {
        Op::GetBucketEncryption => match rules::rule(&ctx, &bucket).await? {
            Some(r) => Ok(xml_response(StatusCode::OK, r.to_xml())),
            None => Err(Error::Client(S3Error::with_message(
                S3ErrorCode::ServerSideEncryptionConfigurationNotFoundError,
                "The server side encryption configuration was not found",
            ))),
        },
        Op::PutBucketEncryption => {
            let body = super::body::read_small_body(&mut ctx).await?;
            let r = Rule::from_xml(&body)?;
            rules::set_rule(&ctx, &bucket, Some(&r))?;
            Ok(xml_response(StatusCode::OK, String::new()))
        }
        Op::DeleteBucketEncryption => {
            rules::set_rule(&ctx, &bucket, None)?;
            Ok(xml_response(StatusCode::NO_CONTENT, String::new()))
        }
        other => Err(Error::Internal(format!(
            "{} routed to bucket_encryption",
            other.name()
        ))),
    }
}
