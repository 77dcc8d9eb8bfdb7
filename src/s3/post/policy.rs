//! POST policies: the SigV4 signature over the base64 policy, the policy document
//! (expiration and conditions) and how its conditions judge a form, with AWS's errors.
//!
//! Invariants: the signature is computed over the `policy` field exactly as received and
//! compared in constant time; a condition that cannot be evaluated fails (a field it
//! names that the form lacks fails `eq` and `starts-with` alike); every form field but
//! `x-amz-signature`, `file`, `policy`, `x-ignore-*` (and a SigV2 form's `AWSAccessKeyId`
//! and `signature`) must be named by a condition.

use aws_lc_rs::hmac;
use base64::Engine as _;
use serde_json::Value;
use time::OffsetDateTime;

use super::PostError;

/// `HMAC-SHA256(key, data)`.
fn hmac(key: &[u8], data: &[u8]) -> hmac::Tag {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
}

/// The SigV4 signature of a POST policy: `hex(HMAC(kSigning, policy_b64))`.
pub fn signature(
    secret: &str,
    date: &str,
    region: &str,
    service: &str,
    policy_b64: &str,
) -> String {
    let mut k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    for part in [region, service, "aws4_request"] {
        k = hmac(k.as_ref(), part.as_bytes());
    }
    hex::encode(hmac(k.as_ref(), policy_b64.as_bytes()))
}

/// A Signature Version 2 form's signature (`allow_signature_v2`): base64 of the
/// HMAC-SHA1 of the base64 policy under the secret key.
pub fn signature_v2(secret: &str, policy_b64: &str) -> String {
    use base64::Engine as _;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(hmac::sign(&key, policy_b64.as_bytes()))
}

/// Whether `provided` is the signature `expected` (constant time).
pub fn signatures_match(expected: &str, provided: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(expected.as_bytes(), provided.as_bytes())
        .is_ok()
}

/// `AKID/yyyymmdd/region/service/aws4_request`.
#[derive(Debug, PartialEq, Eq)]
pub struct Credential<'a> {
    pub access_key: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
}

impl<'a> Credential<'a> {
    pub fn parse(s: &'a str) -> Option<Credential<'a>> {
        let p: Vec<&str> = s.split('/').collect();
        let [access_key, date, region, service, "aws4_request"] = p[..] else {
            return None;
        };
        let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
        (!access_key.is_empty() && date_ok && !region.is_empty() && service == "s3").then_some(
            Credential {
                access_key,
                date,
                region,
                service,
            },
        )
    }
}

/// How a field is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Matcher {
    Eq,
    StartsWith,
}

/// One condition of a policy.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// `{"field": "value"}`, `["eq", "$field", "value"]`, `["starts-with", "$field", "p"]`.
    Field {
        matcher: Matcher,
        /// The field as the policy names it, `$` included (`$key`), or without `$`, which
        /// AWS treats as a condition that never holds.
        field: String,
        value: String,
        /// The condition as AWS prints it in an error.
        printed: String,
    },
    /// `["content-length-range", min, max]` (whole numbers, or strings of them; a
    /// negative bound is a number too, as the other S3 implementations read it: no file
    /// is smaller than a negative minimum, every file is larger than a negative maximum).
    Range {
        min: Option<i64>,
        max: Option<i64>,
        printed: String,
    },
}

impl Condition {
    /// The form field this condition names (lowercase, no `$`), if it names one.
    pub fn field_name(&self) -> Option<String> {
        match self {
            Condition::Field { field, .. } => field.strip_prefix('$').map(str::to_ascii_lowercase),
            Condition::Range { .. } => None,
        }
    }

    pub fn printed(&self) -> &str {
        match self {
            Condition::Field { printed, .. } | Condition::Range { printed, .. } => printed,
        }
    }
}

/// A decoded policy document.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub expiration: OffsetDateTime,
    pub conditions: Vec<Condition>,
}

fn invalid(detail: impl std::fmt::Display) -> PostError {
    PostError::new(
        http::StatusCode::BAD_REQUEST,
        "InvalidPolicyDocument",
        format!("Invalid Policy: {detail}"),
    )
}

