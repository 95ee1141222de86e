//! The HTTP client behind OTLP over HTTP/protobuf: the workspace's async reqwest, driven on the
//! Tokio runtime the exporter was built in. The SDK's batch processor exports from its own
//! thread, outside any runtime, and reqwest's connections need the runtime's reactor, so each
//! export is spawned onto the runtime and its result awaited from the processor thread.

use bytes::Bytes;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};

/// Collector responses are tiny (an `ExportTraceServiceResponse`); anything larger is not a
/// collector and is not buffered.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct RuntimeReqwest {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl RuntimeReqwest {
    /// Must be called inside a Tokio runtime; exports run on it.
    pub fn current(timeout: std::time::Duration) -> Result<Self, String> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "OTLP over HTTP needs a Tokio runtime".to_owned())?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeReqwest {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let request = reqwest::Request::try_from(request)?;
        let task = self.runtime.spawn(async move {
            let mut response = client.execute(request).await?;
            let mut out = Response::builder().status(response.status());
            if let Some(headers) = out.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err::<_, HttpError>("OTLP collector response too large".into());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(out.body(Bytes::from(body))?)
        });
        task.await?
    }
}
