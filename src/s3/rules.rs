//! Bucket default encryption rules: sealgate's own setting (never the store's), kept in
//! sealgate's state bucket in the store (`<state_bucket>/bucket-encryption/<bucket>`), so
//! every sealgate instance in front of the same store reads the same rules; and the
//! encryption a write gets ([`effective`]).
//!
//! Invariants: a write that asks for no encryption gets the bucket default, else the
//! global default (`encryption.default`); only `none` in both places stores plaintext.
//! Rules are cached per instance for a few seconds (`CACHE_TTL`), so a change reaches
//! other instances within that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, StatusCode};
use quick_xml::events::Event;
use s3s::{S3Error, S3ErrorCode};

use super::Ctx;
use crate::error::Error;
use crate::object::{Alg, Sse};
use crate::upstream::{UpBody, UpRequest};

const CACHE_TTL: Duration = Duration::from_secs(5);

/// A bucket's default encryption rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub alg: Alg,
    pub key_id: Option<String>,
    pub bucket_key: bool,
}

impl Rule {
    pub fn to_xml(&self) -> String {
        let key = self
            .key_id
            .as_ref()
            .map(|k| format!("<KMSMasterKeyID>{}</KMSMasterKeyID>", xml_escape(k)))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ServerSideEncryptionConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{}</SSEAlgorithm>{key}</ApplyServerSideEncryptionByDefault><BucketKeyEnabled>{}</BucketKeyEnabled></Rule></ServerSideEncryptionConfiguration>",
            self.alg.as_str(),
            self.bucket_key
        )
    }

    /// Parses a PutBucketEncryption body, validating it as S3 does.
    pub fn from_xml(xml: &[u8]) -> Result<Rule, S3Error> {
        let malformed = || {
            S3Error::with_message(
                S3ErrorCode::MalformedXML,
                "The XML you provided was not well-formed or did not validate against our published schema",
            )
        };
        let mut r = quick_xml::Reader::from_reader(xml);
        let mut path: Vec<String> = Vec::new();
        let (mut alg, mut key, mut bk, mut rules) = (None, None, None, 0);
        loop {
            match r.read_event().map_err(|_| malformed())? {
                Event::Start(s) => {
                    let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                    if name == "Rule" {
                        rules += 1;
                    }
                    path.push(name);
                }
                Event::End(_) => {
                    path.pop();
                }
                Event::Text(t) => {
                    let v = t.unescape().map_err(|_| malformed())?.trim().to_string();
                    match path.last().map(String::as_str) {
                        Some("SSEAlgorithm") => alg = Some(v),
                        Some("KMSMasterKeyID") => key = Some(v),
                        Some("BucketKeyEnabled") => bk = Some(v),
                        _ => {}
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        if rules != 1 {
            return Err(malformed());
        }
        let alg = match alg.as_deref() {
            Some("aws:kms") => Alg::Kms,
            Some("AES256") => Alg::S3,
            Some(other) => {
                return Err(S3Error::with_message(
                    S3ErrorCode::InvalidArgument,
                    format!("The encryption method specified is not supported: {other}"),
                ));
            }
            None => return Err(malformed()),
        };
        if alg == Alg::S3 && key.is_some() {
            return Err(S3Error::with_message(
                S3ErrorCode::InvalidArgument,
                "KMSMasterKeyID is only allowed with SSEAlgorithm aws:kms.",
            ));
        }
        let bucket_key = match bk.as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return Err(malformed()),
        };
        Ok(Rule {
            alg,
            key_id: key.filter(|k| !k.is_empty()),
            bucket_key,
        })
    }
}

fn xml_escape(s: &str) -> String {
    quick_xml::escape::escape(s).into_owned()
}

/// Per-instance cache of bucket rules (`None` = no rule), with expiry.
#[derive(Debug, Default)]
pub struct RuleCache(Mutex<HashMap<String, (Instant, Option<Rule>)>>);

impl RuleCache {
    fn get(&self, bucket: &str) -> Option<Option<Rule>> {
        let g = self.0.lock().ok()?;
        g.get(bucket)
            .filter(|(t, _)| t.elapsed() < CACHE_TTL)
            .map(|(_, r)| r.clone())
    }
    pub fn put(&self, bucket: &str, r: Option<Rule>) {
        if let Ok(mut g) = self.0.lock() {
            if g.len() > 10_000 {
                g.clear();
            }
            g.insert(bucket.to_string(), (Instant::now(), r));
        }
    }
}

fn state_key(bucket: &str) -> String {
    format!("bucket-encryption/{bucket}")
}

pub async fn state_request(
    ctx: &Ctx,
    method: Method,
    bucket: &str,
    body: UpBody,
) -> Result<crate::upstream::UpResponse, Error> {
    let req = UpRequest {
        method,
        bucket: Some(ctx.state.state_bucket.clone()),
        key: Some(state_key(bucket)),
        query: Vec::new(),
        headers: HeaderMap::new(),
        body,
    };
    ctx.send(req).await
}

/// Reads a bucket's rule from the store (through the cache).
pub async fn rule(ctx: &Ctx, bucket: &str) -> Result<Option<Rule>, Error> {
    if let Some(r) = ctx.state.rules.get(bucket) {
        return Ok(r);
    }
    let resp = state_request(ctx, Method::GET, bucket, UpBody::Empty).await?;
    let r = match resp.status() {
        s if s.is_success() => {
            let body = resp
                .bytes()
                .await
                .map_err(|e| Error::Internal(format!("reading bucket settings: {e}")))?;
            Some(Rule::from_xml(&body).map_err(|e| {
                Error::Internal(format!("stored bucket encryption rule is invalid: {e}"))
            })?)
        }
        StatusCode::NOT_FOUND => None,
        s => {
            return Err(Error::Internal(format!(
                "reading bucket settings from the state bucket failed with {s}"
            )));
        }
    };
    ctx.state.rules.put(bucket, r.clone());
    Ok(r)
}

/// The encryption a write gets: the request's, else the bucket's default, else the global
/// default. `None` only when both the bucket and the global default say `none`.
pub async fn effective(ctx: &Ctx, requested: Option<Sse>) -> Result<Option<Sse>, Error> {
    if requested.is_some() {
        return Ok(requested);
    }
    let bucket = ctx.req.bucket.clone().unwrap_or_default();
    default_for(ctx, &bucket).await
}

/// The encryption a write to `bucket` that asks for none gets: the bucket's default,
/// else the global default. `None` only when both say `none`.
pub async fn default_for(ctx: &Ctx, bucket: &str) -> Result<Option<Sse>, Error> {
    if let Some(r) = rule(ctx, bucket).await? {
        return Ok(Some(Sse {
            alg: r.alg,
            key_id: r.key_id,
            context: Default::default(),
            bucket_key: r.bucket_key,
        }));
    }
    let enc = &ctx.state.encryption;
    Ok(match enc.default.as_str() {
        "aws:kms" => Some(Sse {
            alg: Alg::Kms,
            key_id: enc.default_kms_key.clone(),
            context: Default::default(),
            bucket_key: false,
        }),
        "none" => None,
        _ => Some(Sse {
            alg: Alg::S3,
            key_id: None,
            context: Default::default(),
            bucket_key: false,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_round_trip_through_xml() {
        let r = Rule {
            alg: Alg::Kms,
            key_id: Some("arn:aws:kms:us-east-1:000000000000:key/x".into()),
            bucket_key: true,
        };
        assert_eq!(Rule::from_xml(r.to_xml().as_bytes()).unwrap(), r);
        let s = Rule {
            alg: Alg::S3,
            key_id: None,
            bucket_key: false,
        };
        assert_eq!(Rule::from_xml(s.to_xml().as_bytes()).unwrap(), s);
    }

    #[test]
    fn invalid_rules_are_rejected_like_s3() {
        let bad_alg = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>DES</SSEAlgorithm></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            Rule::from_xml(bad_alg).unwrap_err().code().as_str(),
            "InvalidArgument"
        );
        let key_with_aes = br#"<ServerSideEncryptionConfiguration><Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID></ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"#;
        assert_eq!(
            Rule::from_xml(key_with_aes).unwrap_err().code().as_str(),
            "InvalidArgument"
        );
        assert_eq!(
            Rule::from_xml(b"<nope").unwrap_err().code().as_str(),
            "MalformedXML"
        );
        assert_eq!(
            Rule::from_xml(b"<ServerSideEncryptionConfiguration/>")
                .unwrap_err()
                .code()
                .as_str(),
            "MalformedXML"
        );
    }
}
