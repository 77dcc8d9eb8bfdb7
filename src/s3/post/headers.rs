//! The PutObject headers a form stands for: only fields that stand for a PUT header
//! become one, so a field cannot smuggle a header that changes what the store does
//! (`x-amz-copy-source`, `content-length`, ...).

use http::{HeaderMap, HeaderName, HeaderValue};

use super::PostError;

/// Form fields that stand for a PutObject header of the same name.
const HEADER_FIELDS: &[&str] = &[
    "cache-control",
    "content-type",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
    "content-md5",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-server-side-encryption",
    "x-amz-server-side-encryption-aws-kms-key-id",
    "x-amz-server-side-encryption-context",
    "x-amz-server-side-encryption-bucket-key-enabled",
    "x-amz-server-side-encryption-customer-algorithm",
    "x-amz-server-side-encryption-customer-key",
    "x-amz-server-side-encryption-customer-key-md5",
];

/// S3's canned ACLs.
const CANNED_ACLS: &[&str] = &[
    "private",
    "public-read",
    "public-read-write",
    "aws-exec-read",
    "authenticated-read",
    "bucket-owner-read",
    "bucket-owner-full-control",
    "log-delivery-write",
];

/// A header value for a field: non-ASCII text as an RFC 2047 encoded word (as S3 returns
/// such metadata).
fn header_value(name: &str, v: &str) -> Result<HeaderValue, PostError> {
    let text = if v.is_ascii() {
        v.to_string()
    } else {
        use base64::Engine as _;
        format!(
            "=?UTF-8?B?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    };
    HeaderValue::from_str(&text).map_err(|_| {
        PostError::bad_request(
            "InvalidArgument",
            format!("The {name} field holds characters a header cannot carry."),
        )
        .with("ArgumentName", name.to_string())
    })
}

/// The headers of the PutObject a form stands for (`len`: the file's length).
pub fn put_headers(fields: &[(String, String)], len: u64) -> Result<HeaderMap, PostError> {
    let mut h = HeaderMap::new();
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in fields {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            continue;
        }
        seen.push(lower.clone());
        let value: Vec<&str> = fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&lower))
            .map(|(_, v)| v.as_str())
            .collect();
        let value = value.join(",");
        let header = if HEADER_FIELDS.contains(&lower.as_str()) || lower.starts_with("x-amz-meta-")
        {
            lower.clone()
        } else if lower == "acl" {
            if !CANNED_ACLS.contains(&value.as_str()) {
                return Err(PostError::bad_request("InvalidArgument", "")
                    .with("ArgumentName", "x-amz-acl".into())
                    .with("ArgumentValue", value));
            }
            "x-amz-acl".to_string()
        } else if lower == "tagging" {
            h.insert("x-amz-tagging", header_value("tagging", &tagging(&value)?)?);
            continue;
        } else {
            // Fields S3 does not store (signing fields, success_action_*, x-ignore-*,
            // anything else the policy allowed) are not headers.
            continue;
        };
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            PostError::bad_request("InvalidArgument", format!("Invalid field name: {name}"))
        })?;
        h.insert(name.clone(), header_value(name.as_str(), &value)?);
    }
    if !h.contains_key(http::header::CONTENT_TYPE) {
        h.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("binary/octet-stream"),
        );
    }
    h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    Ok(h)
}

/// The `tagging` field (`<Tagging><TagSet><Tag><Key/><Value/></Tag>...`) as the
/// `x-amz-tagging` header of a PUT (`k=v&k2=v2`, URL-encoded).
fn tagging(xml: &str) -> Result<String, PostError> {
    use quick_xml::events::Event;
    let malformed = || {
        PostError::bad_request(
            "MalformedXML",
            "The XML you provided was not well-formed or did not validate against our published schema",
        )
    };
    let mut r = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let (mut pairs, mut key, mut value) = (Vec::new(), None::<String>, None::<String>);
    let mut root = false;
    loop {
        match r.read_event().map_err(|_| malformed())? {
            Event::Start(s) => {
                let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                root |= path.is_empty();
                path.push(name);
            }
            Event::End(_) => {
                if path.last().map(String::as_str) == Some("Tag") {
                    match (key.take(), value.take()) {
                        (Some(k), v) => pairs.push((k, v.unwrap_or_default())),
                        _ => return Err(malformed()),
                    }
                }
                path.pop();
            }
            Event::Empty(s) => {
                root |= path.is_empty();
                if s.local_name().as_ref() == b"Value"
                    && path.last().map(String::as_str) == Some("Tag")
                {
                    value = Some(String::new());
                }
            }
            Event::Text(t) => {
                let v = t.unescape().map_err(|_| malformed())?.into_owned();
                let in_tag = path.len() >= 2 && path[path.len() - 2] == "Tag";
                match path.last().map(String::as_str) {
                    Some("Key") if in_tag => key = Some(v),
                    Some("Value") if in_tag => value = Some(v),
                    _ if v.trim().is_empty() => {}
                    _ if path.is_empty() => return Err(malformed()),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !root || !path.is_empty() {
        return Err(malformed());
    }
    let enc = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::test_support::pairs(f)
    }

    #[test]
    fn only_fields_that_stand_for_put_headers_become_headers() {
        let h = put_headers(
            &fields(&[
                ("key", "k"),
                ("Content-Type", "text/plain"),
                ("X-Amz-Meta-Color", "blue"),
                ("x-amz-meta-color", "green"),
                ("x-amz-meta-name", "caf\u{e9}"),
                ("x-amz-copy-source", "other/object"),
                ("x-amz-server-side-encryption", "aws:kms"),
                ("acl", "public-read"),
                ("success_action_status", "201"),
                ("policy", "p"),
            ]),
            42,
        )
        .unwrap();
        assert_eq!(h.get("content-type").unwrap(), "text/plain");
        assert_eq!(h.get("x-amz-meta-color").unwrap(), "blue,green");
        assert_eq!(h.get("x-amz-meta-name").unwrap(), "=?UTF-8?B?Y2Fmw6k=?=");
        assert_eq!(h.get("x-amz-server-side-encryption").unwrap(), "aws:kms");
        assert_eq!(h.get("x-amz-acl").unwrap(), "public-read");
        assert_eq!(h.get("content-length").unwrap(), "42");
        for absent in [
            "x-amz-copy-source",
            "key",
            "policy",
            "success_action_status",
        ] {
            assert!(h.get(absent).is_none(), "{absent}");
        }
        let h = put_headers(&fields(&[("key", "k")]), 0).unwrap();
        assert_eq!(h.get("content-type").unwrap(), "binary/octet-stream");
        assert_eq!(
            put_headers(&fields(&[("acl", "everyone")]), 0)
                .unwrap_err()
                .code,
            "InvalidArgument"
        );
        assert!(put_headers(&fields(&[("content-type", "a\r\nb")]), 0).is_err());
    }

    #[test]
    fn tagging_xml_becomes_the_tagging_header() {
        assert_eq!(
            tagging("<Tagging><TagSet><Tag><Key>a b</Key><Value>1&amp;2</Value></Tag><Tag><Key>c</Key><Value></Value></Tag></TagSet></Tagging>")
                .unwrap(),
            "a%20b=1%262&c="
        );
        assert_eq!(
            tagging("<InvalidXmlTagging></InvalidXmlTagging>").unwrap(),
            ""
        );
        assert_eq!(tagging("not-xml").unwrap_err().code, "MalformedXML");
        assert_eq!(
            tagging("<Tagging><TagSet>").unwrap_err().code,
            "MalformedXML"
        );
    }
}