/// A JSON value as AWS prints it inside a condition (strings quoted, numbers bare).
fn print(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn printed_array(items: &[Value]) -> String {
    let inner: Vec<String> = items.iter().map(print).collect();
    format!("[{}]", inner.join(", "))
}

impl Policy {
    /// Decodes the `policy` field (base64 of UTF-8 JSON).
    pub fn decode(b64: &str) -> Result<Policy, PostError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| invalid("Invalid Base64 Encoding."))?;
        let doc: Value = serde_json::from_slice(&raw).map_err(|_| invalid("Invalid JSON."))?;
        let obj = doc.as_object().ok_or_else(|| invalid("Invalid JSON."))?;
        let expiration = match obj.get("expiration") {
            None => return Err(invalid("Policy missing expiration.")),
            Some(Value::String(s)) => parse_expiration(s)
                .ok_or_else(|| invalid(format!("Invalid 'expiration' value: '{s}'")))?,
            Some(v) => return Err(invalid(format!("Invalid 'expiration' value: '{v}'"))),
        };
        let list = match obj.get("conditions") {
            None => return Err(invalid("Policy missing conditions.")),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(invalid("Invalid 'conditions' value: must be a list.")),
        };
        let conditions = list.iter().map(condition).collect::<Result<Vec<_>, _>>()?;
        Ok(Policy {
            expiration,
            conditions,
        })
    }
}

/// ISO 8601 in UTC: `2015-12-29T01:00:00Z` (botocore) or with milliseconds (AWS's docs).
fn parse_expiration(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if !s.ends_with('Z') {
        return None;
    }
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

fn condition(v: &Value) -> Result<Condition, PostError> {
    match v {
        Value::Object(m) => {
            if m.len() != 1 {
                return Err(invalid(
                    "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                ));
            }
            let Some((k, val)) = m.iter().next() else {
                return Err(invalid(
                    "Invalid Simple-Condition: Simple-Conditions must have exactly one property specified.",
                ));
            };
            let Value::String(val) = val else {
                return Err(invalid("Invalid Simple-Condition: value must be a string."));
            };
            Ok(Condition::Field {
                matcher: Matcher::Eq,
                field: format!("${k}"),
                value: val.clone(),
                printed: printed_array(&[
                    Value::from("eq"),
                    Value::from(format!("${k}")),
                    Value::from(val.clone()),
                ]),
            })
        }
        Value::Array(items) => {
            let op = items
                .first()
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    invalid("Invalid Condition: the first element must be an operation name.")
                })?
                .to_ascii_lowercase();
            let printed = printed_array(items);
            match op.as_str() {
                "eq" | "starts-with" => {
                    let [_, Value::String(field), Value::String(value)] = &items[..] else {
                        return Err(invalid(format!(
                            "Invalid Condition: {printed}: an {op} condition is [\"{op}\", \"$field\", \"value\"]."
                        )));
                    };
                    Ok(Condition::Field {
                        matcher: if op == "eq" {
                            Matcher::Eq
                        } else {
                            Matcher::StartsWith
                        },
                        field: field.clone(),
                        value: value.clone(),
                        printed,
                    })
                }
                "content-length-range" => {
                    let [_, min, max] = &items[..] else {
                        return Err(invalid(format!(
                            "Invalid Condition: {printed}: content-length-range takes a minimum and a maximum."
                        )));
                    };
                    let bound = |v: &Value| match v {
                        Value::Number(n) => n.as_i64(),
                        Value::String(s) => s.trim().parse::<i64>().ok(),
                        _ => None,
                    };
                    Ok(Condition::Range {
                        min: bound(min),
                        max: bound(max),
                        printed,
                    })
                }
                _ => Err(invalid(format!(
                    "Invalid Condition: {printed}: unknown operation."
                ))),
            }
        }
        _ => Err(invalid(
            "Invalid Condition: a condition is an object or a list.",
        )),
    }
}

/// The form as conditions see it: lowercase names, values with `${filename}` expanded,
/// repeated fields joined with commas, plus `bucket` from the URL when the form has none.
pub struct FormView<'a> {
    pub fields: &'a [(String, String)],
    pub bucket: &'a str,
}

