//! A bucket's CORS configuration (the `CORSConfiguration` XML of Get/PutBucketCors) and
//! how S3 evaluates it (research spec §4.2, §4.3): the first rule whose origin, method
//! and requested headers all match decides, and the response headers follow from it.
//!
//! Invariants: origins and methods compare with case, header names without; a `*` in an
//! origin or header pattern matches any run of characters; a rule without
//! `AllowedHeader` matches no request that asks for headers. Evaluation never grants
//! access: it only decides which `Access-Control-*` headers a response carries.

use http::{HeaderMap, HeaderValue};
use quick_xml::events::Event;

/// One `CORSRule`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rule {
    pub origins: Vec<String>,
    pub methods: Vec<String>,
    pub headers: Vec<String>,
    pub expose: Vec<String>,
    pub max_age: Option<u64>,
}

/// A bucket's rules, in configuration order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub rules: Vec<Rule>,
}

impl Config {
    /// Parses a `CORSConfiguration` document (as the store returns it).
    pub fn from_xml(xml: &[u8]) -> Result<Config, String> {
        let mut r = quick_xml::Reader::from_reader(xml);
        let mut path: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        let mut rule: Option<Rule> = None;
        loop {
            match r.read_event().map_err(|e| e.to_string())? {
                Event::Start(s) => {
                    let name = String::from_utf8_lossy(s.local_name().as_ref()).into_owned();
                    if name == "CORSRule" {
                        rule = Some(Rule::default());
                    }
                    path.push(name);
                }
                Event::End(_) => {
                    let closed = path.pop();
                    if closed.as_deref() == Some("CORSRule") {
                        rules.extend(rule.take());
                    }
                }
                Event::Text(t) => {
                    let v = t.unescape().map_err(|e| e.to_string())?.trim().to_string();
                    let Some(rule) = rule.as_mut() else {
                        continue;
                    };
                    match path.last().map(String::as_str) {
                        Some("AllowedOrigin") => rule.origins.push(v),
                        Some("AllowedMethod") => rule.methods.push(v),
                        Some("AllowedHeader") => rule.headers.push(v),
                        Some("ExposeHeader") => rule.expose.push(v),
                        Some("MaxAgeSeconds") => {
                            rule.max_age =
                                Some(v.parse().map_err(|_| format!("MaxAgeSeconds {v}"))?)
                        }
                        _ => {}
                    }
                }
                Event::Eof if path.is_empty() => break,
                Event::Eof => return Err("the document ends inside an element".into()),
                _ => {}
            }
        }
        Ok(Config { rules })
    }

    /// The first rule that allows `ask`.
    pub fn matching(&self, ask: &Ask) -> Option<&Rule> {
        self.rules.iter().find(|r| r.allows(ask))
    }
}

/// What a cross-origin request asks for: its `Origin`, the method (the preflight's
/// `Access-Control-Request-Method`, or the request's own) and the headers it names in
/// `Access-Control-Request-Headers` (lowercase, in request order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub origin: String,
    pub method: String,
    /// `None`: no `Access-Control-Request-Headers` header.
    pub headers: Option<Vec<String>>,
}

impl Ask {
    /// The ask of a request: `None` without an `Origin` header. `method` is the request's
    /// method; an `Access-Control-Request-Method` header, when present, is evaluated
    /// instead (as S3 does, on preflights and actual requests alike).
    pub fn of(method: &str, h: &HeaderMap) -> Option<Ask> {
        let origin = h.get(http::header::ORIGIN)?.to_str().ok()?.to_string();
        let method = match h.get(http::header::ACCESS_CONTROL_REQUEST_METHOD) {
            Some(v) => v.to_str().unwrap_or_default().trim().to_string(),
            None => method.to_string(),
        };
        let headers = request_headers(h);
        Some(Ask {
            origin,
            method,
            headers,
        })
    }
}

