//! The gateway's hyper carries a patch (vendor/README.md): a handler that reads its request
//! body must not wake the connection task it runs in. On hyper 1.12.0 as published it did, once
//! per request, and tokio answered each such self-wake by waking an idle worker to steal the
//! task. The connection is polled by hand here with a waker that counts, so a stray wake-up
//! is seen directly instead of through timing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Wake, Waker};

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A connection whose handler, as the gateway's do, collects the body inside the
/// connection's task and answers with it.
fn echo_connection(server: DuplexStream) -> impl Future<Output = Result<(), hyper::Error>> {
    let service = service_fn(|request: Request<Incoming>| async move {
        let read = request.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>(Response::new(Full::new(read)))
    });
    http1::Builder::new().serve_connection(TokioIo::new(server), service)
}

/// Polls the connection once with `waker`; it must then wait for more input.
fn poll_once<F: Future>(connection: Pin<&mut F>, waker: &Waker) {
    assert!(
        connection
            .poll(&mut Context::from_waker(waker))
            .is_pending()
    );
}

async fn answer(client: &mut DuplexStream) -> String {
    let mut answer = vec![0u8; 4096];
    let n = client.read(&mut answer).await.unwrap();
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

#[tokio::test]
async fn reading_a_request_body_does_not_wake_its_own_connection() {
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let body = r#"{"model":"a/b","messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /api/v1/chat/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    client.write_all(request.as_bytes()).await.unwrap();
    let mut connection = std::pin::pin!(echo_connection(server));
    let wakes = Arc::new(CountingWaker::default());
    // One poll reads the request, runs the handler (the whole body is already buffered) and
    // writes the answer; then the connection waits for the next request.
    poll_once(connection.as_mut(), &Waker::from(wakes.clone()));

    let answer = answer(&mut client).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with(body),
        "the handler read the whole body: {answer}"
    );
    assert_eq!(
        wakes.0.load(Ordering::SeqCst),
        0,
        "the connection's task was woken by its own handler reading the request body"
    );
}

#[tokio::test]
async fn a_body_still_arriving_wakes_the_connection_to_read_more() {
    // The other side of the patch: while the sender is open, taking an item still tells the
    // connection there is room for the next chunk.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    client
        .write_all(b"POST /x HTTP/1.1\r\nhost: gateway\r\ncontent-length: 10\r\n\r\nhello")
        .await
        .unwrap();
    let mut connection = std::pin::pin!(echo_connection(server));
    let wakes = Arc::new(CountingWaker::default());
    let waker = Waker::from(wakes.clone());
    poll_once(connection.as_mut(), &waker);
    assert!(
        wakes.0.load(Ordering::SeqCst) >= 1,
        "taking the first half of the body must make room for the second"
    );
    client.write_all(b"world").await.unwrap();
    poll_once(connection.as_mut(), &waker);
    let answer = answer(&mut client).await;
    assert!(answer.ends_with("helloworld"), "{answer}");
}