impl FormView<'_> {
    fn value(&self, name: &str) -> Option<String> {
        let vals: Vec<&str> = self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        if !vals.is_empty() {
            return Some(vals.join(","));
        }
        (name == "bucket").then(|| self.bucket.to_string())
    }
}

fn failed(c: &Condition) -> PostError {
    PostError::new(
        http::StatusCode::FORBIDDEN,
        "AccessDenied",
        format!(
            "Invalid according to Policy: Policy Condition failed: {}",
            c.printed()
        ),
    )
}

/// Field names exempt from the coverage rule.
fn exempt(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    // `awsaccesskeyid` and `signature`: the signing fields of a Signature Version 2 form.
    matches!(
        n.as_str(),
        "x-amz-signature" | "file" | "policy" | "awsaccesskeyid" | "signature"
    ) || n.starts_with("x-ignore-")
}

/// Checks every field condition, then that every form field is covered by one
/// (content-length-range is checked with the file's size, [`check_size`]).
pub fn check_fields(policy: &Policy, form: &FormView<'_>) -> Result<(), PostError> {
    for c in &policy.conditions {
        let Condition::Field {
            matcher,
            field,
            value,
            ..
        } = c
        else {
            continue;
        };
        let Some(name) = field.strip_prefix('$') else {
            return Err(failed(c));
        };
        let name = name.to_ascii_lowercase();
        let Some(actual) = form.value(&name) else {
            return Err(failed(c));
        };
        let ok = match matcher {
            Matcher::Eq => actual == *value,
            // A Content-Type may list several types; each must match.
            Matcher::StartsWith if name == "content-type" => actual
                .split(',')
                .all(|t| t.trim_start().starts_with(value.as_str())),
            Matcher::StartsWith => actual.starts_with(value.as_str()),
        };
        if !ok {
            return Err(failed(c));
        }
    }
    let covered: Vec<String> = policy
        .conditions
        .iter()
        .filter_map(Condition::field_name)
        .collect();
    for (name, _) in form.fields {
        if exempt(name) || covered.iter().any(|c| c.eq_ignore_ascii_case(name)) {
            continue;
        }
        return Err(PostError::new(
            http::StatusCode::FORBIDDEN,
            "AccessDenied",
            format!("Invalid according to Policy: Extra input fields: {name}"),
        ));
    }
    Ok(())
}

