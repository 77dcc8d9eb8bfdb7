//! Paging through the store's listings (ListObjectsV2, ListObjectVersions, ListParts):
//! which query parameters carry the next page's markers, read from which elements of
//! the page before. The caller sends each page and decides what a failed page means.

use crate::xml::texts;

/// (query parameter of the next request, element of the page naming its value); the
/// first pair must be present on a truncated page, the others follow when present.
pub type Markers = &'static [(&'static str, &'static str)];

/// ListObjectsV2.
pub const OBJECTS_V2: Markers = &[("continuation-token", "NextContinuationToken")];
/// ListObjectVersions.
pub const VERSIONS: Markers = &[
    ("key-marker", "NextKeyMarker"),
    ("version-id-marker", "NextVersionIdMarker"),
];
/// ListParts.
pub const PARTS: Markers = &[("part-number-marker", "NextPartNumberMarker")];

/// Where a listing stands: before its first page, between pages, or done.
#[derive(Debug)]
pub struct Pager {
    markers: Markers,
    /// The markers of the next page; `None` before the first page.
    next: Option<Vec<(String, String)>>,
    done: bool,
}

impl Pager {
    pub fn new(markers: Markers) -> Pager {
        Pager {
            markers,
            next: None,
            done: false,
        }
    }

    /// Whether no page has been read yet.
    pub fn first(&self) -> bool {
        self.next.is_none()
    }

    /// The query of the next page: `base` and the markers the last page named. `None`
    /// once the last page was read.
    pub fn next_query(&self, base: &[(String, String)]) -> Option<Vec<(String, String)>> {
        if self.done {
            return None;
        }
        let mut q = base.to_vec();
        q.extend(self.next.iter().flatten().cloned());
        Some(q)
    }

    /// Reads a page's `IsTruncated` and next markers. A truncated page without its first
    /// marker, or naming the markers it was asked with, ends the listing: a store that
    /// does not advance must not make sealgate loop.
    pub fn read(&mut self, page: &[u8]) -> Result<(), String> {
        let truncated = texts(page, &["IsTruncated"])?;
        let mut next = Vec::new();
        for (param, element) in self.markers {
            if let Some(v) = texts(page, &[element])?.into_iter().next() {
                next.push((param.to_string(), v));
            } else if next.is_empty() {
                break;
            }
        }
        let advanced = !next.is_empty() && self.next.as_ref() != Some(&next);
        self.done = truncated.first().map(String::as_str) != Some("true") || !advanced;
        self.next = Some(next);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        crate::test_support::pairs(pairs)
    }

    #[test]
    fn pages_follow_their_markers_until_the_listing_is_complete() {
        let base = q(&[("versions", "")]);
        let mut p = Pager::new(VERSIONS);
        assert!(p.first());
        assert_eq!(p.next_query(&base), Some(base.clone()));
        p.read(b"<R><IsTruncated>true</IsTruncated><NextKeyMarker>a</NextKeyMarker><NextVersionIdMarker>v1</NextVersionIdMarker></R>").unwrap();
        assert!(!p.first());
        assert_eq!(
            p.next_query(&base),
            Some(q(&[
                ("versions", ""),
                ("key-marker", "a"),
                ("version-id-marker", "v1")
            ]))
        );
        p.read(b"<R><IsTruncated>true</IsTruncated><NextKeyMarker>b</NextKeyMarker></R>")
            .unwrap();
        assert_eq!(
            p.next_query(&base),
            Some(q(&[("versions", ""), ("key-marker", "b")]))
        );
        p.read(b"<R><IsTruncated>false</IsTruncated></R>").unwrap();
        assert_eq!(p.next_query(&base), None);
    }

    #[test]
    fn a_store_that_does_not_advance_ends_the_listing() {
        let mut p = Pager::new(OBJECTS_V2);
        let page = b"<R><IsTruncated>true</IsTruncated><NextContinuationToken>t</NextContinuationToken></R>";
        p.read(page).unwrap();
        assert!(p.next_query(&[]).is_some());
        p.read(page).unwrap();
        assert_eq!(p.next_query(&[]), None);
        let mut p = Pager::new(PARTS);
        p.read(b"<R><IsTruncated>true</IsTruncated></R>").unwrap();
        assert_eq!(p.next_query(&[]), None);
    }
}
