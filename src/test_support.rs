//! Helpers shared by the unit tests under `src/` (compiled for tests only).

use http::HeaderMap;

use crate::error::Error;
use crate::object::{Alg, Envelope};
use crate::s3::request::{Classified, Request};

/// Owned `(name, value)` pairs, collected into what the test needs: a query, form
/// fields, an encryption context.
pub fn pairs<C: FromIterator<(String, String)>>(p: &[(&str, &str)]) -> C {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A header map of `p` (a name given twice keeps both values).
pub fn headers(p: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in p {
        h.append(
            http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

/// A request as the S3 front parses it (`Host: localhost`), with its headers.
pub fn s3_request(
    method: &str,
    uri: &str,
    headers_: &[(&str, &str)],
    tls: bool,
) -> (Result<Request, Error>, HeaderMap) {
    let mut h = headers(headers_);
    h.insert("host", "localhost".parse().unwrap());
    let c = Classified::of(&method.parse().unwrap(), &uri.parse().unwrap(), &h, None).unwrap();
    (Request::parse(c.op.unwrap(), c.target, &h, tls), h)
}

/// An SSE-S3 envelope whose fields do not matter to the test.
pub fn envelope() -> Envelope {
    Envelope {
        alg: Alg::S3,
        key_ref: "k".into(),
        wrapped: vec![1],
        backend: None,
        bk_salt: None,
        context: Default::default(),
        bucket_key: false,
        customer: None,
    }
}
