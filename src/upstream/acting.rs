//! Per-request store credentials: a client access key may carry its own credential for the
//! store, so that the store enforces its own permissions per user. The S3 front runs each
//! request of such a key inside [`acting_as`]; [`super::Upstream::send`] then signs with
//! that key's [`Signer`] instead of the shared one.
//!
//! Invariants: requests to sealgate's own state bucket are always signed with the shared
//! credential (the state bucket is sealgate's, not the user's, and a user's store key
//! need not reach it); outside a request (readiness probes, background work, tasks a
//! handler spawns) the shared credential signs; a response body that is still streaming
//! keeps its request's credential ([`ActingBody`]), so a store request made while the
//! body is polled is signed as the request's own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::sign::Signer;

#[derive(Clone, Debug)]
struct Acting {
    signer: Arc<Signer>,
    /// sealgate's own bucket: always signed with the shared credential.
    own_bucket: Arc<str>,
}

tokio::task_local! {
    static ACTING: Acting;
}

/// The credential one request acts with, to carry into the request's response body.
#[derive(Clone, Debug)]
pub struct ActingAs(Acting);

impl ActingAs {
    pub fn new(signer: Arc<Signer>, own_bucket: &str) -> Self {
        ActingAs(Acting {
            signer,
            own_bucket: Arc::from(own_bucket),
        })
    }

    /// Runs `f` with store requests to buckets other than `own_bucket` signed by this
    /// credential.
    pub async fn run<F: Future>(&self, f: F) -> F::Output {
        ACTING.scope(self.0.clone(), f).await
    }

    /// `body`, polled with this credential in force.
    pub fn body<B>(&self, body: B) -> ActingBody<B> {
        ActingBody {
            inner: body,
            acting: self.0.clone(),
        }
    }
}

/// The signer for a store request to `bucket` made now: the acting credential of the
/// current request, unless the request is for sealgate's own bucket or there is none.
pub(super) fn signer_for(bucket: Option<&str>) -> Option<Arc<Signer>> {
    ACTING
        .try_with(|a| (bucket != Some(&*a.own_bucket)).then(|| a.signer.clone()))
        .ok()
        .flatten()
}

pin_project_lite::pin_project! {
    /// A body whose every poll runs with a request's store credential.
    pub struct ActingBody<B> {
        #[pin]
        inner: B,
        acting: Acting,
    }
}

impl<B: http_body::Body> http_body::Body for ActingBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let acting = this.acting.clone();
        let inner = this.inner;
        ACTING.sync_scope(acting, || inner.poll_frame(cx))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_acting_credential_applies_inside_the_scope_except_for_the_own_bucket() {
        let s = Arc::new(Signer::new("GKbob", "bob-secret", "garage"));
        assert!(signer_for(Some("b")).is_none(), "outside a request");
        let acting = ActingAs::new(s.clone(), "sealgate-state");
        acting
            .run(async {
                assert!(signer_for(Some("b")).is_some());
                assert!(signer_for(None).is_some(), "ListBuckets is the user's");
                assert!(signer_for(Some("sealgate-state")).is_none());
                // A task the handler spawns is not the request.
                let spawned = tokio::spawn(async { signer_for(Some("b")).is_none() });
                assert!(spawned.await.unwrap());
            })
            .await;
        assert!(signer_for(Some("b")).is_none());
    }

    #[tokio::test]
    async fn a_streaming_body_keeps_its_credential() {
        use http_body_util::BodyExt;
        struct Probe;
        impl http_body::Body for Probe {
            type Data = bytes::Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
                Poll::Ready(signer_for(Some("b")).map(|_| Ok(http_body::Frame::data("x".into()))))
            }
        }
        let acting = ActingAs::new(Arc::new(Signer::new("GKbob", "s", "r")), "state");
        let mut body = acting.body(Probe);
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "x");
    }
}
