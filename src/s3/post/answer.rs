//! The answer to a stored form (research spec §3.6): 204, 200, 201 with a
//! `PostResponse`, or 303 to `success_action_redirect`, with the PUT's headers and the
//! object's `Location`.

use http::{HeaderMap, HeaderValue, Response, StatusCode};
use s3s::Body;

/// The object's URL: the bucket URL the form was posted to, plus the key (percent-encoded,
/// `/` included, as S3's `Location`).
pub fn object_location(parts: &http::request::Parts, key: &str, tls: bool) -> String {
    let host = parts
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let scheme = if tls { "https" } else { "http" };
    let path = parts.uri.path().trim_end_matches('/');
    format!(
        "{scheme}://{host}{path}/{}",
        crate::upstream::sign::uri_encode(key, false)
    )
}

/// `application/x-www-form-urlencoded` encoding of a query value.
fn form_encode(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'*');
    percent_encoding::utf8_percent_encode(s, SET)
        .to_string()
        .replace("%20", "+")
}

/// An absolute http(s) URL S3 can redirect to.
fn redirect_target(url: &str) -> Option<&str> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    (scheme_ok && uri.authority().is_some()).then_some(url)
}

/// The answer to a stored form (§3.6): 303 to `success_action_redirect`, else the
/// `success_action_status` (200, 201 with a `PostResponse`, or 204), with the PUT's
/// headers (ETag, SSE, version id, checksums) and `Location`.
pub fn success(
    put: HeaderMap,
    fields: &[(String, String)],
    bucket: &str,
    key: &str,
    location: &str,
) -> Response<Body> {
    let get = |n: &str| {
        fields
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let etag = put
        .get(http::header::ETAG)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut headers = put;
    headers.remove(http::header::CONTENT_LENGTH);
    headers.remove(http::header::CONTENT_TYPE);
    let set = |h: &mut HeaderMap, n: http::HeaderName, v: &str| {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(n, v);
        }
    };
    let redirect = get("success_action_redirect")
        .or_else(|| get("redirect"))
        .and_then(redirect_target);
    let (status, body) = if let Some(url) = redirect {
        let sep = if url.contains('?') { '&' } else { '?' };
        let to = format!(
            "{url}{sep}bucket={}&key={}&etag={}",
            form_encode(bucket),
            form_encode(key),
            form_encode(&etag)
        );
        set(&mut headers, http::header::LOCATION, &to);
        (StatusCode::SEE_OTHER, Body::empty())
    } else {
        set(&mut headers, http::header::LOCATION, location);
        match get("success_action_status") {
            Some("200") => (StatusCode::OK, Body::empty()),
            Some("201") => {
                let esc = |s: &str| quick_xml::escape::partial_escape(s).into_owned();
                let xml = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse><Location>{}</Location><Bucket>{}</Bucket><Key>{}</Key><ETag>{}</ETag></PostResponse>",
                    esc(location),
                    esc(bucket),
                    esc(key),
                    esc(&etag)
                );
                set(&mut headers, http::header::CONTENT_TYPE, "application/xml");
                (StatusCode::CREATED, Body::from(xml))
            }
            _ => (StatusCode::NO_CONTENT, Body::empty()),
        }
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(f: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::test_support::pairs(f)
    }

    #[test]
    fn success_answers_follow_success_action_fields() {
        let mut put = HeaderMap::new();
        put.insert("etag", "\"abc\"".parse().unwrap());
        put.insert("x-amz-server-side-encryption", "AES256".parse().unwrap());
        let loc = "http://h/b/a%2Fb";
        let r = success(put.clone(), &fields(&[]), "b", "a/b", loc);
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()["location"], loc);
        assert_eq!(r.headers()["x-amz-server-side-encryption"], "AES256");
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "404")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 204);
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "200")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 200);
        let r = success(
            put.clone(),
            &fields(&[("success_action_status", "201")]),
            "b",
            "a/b",
            loc,
        );
        assert_eq!(r.status(), 201);
        let r = success(
            put.clone(),
            &fields(&[("success_action_redirect", "https://app.example/done?x=1")]),
            "b",
            "a b/c",
            loc,
        );
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            "https://app.example/done?x=1&bucket=b&key=a+b%2Fc&etag=%22abc%22"
        );
        // A URL S3 cannot interpret: as if absent.
        let r = success(
            put,
            &fields(&[("success_action_redirect", "/relative")]),
            "b",
            "k",
            loc,
        );
        assert_eq!(r.status(), 204);
    }
}