/// Checks the file's size against every content-length-range condition.
pub fn check_size(policy: &Policy, size: u64) -> Result<(), PostError> {
    for c in &policy.conditions {
        let Condition::Range { min, max, .. } = c else {
            continue;
        };
        let (Some(min), Some(max)) = (min, max) else {
            return Err(failed(c));
        };
        let size_i = i128::from(size);
        if size_i > i128::from(*max) {
            return Err(PostError::new(
                http::StatusCode::BAD_REQUEST,
                "EntityTooLarge",
                "Your proposed upload exceeds the maximum allowed size",
            )
            .with("ProposedSize", size.to_string())
            .with("MaxSizeAllowed", max.to_string()));
        }
        if size_i < i128::from(*min) {
            return Err(PostError::new(
                http::StatusCode::BAD_REQUEST,
                "EntityTooSmall",
                "Your proposed upload is smaller than the minimum allowed size",
            )
            .with("ProposedSize", size.to_string())
            .with("MinSizeAllowed", min.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_content_length_bounds_are_numbers() {
        let range = |min: i64, max: i64| Policy {
            expiration: time::OffsetDateTime::now_utc(),
            conditions: vec![Condition::Range {
                min: Some(min),
                max: Some(max),
                printed: String::new(),
            }],
        };
        // [-1, 0]: a 3-byte file is too large (what s3-tests expects, as MinIO, RGW).
        let e = check_size(&range(-1, 0), 3).unwrap_err();
        assert_eq!(e.code, "EntityTooLarge");
        // [-1, 10]: a file inside the range is accepted.
        assert!(check_size(&range(-1, 10), 3).is_ok());
        // A negative maximum refuses every file.
        assert_eq!(
            check_size(&range(0, -5), 0).unwrap_err().code,
            "EntityTooLarge"
        );
    }

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    #[test]
    fn signatures_reproduce_the_aws_and_botocore_vectors() {
        // botocore-shaped policy (research spec §3.5).
        let b64 = "eyJleHBpcmF0aW9uIjogIjIwMTUtMTItMjlUMDE6MDA6MDBaIiwgImNvbmRpdGlvbnMiOiBbeyJidWNrZXQiOiAic2lndjRleGFtcGxlYnVja2V0In0sIHsia2V5IjogInVzZXIvdXNlcjEvcGhvdG8uanBnIn0sIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwgeyJ4LWFtei1jcmVkZW50aWFsIjogIkFLSUFJT1NGT0ROTjdFWEFNUExFLzIwMTUxMjI5L3VzLWVhc3QtMS9zMy9hd3M0X3JlcXVlc3QifSwgeyJ4LWFtei1kYXRlIjogIjIwMTUxMjI5VDAwMDAwMFoifV19";
        assert_eq!(
            signature(SECRET, "20151229", "us-east-1", "s3", b64),
            "3364624b39010d9b06f5d9b8c9a18a6e478d261c048159c92f2fd6fa885f14e6"
        );
        let p = Policy::decode(b64).unwrap();
        assert_eq!(p.conditions.len(), 5);
        assert_eq!(p.expiration.unix_timestamp(), 1_451_350_800);
        assert!(signatures_match("ab", "ab") && !signatures_match("ab", "ac"));
    }

    #[test]
    fn credentials_name_s3_and_a_date() {
        let c = Credential::parse("AKID/20151229/us-east-1/s3/aws4_request").unwrap();
        assert_eq!(
            (c.access_key, c.date, c.region),
            ("AKID", "20151229", "us-east-1")
        );
        for bad in [
            "AKID/20151229/us-east-1/kms/aws4_request",
            "AKID/2015122/us-east-1/s3/aws4_request",
            "AKID/20151229/us-east-1/s3/aws4",
            "AKID/20151229/s3/aws4_request",
            "/20151229/us-east-1/s3/aws4_request",
        ] {
            assert!(Credential::parse(bad).is_none(), "{bad}");
        }
    }

    fn b64(json: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(json)
    }

    fn code(r: Result<Policy, PostError>) -> (String, String) {
        let e = r.unwrap_err();
        (e.code.to_string(), e.message)
    }

    #[test]
    fn malformed_policies_are_invalid_policy_documents() {
        let (c, m) = code(Policy::decode(&b64("not json")));
        assert_eq!(
            (c.as_str(), m.as_str()),
            ("InvalidPolicyDocument", "Invalid Policy: Invalid JSON.")
        );
        let (_, m) = code(Policy::decode(&b64(
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": "1", "b": "2"}]}"#,
        )));
        assert_eq!(
            m,
            "Invalid Policy: Invalid Simple-Condition: Simple-Conditions must have exactly one property specified."
        );
        let (_, m) = code(Policy::decode(&b64(
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"a": 1}]}"#,
        )));
        assert_eq!(
            m,
            "Invalid Policy: Invalid Simple-Condition: value must be a string."
        );
        let (_, m) = code(Policy::decode(&b64(
            r#"{"expiration": "2030-01-01 00:00:00+00:00", "conditions": []}"#,
        )));
        assert_eq!(
            m,
            "Invalid Policy: Invalid 'expiration' value: '2030-01-01 00:00:00+00:00'"
        );
        for doc in [
            r#"{"conditions": []}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z"}"#,
            r#"{"EXPIRATION": "2030-01-01T00:00:00Z", "conditions": []}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{}]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["between", "$a", "b"]]}"#,
            r#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "$a"]]}"#,
        ] {
            assert_eq!(
                code(Policy::decode(&b64(doc))).0,
                "InvalidPolicyDocument",
                "{doc}"
            );
        }
        assert!(
            Policy::decode(&b64(
                r#"{"expiration": "2030-01-01T00:00:00.000Z", "conditions": []}"#
            ))
            .is_ok()
        );
        assert_eq!(code(Policy::decode("%%%")).0, "InvalidPolicyDocument");
    }

    fn check(conditions: &str, fields: &[(&str, &str)]) -> Result<(), String> {
        let p = Policy::decode(&b64(&format!(
            r#"{{"expiration": "2030-01-01T00:00:00Z", "conditions": {conditions}}}"#
        )))
        .unwrap();
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_fields(
            &p,
            &FormView {
                fields: &fields,
                bucket: "bkt",
            },
        )
        .map_err(|e| e.message)
    }

    #[test]
    fn conditions_match_values_exactly_and_names_without_case() {
        assert_eq!(
            check(
                r#"[{"bucket": "bkt"}, ["starts-with", "$Key", "user/"]]"#,
                &[("key", "user/a")]
            ),
            Ok(())
        );
        assert_eq!(
            check(r#"[["starts-with", "$key", "User/"]]"#, &[("key", "user/a")]),
            Err(r#"Invalid according to Policy: Policy Condition failed: ["starts-with", "$key", "User/"]"#.into())
        );
        assert_eq!(
            check(r#"[{"bucket": "other"}]"#, &[]),
            Err(r#"Invalid according to Policy: Policy Condition failed: ["eq", "$bucket", "other"]"#.into())
        );
        // No `$`: never holds.
        assert!(check(r#"[["eq", "key", "k"]]"#, &[("key", "k")]).is_err());
        // A field the form lacks fails even `starts-with ""`.
        assert!(check(r#"[["starts-with", "$x-amz-meta-a", ""]]"#, &[]).is_err());
        assert_eq!(
            check(
                r#"[["starts-with", "$x-amz-meta-a", ""]]"#,
                &[("X-Amz-Meta-A", "")]
            ),
            Ok(())
        );
        // Operation names without case; Content-Type lists.
        assert_eq!(
            check(
                r#"[["StArTs-WiTh", "$Content-Type", "image/"]]"#,
                &[("content-type", "image/jpg, image/png")]
            ),
            Ok(())
        );
        assert!(
            check(
                r#"[["starts-with", "$content-type", "image/"]]"#,
                &[("content-type", "image/jpg,text/html")]
            )
            .is_err()
        );
        // Repeated fields are joined with commas.
        assert_eq!(
            check(
                r#"[{"x-amz-meta-t": "a,b"}]"#,
                &[("x-amz-meta-t", "a"), ("x-amz-meta-t", "b")]
            ),
            Ok(())
        );
    }

    #[test]
    fn every_field_but_the_exempt_ones_needs_a_condition() {
        assert_eq!(
            check(
                r#"[{"key": "k"}]"#,
                &[
                    ("key", "k"),
                    ("Policy", "p"),
                    ("X-Amz-Signature", "s"),
                    ("file", ""),
                    ("x-ignore-me", "1")
                ]
            ),
            Ok(())
        );
        assert_eq!(
            check(r#"[{"key": "k"}]"#, &[("key", "k"), ("acl", "public-read")]),
            Err("Invalid according to Policy: Extra input fields: acl".into())
        );
    }

    #[test]
    fn content_length_range_bounds_are_inclusive_and_numeric() {
        let p = |c: &str| {
            Policy::decode(&b64(&format!(
                r#"{{"expiration": "2030-01-01T00:00:00Z", "conditions": [{c}]}}"#
            )))
            .unwrap()
        };
        let r = p(r#"["content-length-range", 5, 10]"#);
        assert!(check_size(&r, 5).is_ok() && check_size(&r, 10).is_ok());
        let e = check_size(&r, 11).unwrap_err();
        assert_eq!(
            (e.code.as_str(), e.status.as_u16()),
            ("EntityTooLarge", 400)
        );
        assert!(e.extras.contains(&("MaxSizeAllowed", "10".into())));
        assert_eq!(check_size(&r, 4).unwrap_err().code, "EntityTooSmall");
        assert!(check_size(&p(r#"["content-length-range", "5", "10"]"#), 7).is_ok());
        let e = check_size(&p(r#"["content-length-range", "test", "10"]"#), 7).unwrap_err();
        assert_eq!(
            e.message,
            r#"Invalid according to Policy: Policy Condition failed: ["content-length-range", "test", "10"]"#
        );
        assert_eq!(e.status.as_u16(), 403);
    }
}