/// The names in `Access-Control-Request-Headers`, trimmed and lowercased.
pub fn request_headers(h: &HeaderMap) -> Option<Vec<String>> {
    let mut seen = false;
    let mut out = Vec::new();
    for v in h.get_all(http::header::ACCESS_CONTROL_REQUEST_HEADERS) {
        seen = true;
        out.extend(
            v.to_str()
                .unwrap_or_default()
                .split(',')
                .map(|n| n.trim().to_ascii_lowercase())
                .filter(|n| !n.is_empty()),
        );
    }
    seen.then_some(out)
}

/// Whether `text` matches `pattern`, in which `*` stands for any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    let Some((head, rest)) = pattern.split_once('*') else {
        return pattern == text;
    };
    let Some(mut t) = text.strip_prefix(head) else {
        return false;
    };
    let mut pieces: Vec<&str> = rest.split('*').collect();
    let last = pieces.pop().unwrap_or_default();
    for p in pieces {
        match t.find(p) {
            Some(i) => t = &t[i + p.len()..],
            None => return false,
        }
    }
    t.len() >= last.len() && t.ends_with(last)
}

impl Rule {
    fn allows(&self, ask: &Ask) -> bool {
        let origin = self.origins.iter().any(|o| glob(o, &ask.origin));
        let method = self.methods.contains(&ask.method);
        let headers = match &ask.headers {
            None => true,
            Some(asked) => asked.iter().all(|a| {
                self.headers
                    .iter()
                    .any(|h| glob(&h.to_ascii_lowercase(), a))
            }),
        };
        origin && method && headers
    }

