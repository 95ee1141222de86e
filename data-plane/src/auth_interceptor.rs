//! Adds the node token to every gRPC call to the control plane.

use std::fmt;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;

#[derive(Clone)]
pub struct NodeAuth {
    header: AsciiMetadataValue,
}

impl NodeAuth {
    pub fn new(token: &str) -> Result<Self, crate::GatewayError> {
        let header = format!("Bearer {token}").parse().map_err(|_| {
            crate::GatewayError::Config("the node token must be printable ASCII".into())
        })?;
        Ok(Self { header })
    }
}

impl fmt::Debug for NodeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NodeAuth(***)")
    }
}

impl Interceptor for NodeAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.header.clone());
        Ok(request)
    }
}
