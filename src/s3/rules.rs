//! Bucket default encryption rules: sealgate's own setting (never the store's), kept in
//! the KMS database (`Kms::setting`, authenticated under the root key), out of the
//! store's reach: a store that deleted or changed a rule kept beside the data could make
//! sealgate write plaintext or under a key of its choosing (`docs/threat-model.md`).
//! Older versions kept rules in the state bucket; [`import_legacy`] moves them once.
//! And the encryption a write gets ([`effective`]).
//!
//! Invariants: a write that asks for no encryption gets the bucket default, else the
//! global default (`encryption.default`); only `none` in both places stores plaintext.
//! A rule change is seen by the next request (no cache).

use http::{HeaderMap, Method, StatusCode};
use quick_xml::events::Event;
use s3s::{S3Error, S3ErrorCode};

use super::Ctx;
use crate::error::Error;
use crate::object::{Alg, Sse};
use crate::upstream::{UpBody, UpRequest};

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

/// The KMS setting holding a bucket's rule (its XML).
fn setting_name(bucket: &str) -> String {
    format!("{SETTING_PREFIX}{bucket}")
}

const SETTING_PREFIX: &str = "s3/bucket-encryption/";
/// Set once the rules an older sealgate kept in the state bucket have been imported.
const IMPORTED: &str = "s3/bucket-encryption-imported";

/// Where older versions kept a bucket's rule, in the state bucket.
fn legacy_key(bucket: &str) -> String {
    format!("bucket-encryption/{bucket}")
}

fn parse_stored(bucket: &str, xml: &[u8]) -> Result<Rule, Error> {
    Rule::from_xml(xml).map_err(|e| {
        Error::Internal(format!(
            "the stored encryption rule of bucket {bucket} is invalid: {e}"
        ))
    })
}

/// A bucket's rule.
pub async fn rule(ctx: &Ctx, bucket: &str) -> Result<Option<Rule>, Error> {
    let kms = &ctx.state.kms;
    if let Some(xml) = kms.setting(&setting_name(bucket)) {
        return parse_stored(bucket, &xml).map(Some);
    }
    if kms.setting(IMPORTED).is_some() {
        return Ok(None);
    }
    // The import at startup has not run yet (the store was unreachable): read this
    // bucket's legacy rule and keep it.
    let legacy = legacy_rule(ctx, bucket).await?;
    if let Some(r) = &legacy {
        set_rule(ctx, bucket, Some(r))?;
    }
    Ok(legacy)
}

/// Stores (or, with `None`, removes) a bucket's rule.
pub fn set_rule(ctx: &Ctx, bucket: &str, r: Option<&Rule>) -> Result<(), Error> {
    let kms = &ctx.state.kms;
    let name = setting_name(bucket);
    let done = match r {
        Some(r) => kms.put_setting(&name, r.to_xml().as_bytes()),
        None => kms.delete_setting(&name).map(|_| ()),
    };
    done.map_err(|e| Error::Internal(format!("storing the bucket encryption rule failed: {e}")))
}

async fn legacy_rule(ctx: &Ctx, bucket: &str) -> Result<Option<Rule>, Error> {
    let resp = ctx
        .send(UpRequest {
            method: Method::GET,
            bucket: Some(ctx.state.state_bucket.clone()),
            key: Some(legacy_key(bucket)),
            query: Vec::new(),
            headers: HeaderMap::new(),
            body: UpBody::Empty,
        })
        .await?;
    match resp.status() {
        s if s.is_success() => {
            let body = resp.bytes().await.map_err(Error::store_body)?;
            parse_stored(bucket, &body).map(Some)
        }
        StatusCode::NOT_FOUND => Ok(None),
        s => Err(Error::Internal(format!(
            "reading bucket {bucket}'s encryption rule from the state bucket failed with {s}"
        ))),
    }
}

/// Imports the rules an older sealgate kept in the state bucket (once: a marker records
/// it), then deletes them there. A rule already in the KMS database wins.
pub async fn import_legacy(
    objects: &crate::object::Objects,
    kms: &crate::kms::Kms,
) -> Result<usize, Error> {
    if kms.setting(IMPORTED).is_some() {
        return Ok(0);
    }
    let keys = objects.state_keys("bucket-encryption/").await?;
    let mut imported = 0;
    for key in &keys {
        let Some(bucket) = key.strip_prefix("bucket-encryption/") else {
            continue;
        };
        let name = setting_name(bucket);
        if kms.setting(&name).is_some() {
            continue;
        }
        let resp = objects
            .store
            .send(UpRequest {
                method: Method::GET,
                bucket: Some(objects.state_bucket.clone()),
                key: Some(key.clone()),
                query: Vec::new(),
                headers: HeaderMap::new(),
                body: UpBody::Empty,
            })
            .await?;
        if !resp.status().is_success() {
            continue;
        }
        let body = resp.bytes().await.map_err(Error::store_body)?;
        let rule = parse_stored(bucket, &body)?;
        kms.put_setting(&name, rule.to_xml().as_bytes())
            .map_err(|e| Error::Internal(format!("importing bucket rules: {e}")))?;
        tracing::warn!(
            bucket,
            rule = %rule.alg.as_str(),
            "imported a bucket default-encryption rule from the state bucket, where the store could change it; check it with GetBucketEncryption"
        );
        imported += 1;
    }
    kms.put_setting(IMPORTED, b"true")
        .map_err(|e| Error::Internal(format!("importing bucket rules: {e}")))?;
    objects.delete_state(keys).await;
    Ok(imported)
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
            customer: None,
        }));
    }
    let enc = &ctx.state.encryption;
    Ok(match enc.default.as_str() {
        "aws:kms" => Some(Sse {
            alg: Alg::Kms,
            key_id: enc.default_kms_key.clone(),
            context: Default::default(),
            bucket_key: false,
            customer: None,
        }),
        "none" => None,
        _ => Some(Sse {
            alg: Alg::S3,
            key_id: None,
            context: Default::default(),
            bucket_key: false,
            customer: None,
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