    /// The `Access-Control-*` headers (and `Vary`) a response to `ask` carries.
    pub fn response_headers(&self, ask: &Ask) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut set = |name: http::HeaderName, v: &str| {
            if let Ok(v) = HeaderValue::from_str(v) {
                h.insert(name, v);
            }
        };
        use http::header as n;
        if self.origins.iter().any(|o| o == "*") {
            set(n::ACCESS_CONTROL_ALLOW_ORIGIN, "*");
        } else {
            set(n::ACCESS_CONTROL_ALLOW_ORIGIN, &ask.origin);
            set(n::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        set(n::ACCESS_CONTROL_ALLOW_METHODS, &self.methods.join(", "));
        if let Some(asked) = &ask.headers {
            set(n::ACCESS_CONTROL_ALLOW_HEADERS, &asked.join(", "));
        }
        if !self.expose.is_empty() {
            set(n::ACCESS_CONTROL_EXPOSE_HEADERS, &self.expose.join(", "));
        }
        if let Some(age) = self.max_age {
            set(n::ACCESS_CONTROL_MAX_AGE, &age.to_string());
        }
        set(
            n::VARY,
            "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
        );
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<CORSConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <CORSRule><ID>uploads</ID>
    <AllowedOrigin>http://127.0.0.1:8080</AllowedOrigin><AllowedOrigin>http://*.example.com</AllowedOrigin>
    <AllowedMethod>PUT</AllowedMethod><AllowedMethod>POST</AllowedMethod>
    <AllowedHeader>x-AMZ-*</AllowedHeader><AllowedHeader>content-type</AllowedHeader>
    <ExposeHeader>ETag</ExposeHeader><ExposeHeader>x-amz-version-id</ExposeHeader>
    <MaxAgeSeconds>3000</MaxAgeSeconds>
  </CORSRule>
  <CORSRule><AllowedOrigin>*</AllowedOrigin><AllowedMethod>GET</AllowedMethod><AllowedMethod>HEAD</AllowedMethod></CORSRule>
</CORSConfiguration>"#;

    fn ask(origin: &str, method: &str, headers: Option<&[&str]>) -> Ask {
        Ask {
            origin: origin.into(),
            method: method.into(),
            headers: headers.map(|h| h.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn configurations_parse_in_order() {
        let c = Config::from_xml(XML.as_bytes()).unwrap();
        assert_eq!(c.rules.len(), 2);
        assert_eq!(c.rules[0].methods, ["PUT", "POST"]);
        assert_eq!(c.rules[0].expose, ["ETag", "x-amz-version-id"]);
        assert_eq!(c.rules[0].max_age, Some(3000));
        assert_eq!(c.rules[1].origins, ["*"]);
        assert!(Config::from_xml(b"<CORSConfiguration><CORSRule>").is_err());
    }

    #[test]
    fn the_first_rule_matching_origin_method_and_headers_wins() {
        let c = Config::from_xml(XML.as_bytes()).unwrap();
        let put = ask(
            "http://127.0.0.1:8080",
            "PUT",
            Some(&["x-amz-meta-a", "content-type"]),
        );
        assert_eq!(c.matching(&put), Some(&c.rules[0]));
        // Exact origins: another port, a trailing slash or another scheme do not match.
        for o in [
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8080/",
            "https://127.0.0.1:8080",
        ] {
            assert_eq!(c.matching(&ask(o, "PUT", None)), None, "{o}");
        }
        assert!(
            c.matching(&ask("http://a.b.example.com", "POST", None))
                .is_some()
        );
        assert!(
            c.matching(&ask("http://example.com", "POST", None))
                .is_none()
        );
        // A header no AllowedHeader covers.
        assert!(
            c.matching(&ask(
                "http://127.0.0.1:8080",
                "PUT",
                Some(&["authorization"])
            ))
            .is_none()
        );
        // Methods compare with case.
        assert!(
            c.matching(&ask("http://127.0.0.1:8080", "put", None))
                .is_none()
        );
        // The catch-all GET rule, but not with requested headers (it allows none).
        assert_eq!(
            c.matching(&ask("http://any.where", "GET", None)),
            Some(&c.rules[1])
        );
        assert!(
            c.matching(&ask("http://any.where", "GET", Some(&["range"])))
                .is_none()
        );
        assert!(
            c.matching(&ask("http://any.where", "DELETE", None))
                .is_none()
        );
    }

    #[test]
    fn response_headers_echo_or_star_the_origin() {
        let c = Config::from_xml(XML.as_bytes()).unwrap();
        let a = ask(
            "http://127.0.0.1:8080",
            "PUT",
            Some(&["x-amz-meta-a", "content-type"]),
        );
        let h = c.rules[0].response_headers(&a);
        assert_eq!(h["access-control-allow-origin"], "http://127.0.0.1:8080");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-methods"], "PUT, POST");
        assert_eq!(
            h["access-control-allow-headers"],
            "x-amz-meta-a, content-type"
        );
        assert_eq!(h["access-control-expose-headers"], "ETag, x-amz-version-id");
        assert_eq!(h["access-control-max-age"], "3000");
        assert!(h["vary"].to_str().unwrap().starts_with("Origin"));
        let h = c.rules[1].response_headers(&ask("http://x", "GET", None));
        assert_eq!(h["access-control-allow-origin"], "*");
        assert!(h.get("access-control-allow-credentials").is_none());
        assert!(h.get("access-control-allow-headers").is_none());
        assert!(h.get("access-control-max-age").is_none());
    }

    #[test]
    fn wildcards_match_any_run_including_none() {
        assert!(glob("start*end", "startend") && glob("start*end", "start12end"));
        assert!(!glob("start*end", "0start12end"));
        assert!(glob("prefix*", "prefix") && glob("prefix*", "prefix.suffix"));
        assert!(!glob("prefix*", "bla.prefix"));
        assert!(glob("*suffix", "foo.suffix") && glob("*", ""));
        assert!(glob("a*b*c", "a-b-c") && !glob("a*b*c", "a-c-b"));
    }

    #[test]
    fn asks_come_from_origin_and_the_request_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(Ask::of("GET", &h), None);
        h.insert("origin", "http://o".parse().unwrap());
        h.insert("access-control-request-method", "PUT".parse().unwrap());
        h.insert(
            "access-control-request-headers",
            "X-Amz-Date , content-type".parse().unwrap(),
        );
        assert_eq!(
            Ask::of("OPTIONS", &h).unwrap(),
            ask("http://o", "PUT", Some(&["x-amz-date", "content-type"]))
        );
    }
}
