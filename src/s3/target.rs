//! Where a request points: bucket, key and query, from a path-style or
//! virtual-hosted-style request, fully decoded.

use http::{HeaderMap, Uri};
use percent_encoding::percent_decode_str;

use super::classify::Shape;

/// Virtual-hosted-style parsing for s3s: `BUCKET.<domain>[:port]` names a bucket; any
/// other host (an IP, `localhost:8014`, the bare domain) is path-style. Unlike s3s's
/// `SingleDomain`, the port is ignored and unknown hosts are not taken as bucket names.
#[derive(Debug, Clone)]
pub struct VirtualHosts {
    domain: String,
}

impl VirtualHosts {
    pub fn new(domain: &str) -> Self {
        Self {
            domain: domain.to_ascii_lowercase(),
        }
    }

    /// The bucket a Host header names, if it is virtual-hosted-style.
    pub fn bucket_of<'a>(&self, host: &'a str) -> Option<&'a str> {
        let host = strip_port(host);
        let b = host.strip_suffix(self.domain.as_str())?.strip_suffix('.')?;
        (!b.is_empty()).then_some(b)
    }
}

fn strip_port(host: &str) -> &str {
    host.rsplit_once(':')
        .filter(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        .map_or(host, |(h, _)| h)
}

impl s3s::host::S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> s3s::S3Result<s3s::host::VirtualHost<'a>> {
        Ok(match self.bucket_of(host) {
            Some(b) => s3s::host::VirtualHost::new(self.domain.as_str()).with_bucket(b),
            None => s3s::host::VirtualHost::new(strip_port(host)),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub shape: Shape,
    pub bucket: Option<String>,
    pub key: Option<String>,
    /// Decoded query pairs in request order (`?uploads` gives `("uploads", "")`).
    pub query: Vec<(String, String)>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct BadTarget;

fn decode(s: &str) -> Result<String, BadTarget> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| BadTarget)
}

/// Decodes a query string into pairs. `+` is kept literally (S3 clients encode spaces as `%20`).
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, BadTarget> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

impl Target {
    pub fn parse(
        uri: &Uri,
        headers: &HeaderMap,
        vhost_domain: Option<&str>,
    ) -> Result<Target, BadTarget> {
        let query = parse_query(uri.query().unwrap_or(""))?;
        let path = uri.path();
        let vhost_bucket = vhost_domain.and_then(|d| {
            let host = headers.get(http::header::HOST)?.to_str().ok()?;
            VirtualHosts::new(d).bucket_of(host).map(str::to_string)
        });
        let rest = path.strip_prefix('/').ok_or(BadTarget)?;
        let (bucket, key) = match vhost_bucket {
            Some(b) => (
                Some(b),
                if rest.is_empty() {
                    None
                } else {
                    Some(decode(rest)?)
                },
            ),
            None => {
                if rest.is_empty() {
                    (None, None)
                } else {
                    match rest.split_once('/') {
                        None => (Some(decode(rest)?), None),
                        Some((b, "")) => (Some(decode(b)?), None),
                        Some((b, k)) => (Some(decode(b)?), Some(decode(k)?)),
                    }
                }
            }
        };
        let shape = match (&bucket, &key) {
            (None, _) => Shape::Service,
            (Some(_), None) => Shape::Bucket,
            (Some(_), Some(_)) => Shape::Object,
        };
        Ok(Target {
            shape,
            bucket,
            key,
            query,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(uri: &str, host: &str, domain: Option<&str>) -> Target {
        let mut h = HeaderMap::new();
        h.insert("host", host.parse().unwrap());
        Target::parse(&uri.parse().unwrap(), &h, domain).unwrap()
    }

    #[test]
    fn path_style_requests_split_bucket_and_key() {
        let x = t(
            "/bkt/a/b%20c.txt?uploadId=x%2By&partNumber=2",
            "localhost:9000",
            None,
        );
        assert_eq!(x.shape, Shape::Object);
        assert_eq!(x.bucket.as_deref(), Some("bkt"));
        assert_eq!(x.key.as_deref(), Some("a/b c.txt"));
        assert_eq!(
            x.query,
            vec![
                ("uploadId".into(), "x+y".into()),
                ("partNumber".into(), "2".into())
            ]
        );
        assert_eq!(t("/bkt/", "h", None).shape, Shape::Bucket);
        assert_eq!(
            t("/bkt?uploads", "h", None).query,
            vec![("uploads".into(), String::new())]
        );
        assert_eq!(t("/", "h", None).shape, Shape::Service);
    }

    #[test]
    fn virtual_hosted_requests_take_the_bucket_from_the_host() {
        let x = t("/dir/key", "photos.s3.local:8014", Some("s3.local"));
        assert_eq!(x.bucket.as_deref(), Some("photos"));
        assert_eq!(x.key.as_deref(), Some("dir/key"));
        let y = t("/photos/key", "s3.local", Some("s3.local"));
        assert_eq!(y.bucket.as_deref(), Some("photos"));
        let z = t("/", "photos.s3.local", Some("s3.local"));
        assert_eq!(z.shape, Shape::Bucket);
    }

    #[test]
    fn a_key_with_a_trailing_slash_keeps_it() {
        assert_eq!(t("/b/dir/", "h", None).key.as_deref(), Some("dir/"));
    }
}
