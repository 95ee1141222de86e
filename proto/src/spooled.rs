//! Shipping usage records in the encoding they were spooled in.
//!
//! `SpooledUsageBatch` is `UsageBatch` on the wire (an embedded message is length-delimited
//! bytes), so a gateway sends what its spool holds without decoding each record into a
//! `UsageRecord` and encoding it again, and the control plane reads plain `UsageBatch`es.

use tonic::codegen::http;

use crate::pb;

/// `UsageService.Report`, sending [`pb::SpooledUsageBatch`]es: the call
/// `UsageServiceClient::report` makes, with the same path and wire format.
pub async fn report_spooled(
    channel: tonic::transport::Channel,
    request: impl tonic::IntoStreamingRequest<Message = pb::SpooledUsageBatch>,
) -> Result<tonic::Response<tonic::Streaming<pb::UsageAck>>, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(format!("usage service not ready: {e}")))?;
    let codec = tonic_prost::ProstCodec::<pb::SpooledUsageBatch, pb::UsageAck>::default();
    let path = http::uri::PathAndQuery::from_static("/switchyard.v1.UsageService/Report");
    let mut request = request.into_streaming_request();
    request.extensions_mut().insert(tonic::GrpcMethod::new(
        "switchyard.v1.UsageService",
        "Report",
    ));
    grpc.streaming(request, path, codec).await
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use crate::pb;

    fn record(seq: u64, request_id: &str) -> pb::UsageRecord {
        pb::UsageRecord {
            seq,
            request_id: request_id.to_owned(),
            model: "openai/gpt-4o-mini".to_owned(),
            cost_nanos: 1_234,
            ..Default::default()
        }
    }

    #[test]
    fn a_spooled_batch_is_a_usage_batch_on_the_wire() {
        // The default record encodes to zero bytes: an empty element must survive too.
        let records = vec![record(1, "a"), pb::UsageRecord::default(), record(3, "c")];
        let plain = pb::UsageBatch {
            node_id: "gw-1".to_owned(),
            records: records.clone(),
        };
        let spooled = pb::SpooledUsageBatch {
            node_id: "gw-1".to_owned(),
            records: records.iter().map(|r| r.encode_to_vec().into()).collect(),
        };
        assert_eq!(spooled.encode_to_vec(), plain.encode_to_vec());
        let decoded = pb::UsageBatch::decode(spooled.encode_to_vec().as_slice()).unwrap();
        assert_eq!(decoded, plain);
    }
}
