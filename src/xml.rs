//! Small XML rewriting for store responses and client bodies (quick-xml events).
//!
//! Invariant: everything not rewritten is written back as read (namespaces, order,
//! unknown elements), so a rewrite never drops information the client would have had.

use bytes::Bytes;
use quick_xml::events::{BytesText, Event};

/// What to do with an element's text.
pub enum Edit {
    Keep,
    Replace(String),
}

/// Rewrites the text of elements: `f(path, text)` sees the element path (local names from
/// the root) and the unescaped text.
pub fn rewrite_text(
    xml: &[u8],
    mut f: impl FnMut(&[String], &str) -> Edit,
) -> Result<Bytes, String> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut writer = quick_xml::Writer::new(Vec::with_capacity(xml.len() + 64));
    let mut path: Vec<String> = Vec::new();
    loop {
        let ev = reader.read_event().map_err(|e| e.to_string())?;
        match ev {
            Event::Eof => break,
            Event::Start(ref s) => {
                path.push(String::from_utf8_lossy(s.local_name().as_ref()).into_owned());
                writer.write_event(ev).map_err(|e| e.to_string())?;
            }
            Event::End(_) => {
                path.pop();
                writer.write_event(ev).map_err(|e| e.to_string())?;
            }
            Event::Text(ref t) => {
                let text = t.unescape().map_err(|e| e.to_string())?.into_owned();
                match f(&path, &text) {
                    Edit::Keep => writer.write_event(ev).map_err(|e| e.to_string())?,
                    Edit::Replace(new) => writer
                        .write_event(Event::Text(BytesText::new(&new)))
                        .map_err(|e| e.to_string())?,
                }
            }
            other => writer.write_event(other).map_err(|e| e.to_string())?,
        }
    }
    Ok(Bytes::from(writer.into_inner()))
}

/// The `<Error><Code>` of an S3 error body, if it is one.
pub fn error_code(xml: &str) -> Option<String> {
    texts(xml.as_bytes(), &["Error", "Code"])
        .ok()?
        .into_iter()
        .next()
}

/// Collects the text of every element whose path ends with `suffix`.
pub fn texts(xml: &[u8], suffix: &[&str]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    rewrite_text(xml, |path, text| {
        if path.len() >= suffix.len()
            && path[path.len() - suffix.len()..]
                .iter()
                .zip(suffix)
                .all(|(a, b)| a == b)
        {
            out.push(text.to_string());
        }
        Edit::Keep
    })?;
    Ok(out)
}

/// `xml` with `text` inserted before its last `</element>` (an element S3 adds to an
/// answer the store wrote); unchanged when there is no such tag.
pub fn insert_before_close(xml: Bytes, element: &str, text: &str) -> Bytes {
    let close = format!("</{element}>");
    let Some(at) = xml
        .windows(close.len())
        .rposition(|w| w == close.as_bytes())
    else {
        return xml;
    };
    let mut out = Vec::with_capacity(xml.len() + text.len());
    out.extend_from_slice(&xml[..at]);
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&xml[at..]);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_named_text_changes() {
        let xml = br#"<?xml version="1.0" encoding="UTF-8"?><R xmlns="x"><A>1</A><B>two &amp; more</B><A>3</A></R>"#;
        let out = rewrite_text(xml, |p, t| {
            if p.last().map(String::as_str) == Some("A") {
                Edit::Replace(format!("{t}0"))
            } else {
                Edit::Keep
            }
        })
        .unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"<?xml version="1.0" encoding="UTF-8"?><R xmlns="x"><A>10</A><B>two &amp; more</B><A>30</A></R>"#
        );
        assert_eq!(texts(xml, &["R", "A"]).unwrap(), vec!["1", "3"]);
    }
}
